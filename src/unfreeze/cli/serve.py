"""``serve``: the HTTP prediction service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UnfreezeError
from .arguments import InputArguments, arguments, take
from .common import app, checked_device, flag, user_errors
from .export import OnnxDirOpt, RuntimeOpt, int8_deprecated, one_precision
from .options import with_parameters


@app.command()
@user_errors
@with_parameters(arguments(InputArguments, ("precision", "device")), [int8_deprecated()])
def serve(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder: multi-head, features or fine-tuned.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    max_texts: Annotated[int, typer.Option("--max-texts", help="Texts per request.")] = 64,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Characters per text.")] = 10_000,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Request body size.")] = 1 << 20,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Texts per forward pass across requests.")] = 64,
    max_wait_ms: Annotated[
        float, typer.Option("--max-wait-ms", help="How long a batch waits for more requests.")
    ] = 5.0,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Waiting texts before answering 503.")] = 1024,
    no_micro_batching: Annotated[bool, flag("--no-micro-batching", help="Run every request on its own.")] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    runtime: RuntimeOpt = "torch",
    onnx: OnnxDirOpt = None,
    **options,
) -> None:
    """Serve BUNDLE over HTTP: POST /predict, GET /heads, GET /health, docs at /docs."""
    from ..inference.bundle import read_config
    from ..serve.app import ServeLimits
    from ..serve.app import serve as run_server

    if not 0 <= port <= 65535:
        raise UnfreezeError(f"--port must be in [0, 65535]; got {port}.")
    limits = ServeLimits(
        max_texts=max_texts,
        max_chars=max_chars,
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        micro_batching=not no_micro_batching,
    )
    from ..inference.bundle_predictor import check_runtime_options

    precision = one_precision(options)
    device = take(InputArguments, options).device
    check_runtime_options(runtime, precision, onnx, device)
    read_config(bundle)  # a missing or damaged bundle is said before anything loads
    run_server(
        bundle,
        host=host,
        port=port,
        limits=limits,
        device=checked_device(device),
        log_level=log_level,
        runtime=runtime,
        precision=precision,
        onnx=onnx,
    )
