"""The HTTP prediction service: FastAPI app, request limits, and the uvicorn server.

    POST /predict   {"texts": [...], "heads": [...]}  -> each head's answer in its task's shape
                    (labels and probabilities; label sets and per-label scores; values: serve/shapes.py)
    GET  /heads     the heads of the bundle, with their task, labels, pooling and layers
    GET  /health    liveness
    GET  /docs      OpenAPI documentation (the spec at /openapi.json)

Requests are micro-batched (see batching.py). The server reads only texts from a request:
the bundle is chosen when the server starts, and bundles load without pickle.
uvicorn stops on SIGTERM or SIGINT after the requests in flight have been answered.
"""

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeAlias

from ..errors import UnfreezeError
from ..inference.bundle_predictor import BundlePredictor
from .batching import MicroBatcher, QueueFull
from .shapes import head_result, result_models


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for, and how requests are batched."""

    max_texts: int = 64  # texts per request
    max_chars: int = 10_000  # characters per text
    max_body_bytes: int = 1 << 20  # request body
    max_batch: int = 64  # texts per forward pass when batching requests
    max_wait_ms: float = 5.0  # how long a batch waits for more requests
    max_queue: int = 1024  # texts waiting before requests are refused with 503
    micro_batching: bool = True

    def __post_init__(self) -> None:
        for name in ("max_texts", "max_chars", "max_body_bytes", "max_batch", "max_queue"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UnfreezeError(f"--{name.replace('_', '-')} must be an int >= 1. Got {value!r}.")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise UnfreezeError(
                f"--max-wait-ms must be a number of milliseconds in [0, 10000]. Got {self.max_wait_ms!r}."
            )


# -- request and response shapes ------------------------------------------------------------------


class _PredictRequest(Protocol):
    """The type checker's view of the request model ``_schemas`` builds for a bundle's heads."""

    texts: list[str]
    heads: list[str] | None


def _schemas(limits: ServeLimits, head_names: list[str], task_names: list[str]):
    from pydantic import BaseModel, ConfigDict, Field, StringConstraints

    # the command line's rule: an empty or blank text has nothing to classify (422, not a confident guess)
    Text = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_chars, pattern=r"\S")]
    if TYPE_CHECKING:
        HeadName: TypeAlias = str
    else:  # built from this bundle's heads: the spec lists the valid heads; others get 422
        HeadName = Literal[tuple(head_names)]
    Label = int | str

    example: dict[str, Any] = {"texts": ["a gripping, beautifully shot film"], "heads": head_names[:1]}

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})
        texts: list[Text] = Field(
            min_length=1,
            max_length=limits.max_texts,
            description=f"1 to {limits.max_texts} texts of 1 to {limits.max_chars} "
            "characters each, not all white space.",
        )
        heads: list[HeadName] | None = Field(
            default=None,
            min_length=1,
            max_length=len(head_names) * 4,
            description=f"Heads to apply (default: all). This bundle has: {', '.join(head_names)}.",
        )

    # one model per task the bundle's heads have (a single-label bundle's spec is as before tasks existed)
    if TYPE_CHECKING:
        HeadResult: TypeAlias = Any
    else:
        HeadResult = result_models(task_names, Label)

    class PredictResponse(BaseModel):
        model: str
        results: dict[str, HeadResult] = Field(
            description="Each head's answer, in its task's shape: labels and probabilities (single), label "
            "sets and each label's probability (multilabel), values (regression)."
        )

    class HeadInfo(BaseModel):
        name: str
        labels: list[Label] = Field(description="The head's classes (none for a regression head).")
        pooling: str
        layers: list[int]
        strategy: str
        task: str = Field("single", description="single, multilabel or regression: the shape of its answers.")

    class HeadsResponse(BaseModel):
        model: str
        max_length: int
        runtime: str = Field(description="torch, onnx (fp32) or onnx-int8: what computes the answers.")
        heads: list[HeadInfo]

    class Health(BaseModel):
        status: str
        heads: int
        batches: int = Field(description="Forward passes run so far.")
        texts: int = Field(description="Texts predicted so far.")

    class ErrorResponse(BaseModel):
        detail: Any

    return PredictRequest, PredictResponse, HeadsResponse, Health, ErrorResponse


def create_app(predictor: BundlePredictor, limits: ServeLimits = ServeLimits()):
    """The FastAPI app serving ``predictor``, wrapped in the body-size limit (an ASGI app)."""
    from fastapi import Body, FastAPI
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response

    from .. import __version__

    head_names = list(predictor.heads)
    tasks = predictor.tasks
    runtime = getattr(predictor, "runtime", "torch")
    runtime += "-int8" if getattr(predictor, "precision", "fp32") == "int8" else ""
    PredictRequest, PredictResponse, HeadsResponse, Health, ErrorResponse = _schemas(
        limits, head_names, [tasks[h].name for h in head_names]
    )
    batcher = MicroBatcher(
        predictor.outputs,
        max_batch=limits.max_batch,
        max_wait_ms=limits.max_wait_ms,
        max_queue=limits.max_queue,
        enabled=limits.micro_batching,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()  # uvicorn gets here after the requests in flight are answered

    app = FastAPI(
        title="unfreeze prediction service",
        version=__version__,
        lifespan=lifespan,
        description=f"Predictions of {predictor.model}'s heads: "
        + ", ".join(f"{h} ({tasks[h].name})" for h in head_names)
        + ".",
    )
    app.state.batcher = batcher
    app.state.limits = limits

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        # ASCII-escaped JSON: the errors echo the input, which may hold lone surrogates
        # that UTF-8 cannot encode (Starlette's JSONResponse would fail with a 500)
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "The body could not be decoded (not UTF-8)."},
        413: {"model": ErrorResponse, "description": "The request body is too large."},
        422: {
            "model": ErrorResponse,
            "description": "Malformed request, too many or too long texts, or an unknown head.",
        },
        503: {"model": ErrorResponse, "description": "Too many texts are waiting; retry shortly."},
    }
    if TYPE_CHECKING:
        RequestBody: TypeAlias = _PredictRequest
    else:  # the request model built for this bundle, read from the body
        RequestBody = Annotated[PredictRequest, Body()]

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=errors,
        summary="Each head's answer for every text, in its task's shape",
    )
    async def predict(request: RequestBody):
        heads = head_names if request.heads is None else list(dict.fromkeys(request.heads))
        try:
            outputs = await batcher.submit(request.texts, heads)
        except QueueFull as exc:
            return JSONResponse(
                {"detail": f"server busy: {exc}; retry shortly"}, status_code=503, headers={"Retry-After": "1"}
            )
        results = {h: head_result(tasks[h], list(predictor.heads[h]["labels"]), outputs[h]) for h in heads}
        return {"model": predictor.model, "results": results}

    @app.get("/heads", response_model=HeadsResponse, summary="The heads this server applies")
    async def heads():
        return {
            "model": predictor.model,
            "max_length": predictor.max_length,
            "runtime": runtime,
            "heads": list(predictor.heads.values()),
        }

    @app.get("/health", response_model=Health, summary="Liveness")
    async def health():
        return {"status": "ok", "heads": len(head_names), "batches": batcher.batches_run, "texts": batcher.texts_run}

    return BodyLimit(app, limits.max_body_bytes)


class BodyLimit:
    """ASGI wrapper: refuses request bodies over ``max_bytes`` with 413 before the app parses them."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __getattr__(self, name: str):
        return getattr(self.app, name)  # app.state, app.openapi() ... stay reachable

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._refuse(send)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        payload = json.dumps({"detail": f"request body over the limit of {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _server_class():
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT once it has shut down, so the process dies of the
        signal; here a finished graceful shutdown is a clean exit (status 0), like gunicorn's."""

        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

    return GracefulServer


def serve(
    bundle: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServeLimits = ServeLimits(),
    device: str | None = None,
    log_level: str = "info",
    graceful_seconds: int = 30,
    runtime: str = "torch",
    precision: str | None = None,
    onnx: Path | None = None,
) -> None:
    """Load ``bundle`` and serve it until SIGTERM/SIGINT (requests in flight are answered first).

    The port is taken before the bundle loads: a busy port is said at once, and "serving on"
    is printed only once requests can be answered. ``runtime="onnx"`` answers with the
    bundle's ONNX export (``bundle/onnx`` or ``onnx``; ``precision`` fp32 or int8) through
    ONNX Runtime, with the same batching and limits.
    """
    import uvicorn

    sock = listening_socket(host, port)
    try:
        _Server = _server_class()
        predictor = BundlePredictor(Path(bundle), device=device, runtime=runtime, precision=precision, onnx=onnx)
        predictor.predict_proba(["warm-up"], list(predictor.heads))  # the first request should not pay for it
        app = create_app(predictor, limits)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            lifespan="on",
            timeout_graceful_shutdown=graceful_seconds,
            access_log=log_level == "debug",
        )
        server = _Server(config)
        bound = sock.getsockname()[1]
        engine = (
            f"PyTorch {predictor.precision}"
            if predictor.runtime == "torch"
            else f"ONNX Runtime {predictor.precision}, {predictor.export_folder}"
        )
        url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"  # an IPv6 address in brackets
        print(
            f"serving {bundle} ({', '.join(predictor.heads)}; {engine}) on {url}  "
            f"(docs: {url}/docs; limits: {json.dumps(asdict(limits))})",
            flush=True,
        )
        server.run(sockets=[sock])
    finally:
        sock.close()


def listening_socket(host: str, port: int):
    """A socket bound to ``host:port`` and listening; a host that cannot be bound, or a busy or forbidden
    port, is one line that names the option at fault."""
    import errno
    import socket

    shown = host if len(host) <= 60 else host[:57] + "..."
    where = f"Cannot listen on {shown}:{port}"
    hosts = "Use --host 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or an address of this machine."
    try:
        # resolved first: the address family follows the host (an IPv6 address needs an IPv6 socket)
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid host name"
        raise UnfreezeError(f"{where}: --host {shown!r} cannot be resolved ({reason}). {hosts}") from None
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UnfreezeError(
                f"{where}: --host {shown!r} is not an address of this machine, so it cannot be bound. {hosts}"
            ) from None
        if exc.errno == errno.EADDRINUSE:
            raise UnfreezeError(
                f"{where}: another program is using that port. Choose another --port, or stop the "
                f"program that holds port {port}."
            ) from None
        if exc.errno == errno.EACCES:
            raise UnfreezeError(
                f"{where}: permission denied (ports below 1024 need administrator rights). Choose "
                "another --port, e.g. 8000."
            ) from None
        raise UnfreezeError(f"{where}: {exc.strerror or exc}. Check --host and --port.") from None
