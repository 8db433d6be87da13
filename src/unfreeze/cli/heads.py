"""``heads add | list | remove``: multi-head bundles, many classifiers on one frozen backbone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    BatchOpt,
    DeviceOpt,
    LabelCol,
    LayersOpt,
    NPerClassOpt,
    NTrainOpt,
    PairCol,
    PoolingOpt,
    SeedOpt,
    TestOpt,
    TestSizeOpt,
    TextCol,
    app,
    checked_device,
    checked_precision,
    flag,
    load_train_test,
    user_errors,
)

heads_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                        help="Multi-head bundles: many classifiers sharing one frozen backbone and one forward pass.")
app.add_typer(heads_app, name="heads")


@heads_app.command("add")
@user_errors
def heads_add(
    bundle: Annotated[Path, typer.Argument(help="Multi-head bundle folder (created when missing), or a features "
                                                "bundle from `unfreeze fit`, whose head becomes 'default'.")],
    name: Annotated[str, typer.Argument(help="Name of the new head: letters, digits, '_', '-', '.'.")],
    data: Annotated[str, typer.Argument(help="Labelled training data: a file or a built-in dataset.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Backbone of a new bundle (default "
                                                 "minilm-l6); must match an existing bundle's.")] = None,
    pooling: PoolingOpt = "auto",
    layers: LayersOpt = "-1",
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per input, for a new bundle "
                                                                 "(every head shares it).")] = 256,
    batch_size: BatchOpt = 32,
    C: Annotated[Optional[float], typer.Option("--C", help="Inverse L2 strength; default: chosen by CV.")] = None,
    test: TestOpt = None,
    test_size: TestSizeOpt = None,
    n_train: NTrainOpt = None,
    n_per_class: NPerClassOpt = None,
    seed: SeedOpt = 0,
    replace: Annotated[bool, flag("--replace", help="Refit a head that already exists.")] = False,
    no_cache: Annotated[bool, flag("--no-cache", help="Do not read or write the embedding cache.")] = False,
    device: DeviceOpt = None,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    text_pair_col: PairCol = None,
    precision: Annotated[str, typer.Option("--precision", help="For a new bundle: auto, fp32 or bf16 (its shared "
                                                               "forward pass; an existing bundle keeps its own).")]
    = "auto",
) -> None:
    """Fit a logistic head on DATA and add it to BUNDLE under NAME (atomically)."""
    from ..inference.bundle import check_head_name
    from ..storage.outputs import check_output

    check_head_name(name)
    checked_precision(precision)
    check_output(bundle, "heads", inputs=[data, *([test] if test else [])], option="BUNDLE")
    train, test_set = load_train_test(data, test, test_size, text_col, label_col, text_pair_col, seed, n_train,
                                      n_per_class)
    device = checked_device(device)

    from ..metrics import format_metrics_table
    from ..inference.multihead import add_heads, new_suite_for

    suite = new_suite_for(bundle, model, max_length, batch_size, device, precision)
    head = suite.add_head(name, train.inputs, train.labels, pooling=pooling, layers=layers, C=C, seed=seed,
                          cache=not no_cache, data=train.name)
    clf = suite.as_classifier(name)
    metrics = {"train": clf.evaluate(train.inputs, train.labels)}
    if test_set is not None:
        metrics["test"] = clf.evaluate(test_set.inputs, test_set.labels)
    head.info["metrics"] = {**metrics, "n_train": len(train), "n_test": len(test_set) if test_set else 0}
    saved = add_heads(bundle, suite, replace=replace)
    typer.echo(f"added head {name!r} ({len(head.classes)} labels, pooling {head.pooling}, layers "
               f"{','.join(map(str, head.layers))}, C={head.head.C_:g}) fitted on {len(train)} examples of "
               f"{train.name}; {bundle} now has {len(saved.heads)} head(s): {', '.join(saved.heads)}")
    typer.echo(format_metrics_table(metrics))


@heads_app.command("list")
@user_errors
def heads_list(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    as_json: Annotated[bool, flag("--json", help="Print the heads as JSON.")] = False,
) -> None:
    """List the heads of BUNDLE: labels, pooling, layers, training data, test accuracy."""
    from ..inference.bundle import MULTIHEAD_KIND, read_config
    from ..inference.multihead import DEFAULT_HEAD

    config = read_config(bundle)
    if config.get("kind") == MULTIHEAD_KIND:
        entries = config["heads"]
    else:  # a single-head bundle shows its one head
        entries = {DEFAULT_HEAD: {"labels": config["labels"], "pooling": config["pooling"],
                                  "layers": config["layers"], "metrics": config.get("metrics", {}),
                                  "strategy": config["strategy"]["name"]}}
    rows = [{"name": n, "labels": e["labels"], "pooling": e["pooling"], "layers": e["layers"],
             "data": e.get("data", ""), "test_accuracy": e.get("metrics", {}).get("test", {}).get("accuracy")}
            for n, e in entries.items()]
    if as_json:
        typer.echo(json.dumps({"model": config["backbone"]["reference"], "heads": rows}, indent=2))
        return
    typer.echo(f"model: {config['backbone']['reference']}")
    typer.echo(f"{'head':<20}{'labels':>7}  {'pooling':<8}{'layers':<14}{'test acc':>9}  data")
    for r in rows:
        acc = "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"
        typer.echo(f"{r['name']:<20}{len(r['labels']):>7}  {r['pooling']:<8}{','.join(map(str, r['layers'])):<14}"
                   f"{acc:>9}  {r['data']}")


@heads_app.command("remove")
@user_errors
def heads_remove(
    bundle: Annotated[Path, typer.Argument(help="Multi-head bundle folder.")],
    name: Annotated[str, typer.Argument(help="The head to remove.")],
) -> None:
    """Remove head NAME from BUNDLE (atomically)."""
    from ..inference.multihead import remove_head

    suite = remove_head(bundle, name)
    typer.echo(f"removed head {name!r}; {bundle} now has {len(suite.heads)} head(s): {', '.join(suite.heads)}")
