"""Token states of the frozen model, computed once and kept in fp16: in memory up to a limit, then on disk.

``bilstm`` trains for many epochs on the token states of a few hidden states of the
untouched model (by default the last four, concatenated). They are computed in one
forward pass and stored here, so no epoch runs the backbone.

Storage: every example's states ``[its tokens, width]`` in float16 (half of float32's
memory; the BiLSTM reads them as float32). The examples are laid out in input order;
the first ones stay in memory while their total size is within ``memory_bytes``
(``BiLSTM.memory_gib``, default 2 GiB), the rest go to a numpy memory-map in the cache
folder (``$UNFREEZE_CACHE/token-states``), which :meth:`TokenStates.close` deletes (a fit
closes it when it ends, failed or not; a file left by a killed process is removed by
the next store made in that folder). The split never changes a number: a row reads the
same values from either place.

Precision: float16 keeps 11 significant bits, so a stored value ``s`` of a state ``x`` in
its normal range (``2**-14 <= |x| <= 65504``) satisfies ``|s - x| <= 2**-11 * |x|``
(relative error at most 4.9e-4); below it the error is at most ``2**-25``. A state
beyond float16's range (``|x| > 65504``) would become infinite: that is refused with
a message rather than trained on. Prediction rounds the states the same way, so a
bundle scores exactly what it was trained on.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import UnfreezeError
from ..models.backbone import Backbone, Encoded
from ..storage.cache import cache_dir

DEFAULT_MEMORY_GIB = 2.0
FP16_RELATIVE_ERROR = 2.0**-11  # unit roundoff of float16 (round to nearest)
FP16_ABSOLUTE_ERROR = 2.0**-25  # half the smallest subnormal step, for |x| below the normal range
SPILL_FOLDER = "token-states"


def hidden_states_of(backbone: Backbone, batch: dict[str, torch.Tensor]) -> Sequence[torch.Tensor]:
    """Every hidden state of one forward pass ([batch, tokens, hidden] each); an error when the model gives none."""
    result = backbone.model(**batch, output_hidden_states=True)
    hidden = getattr(result, "hidden_states", None)
    n_tokens = batch["input_ids"].shape[1]
    if not (
        isinstance(hidden, (tuple, list))
        and len(hidden) == backbone.num_blocks + 1
        and all(isinstance(h, torch.Tensor) and h.dim() == 3 and h.shape[1] == n_tokens for h in hidden)
    ):
        raise UnfreezeError(
            f"bilstm needs per-token hidden states ([batch, tokens, hidden] for the embeddings and each of the "
            f"{backbone.num_blocks} blocks, from output_hidden_states=True), and {backbone.reference} "
            f"({type(backbone.model).__name__}) gives none. Use a transformer encoder or decoder "
            "(`unfreeze models`), or a strategy on pooled states (features, mix)."
        )
    return hidden


def batch_token_states(backbone: Backbone, batch: dict[str, torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    """The chosen hidden states of one padded batch, concatenated, in float16: [batch, tokens, hidden * len(layers)]."""
    hidden = hidden_states_of(backbone, batch)
    states = torch.cat([hidden[i] for i in layers], dim=-1).to(torch.float16)
    real = batch["attention_mask"].bool()
    if not torch.isfinite(states[real]).all():
        raise UnfreezeError(
            f"Hidden states {list(layers)} of {backbone.reference} exceed float16's range (|x| > 65504), in which "
            "bilstm keeps token states. Choose other --token-layers (lower blocks are usually smaller)."
        )
    return states


def check_token_states(backbone: Backbone) -> None:
    """One forward pass on a one-word input: raises the one-line error when the model has no token states."""
    encoded = backbone.encode(["a"], 8)
    with torch.inference_mode():
        was_training = backbone.model.training
        backbone.model.eval()
        try:
            hidden_states_of(backbone, backbone.collate(encoded, [0]))
        finally:
            backbone.model.train(was_training)


def _remove_orphans(folder: Path) -> None:
    """Delete spill files of processes that no longer run (killed before they could clean up)."""
    import psutil

    for path in folder.glob("*.f16"):
        pid = path.name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()


class TokenStates:
    """Per-example token states ``[length_i, width]`` in float16: the first examples in memory, the rest on disk.

    Parameters
    ----------
    lengths : sequence of int
        Tokens of each example, in input order.
    width : int
        Features per token (hidden size x number of concatenated states).
    memory_bytes : int
        At most this many bytes are kept in memory; the examples after the last that fits go
        to a memory-mapped file (0: every example on disk).
    """

    def __init__(self, lengths: Sequence[int], width: int, memory_bytes: int) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.width = int(width)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        per_token = self.width * np.dtype(np.float16).itemsize
        # offsets grow, so the examples that fit form a prefix: examples [0, split) live in memory
        self.split = int(np.searchsorted(self.offsets[1:] * per_token, memory_bytes, side="right"))
        self._memory_tokens = int(self.offsets[self.split])
        disk_tokens = int(self.offsets[-1]) - self._memory_tokens
        self.memory = np.empty((self._memory_tokens, self.width), dtype=np.float16)
        self.path: Path | None = None
        self.disk: np.memmap | None = None
        if disk_tokens:
            folder = cache_dir(SPILL_FOLDER)
            _remove_orphans(folder)
            handle, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=".f16", dir=folder)
            os.close(handle)
            self.path = Path(name)
            try:
                self.disk = np.memmap(name, dtype=np.float16, mode="w+", shape=(disk_tokens, self.width))
            except BaseException:
                self.path.unlink(missing_ok=True)
                raise

    def __len__(self) -> int:
        return len(self.lengths)

    def __enter__(self) -> TokenStates:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def bytes_in_memory(self) -> int:
        return int(self.memory.nbytes)

    @property
    def bytes_on_disk(self) -> int:
        return 0 if self.disk is None else int(self.disk.nbytes)

    def _slot(self, i: int) -> np.ndarray:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        if i < self.split:
            return self.memory[start:end]
        if self.disk is None:
            raise RuntimeError("token states were closed")
        return self.disk[start - self._memory_tokens : end - self._memory_tokens]

    def write(self, i: int, values: np.ndarray) -> None:
        self._slot(i)[:] = values

    def row(self, i: int) -> np.ndarray:
        """Example ``i``'s states, [length_i, width] float16."""
        return self._slot(i)

    def batch(self, rows: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Examples ``rows`` right-padded with zeros: float32 [len(rows), longest, width] on ``device``, and lengths."""
        lengths = self.lengths[np.asarray(rows, dtype=np.int64)]
        out = np.zeros((len(rows), int(lengths.max()), self.width), dtype=np.float16)
        for j, i in enumerate(rows):
            out[j, : lengths[j]] = self._slot(int(i))
        return torch.from_numpy(out).to(device).float(), torch.from_numpy(lengths)

    def close(self) -> None:
        """Delete the spill file (idempotent)."""
        if self.disk is not None:
            mmap = getattr(self.disk, "_mmap", None)
            self.disk = None
            if mmap is not None:
                with contextlib.suppress(Exception):
                    mmap.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


@torch.inference_mode()
def compute_token_states(
    backbone: Backbone,
    encoded: Encoded,
    layers: Sequence[int],
    batch_size: int = 32,
    memory_bytes: int = int(DEFAULT_MEMORY_GIB * 2**30),
    progress: bool = True,
) -> TokenStates:
    """One no-grad pass over ``encoded``, keeping the concatenated states ``layers`` of every real token."""
    store = TokenStates(encoded.lengths, backbone.hidden_size * len(layers), memory_bytes)
    model = backbone.model
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(encoded), desc="token states", unit="text", disable=not progress or None, leave=False)
    try:
        for idx, batch in backbone.batches(encoded, batch_size):
            states = batch_token_states(backbone, batch, layers).cpu().numpy()
            for j, i in enumerate(idx):
                store.write(i, states[j, : len(encoded.input_ids[i])])  # right padding: the real tokens come first
            bar.update(len(idx))
    except BaseException:
        store.close()
        raise
    finally:
        bar.close()
        model.train(was_training)
    return store


__all__ = [
    "DEFAULT_MEMORY_GIB",
    "FP16_ABSOLUTE_ERROR",
    "FP16_RELATIVE_ERROR",
    "TokenStates",
    "batch_token_states",
    "check_token_states",
    "compute_token_states",
    "hidden_states_of",
]
