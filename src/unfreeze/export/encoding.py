"""Texts to numpy batches for an export's graphs: the tokenizer stored in the export, padding, batches
longest first (as ``Backbone.batches`` does)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UnfreezeError
from .session import damaged

PADDING_SIDES = ("right", "left")


@dataclass
class EncodedTexts:
    """Token ids of a list of inputs, unpadded (one list per input)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    n_truncated: int

    def __len__(self) -> int:
        return len(self.input_ids)


class TextEncoder:
    """The export's Hugging Face tokenizer, truncating and padding as ``Backbone`` does.

    Parameters
    ----------
    folder : Path
        The tokenizer folder inside the export.
    max_length : int
        Tokens per input (already capped by the model's limits at export).
    token_types : bool
        Whether the model is fed token type ids.
    pad_token_id : int
        The id padding positions get (masked out, so any id works).
    padding_side : {'right', 'left'}
        Where padding goes; right keeps absolute positions of decoders as in training.
    """

    def __init__(
        self, folder: Path, max_length: int, token_types: bool, pad_token_id: int, padding_side: str = "right"
    ) -> None:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        if padding_side not in PADDING_SIDES:
            raise UnfreezeError(f"The 'padding_side' parameter must be one of 'right', 'left'. Got {padding_side!r}.")
        hf_logging.set_verbosity_error()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise damaged(folder, f"its tokenizer does not load ({str(exc).splitlines()[0]})") from exc
        self.max_length = int(max_length)
        self.token_types = bool(token_types)
        self.pad_token_id = int(pad_token_id)
        self.padding_side = padding_side
        # a fast tokenizer's truncation setting is state inside it: concurrent calls that change it
        # fail ("Already borrowed"), so calls from several threads (a server) take turns
        self._lock = threading.Lock()

    def encode(self, inputs: Sequence[str | tuple[str, str]]) -> EncodedTexts:
        """Tokenise without padding; inputs over ``max_length`` tokens are truncated and counted."""
        texts, pairs = _split_inputs(inputs)
        if not texts:
            return EncodedTexts([], [] if self.token_types else None, 0)
        args = (texts,) if pairs is None else (texts, pairs)
        with self._lock:
            full = self.tokenizer(*args, truncation=False, padding=False, verbose=False)
            n_truncated = sum(len(ids) > self.max_length for ids in full["input_ids"])
            if n_truncated:
                full = self.tokenizer(*args, truncation=True, max_length=self.max_length, padding=False)
        types = full.get("token_type_ids") if self.token_types else None
        return EncodedTexts(list(full["input_ids"]), None if types is None else list(types), n_truncated)

    def collate(self, encoded: EncodedTexts, idx: Sequence[int]) -> dict[str, np.ndarray]:
        """Pad the inputs ``idx`` into int64 arrays ``input_ids``, ``attention_mask`` (and ``token_type_ids``)."""
        width = max(len(encoded.input_ids[i]) for i in idx)
        ids = np.full((len(idx), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        type_ids = encoded.token_type_ids
        types = np.zeros((len(idx), width), dtype=np.int64) if type_ids is not None else None
        for row, i in enumerate(idx):
            n = len(encoded.input_ids[i])
            span = slice(0, n) if self.padding_side == "right" else slice(width - n, width)
            ids[row, span] = encoded.input_ids[i]
            mask[row, span] = 1
            if types is not None and type_ids is not None:
                types[row, span] = type_ids[i]
        batch = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            batch["token_type_ids"] = types
        return batch

    def batches(self, encoded: EncodedTexts, batch_size: int):
        """Yield (input indices, padded batch), longest inputs first (the least padding)."""
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded.input_ids[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield idx, self.collate(encoded, idx)


def _split_inputs(inputs: Sequence[str | tuple[str, str]]) -> tuple[list[str], list[str] | None]:
    # the same convention as models.backbone.split_inputs, without importing torch-side modules
    if isinstance(inputs, str):
        raise UnfreezeError("Give a list of texts, not one string.")
    if len(inputs) and isinstance(inputs[0], (tuple, list)):
        return [str(x[0]) for x in inputs], [str(x[1]) for x in inputs]
    return [str(x) for x in inputs], None
