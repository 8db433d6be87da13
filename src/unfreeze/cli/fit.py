"""``fit``, ``predict``, ``evaluate``, ``probe``: one classifier at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UnfreezeError
from .common import (
    BatchOpt,
    DeviceOpt,
    LabelCol,
    LayersOpt,
    MaxLenOpt,
    ModelOpt,
    NPerClassOpt,
    NTrainOpt,
    OverwriteOpt,
    PairCol,
    PrecisionOpt,
    PredictPrecisionOpt,
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
from .export import Int8Opt, OnnxDirOpt, RuntimeOpt
from .options import given, strategy_parameters, training_parameters, with_parameters


@app.command()
@user_errors
@with_parameters(strategy_parameters(), training_parameters())
def fit(
    data: Annotated[str, typer.Argument(help="A file (CSV/TSV/JSONL/Parquet), a save_to_disk folder, or a built-in dataset.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle folder to write.")],
    model: ModelOpt = "minilm-l6",
    strategy: Annotated[str, typer.Option("--strategy", help="How much to train: `unfreeze strategies` lists them "
                                                             "(features, freeze, full, reinit, lora, setfit, ...).")] = "features",
    pooling: PoolingOpt = "auto",
    layers: LayersOpt = "-1",
    max_length: MaxLenOpt = 256,
    batch_size: BatchOpt = 32,
    seed: SeedOpt = 0,
    no_cache: Annotated[bool, flag("--no-cache", help="Do not read or write the embedding cache.")] = False,
    device: DeviceOpt = None,
    test: TestOpt = None,
    test_size: TestSizeOpt = None,
    n_train: NTrainOpt = None,
    n_per_class: NPerClassOpt = None,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    text_pair_col: PairCol = None,
    overwrite: OverwriteOpt = False,
    precision: PrecisionOpt = "auto",
    **settings,
) -> None:
    """Fit a classifier on DATA and save it as a bundle.

    The strategy's parameters and the training settings are options of their own; only
    those given are passed on, so every default is the strategy's (see `unfreeze strategies`).
    """
    from ..storage.outputs import check_output
    from ..strategies import split_shorthand
    from ..training.settings import Training

    # everything a user can get wrong is checked before torch and the model load: it answers at once
    strategy_obj, training_given = split_shorthand(strategy, given(settings))
    training = Training(**training_given)
    strategy_obj.check()
    training.check()
    checked_precision(precision)
    check_output(output, "bundle", overwrite=overwrite, inputs=[data, *([test] if test else [])])
    train, test_set = load_train_test(data, test, test_size, text_col, label_col, text_pair_col, seed, n_train,
                                      n_per_class)
    device = checked_device(device)

    from ..estimators import Classifier
    from ..metrics import format_metrics_table
    from ..training import distributed

    clf = Classifier(model=model, strategy=strategy_obj, training=training, pooling=pooling, layers=layers,
                     max_length=max_length, batch_size=batch_size, seed=seed, cache=not no_cache, device=device,
                     precision=precision)
    clf.fit(train.inputs, train.labels)
    # launched data-parallel, every rank scores its share of the examples (collectively);
    # rank 0 alone writes the bundle and prints
    metrics = {"train": clf.evaluate(train.inputs, train.labels)}
    if test_set is not None:
        metrics["test"] = clf.evaluate(test_set.inputs, test_set.labels)
    if not distributed.is_main_process():
        distributed.finish()
        return
    clf.save(output, metrics={**metrics, "n_train": len(train), "n_test": len(test_set) if test_set else 0,
                              "fit_seconds": round(clf.fit_seconds_, 3)})
    distributed.finish()
    record = clf.fit_record_
    head = (f"head C={record['C']:g}" if "C" in record
            else f"best epoch {record['best_epoch']}" if "best_epoch" in record else "fitted")
    if record.get("tuned"):
        tried = ", ".join(f"{t['learning_rate']:g} ({t['val_accuracy']:.3f})" for t in record["lr_search"])
        head += f"; learning rate {record['learning_rate']:g}, the best on validation of {tried}"
    elif record.get("tuning"):
        head += f"; {record['tuning']}"
    from ..machine.hardware import RunPrecision

    ran = RunPrecision(**record.get("precision", {}))
    typer.echo(f"trained {clf.strategy_.describe()} on {len(train)} examples of {train.name} with {model} "
               f"({clf.fit_seconds_:.1f} s; {head}; trainable parameters {record.get('trainable_parameters', 0):,} "
               f"of {record.get('total_parameters', 0):,}; precision {ran.describe()})")
    if "layer_weights" in record:  # mix: what it learned about the layers
        weights = "  ".join(f"{layer}: {w:.3f}" for layer, w in zip(record["mixed_layers"], record["layer_weights"]))
        typer.echo(f"layer weights (hidden state: weight; 0 = embeddings): {weights}  gamma {record['gamma']:.3f}")
    if "token_states" in record:  # bilstm: where the cached token states lived
        kept = record["token_states"]
        typer.echo(f"token states: {kept['tokens']:,} tokens, {kept['bytes_in_memory'] / 2**20:.1f} MiB in memory, "
                   f"{kept['bytes_on_disk'] / 2**20:.1f} MiB on disk (removed)")
    if clf.n_truncated_:
        typer.echo(f"note: {clf.n_truncated_} training text(s) were longer than {clf.max_length_} tokens and truncated")
    typer.echo(format_metrics_table(metrics))
    typer.echo(f"bundle: {output}")


@app.command()
@user_errors
def predict(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `unfreeze fit` or `unfreeze heads add`.")],
    inputs: Annotated[Path, typer.Argument(help="File with a text column (labels not needed).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write: inputs + prediction + probabilities.")],
    head: Annotated[Optional[list[str]], typer.Option("--head", help="Multi-head bundle: apply only this head "
                                                                     "(repeat for several; default: all).")] = None,
    text_col: TextCol = "text",
    text_pair_col: PairCol = None,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = None,
    overwrite: OverwriteOpt = False,
    runtime: RuntimeOpt = "torch",
    onnx: OnnxDirOpt = None,
    int8: Int8Opt = False,
    precision: PredictPrecisionOpt = None,
) -> None:
    """Predict labels and class probabilities for every row of INPUTS.

    A multi-head bundle runs the backbone once per batch and writes HEAD.prediction and
    HEAD.proba_LABEL columns for every head; a single-head bundle writes prediction and
    proba_LABEL columns. --runtime onnx predicts with the bundle's export (`unfreeze export`)."""
    from ..inference.bundle import read_config
    from ..storage.cache import atomic_path
    from ..data.readers import read_inputs
    from ..storage.outputs import check_output

    from ..inference.bundle_predictor import check_runtime_options

    precision = one_precision(precision, int8)
    check_runtime_options(runtime, precision, onnx, device)
    check_output(output, "file", overwrite=overwrite, inputs=[inputs, bundle])
    read_config(bundle)  # a missing or damaged bundle is said before the texts are read
    frame, items = read_inputs(inputs, text_col, text_pair_col)
    device = checked_device(device)

    from ..inference.bundle_predictor import BundlePredictor

    predictor = BundlePredictor(bundle, device=device, batch_size=batch_size, runtime=runtime, precision=precision,
                                onnx=onnx)
    names = predictor.check_heads(head)
    frame = frame.copy()
    single = predictor.single_head
    for name, proba in predictor.predict_proba(items, names).items():
        labels = predictor.heads[name]["labels"]
        prefix = "" if single else f"{name}."
        frame[f"{prefix}prediction"] = [labels[j] for j in proba.argmax(axis=1)]
        for j, label in enumerate(labels):
            frame[f"{prefix}proba_{label}"] = proba[:, j]
    with atomic_path(output) as tmp:
        frame.to_csv(tmp, index=False)
    columns = f"{len(names)} head{'s' if len(names) > 1 else ''}"
    typer.echo(f"predicted {len(frame)} rows ({columns}) -> {output}")


@app.command()
@user_errors
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `unfreeze fit`.")],
    test: Annotated[str, typer.Argument(help="Labelled test data: a file or a built-in dataset (NAME:test).")],
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    text_pair_col: PairCol = None,
    head: Annotated[Optional[str], typer.Option("--head", help="Multi-head bundle: the head to score.")] = None,
    device: DeviceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Score a bundle on labelled TEST data: accuracy, macro-F1, MCC."""
    from ..inference.bundle import read_config
    from ..data import BUILTIN, load_data

    read_config(bundle)
    source = f"{test}:test" if test in BUILTIN else test
    test_set = load_data(source, text_col, label_col, text_pair_col)
    device = checked_device(device)

    from ..estimators import Classifier
    from ..metrics import format_metrics_table

    clf = Classifier.load(bundle, head=head, device=device)
    unknown = sorted(set(map(str, test_set.classes)) - set(map(str, clf.classes_.tolist())))
    if unknown:
        typer.echo(f"note: labels {', '.join(unknown)} of {test_set.name} were not seen in training", err=True)
    metrics = clf.evaluate(test_set.inputs, test_set.labels)
    typer.echo(json.dumps(metrics) if as_json else format_metrics_table({"test": metrics}))


@app.command()
@user_errors
def probe(
    data: Annotated[str, typer.Argument(help="Training data: a file or a built-in dataset.")],
    model: ModelOpt = "minilm-l6",
    pooling: PoolingOpt = "auto",
    test: TestOpt = None,
    test_size: TestSizeOpt = None,
    n_train: NTrainOpt = None,
    n_per_class: NPerClassOpt = None,
    metric: Annotated[str, typer.Option("--metric", help="accuracy, macro_f1 or mcc.")] = "accuracy",
    plot: Annotated[Path, typer.Option("--plot", help="Where to save the score-vs-layer plot.")] = Path("probe.png"),
    max_length: MaxLenOpt = 256,
    batch_size: BatchOpt = 32,
    seed: SeedOpt = 0,
    device: DeviceOpt = None,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    text_pair_col: PairCol = None,
    overwrite: OverwriteOpt = False,
    precision: PrecisionOpt = "auto",
) -> None:
    """Fit a logistic head on every layer's pooled states (one forward pass) and plot score vs layer."""
    from ..metrics import METRICS
    from ..storage.outputs import check_output

    if metric not in METRICS:
        raise UnfreezeError(f"Unknown metric {metric!r}. Metrics: {', '.join(METRICS)}.")
    checked_precision(precision)
    check_output(plot, "file", overwrite=overwrite, inputs=[data, *([test] if test else [])], option="--plot")
    train, test_set = load_train_test(data, test, test_size, text_col, label_col, text_pair_col, seed, n_train,
                                      n_per_class)
    device = checked_device(device)

    from ..features.probe import format_probe_table, plot_probe, run_probe

    rows = run_probe(train, test_set, model, pooling, max_length, batch_size, seed=seed, device=device,
                     precision=precision)
    typer.echo(format_probe_table(rows, metric))
    plot_probe(rows, plot, metric, title=f"{model} on {train.name} (n={len(train)})")
    typer.echo(f"plot: {plot}")


def one_precision(precision: str | None, int8: bool) -> str | None:
    """``--int8`` is ``--precision int8``; both, disagreeing, is one line."""
    if int8 and precision not in (None, "int8"):
        raise UnfreezeError(f"--int8 and --precision {precision} disagree: give one of them.")
    return "int8" if int8 else precision
