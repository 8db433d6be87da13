"""The frozen-prefix cache.

When the embeddings and the bottom k blocks are frozen, their output never changes:
compute the hidden states after block k once (no gradients, frozen part in eval
mode) and train the top blocks from them in every epoch. One forward pass that
records the output of every block serves every k of a sweep.

Running "from block k" reuses the model's own forward (masks, rotary embeddings,
relative positions stay the family's business): the bottom k blocks are swapped for
stand-ins that cost nothing, and the last of them returns the cached states.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..features.pools import ScopedPool
from ..models.backbone import Backbone, Encoded


class PrefixBatch(NamedTuple):
    """One batch's cached prefix, padded, as the network's forward takes it (a plain tuple: DDP moves
    its tensor to the device like any other input)."""

    k: int
    tuple_length: int
    states: torch.Tensor


@dataclass
class PrefixStates:
    """The cached output of the frozen bottom ``k`` blocks: one unpadded [len_i, hidden] tensor per example.

    ``tuple_length`` is the blocks' output form, which the stand-in blocks imitate: 0 for a
    bare tensor, else the length of the tuple a block returns.
    """

    k: int
    states: list[torch.Tensor]
    tuple_length: int

    def __len__(self) -> int:
        return len(self.states)

    @property
    def nbytes(self) -> int:
        """Bytes the cached states take (what holding them costs in memory)."""
        return sum(t.numel() * t.element_size() for t in self.states)

    def subset(self, rows: Sequence[int]) -> PrefixStates:
        return PrefixStates(self.k, [self.states[i] for i in rows], self.tuple_length)

    def batch(self, rows: Sequence[int], device: torch.device) -> PrefixBatch:
        """The states of examples ``rows``, right-padded into one [len(rows), width, hidden] tensor on ``device``."""
        width = max(self.states[i].shape[0] for i in rows)
        first = self.states[rows[0]]
        out = torch.zeros((len(rows), width, first.shape[1]), dtype=first.dtype)
        for row, i in enumerate(rows):
            out[row, : self.states[i].shape[0]] = self.states[i]
        return PrefixBatch(self.k, self.tuple_length, out.to(device))


def first_tensor(output: object) -> torch.Tensor:
    """A block's hidden-state output: the tensor itself, or the first item of a tuple."""
    return output if isinstance(output, torch.Tensor) else output[0]  # type: ignore[index]


def block_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


class SkippedBlock(nn.Module):
    """Stands in for a frozen block: returns a given tensor (or its input) in the block's output shape."""

    def __init__(self, tuple_length: int) -> None:
        super().__init__()
        self.tuple_length = tuple_length  # 0: the real block returns a bare tensor
        self.replacement: torch.Tensor | None = None

    def forward(self, *args, **kwargs):
        hidden = self.replacement if self.replacement is not None else block_input(args, kwargs)
        if self.tuple_length == 0:
            return hidden
        return (hidden,) + (None,) * (self.tuple_length - 1)


def output_tuple_length(output: object) -> int:
    return 0 if isinstance(output, torch.Tensor) else len(output)  # type: ignore[arg-type]


@contextlib.contextmanager
def skip_bottom_blocks(blocks: nn.ModuleList, k: int, tuple_length: int) -> Iterator[SkippedBlock]:
    """Replace blocks[:k] by stand-ins; yields the last stand-in, whose ``replacement`` to set per batch."""
    assert k >= 1
    originals = [blocks[i] for i in range(k)]
    stand_ins = [SkippedBlock(tuple_length) for _ in range(k)]
    try:
        for i, stand_in in enumerate(stand_ins):
            blocks[i] = stand_in
        yield stand_ins[-1]
    finally:
        for i, original in enumerate(originals):
            blocks[i] = original
        stand_ins[-1].replacement = None


# (base-model fingerprint, max length) -> ({k: {input key: state}}, [the blocks' output tuple
# length]); active only inside shared_prefix_states()
PREFIX_POOLS = ScopedPool()


def shared_prefix_states() -> contextlib.AbstractContextManager:
    """Within this block, prefix states are kept in memory and reused by every later fit whose
    inputs they cover: one pass over a sweep's texts, keeping every k, serves every cell."""
    return PREFIX_POOLS.active()


def prefix_pool_active() -> bool:
    return PREFIX_POOLS.is_active


def compute_prefix_states(
    backbone: Backbone,
    encoded: Encoded,
    ks: Sequence[int],
    batch_size: int = 32,
    pool_key: tuple[str, int] | None = None,
    keys: Sequence[str] | None = None,
) -> dict[int, PrefixStates]:
    """Hidden states after block k for every example and every k in ``ks`` (k >= 1), in one pass.

    States live on the CPU, unpadded; the model runs in eval mode with no gradients. With
    ``pool_key`` (the fingerprint of the unchanged base model, max length) and one key per
    example, states come from and go to the shared pool when one is active.
    """
    wanted = sorted({k for k in ks if k >= 1})
    pool = None
    data = PREFIX_POOLS.data  # None outside an active prefix pool
    if data is not None and pool_key is not None and keys is not None:
        pool = data.setdefault(pool_key, ({}, [0]))
        by_k, tuple_length = pool
        if all(k in by_k and all(key in by_k[k] for key in keys) for k in wanted):
            return {k: PrefixStates(k, [by_k[k][key] for key in keys], tuple_length[0]) for k in wanted}
    states, tuple_length_found = _forward_prefix(backbone, encoded, wanted, batch_size)
    if pool is not None and keys is not None:
        by_k, tuple_length = pool
        tuple_length[0] = tuple_length_found
        for k in wanted:
            by_k.setdefault(k, {}).update(zip(keys, states[k]))
    return {k: PrefixStates(k, states[k], tuple_length_found) for k in wanted}


@torch.inference_mode()
def _forward_prefix(
    backbone: Backbone, encoded: Encoded, wanted: list[int], batch_size: int
) -> tuple[dict[int, list[torch.Tensor]], int]:
    states: dict[int, list[torch.Tensor | None]] = {k: [None] * len(encoded) for k in wanted}
    model = backbone.model
    was_training = model.training
    model.eval()
    captured: dict[int, torch.Tensor] = {}
    tuple_length = [0]

    def hook_for(k: int):
        def hook(_module, _args, output):
            captured[k] = first_tensor(output)
            tuple_length[0] = output_tuple_length(output)

        return hook

    handles = [backbone.blocks[k - 1].register_forward_hook(hook_for(k)) for k in wanted]
    last_needed = max(wanted, default=0)
    try:
        for idx, batch in backbone.batches(encoded, batch_size):
            captured.clear()
            with _stop_after(backbone.blocks, last_needed):
                model(**batch)
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            for k in wanted:
                hidden = captured[k].float().cpu()
                for row, i in enumerate(idx):
                    states[k][i] = hidden[row, : lengths[row]].clone()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return states, tuple_length[0]  # type: ignore[return-value]


class _StopForward(Exception):
    pass


@contextlib.contextmanager
def _stop_after(blocks: nn.ModuleList, k: int) -> Iterator[None]:
    """Stop the forward pass once block k has run: the blocks above it are not needed for the cache."""
    if k >= len(blocks) or k == 0:
        yield
        return

    def stop(_module, _args, _kwargs):
        raise _StopForward

    handle = blocks[k].register_forward_pre_hook(stop, with_kwargs=True)
    try:
        yield
    except _StopForward:
        pass
    finally:
        handle.remove()
