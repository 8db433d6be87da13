"""``study``: run a study file (a published claim, its sweep, its analysis, its verdict), or summarise many runs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UnfreezeError
from .arguments import (
    DataArguments,
    InputArguments,
    RunArguments,
    TrackingArguments,
    arguments,
    given_on_command_line,
    take,
)
from .common import app, checked_device, checked_precision, flag, print_store_note, user_errors
from .options import with_parameters

STUDY_DATA = ("test", "test_size", "text_col", "label_col", "text_pair_col", "task", "label_sep", "thresholds")


@app.command()
@user_errors
@with_parameters(
    arguments(InputArguments, ("model", "precision", "device")),
    arguments(DataArguments, STUDY_DATA),
    arguments(RunArguments, ("retry_failed", "overwrite")),
    arguments(TrackingArguments),
)
def study(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="A study file (studies/NAME.toml); with --summary, study run folders or folders holding them."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="The run folder (resumed when it holds this study's run); with --summary, the "
            "page to write (e.g. docs/FINDINGS.md).",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", help="Run the study on this data (a file or a built-in dataset; default: the study's first)."
        ),
    ] = None,
    quick: Annotated[
        bool,
        flag(
            "--quick",
            help="Toy sizes (one seed, the smallest sizes, one epoch, one learning "
            "rate): minutes, to check that the study works on new data.",
        ),
    ] = False,
    reuse: Annotated[
        list[Path] | None,
        typer.Option(
            "--reuse",
            help="Folders of other runs whose finished cells with the same cell key are copied instead of "
            "run again (repeatable).",
        ),
    ] = None,
    summary: Annotated[
        bool, flag("--summary", help="Rebuild the findings of the given runs and write them on one page (-o FILE).")
    ] = False,
    studies: Annotated[
        Path | None,
        typer.Option("--studies", help="With --summary: the folder of study files, to list what was not run."),
    ] = None,
    **options,
) -> None:
    """Test a published claim about unfreezing: run the study's sweep (resumable), then write FINDINGS.md with
    the numbers, their confidence intervals, the plots and the verdict its file's rule gives."""
    from ..storage.outputs import check_output

    model_in, split, run = take(InputArguments, options), take(DataArguments, options), take(RunArguments, options)
    tracking = take(TrackingArguments, options)
    model, device, test, overwrite = model_in.model, model_in.device, split.test, run.overwrite
    # the study file's own settings stand unless an option is typed
    typed = {name: getattr(split, name) for name in ("text_col", "label_col") if given_on_command_line(name)}
    paths = list(paths or [])
    if output is None:
        raise UnfreezeError(
            "Give -o: the run folder (e.g. -o runs/freeze-depth), or with --summary the page to "
            "write (e.g. -o docs/FINDINGS.md)."
        )
    if summary:
        run_options = (
            ("--data", data),
            ("--model", model),
            ("--test", test),
            ("--quick", quick),
            ("--reuse", reuse),
            ("--retry-failed", run.retry_failed),
            ("--text-col", typed.get("text_col")),
            ("--label-col", typed.get("label_col")),
            ("--device", device),
            ("--test-size", split.test_size),
            ("--text-pair-col", split.text_pair_col),
            ("--precision", model_in.precision),
            ("--task", split.task),
            ("--label-sep", split.label_sep),
            ("--thresholds", split.thresholds if split.thresholds != "global" else None),
            ("--track", tracking.track),
        )
        given = [name for name, value in run_options if value]
        if given:
            raise UnfreezeError(f"{given[0]} runs a study; --summary only reads runs. Drop {given[0]}.")
        if not paths:
            raise UnfreezeError(
                "--summary needs study run folders (or folders holding them), e.g. "
                "unfreeze study --summary docs/findings -o docs/FINDINGS.md."
            )
        if studies is not None and not studies.is_dir():
            raise UnfreezeError(f"--studies {studies} is not a folder of study files.")
        from ..studies.summary import find_runs, write_summary

        find_runs(paths)  # a wrong folder is one line before anything is written
        check_output(output, "file", overwrite=overwrite, inputs=paths)
        command = "unfreeze study --summary " + " ".join(shlex.quote(str(p)) for p in paths)
        if studies is not None:
            command += f" --studies {shlex.quote(str(studies))}"
        command += f" -o {shlex.quote(str(output))} --overwrite"
        findings = write_summary(paths, output, command, studies)
        typer.echo(f"summary: {len(findings)} runs -> {output}")
        return
    if studies is not None:
        raise UnfreezeError("--studies goes with --summary.")
    if len(paths) != 1:
        raise UnfreezeError(
            f"Give one study file (studies/NAME.toml); got {len(paths)} paths. To put many runs on "
            "one page, add --summary."
        )
    from ..studies.runner import run_study
    from ..studies.spec import load_study

    spec = load_study(paths[0])
    inputs: list[str | Path] = [paths[0], *(p for p in (data, test) if p and Path(p).exists())]
    check_output(output, "run", inputs=inputs, run_kind="study")  # a sweep's or advise's folder: one line
    for folder in reuse or []:
        if not folder.is_dir():
            raise UnfreezeError(f"--reuse {folder} is not a folder.")
    for arm in spec.arms:
        print_store_note(output / "arms" / arm.name)
    precision = None if model_in.precision is None else checked_precision(model_in.precision)
    result = run_study(
        spec,
        output,
        data=data,
        model=model,
        quick=quick,
        reuse=reuse or [],
        retry_failed=run.retry_failed,
        device=checked_device(device),
        progress=True,
        test=test,
        text_col=typed.get("text_col"),
        label_col=typed.get("label_col"),
        test_size=split.test_size,
        text_pair_col=split.text_pair_col,
        precision=precision,
        data_task={"task": split.task, "label_sep": split.label_sep, "thresholds": split.thresholds},
    )
    counts = result.counts
    typer.echo(
        f"study {spec.name}: {counts['done']} of {counts['planned']} cells done, {counts['failed']} failed; "
        f"verdict: {result.verdict_label}"
    )
    typer.echo(f"findings: {result.run_dir / 'FINDINGS.md'}")
    from .track import track_run

    track_run(tracking, result.run_dir)
