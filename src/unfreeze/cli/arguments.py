"""The options commands share, declared once: data selection, model input and run options.

As with Hugging Face's argument dataclasses, each group is a dataclass whose fields carry their
flags and help; ``arguments`` turns a group's fields into command-line options, so that an
option has one name, one type, one default and one help text in every command that takes it
(``tests/test_cli_options.py`` walks every command to hold that). A command lists the groups it
takes and reads them back with ``take``. Where a default depends on the command (``--seeds``: 0
for a sweep, 0,1,2 for the advisor), the declared default is None and the help says what None
means where. The training settings and the strategies' parameters are declared on ``Training``
and on the strategies (``cli/options.py``).
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields
from typing import Annotated, Any, TypeVar

import typer

from ..errors import UnfreezeError


def argument(default: object, help: str, *flags: str, metavar: str | None = None) -> Any:
    """A declared option: its default, its help and its flags (default: ``--name-with-dashes``)."""
    return field(default=default, metadata={"help": help, "flags": flags, "metavar": metavar})


@dataclass
class DataArguments:
    """Which labelled data to read, and how it is split (the rule of ``unfreeze.data.splits``)."""

    test: str | None = argument(
        None,
        "Test data: a file, or NAME:test of a built-in (default: a built-in's test split; a file has none "
        "unless --test-size carves one out).",
    )
    test_size: float | None = argument(
        None,
        "Hold out this fraction of the labelled data as test, stratified and seeded (of a built-in's train split).",
    )
    n_test: int | None = argument(None, "Score on a stratified sample of this many test examples.")
    n_train: int | None = argument(None, "Train on a stratified sample of N (default: all of it; intrinsic-dim: 1000).")
    n_per_class: int | None = argument(None, "Train on N examples per class.")
    text_col: str = argument("text", "Column holding the text.")
    label_col: str = argument("label", "Column holding the label.")
    text_pair_col: str | None = argument(None, "Column holding the second text of a pair.")
    tokens_col: str = argument(
        "tokens", "With --task tokens: the column holding each sentence's list of words (JSON lines, Parquet)."
    )
    tags_col: str = argument(
        "tags", "With --task tokens: the column holding each sentence's list of tags (JSON lines, Parquet)."
    )
    tag_col: int | None = argument(
        None,
        "With --task tokens: the tags' column of a CoNLL file (0-based, -1 the last; default: the last; the words "
        "are column 0).",
    )
    task: str | None = argument(
        None,
        "What a label is: single (one class per text), multilabel (a set of labels per text: a list, or one "
        "string split on --label-sep; none is allowed) or regression (a number per text) (default: single; "
        "a built-in dataset: its own).",
    )
    label_sep: str | None = argument(
        None,
        "With --task multilabel: the separator of the labels in one string, e.g. '|' for drama|comedy (predict: "
        "what joins a text's predicted labels in CSV and TSV, default |).",
    )
    thresholds: str = argument(
        "global",
        "With --task multilabel: the decision thresholds chosen on the validation split, global (one for every "
        "label) or per-label.",
    )

    def check(self) -> None:
        from ..data.labels import check_label_sep, check_task

        _at_least(self.n_test, "--n-test", 1, "the test-set size")
        _at_least(self.n_train, "--n-train", 1, "the training-set size")
        _at_least(self.n_per_class, "--n-per-class", 1, "training examples per class")
        if self.test_size is not None and not (math.isfinite(self.test_size) and 0 < self.test_size < 1):
            raise UnfreezeError(
                f"--test-size is the fraction held out as test, in (0, 1), e.g. 0.2. Got {self.test_size}."
            )
        check_task(self.task)
        if self.task is not None:  # not given: a built-in's own task decides, checked as it loads
            check_label_sep(self.label_sep, self.task)
        if self.thresholds not in THRESHOLDS:
            raise UnfreezeError(f"--thresholds must be one of {', '.join(THRESHOLDS)}. Got {self.thresholds!r}.")
        if self.task is not None:
            self.check_thresholds(self.task)
            self.check_tagged_options(self.task)

    def check_tagged_options(self, task: str) -> None:
        """--tokens-col, --tags-col and --tag-col only for a task that reads token-tagged data
        (``Task.reads_tagged``); one line otherwise (``task``: the data's)."""
        from ..tasks import TASKS, task_class

        if task_class(task).reads_tagged:
            return
        # a value other than the declared default was given (the declared defaults are the tagged readers')
        given = [_flags(f)[0] for f in fields(self) if f.name in TAGGED_OPTIONS and getattr(self, f.name) != f.default]
        if given:
            reader = next(name for name, cls in TASKS.items() if cls.reads_tagged)
            raise UnfreezeError(
                f"{given[0]} chooses a column of token-tagged data, which only --task {reader} reads (the task here "
                f"is {task}). Add --task {reader}, or drop {given[0]}."
            )

    def check_thresholds(self, task: str) -> None:
        """``--thresholds per-label`` only for multi-label data (``task``: the data's, a built-in's own when
        --task was not given)."""
        from ..tasks import TASKS, task_class

        if self.thresholds == "per-label" and not task_class(task).tunes_thresholds:
            tuned = next(name for name, cls in TASKS.items() if cls.tunes_thresholds)
            raise UnfreezeError(
                f"--thresholds per-label chooses a threshold for each label of multi-label data; the task here is "
                f"{task}. Drop --thresholds, or give --task {tuned}."
            )

    def data_task(self, data: str) -> str:
        """The task of ``data``'s labels as the options tell it before anything loads: --task, else a built-in
        dataset's own, else single (a file's labels, unless --task says otherwise)."""
        if self.task is not None:
            return self.task
        from ..data.builtin import BUILTIN
        from ..data.tagged import TOKENS_TASK
        from ..data.tagged_builtin import TAGGED_BUILTIN
        from ..tasks import DEFAULT_TASK

        name = str(data).partition(":")[0]
        if name in TAGGED_BUILTIN:
            return TOKENS_TASK
        builtin = BUILTIN.get(name)
        return builtin.task if builtin is not None else DEFAULT_TASK

    def check_metric(self, data: str, metric: str | None) -> str | None:
        """``--metric`` (None: the task's default score) when ``data``'s task reports it; one line otherwise."""
        from ..tasks import make_task

        return None if metric is None else make_task(self.data_task(data)).check_metric(metric)

    def check_strategy(self, data: str, strategy: Any) -> None:
        """``strategy`` can fit ``data``'s task, and the head strength it was given (C: logistic heads, alpha:
        ridge) is the one the task's head takes; one line otherwise."""
        from ..features.strengths import head_kind
        from ..strategies import check_serves

        task = self.data_task(data)
        check_serves(strategy, task)
        C, alpha = getattr(strategy, "C", None), getattr(strategy, "alpha", None)
        if C is not None or alpha is not None:
            head_kind(task, strategy.name, C, alpha)


THRESHOLDS = ("global", "per-label")
# the options that read token-tagged data (``unfreeze.data.load_tagged``)
TAGGED_OPTIONS = ("tokens_col", "tags_col", "tag_col")


# the data options of every command that trains on labelled data and scores a test split (fit, heads add)
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


@dataclass
class InputArguments:
    """What the model reads and runs on."""

    model: str | None = argument(
        None,
        "Catalog name, model folder or hub id (default: minilm-l6; study: the study's first model; "
        "heads add: the bundle's).",
        "--model",
        "-m",
    )
    pooling: str = argument("auto", "auto, mean, cls, last or max.")
    layers: str = argument("-1", "Hidden states: -1 last block, 0 embeddings, or e.g. -4,-3,-2,-1.")
    max_length: int = argument(256, "Tokens per input (capped by the model).")
    batch_size: int | None = argument(
        None, "Inputs per forward pass, and per optimiser step when training (default: 32; export: the bundle's)."
    )
    precision: str | None = argument(
        None,
        "auto, fp32 or bf16 (default when training: auto, that is bf16 for work without gradients and bf16 "
        "autocast for training where the hardware runs bf16 fast, AMX or AVX-512 BF16 CPUs and CUDA with "
        "bf16, fp32 elsewhere; when predicting: what the bundle was fitted in); int8 with --runtime onnx.",
    )
    device: str | None = argument(None, "cpu, cuda, cuda:1... (default: CUDA when present).")

    def check(self) -> None:
        _at_least(self.max_length, "--max-length", 1)
        _at_least(self.batch_size, "--batch-size", 1)


@dataclass
class RunArguments:
    """Options of the commands that run many cells, or write files."""

    seed: int = argument(0, "Seed for sampling, splits and the head.")
    seeds: str | None = argument(
        None,
        "Seeds, comma-separated; a nested sample per seed, two or more give error bars (default: 0; advise: 0,1,2).",
    )
    strategies: str | None = argument(
        None,
        "Comma-separated strategies, e.g. features,freeze,lora,setfit (default: sweep features,freeze; "
        "advise features,freeze,lora).",
    )
    grid: list[str] | None = argument(
        None, "Values of a strategy's parameter, e.g. lora.r=4,16 or freeze.k=all (repeatable)."
    )
    validation_size: int | None = argument(
        None,
        "Examples held out per seed as every size's validation set; 0: --validation-fraction of each sample "
        "(default: sweep 0; advise a fifth of the labelled data, 8 per class to 200).",
    )
    metric: str | None = argument(
        None,
        "The score to rank and draw: one of the task's metrics (single: accuracy, macro_f1, mcc; multilabel: "
        "micro_f1, macro_f1, samples_f1, subset_accuracy, hamming_loss; regression: spearman, pearson, rmse, "
        "mae, r2) (default: the task's own score, accuracy, micro_f1 or spearman).",
    )
    retry_failed: bool = argument(False, "Run failed cells again.")
    no_cache: bool = argument(
        False, "Do not read or write the on-disk caches (embeddings; in sweeps also the shared frozen-prefix states)."
    )
    overwrite: bool = argument(False, "Replace an output this tool wrote before (never anything else).")
    head: list[str] | None = argument(
        None, "Multi-head bundle: the head to use (repeat for several; default: every head)."
    )
    as_json: bool = argument(False, "Print the result as JSON.", "--json")
    budget: str | None = argument(
        None, "Time for the pilot, model loading included: 15m, 90s, 1h (default: 15m; demo: 8m)."
    )

    def check(self) -> None:
        _at_least(self.seed, "--seed", 0)
        _at_least(self.validation_size, "--validation-size", 0)
        check_metric(self.metric)


@dataclass
class TrackingArguments:
    """Where a command's runs are also logged: an experiment tracker (``unfreeze.tracking``)."""

    track: str | None = argument(
        None,
        "Also log the runs to an experiment tracker: mlflow (one run per cell, nested under a run for the "
        "command; they appear when the command ends; needs pip install 'unfreeze[mlflow]').",
    )
    tracking_uri: str | None = argument(
        None, "The MLflow tracking store (default: MLFLOW_TRACKING_URI, else a file store in ./mlruns)."
    )

    def check(self) -> None:
        from ..tracking import check_tracking

        check_tracking(self.track, self.tracking_uri)


def _at_least(value: int | None, flag: str, low: int, what: str = "") -> None:
    """An int option's value: None (not given) or an int >= ``low``; one line naming the option otherwise."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise UnfreezeError(f"{flag}{f' ({what})' if what else ''} must be an int >= {low}. Got {value!r}.")


GROUPS = (DataArguments, InputArguments, RunArguments, TrackingArguments)

T = TypeVar("T")


def _flags(f) -> list[str]:
    return list(f.metadata["flags"]) or ["--" + f.name.replace("_", "-")]


def arguments(cls: type, only: Iterable[str] | None = None, panel: str | None = None) -> list[inspect.Parameter]:
    """The options of the named fields of ``cls`` (all of them by default), keyword parameters for typer."""
    wanted = None if only is None else list(only)
    by_name = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [n for n in wanted or [] if n not in by_name]
    if unknown:
        raise ValueError(f"{cls.__name__} declares no option {unknown[0]!r}")
    params = []
    for name in wanted or list(by_name):
        f = by_name[name]
        hint = hints[name]
        flags = _flags(f)
        if hint is bool:
            option = typer.Option(*flags, help=f.metadata["help"], metavar="", rich_help_panel=panel)
        else:
            option = typer.Option(*flags, help=f.metadata["help"], metavar=f.metadata["metavar"], rich_help_panel=panel)
        default = f.default if f.default is not MISSING else None
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[hint, option])
        )
    return params


def take(cls: type[T], options: dict[str, object]) -> T:
    """Pop the options of ``cls`` from a command's keyword arguments into an instance (missing ones: defaults)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {name: options.pop(name) for name in list(options) if name in names}
    args = cls(**values)
    check = getattr(args, "check", None)
    if check is not None:
        check()
    return args


def spec_settings(model_in: InputArguments, split: DataArguments) -> dict[str, Any]:
    """The model-input and data options as the settings of a ``SweepSpec`` (defaults filled in; precision
    checked)."""
    from .common import checked_precision

    return {
        "model": model_in.model or "minilm-l6",
        "test": split.test,
        "test_size": split.test_size,
        "n_test": split.n_test,
        "text_col": split.text_col,
        "label_col": split.label_col,
        "text_pair_col": split.text_pair_col,
        "task": split.task,
        "label_sep": split.label_sep,
        "thresholds": split.thresholds,
        "pooling": model_in.pooling,
        "layers": model_in.layers,
        "max_length": model_in.max_length,
        "batch_size": model_in.batch_size or 32,
        "precision": checked_precision(model_in.precision or "auto"),
    }


def given_on_command_line(name: str) -> bool:
    """Whether the running command's option ``name`` was typed by the user (not its default)."""
    try:  # typer 0.2x carries its own click, whose context click's own get_current_context never sees
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older typer
        from click import get_current_context  # type: ignore[no-redef]
        from click.core import ParameterSource  # type: ignore[assignment]

    ctx = get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


def seed_list(value: str | None, default: list[int]) -> list[int]:
    """``--seeds`` as ints (``default`` when not given); one line when it names none."""
    from .common import int_list

    seeds = default if value is None else int_list(value, "--seeds")
    if not seeds:
        raise UnfreezeError("--seeds must name at least one seed, e.g. 0,1,2.")
    return seeds


def check_metric(metric: str | None) -> str | None:
    """``--metric`` as given: None (the task's default score) or a metric some task reports; one line otherwise.
    Whether the data's task reports it is checked once the task is known (``Task.check_metric``)."""
    from ..tasks import TASKS

    if metric is None:
        return None
    known = list(dict.fromkeys(m for cls in TASKS.values() for m in cls.metrics))
    if metric not in known:
        raise UnfreezeError(f"Unknown metric {metric!r} (--metric). Metrics: {', '.join(known)}.")
    return metric


def deprecated(old: str, new: str, hint: type = str) -> inspect.Parameter:
    """A hidden option under an old spelling; ``renamed`` warns when it is used and hands its value over."""
    name = "deprecated_" + old.lstrip("-").replace("-", "_")
    if hint is bool:
        option = typer.Option(old, hidden=True, is_flag=True, help=f"Deprecated: use {new}.")
        return inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[bool, option]
        )
    option = typer.Option(old, hidden=True, help=f"Deprecated: use {new}.")
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[hint | None, option]
    )


def renamed(options: dict[str, Any], old: str, new: str, value: Any) -> Any:
    """The value of ``new``, or of the deprecated ``old`` with a one-line warning (both given: one line)."""
    old_value = options.pop("deprecated_" + old.lstrip("-").replace("-", "_"), None)
    if old_value is None or old_value is False:
        return value
    if value is not None and value is not False:
        raise UnfreezeError(f"{old} is the old spelling of {new}: give only {new}.")
    typer.echo(f"warning: {old} is now {new}; the old spelling will be removed in the next release.", err=True)
    return old_value


__all__ = [
    "GROUPS",
    "DataArguments",
    "InputArguments",
    "RunArguments",
    "TrackingArguments",
    "argument",
    "arguments",
    "check_metric",
    "deprecated",
    "given_on_command_line",
    "renamed",
    "seed_list",
    "spec_settings",
    "take",
]
