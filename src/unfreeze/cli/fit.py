"""``fit``, ``predict``, ``evaluate``, ``probe``: one classifier at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..storage import strict_json
from .arguments import DataArguments, InputArguments, RunArguments, arguments, check_metric, take
from .common import app, checked_device, checked_precision, load_train_test, user_errors
from .export import OnnxDirOpt, RuntimeOpt, int8_deprecated, one_precision
from .options import given, one_value_each, strategy_parameters, strategy_values, training_parameters, with_parameters

DataArg = Annotated[
    str, typer.Argument(help="A file (CSV/TSV/JSONL/Parquet), a save_to_disk folder, or a built-in dataset.")
]
TRAIN_DATA = (
    "test",
    "test_size",
    "n_train",
    "n_per_class",
    "text_col",
    "label_col",
    "text_pair_col",
    "task",
    "label_sep",
)


@app.command()
@user_errors
@with_parameters(
    arguments(InputArguments),
    arguments(DataArguments, (*TRAIN_DATA, "thresholds")),
    arguments(RunArguments, ("seed", "no_cache", "overwrite")),
    strategy_parameters(),
    training_parameters(),
)
def fit(
    data: DataArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle folder to write.")],
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="How much to train: `unfreeze strategies` lists them "
            "(features, freeze, full, reinit, lora, setfit, ...).",
        ),
    ] = "features",
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
    model_in, split, run = take(InputArguments, settings), take(DataArguments, settings), take(RunArguments, settings)
    strategy_given = one_value_each(strategy_values(settings))
    strategy_obj, training_given = split_shorthand(strategy, {**strategy_given, **given(settings)}, from_text=True)
    training = Training(**training_given)
    strategy_obj.check()
    training.check()
    model, precision = model_in.model or "minilm-l6", checked_precision(model_in.precision or "auto")
    check_output(output, "bundle", overwrite=run.overwrite, inputs=[data, *([split.test] if split.test else [])])
    train, test_set = load_train_test(data, split, run.seed)
    device = checked_device(model_in.device)

    from ..estimators import Classifier
    from ..metrics import format_metrics_table
    from ..training import distributed

    clf = Classifier(
        model=model,
        strategy=strategy_obj,
        training=training,
        pooling=model_in.pooling,
        layers=model_in.layers,
        max_length=model_in.max_length,
        batch_size=model_in.batch_size or 32,
        seed=run.seed,
        cache=not run.no_cache,
        device=device,
        precision=precision,
    )
    clf.fit(train.inputs, train.labels)
    # launched data-parallel, every rank scores its share of the examples (collectively);
    # rank 0 alone writes the bundle and prints
    metrics = {"train": clf.evaluate(train.inputs, train.labels)}
    if test_set is not None:
        metrics["test"] = clf.evaluate(test_set.inputs, test_set.labels)
    if not distributed.is_main_process():
        distributed.finish()
        return
    clf.save(
        output,
        metrics={
            **metrics,
            "n_train": len(train),
            "n_test": len(test_set) if test_set else 0,
            "fit_seconds": round(clf.fit_seconds_, 3),
        },
    )
    distributed.finish()
    record = clf.fit_record_
    head = (
        f"head C={record['C']:g}"
        if "C" in record
        else f"best epoch {record['best_epoch']}"
        if "best_epoch" in record
        else "fitted"
    )
    if record.get("tuned"):
        tried = ", ".join(f"{t['learning_rate']:g} ({_trial_score(t)})" for t in record["lr_search"])
        head += f"; learning rate {record['learning_rate']:g}, the best on validation of {tried}"
    elif record.get("tuning"):
        head += f"; {record['tuning']}"
    from ..machine.hardware import RunPrecision

    ran = RunPrecision(**record.get("precision", {}))
    typer.echo(
        f"trained {clf.strategy_.describe()} on {len(train)} examples of {train.name} with {model} "
        f"({clf.fit_seconds_:.1f} s; {head}; trainable parameters {record.get('trainable_parameters', 0):,} "
        f"of {record.get('total_parameters', 0):,}; precision {ran.describe()})"
    )
    for line in clf.strategy_.fit_lines(record):
        typer.echo(line)
    if clf.n_truncated_:
        typer.echo(f"note: {clf.n_truncated_} training text(s) were longer than {clf.max_length_} tokens and truncated")
    typer.echo(format_metrics_table(metrics))
    typer.echo(f"bundle: {output}")


@app.command()
@user_errors
@with_parameters(
    arguments(RunArguments, ("head", "overwrite")),
    arguments(DataArguments, ("text_col", "text_pair_col")),
    arguments(InputArguments, ("batch_size", "precision", "device")),
    [int8_deprecated()],
)
def predict(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `unfreeze fit` or `unfreeze heads add`.")],
    inputs: Annotated[Path, typer.Argument(help="File with a text column (labels not needed).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write: inputs + prediction + probabilities.")],
    runtime: RuntimeOpt = "torch",
    onnx: OnnxDirOpt = None,
    **options,
) -> None:
    """Predict labels and class probabilities for every row of INPUTS.

    A multi-head bundle runs the backbone once per batch and writes HEAD.prediction and
    HEAD.proba_LABEL columns for every head; a single-head bundle writes prediction and
    proba_LABEL columns. --runtime onnx predicts with the bundle's export (`unfreeze export`)."""
    from ..data.readers import read_inputs
    from ..inference.bundle import read_config
    from ..inference.bundle_predictor import check_runtime_options
    from ..storage.cache import atomic_path
    from ..storage.outputs import check_output

    precision = one_precision(options)
    run, columns_in, model_in = take(RunArguments, options), take(DataArguments, options), take(InputArguments, options)
    check_runtime_options(runtime, precision, onnx, model_in.device)
    check_output(output, "file", overwrite=run.overwrite, inputs=[inputs, bundle])
    read_config(bundle)  # a missing or damaged bundle is said before the texts are read
    frame, items = read_inputs(inputs, columns_in.text_col, columns_in.text_pair_col)
    device = checked_device(model_in.device)

    from ..inference.bundle_predictor import BundlePredictor

    predictor = BundlePredictor(
        bundle, device=device, batch_size=model_in.batch_size or 32, runtime=runtime, precision=precision, onnx=onnx
    )
    names = predictor.check_heads(run.head)
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
@with_parameters(
    arguments(DataArguments, ("text_col", "label_col", "text_pair_col", "task", "label_sep")),
    arguments(RunArguments, ("head", "as_json")),
    arguments(InputArguments, ("device",)),
)
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `unfreeze fit`.")],
    test: Annotated[str, typer.Argument(help="Labelled test data: a file or a built-in dataset (NAME:test).")],
    **options,
) -> None:
    """Score a bundle on labelled TEST data: accuracy, macro-F1, MCC (every head given, or the only one)."""
    from ..data import BUILTIN, load_data
    from ..inference.bundle import read_config

    columns, run, model_in = take(DataArguments, options), take(RunArguments, options), take(InputArguments, options)
    read_config(bundle)
    source = f"{test}:test" if test in BUILTIN else test
    test_set = load_data(
        source,
        columns.text_col,
        columns.label_col,
        columns.text_pair_col,
        require_classes=1,
        task=columns.task,
        label_sep=columns.label_sep,
    )
    device = checked_device(model_in.device)

    from ..estimators import Classifier
    from ..metrics import format_metrics_table

    scores = {}
    heads: list[str | None] = list(run.head) if run.head else [None]
    for head in heads:
        clf = Classifier.load(bundle, head=head, device=device)
        unknown = sorted(set(map(str, test_set.classes)) - set(map(str, clf.classes_.tolist())))
        if unknown:
            typer.echo(
                f"note: labels {', '.join(unknown)} of {test_set.name} were not seen in training"
                + (f" by head {head!r}" if head else ""),
                err=True,
            )
        scores[head] = clf.evaluate(test_set.inputs, test_set.labels)
    if list(scores) == [None] or len(scores) == 1:  # one head: the metrics as before
        metrics = next(iter(scores.values()))
        typer.echo(strict_json.dumps(metrics) if run.as_json else format_metrics_table({"test": metrics}))
    else:
        typer.echo(
            strict_json.dumps(scores)
            if run.as_json
            else format_metrics_table({f"test {h}": m for h, m in scores.items()})
        )


@app.command()
@user_errors
@with_parameters(
    arguments(InputArguments, ("model", "pooling", "max_length", "batch_size", "precision", "device")),
    arguments(DataArguments, TRAIN_DATA),
    arguments(RunArguments, ("metric", "seed", "overwrite")),
)
def probe(
    data: Annotated[str, typer.Argument(help="Training data: a file or a built-in dataset.")],
    plot: Annotated[Path, typer.Option("--plot", help="Where to save the score-vs-layer plot.")] = Path("probe.png"),
    **options,
) -> None:
    """Fit a logistic head on every layer's pooled states (one forward pass) and plot score vs layer."""
    from ..storage.outputs import check_output

    model_in, split, run = take(InputArguments, options), take(DataArguments, options), take(RunArguments, options)
    metric = check_metric(run.metric)
    model, precision = model_in.model or "minilm-l6", checked_precision(model_in.precision or "auto")
    check_output(
        plot, "file", overwrite=run.overwrite, inputs=[data, *([split.test] if split.test else [])], option="--plot"
    )
    train, test_set = load_train_test(data, split, run.seed)
    device = checked_device(model_in.device)

    from ..features.probe import format_probe_table, plot_probe, run_probe

    rows = run_probe(
        train,
        test_set,
        model,
        model_in.pooling,
        model_in.max_length,
        model_in.batch_size or 32,
        seed=run.seed,
        device=device,
        precision=precision,
    )
    typer.echo(format_probe_table(rows, metric))
    plot_probe(rows, plot, metric, title=f"{model} on {train.name} (n={len(train)})")
    typer.echo(f"plot: {plot}")


def _trial_score(trial: dict) -> str:
    """A rate search's trial as the summary shows it: its validation accuracy, or that it diverged."""
    return "diverged" if "diverged" in trial else f"{trial['val_accuracy']:.3f}"
