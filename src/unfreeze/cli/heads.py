"""``heads add | list | remove``: multi-head bundles, many classifiers on one frozen backbone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import typer

from ..errors import UnfreezeError
from .arguments import TRAIN_DATA, DataArguments, InputArguments, RunArguments, arguments, take
from .common import app, checked_device, checked_precision, flag, load_train_test, user_errors
from .options import one_value_each, strategy_parameters, strategy_values, with_parameters

heads_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Multi-head bundles: many heads (of any task) sharing one frozen backbone and one forward pass.",
)
app.add_typer(heads_app, name="heads")


@heads_app.command("add")
@user_errors
@with_parameters(
    arguments(InputArguments, ("model", "pooling", "layers", "max_length", "batch_size", "precision", "device")),
    strategy_parameters(only=("C", "alpha")),
    arguments(DataArguments, (*TRAIN_DATA, "thresholds")),
    arguments(RunArguments, ("seed", "no_cache")),
)
def heads_add(
    bundle: Annotated[
        Path,
        typer.Argument(
            help="Multi-head bundle folder (created when missing), or a features "
            "bundle from `unfreeze fit`, whose head becomes 'default'."
        ),
    ],
    name: Annotated[str, typer.Argument(help="Name of the new head: letters, digits, '_', '-', '.'.")],
    data: Annotated[str, typer.Argument(help="Labelled training data: a file or a built-in dataset.")],
    replace: Annotated[bool, flag("--replace", help="Refit a head that already exists.")] = False,
    **options,
) -> None:
    """Fit a head of DATA's task on DATA and add it to BUNDLE under NAME (atomically): a logistic head (one
    class per text), one per label (--task multilabel) or ridge (--task regression), as `fit --strategy
    features` fits them. Heads of different tasks share the bundle's backbone."""
    from ..inference.bundle import check_head_name
    from ..params import coerce
    from ..storage.outputs import check_output
    from ..strategies import Features
    from .fit import fit_task

    model_in, split, run = take(InputArguments, options), take(DataArguments, options), take(RunArguments, options)
    values = one_value_each(strategy_values(options))
    C = cast(float | None, coerce(Features, "C", values.get("C")))
    alpha = cast(float | None, coerce(Features, "alpha", values.get("alpha")))
    head_strategy = Features(C=C, alpha=alpha)
    head_strategy.check()  # the head's strengths as features checks them, before anything loads
    split.check_strategy(data, head_strategy)  # and the one the data's task's head takes
    check_head_name(name)
    precision = checked_precision(model_in.precision or "auto")
    check_output(bundle, "heads", inputs=[data, *([split.test] if split.test else [])], option="BUNDLE")
    if not replace:
        check_name_free(bundle, name)  # a head add_heads would refuse is refused before it is fitted
    train, test_set = load_train_test(data, split, run.seed)
    device = checked_device(model_in.device)
    model, max_length, batch_size = model_in.model, model_in.max_length, model_in.batch_size or 32

    from ..inference.multihead import add_heads, new_suite_for
    from ..metrics import format_metrics_table

    suite = new_suite_for(bundle, model, max_length, batch_size, device, precision)
    head = suite.add_head(
        name,
        train.inputs,
        train.labels,
        pooling=model_in.pooling,
        layers=model_in.layers,
        C=C,
        seed=run.seed,
        cache=not run.no_cache,
        data=train.name,
        task=fit_task(split.task or train.task, split.thresholds),
        alpha=alpha,
    )
    clf = suite.as_classifier(name)
    metrics = {"train": clf.evaluate(train.inputs, train.labels)}
    if test_set is not None:
        metrics["test"] = clf.evaluate(test_set.inputs, test_set.labels)
    head.info["metrics"] = {**metrics, "n_train": len(train), "n_test": len(test_set) if test_set else 0}
    saved = add_heads(bundle, suite, replace=replace)
    strength = ", ".join(f"{k}={v:g}" for k, v in head.head.record().items() if isinstance(v, float))
    from ..tasks import DEFAULT_TASK

    what = f"{len(head.classes)} labels" if len(head.classes) else "values"
    # a single-label head is said as before tasks existed; another names its task
    kind = "" if head.task is None or head.task.name == DEFAULT_TASK else f"{head.task.describe()} "
    typer.echo(
        f"added {kind}head {name!r} ({what}, pooling {head.pooling}, layers "
        f"{','.join(map(str, head.layers))}, {strength}) fitted on {len(train)} examples of "
        f"{train.name}; {bundle} now has {len(saved.heads)} head(s): {', '.join(saved.heads)}"
    )
    typer.echo(format_metrics_table(metrics))


def check_name_free(bundle: Path, name: str) -> None:
    """One line when the bundle at ``bundle`` already has a head ``name`` (without --replace)."""
    from ..inference.bundle import MULTIHEAD_KIND, read_config
    from ..inference.multihead import DEFAULT_HEAD
    from ..storage.outputs import is_bundle

    if not bundle.is_dir() or not is_bundle(bundle):
        return
    config = read_config(bundle)
    names = list(config.get("heads") or {}) if config.get("kind") == MULTIHEAD_KIND else [DEFAULT_HEAD]
    if name in names:
        raise UnfreezeError(
            f"{bundle} already has a head named {name!r}; pass --replace to refit it, or choose another name."
        )


@heads_app.command("list")
@user_errors
@with_parameters(arguments(RunArguments, ("as_json",)))
def heads_list(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    **options,
) -> None:
    """List the heads of BUNDLE: task, labels, pooling, layers, training data, test score (the task's own)."""
    from ..inference.bundle import MULTIHEAD_KIND, read_config
    from ..inference.multihead import DEFAULT_HEAD
    from ..tasks import DEFAULT_TASK, task_from_state

    as_json = take(RunArguments, options).as_json
    config = read_config(bundle)
    if config.get("kind") == MULTIHEAD_KIND:
        entries = config["heads"]
    else:  # a single-head bundle shows its one head
        entries = {
            DEFAULT_HEAD: {
                "labels": config["labels"],
                "pooling": config["pooling"],
                "layers": config["layers"],
                "metrics": config.get("metrics", {}),
                "strategy": config["strategy"]["name"],
                "task": config.get("task"),
            }
        }
    rows = []
    for n, e in entries.items():
        task = task_from_state(e.get("task"), e["labels"] or None)  # a head of an earlier release: single
        test = e.get("metrics", {}).get("test", {})
        row = {"name": n, "task": task.name, "labels": e["labels"], "pooling": e["pooling"], "layers": e["layers"]}
        row.update(data=e.get("data", ""), metric=task.default_metric, test_score=test.get(task.default_metric))
        row["test_accuracy"] = test.get("accuracy")  # as earlier releases listed it (single-label heads)
        rows.append(row)
    if as_json:
        typer.echo(json.dumps({"model": config["backbone"]["reference"], "heads": rows}, indent=2))
        return
    typer.echo(f"model: {config['backbone']['reference']}")
    if all(r["task"] == DEFAULT_TASK for r in rows):  # single-label heads only: the table of earlier releases
        typer.echo(f"{'head':<20}{'labels':>7}  {'pooling':<8}{'layers':<14}{'test acc':>9}  data")
        for r in rows:
            acc = "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"
            typer.echo(
                f"{r['name']:<20}{len(r['labels']):>7}  {r['pooling']:<8}{','.join(map(str, r['layers'])):<14}"
                f"{acc:>9}  {r['data']}"
            )
        return
    typer.echo(f"{'head':<20}{'task':<11}{'labels':>7}  {'pooling':<8}{'layers':<14}{'test score':>20}  data")
    for r in rows:
        score = "-" if r["test_score"] is None else f"{r['metric']} {r['test_score']:.4f}"
        typer.echo(
            f"{r['name']:<20}{r['task']:<11}{len(r['labels']):>7}  {r['pooling']:<8}"
            f"{','.join(map(str, r['layers'])):<14}{score:>20}  {r['data']}"
        )


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
