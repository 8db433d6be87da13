"""``fit``, ``predict``, ``evaluate``, ``probe``: one classifier at a time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UnfreezeError
from ..storage import strict_json
from .arguments import (
    TAGGED_OPTIONS,
    TRAIN_DATA,
    DataArguments,
    InputArguments,
    RunArguments,
    TrackingArguments,
    arguments,
    take,
)
from .common import app, checked_device, checked_precision, load_train_test, user_errors
from .export import OnnxDirOpt, RuntimeOpt, int8_deprecated, one_precision
from .options import given, one_value_each, strategy_parameters, strategy_values, training_parameters, with_parameters

if TYPE_CHECKING:
    from ..tasks import Task

DataArg = Annotated[
    str, typer.Argument(help="A file (CSV/TSV/JSONL/Parquet), a save_to_disk folder, or a built-in dataset.")
]


@app.command()
@user_errors
@with_parameters(
    arguments(InputArguments),
    arguments(DataArguments, (*TRAIN_DATA, "thresholds", *TAGGED_OPTIONS)),
    arguments(RunArguments, ("seed", "no_cache", "overwrite")),
    strategy_parameters(),
    training_parameters(),
    arguments(TrackingArguments),
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
    """Fit a classifier (a regressor with --task regression, a tagger with --task tokens) on DATA and save it as a
    bundle.

    The strategy's parameters and the training settings are options of their own; only
    those given are passed on, so every default is the strategy's (see `unfreeze strategies`).
    """
    from ..storage.outputs import check_output
    from ..strategies import split_shorthand
    from ..tasks import task_class
    from ..training.settings import Training

    # everything a user can get wrong is checked before torch and the model load: it answers at once
    model_in, split, run = take(InputArguments, settings), take(DataArguments, settings), take(RunArguments, settings)
    tracking = take(TrackingArguments, settings)
    strategy_given = one_value_each(strategy_values(settings))
    strategy_obj, training_given = split_shorthand(strategy, {**strategy_given, **given(settings)}, from_text=True)
    training = Training(**training_given)
    strategy_obj.check()
    split.check_strategy(data, strategy_obj)  # it serves the data's task, with that task's head strength
    training.check()
    model, precision = model_in.model or "minilm-l6", checked_precision(model_in.precision or "auto")
    check_output(output, "bundle", overwrite=run.overwrite, inputs=[data, *([split.test] if split.test else [])])
    train: Any  # sentences of words (tokens), or texts
    test_set: Any
    data_task = task_class(split.data_task(data), "--task")
    split.check_tagged_options(data_task.name)
    if data_task.reads_tagged:  # sentences of words and their tags (tokens)
        from .tagging import load_tagged_train_test, tagged_fit_task

        train, test_set = load_tagged_train_test(data, split, run.seed)
        task = tagged_fit_task(train)
    else:
        train, test_set = load_train_test(data, split, run.seed)
        task = fit_task(split.task or train.task, split.thresholds)
    device = checked_device(model_in.device)

    from ..estimators import make_estimator
    from ..metrics import format_metrics_table
    from ..training import distributed

    clf = make_estimator(
        task,
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
        else f"ridge alpha={record['alpha']:g}"
        if "alpha" in record
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
    decision = _decision_line(record, clf.task_)
    if decision:
        typer.echo(decision)
    if clf.n_truncated_:
        typer.echo(f"note: {clf.n_truncated_} training text(s) were longer than {clf.max_length_} tokens and truncated")
    typer.echo(format_metrics_table(metrics, clf.task_.metrics))
    typer.echo(f"bundle: {output}")
    if tracking.track is not None:
        from ..tracking import fit_row, track_fit

        fingerprint = train.fingerprint()
        row = fit_row(clf, metrics, data, model, len(train), len(test_set) if test_set else 0, fingerprint)
        typer.echo(track_fit(row, output, tracking.tracking_uri, fingerprint))


@app.command()
@user_errors
@with_parameters(
    arguments(RunArguments, ("head", "overwrite")),
    arguments(DataArguments, ("text_col", "text_pair_col", "label_sep", "tokens_col")),
    arguments(InputArguments, ("batch_size", "precision", "device")),
    [int8_deprecated()],
)
def predict(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `unfreeze fit` or `unfreeze heads add`.")],
    inputs: Annotated[Path, typer.Argument(help="File with a text column (labels not needed).")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="File to write: inputs + predictions (CSV; .tsv: TSV; .jsonl: JSON lines)."
        ),
    ],
    runtime: RuntimeOpt = "torch",
    onnx: OnnxDirOpt = None,
    **options,
) -> None:
    """Predict every row of INPUTS: labels and class probabilities, label sets, or values, as each head's task
    says.

    A multi-head bundle runs the backbone once per batch and writes HEAD.prediction and
    HEAD.proba_LABEL columns for every head; a single-head bundle writes prediction and
    proba_LABEL columns. A multi-label head's prediction is its labels joined with --label-sep
    (default |; a list in JSON lines) and a proba_LABEL column per label; a regression head's
    is the value. --runtime onnx predicts with the bundle's export (`unfreeze export`).

    A tagger's bundle (--task tokens) tags words: a CoNLL file comes back as CoNLL (a word and its
    tag a line), a table with a --tokens-col column gets a tags column, and a table of texts an
    entities column, each text's entity spans with character offsets."""
    from ..data.labels import check_separator
    from ..data.readers import read_inputs
    from ..inference.bundle import read_config
    from ..inference.bundle_predictor import check_runtime_options
    from ..storage.cache import atomic_path
    from ..storage.outputs import check_output
    from .predictions import DEFAULT_LABEL_SEP, add_predictions, check_label_sep, output_format, write_table

    precision = one_precision(options)
    # --label-sep joins the predicted labels here; it reads no labels (the check of DataArguments is for reading)
    label_sep = options.pop("label_sep", None)
    check_separator(label_sep)
    label_sep = label_sep or DEFAULT_LABEL_SEP
    run, columns_in, model_in = take(RunArguments, options), take(DataArguments, options), take(InputArguments, options)
    check_runtime_options(runtime, precision, onnx, model_in.device)
    check_output(output, "file", overwrite=run.overwrite, inputs=[inputs, bundle])
    config = read_config(bundle)  # a missing or damaged bundle is said before the texts are read
    if _tags_words(bundle, config, columns_in):
        from .tagging import predict_tagged

        predict_tagged(
            bundle,
            inputs,
            output,
            columns_in.text_col,
            columns_in.tokens_col,
            model_in.batch_size,
            checked_device(model_in.device),
        )
        return
    frame, items = read_inputs(inputs, columns_in.text_col, columns_in.text_pair_col)
    device = checked_device(model_in.device)

    from ..inference.bundle_predictor import BundlePredictor

    predictor = BundlePredictor(
        bundle, device=device, batch_size=model_in.batch_size or 32, runtime=runtime, precision=precision, onnx=onnx
    )
    names = predictor.check_heads(run.head)
    fmt = output_format(output)
    single = predictor.single_head
    for name in names:
        where = str(bundle) if single else f"head {name!r} of {bundle}"
        check_label_sep(label_sep, predictor.heads[name]["labels"], where, fmt)
    frame = frame.copy()
    for name, outputs in predictor.outputs(items, names).items():
        prefix = "" if single else f"{name}."
        add_predictions(frame, prefix, predictor.tasks[name], outputs, predictor.heads[name]["labels"], label_sep, fmt)
    with atomic_path(output) as tmp:
        write_table(frame, tmp, fmt)
    columns = f"{len(names)} head{'s' if len(names) > 1 else ''}"
    typer.echo(f"predicted {len(frame)} rows ({columns}) -> {output}")


@app.command()
@user_errors
@with_parameters(
    arguments(DataArguments, ("text_col", "label_col", "text_pair_col", "task", "label_sep", *TAGGED_OPTIONS)),
    arguments(RunArguments, ("head", "as_json")),
    arguments(InputArguments, ("device",)),
)
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `unfreeze fit`.")],
    test: Annotated[str, typer.Argument(help="Labelled test data: a file or a built-in dataset (NAME:test).")],
    **options,
) -> None:
    """Score a bundle on labelled TEST data with its task's metrics (single: accuracy, macro-F1, MCC;
    multilabel: micro-F1 ...; regression: Spearman ...; tokens: entity F1 ...), every head given, or the only one.

    The bundle's task says how the labels are read (--task, when given, must be the same)."""
    from ..data import BUILTIN, load_data
    from ..inference.bundle import read_config

    run, model_in = take(RunArguments, options), take(InputArguments, options)
    config = read_config(bundle)
    heads: list[str | None] = list(run.head) if run.head else [None]
    tasks = {head: _head_task(bundle, config, head) for head in heads}
    task = _one_task(tasks, options.get("task"))
    options["task"] = task.name  # the labels are read for the bundle's task (and --label-sep checked for it)
    columns = take(DataArguments, options)
    test_set: Any
    if task.reads_tagged:  # sentences of words and their tags (tokens)
        from .tagging import load_tagged_test

        test_set = load_tagged_test(test, columns)
    else:
        source = f"{test}:test" if test in BUILTIN else test
        test_set = load_data(
            source,
            columns.text_col,
            columns.label_col,
            columns.text_pair_col,
            require_classes=1,
            task=task.name,
            label_sep=columns.label_sep,
        )
    for head, head_task in tasks.items():
        _check_seen(head_task, test_set, bundle, head)
    device = checked_device(model_in.device)

    from ..inference.classifier_bundle import load_estimator
    from ..metrics import format_metrics_table

    scores = {}
    for head in heads:
        clf = load_estimator(bundle, head=head, device=device)
        scores[head] = clf.evaluate(test_set.inputs, test_set.labels)
    if list(scores) == [None] or len(scores) == 1:  # one head: the metrics as before
        metrics = next(iter(scores.values()))
        typer.echo(strict_json.dumps(metrics) if run.as_json else format_metrics_table({"test": metrics}, task.metrics))
    else:
        typer.echo(
            strict_json.dumps(scores)
            if run.as_json
            else format_metrics_table({f"test {h}": m for h, m in scores.items()}, task.metrics)
        )


def _tags_words(bundle: Path, config: dict, columns: DataArguments) -> bool:
    """Whether the bundle is a tagger (its task reads token-tagged data): ``predict`` then tags words. A bundle of
    another task refuses --tokens-col in one line."""
    from ..inference.bundle_predictor import bundle_tasks

    tasks = list(bundle_tasks(config, bundle).values())
    if any(task.reads_tagged for task in tasks):
        return True
    columns.check_tagged_options(tasks[0].name)
    return False


def _head_task(bundle: Path, config: dict, head: str | None) -> Task:
    """The fitted task of ``head`` of the bundle (None: its only head), from its config; an unknown head, or
    None where there are several, is the one-line error loading it gives."""
    from ..inference.bundle_predictor import bundle_tasks
    from ..inference.classifier_bundle import load_estimator

    tasks = bundle_tasks(config, bundle)
    if head is None and len(tasks) == 1:
        return next(iter(tasks.values()))
    if head in tasks:
        return tasks[head]
    load_estimator(bundle, head=head)  # says which heads there are
    raise AssertionError(f"head {head!r} of {bundle} neither found nor refused")


def _one_task(tasks: dict[str | None, Task], given: str | None) -> Task:
    """The one task the asked heads share (its labels are read once); --task, when given, must name it."""
    names = {task.name for task in tasks.values()}
    if len(names) > 1:
        listed = ", ".join(f"{h} ({t.name})" for h, t in tasks.items())
        raise UnfreezeError(
            f"The heads {listed} read labels of different tasks: evaluate them one task at a time (--head NAME)."
        )
    task = next(iter(tasks.values()))
    if given is not None and given != task.name:
        raise UnfreezeError(
            f"--task {given} does not match the bundle's task ({task.name}), which says how its labels are read. "
            "Drop --task."
        )
    return task


def _check_seen(task: Task, test_set, bundle: Path, head: str | None) -> None:
    """Every label of the test data was seen in training (the model has an output for it); one line otherwise."""
    if task.classes_ is None:
        return
    known = set(task.classes_.tolist())
    unseen = [label for label in test_set.classes if label not in known]
    if unseen:
        shown = ", ".join(map(repr, unseen[:5])) + (f" and {len(unseen) - 5} more" if len(unseen) > 5 else "")
        fitted = ", ".join(map(repr, task.classes_.tolist()[:8])) + (" ..." if len(task.classes_) > 8 else "")
        raise UnfreezeError(
            f"{test_set.name} holds label(s) {shown} that appear in no training text of {bundle}"
            + (f" (head {head!r})" if head else "")
            + f", whose labels are {fitted}: the model cannot predict them. Drop those rows, or fit on data that "
            "holds them."
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
    metric = split.check_metric(data, run.metric)  # the data's task reports it: said before anything loads
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
    """A rate search's trial as the summary shows it: its validation score (the task's metric; single:
    accuracy), or that it diverged."""
    return "diverged" if "diverged" in trial else f"{trial['val_score']:.3f}"


def _decision_line(record: dict, task: Task) -> str | None:
    """The decision thresholds a multi-label fit chose (the task's ``decision`` in the fit record), in one line."""
    chosen = (record.get("decision") or {}).get("threshold")
    if not chosen or task.classes_ is None:
        return None
    if len(set(chosen)) == 1:
        values = f"{chosen[0]:g} for every label"
    else:
        values = ", ".join(f"{label} {t:g}" for label, t in zip(task.classes_.tolist(), chosen))
    where = record.get("decision_source") or "the validation split"
    return f"decision thresholds: {values} (chosen on {where})"


def fit_task(name: str, thresholds: str) -> Task:
    """The task to fit, by name, with ``--thresholds`` where it takes them (multilabel's decision thresholds)."""
    from ..tasks import task_class

    kind = task_class(name, "--task")
    return kind(**({"thresholds": thresholds} if "thresholds" in kind().params() else {}))
