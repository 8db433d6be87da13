"""What every command shares: the app, the one-line error handling, the common options."""

from __future__ import annotations

import functools
import os
import traceback
from typing import Annotated

import typer

from ..errors import UnfreezeError
from .arguments import DataArguments

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="How much of a pretrained transformer should you train? Fit, compare and serve text classifiers.",
)

_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.", metavar="")] = False) -> None:
    from ..data import print_data_warnings_on_one_line

    _state["debug"] = debug or bool(os.environ.get("UNFREEZE_DEBUG"))
    print_data_warnings_on_one_line()  # a doubtful input is one 'warning:' line, as an error is one 'error:' line


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


def flag(*names: str, help: str):
    """A boolean flag option (shown without a type in --help)."""
    return typer.Option(*names, help=help, metavar="")


def checked_precision(precision: str) -> str:
    """``--precision`` as one of auto, fp32, bf16 (one line listing them, otherwise; no torch needed)."""
    from ..machine.hardware import check_precision

    return check_precision(precision)


def checked_device(device: str | None) -> str | None:
    """``--device`` validated against the devices this machine has (one line naming them, otherwise)."""
    from ..machine.devices import resolve_device

    return None if device is None else str(resolve_device(device))


def print_store_note(run_dir) -> None:
    """Say, in one warning line, how many unreadable lines a run's results.jsonl holds (they are skipped)."""
    from ..sweep.store import ResultsStore

    store = ResultsStore(run_dir)
    store.records()
    note = store.skipped_note()
    if note:
        typer.echo(f"warning: {note}", err=True)


def load_train_test(data: str, split: DataArguments, seed: int):
    """The training sample and the test set by the rule every command shares (``unfreeze.data.splits``)."""
    from ..data import sample
    from ..data.splits import load_splits

    train, test_set = load_splits(
        data,
        split.test,
        split.test_size,
        split.text_col,
        split.label_col,
        split.text_pair_col,
        seed,
        task=split.task,
        label_sep=split.label_sep,
    )
    split.check_thresholds(train.task)  # a built-in's own task is known once it is loaded
    if split.n_train is not None or split.n_per_class is not None:
        train = sample(train, n_total=split.n_train, n_per_class=split.n_per_class, seed=seed)
    return train, test_set


def print_report(result: dict, metric: str) -> None:
    from ..report import summary_table_text
    from ..report.tables import recommendation_sentence

    typer.echo(summary_table_text(result["summary"], metric))
    for pick in result["recommendations"]:
        typer.echo("- " + recommendation_sentence(pick))
    typer.echo(f"report: {result['html']}")


def int_list(value: str, option: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UnfreezeError(f"{option} must be a comma-separated list of ints, e.g. 32,128. Got {value!r}.") from None


def parse_grid(entries: list[str] | None) -> dict[str, dict[str, list[str] | str]]:
    """``["lora.r=4,16", "freeze.k=0,3"]`` -> ``{"lora": {"r": ["4", "16"]}, "freeze": {"k": ["0", "3"]}}``."""
    grid: dict[str, dict[str, list[str] | str]] = {}
    for entry in entries or []:
        target, sep, values = entry.partition("=")
        strategy, dot, param = target.strip().partition(".")
        if not sep or not dot or not strategy or not param or not values.strip():
            raise UnfreezeError(f"--grid takes STRATEGY.PARAMETER=V1,V2,..., e.g. --grid lora.r=4,16. Got {entry!r}.")
        grid.setdefault(strategy, {})[param] = (
            values.strip() if values.strip() == "all" else [v.strip() for v in values.split(",") if v.strip()]
        )
    return grid
