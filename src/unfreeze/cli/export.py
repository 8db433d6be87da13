"""``export``: a bundle to ONNX Runtime (fp32, and int8 with --int8), checked before it appears.

Also the options ``predict`` and ``serve`` take to predict with an export (``--runtime onnx``,
``--onnx DIR``). The work is ``unfreeze.export.exporter``; this module parses and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UnfreezeError
from .arguments import DataArguments, InputArguments, RunArguments, arguments, deprecated, renamed, take
from .common import app, checked_device, flag, user_errors
from .options import with_parameters

RuntimeOpt = Annotated[
    str,
    typer.Option(
        "--runtime", help="torch (PyTorch eager) or onnx (the bundle's ONNX export, made with `unfreeze export`)."
    ),
]
OnnxDirOpt = Annotated[
    Path | None, typer.Option("--onnx", help="With --runtime onnx: the export folder (default: BUNDLE/onnx).")
]


def int8_deprecated():
    """``predict``/``serve --int8``, the old spelling of ``--precision int8`` (``--int8`` is export's own flag)."""
    return deprecated("--int8", "--precision int8", bool)


def one_precision(options: dict) -> str | None:
    """``--precision``, or ``int8`` from the deprecated ``--int8`` (both, disagreeing: one line)."""
    precision = options.get("precision")
    if options.get("deprecated_int8") and precision not in (None, "int8"):
        raise UnfreezeError(f"--int8 and --precision {precision} disagree: give --precision int8.")
    value = renamed(options, "--int8", "--precision int8", None)
    return "int8" if value else precision


@app.command("export")
@user_errors
@with_parameters(
    arguments(DataArguments, ("text_col", "label_col", "text_pair_col")),
    arguments(RunArguments, ("overwrite",)),
    arguments(InputArguments, ("batch_size", "device")),
    [deprecated("--force", "--overwrite", bool)],
)
def export_command(
    bundle: Annotated[
        Path, typer.Argument(help="Bundle folder: features, setfit, multi-head, freeze, full, reinit or lora.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Export folder (default: BUNDLE/onnx, where --runtime onnx looks)."),
    ] = None,
    int8: Annotated[bool, flag("--int8", help="Also write an int8 graph (ONNX Runtime's dynamic quantiser).")] = False,
    check: Annotated[
        str | None,
        typer.Option(
            "--check",
            help="Data to check the export on (a file or a built-in "
            "dataset; labels optional). Default: the training "
            "inputs stored with the bundle.",
        ),
    ] = None,
    keep_ffn_output: Annotated[
        bool,
        flag(
            "--keep-ffn-output",
            help="With --int8: keep the feed-forward output projections in fp32 (slower, closer to fp32).",
        ),
    ] = False,
    full_range: Annotated[
        bool,
        flag(
            "--full-range",
            help="With --int8: 8-bit weights instead of ONNX Runtime's "
            "7-bit reduce_range (which changed fewer labels).",
        ),
    ] = False,
    exporter: Annotated[
        str,
        typer.Option(
            "--exporter", help="dynamo (torch.export, the default) or torchscript (older, quicker to export)."
        ),
    ] = "dynamo",
    **options,
) -> None:
    """Export BUNDLE to ONNX for fast CPU prediction (`predict`/`serve --runtime onnx`).

    The export is checked against PyTorch before it is moved into place: fp32 probabilities
    within 1e-4; with --int8, the share of labels int8 agrees on and its accuracy change.
    A failed check leaves no export behind."""
    from ..export.exporter import export_bundle, read_check_data

    force = renamed(options, "--force", "--overwrite", options.get("overwrite")) or False
    columns, run, model_in = take(DataArguments, options), take(RunArguments, options), take(InputArguments, options)

    for given, name in ((keep_ffn_output, "--keep-ffn-output"), (full_range, "--full-range")):
        if given and not int8:
            raise UnfreezeError(f"{name} shapes the int8 graph: add --int8.")
    from ..inference.bundle import read_config

    read_config(bundle)  # a missing or damaged bundle is said before anything loads
    device = checked_device(model_in.device)

    inputs = labels = origin = None
    if check is not None:
        inputs, labels, origin = read_check_data(check, columns.text_col, columns.label_col, columns.text_pair_col)
    done = export_bundle(
        bundle,
        output,
        int8=int8,
        check_inputs=inputs,
        check_labels=labels,
        check_origin=origin,
        device=device,
        batch_size=model_in.batch_size,
        exporter=exporter,
        overwrite=bool(force or run.overwrite),
        keep_ffn_output=keep_ffn_output,
        reduce_range=not full_range,
    )
    for line in done.lines():
        typer.echo(line)
