"""``study``: run a study file (a published claim, its sweep, its analysis, its verdict), or summarise many runs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UnfreezeError
from .common import DeviceOpt, OverwriteOpt, app, checked_device, flag, print_store_note, user_errors


@app.command()
@user_errors
def study(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        help="A study file (studies/NAME.toml); with --summary, study run folders or folders holding them.")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="The run folder (resumed when it holds this study's run); with --summary, the "
                               "page to write (e.g. docs/FINDINGS.md).")] = None,
    data: Annotated[Optional[str], typer.Option(
        "--data", help="Run the study on this data (a file or a built-in dataset; default: the study's first).")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Run it with this model (catalog name, folder or hub id; default: the study's first).")] = None,
    test: Annotated[Optional[str], typer.Option("--test", help="Test data (default: a built-in's test split, or 20% "
                                                              "of a file).")] = None,
    text_col: Annotated[Optional[str], typer.Option("--text-col", help="Column holding the text.")] = None,
    label_col: Annotated[Optional[str], typer.Option("--label-col", help="Column holding the label.")] = None,
    quick: Annotated[bool, flag("--quick", help="Toy sizes (one seed, the smallest sizes, one epoch, one learning "
                                                "rate): minutes, to check that the study works on new data.")] = False,
    reuse: Annotated[Optional[list[Path]], typer.Option(
        "--reuse", help="Folders of other runs whose finished cells with the same cell key are copied instead of "
                        "run again (repeatable).")] = None,
    retry_failed: Annotated[bool, flag("--retry-failed", help="Run failed cells again.")] = False,
    summary: Annotated[bool, flag("--summary", help="Rebuild the findings of the given runs and write them on one "
                                                    "page (-o FILE).")] = False,
    studies: Annotated[Optional[Path], typer.Option(
        "--studies", help="With --summary: the folder of study files, to list what was not run.")] = None,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Test a published claim about unfreezing: run the study's sweep (resumable), then write FINDINGS.md with
    the numbers, their confidence intervals, the plots and the verdict its file's rule gives."""
    from ..storage.outputs import check_output

    paths = list(paths or [])
    if output is None:
        raise UnfreezeError("Give -o: the run folder (e.g. -o runs/freeze-depth), or with --summary the page to "
                            "write (e.g. -o docs/FINDINGS.md).")
    if summary:
        run_options = (("--data", data), ("--model", model), ("--test", test), ("--quick", quick), ("--reuse", reuse),
                       ("--retry-failed", retry_failed), ("--text-col", text_col), ("--label-col", label_col),
                       ("--device", device))
        given = [name for name, value in run_options if value]
        if given:
            raise UnfreezeError(f"{given[0]} runs a study; --summary only reads runs. Drop {given[0]}.")
        if not paths:
            raise UnfreezeError("--summary needs study run folders (or folders holding them), e.g. "
                                "unfreeze study --summary docs/findings -o docs/FINDINGS.md.")
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
        raise UnfreezeError(f"Give one study file (studies/NAME.toml); got {len(paths)} paths. To put many runs on "
                            "one page, add --summary.")
    from ..studies.runner import run_study
    from ..studies.spec import load_study

    spec = load_study(paths[0])
    inputs = [paths[0], *(p for p in (data, test) if p and Path(p).exists())]
    check_output(output, "run", inputs=inputs)
    if output.is_dir() and not (output / "study.json").exists() and any(
            (output / marker).exists() for marker in ("sweep.json", "results.jsonl")):
        raise UnfreezeError(f"{output} is a sweep's run folder, not a study's; it is left as it is. Choose another -o "
                            "for the study.")
    for folder in reuse or []:
        if not folder.is_dir():
            raise UnfreezeError(f"--reuse {folder} is not a folder.")
    for arm in spec.arms:
        print_store_note(output / "arms" / arm.name)
    findings = run_study(spec, output, data=data, model=model, quick=quick, reuse=reuse or [], retry_failed=retry_failed,
                         device=checked_device(device), progress=True, test=test, text_col=text_col,
                         label_col=label_col)
    counts = findings.counts
    typer.echo(f"study {spec.name}: {counts['done']} of {counts['planned']} cells done, {counts['failed']} failed; "
               f"verdict: {findings.verdict_label}")
    typer.echo(f"findings: {findings.run_dir / 'FINDINGS.md'}")
