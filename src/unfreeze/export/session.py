"""One ONNX graph in an ONNX Runtime session, and what every runtime module needs: the install hint,
the one-line error for a damaged export, file digests."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import UnfreezeError

INSTALL_HINT = "pip install 'unfreeze[onnx]'"


def require_onnxruntime():
    """The ``onnxruntime`` module, or a one-line error that says how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise UnfreezeError(f"ONNX Runtime is not installed; install it with: {INSTALL_HINT}") from exc
    return onnxruntime


def damaged(path: Path, reason: object) -> UnfreezeError:
    """The one-line error for an export file that cannot be used."""
    first = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    return UnfreezeError(f"the export at {path} is damaged: {first} Export it again with `unfreeze export`.")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class OnnxGraph:
    """One ONNX Runtime session over one graph file.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    threads : int or None
        Intra-op threads; None lets ONNX Runtime choose (one per physical core).
    providers : sequence of str or None
        Execution providers; None means ``["CPUExecutionProvider"]``.
    sha256 : str or None
        When given, the file must have this digest (a flipped weight byte still parses).
    spinning : bool
        Let idle intra-op threads spin (ONNX Runtime's default). Off here, as the project sets
        OMP_WAIT_POLICY=PASSIVE for torch: spinning threads starve other work on a shared CPU
        (measured on 2 loaded cores: MiniLM fp32 126 texts/s spinning, 141 not).
    """

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        sha256: str | None = None,
        spinning: bool = False,
    ) -> None:
        ort = require_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise damaged(self.path, f"{self.path.name} is missing.")
        if sha256 is not None and file_sha256(self.path) != sha256:
            raise damaged(self.path, f"{self.path.name} does not have the checksum recorded at export.")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ONNX Runtime's warnings are about its internals, not the user's input
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:  # ONNX Runtime raises its own types for bad protobufs, graphs and files
            raise damaged(self.path, exc) from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run on one padded batch; inputs the graph does not take are dropped.

        A graph may lack an input its model ignores (token type ids of a model without
        a type embedding); one it takes but the encoding lacks is fed zeros, as the
        PyTorch models default to.
        """
        names = list(outputs or self.output_names)
        inputs = {}
        for name in self.input_names:
            if name in feed:
                inputs[name] = feed[name]
            elif name == "token_type_ids":
                inputs[name] = np.zeros_like(feed["input_ids"])
            else:
                raise UnfreezeError(f"The graph {self.path} needs input {name!r}, which the export does not provide.")
        return dict(zip(names, self.session.run(names, inputs), strict=True))
