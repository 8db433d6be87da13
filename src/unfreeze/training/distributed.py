"""Data-parallel training of one fit over several processes: ``accelerate launch`` / ``torchrun``.

    accelerate launch --num_processes 2 -m unfreeze fit DATA --strategy freeze --k 3 -o runs/ddp
    torchrun --nproc_per_node 2 -m unfreeze fit DATA --strategy freeze --k 3 -o runs/ddp

Every process (rank) runs the same command; the launcher sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``. The training loop then runs under Hugging Face Accelerate: the model is
wrapped for data parallelism (DDP; NCCL on GPUs, gloo on CPUs), and each rank takes its
share of every batch. Semantics are the single-process ones: the same length-grouped
batches of ``batch_size`` examples (a global batch, split across ranks, as Accelerate's
``split_batches``), the same number of optimiser steps and schedule, a loss normalised
over the whole batch, so the averaged gradient is the one-process gradient of that batch.
Validation and test predictions are sharded and gathered. Only rank 0 writes bundles and
prints. Without a launcher (one process), none of this is imported and nothing changes.

Accelerate is a core dependency (PEFT already requires it), so a launch needs no extra.
"""

from __future__ import annotations

import os

import numpy as np
import torch

_ACCELERATOR = None


def launched_world_size() -> int:
    """How many processes the launcher started (1 when not launched by accelerate/torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0) if launched_world_size() > 1 else 0


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a launch: the one that writes and prints."""
    return rank() == 0


def local_device(requested: str | torch.device | None) -> torch.device | None:
    """Under a launch on GPUs, each rank uses the GPU of its local rank ("cuda" means that one)."""
    if launched_world_size() <= 1 or not torch.cuda.is_available():
        return None if requested is None else torch.device(requested)
    if requested is None or str(requested) == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
    return torch.device(requested)


def accelerator(device: torch.device):
    """The process's Accelerator under a launch (created once; joins the process group); None otherwise."""
    global _ACCELERATOR
    if launched_world_size() <= 1:
        return None
    if _ACCELERATOR is None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        # Trainable parameters that get no gradient are legal here: pooling a lower layer
        # (--layers -2) leaves the blocks above it unused, and BERT's pooler never feeds
        # the head. Without being told, DDP waits forever for their gradients. The graph
        # is the same at every step, so static_graph finds them once (find_unused_parameters
        # would search the graph at every step); they keep grad None and AdamW leaves them
        # alone, as in one process.
        ddp = DistributedDataParallelKwargs(static_graph=True)
        _ACCELERATOR = Accelerator(cpu=device.type == "cpu", kwargs_handlers=[ddp])
    return _ACCELERATOR


def active():
    """The Accelerator when training data-parallel over more than one process, else None."""
    if _ACCELERATOR is not None and _ACCELERATOR.num_processes > 1:
        return _ACCELERATOR
    return None


def shard(indices: list[int], acc) -> tuple[list[int], bool]:
    """This rank's share of a global batch; (one stand-in index, True) when the batch has none for it.

    A rank with nothing to do must still run a step (DDP's all-reduce needs every rank):
    it runs one example with zero weight.
    """
    mine = indices[acc.process_index :: acc.num_processes]
    return (mine, False) if mine else (indices[:1], True)


def sum_across(values: np.ndarray, acc) -> np.ndarray:
    """Element-wise sum of ``values`` over every rank."""
    tensor = torch.as_tensor(values, dtype=torch.float64, device=acc.device)
    return acc.reduce(tensor, reduction="sum").cpu().numpy()


def gather_rows(part: np.ndarray, n_total: int, acc) -> np.ndarray:
    """Reassemble per-rank rows (rank r holds rows r, r + W, r + 2W, ...) into input order on every rank."""
    world = acc.num_processes
    width = -(-n_total // world)  # the largest shard; smaller ones are padded to it for the gather
    padded = np.zeros((width, *part.shape[1:]), dtype=part.dtype)
    padded[: len(part)] = part
    gathered = (
        acc.gather(torch.from_numpy(padded).to(acc.device)).cpu().numpy().reshape((world, width, *part.shape[1:]))
    )
    out = np.empty((n_total, *part.shape[1:]), dtype=part.dtype)
    for r in range(world):
        rows = np.arange(r, n_total, world)
        out[rows] = gathered[r, : len(rows)]
    return out


def finish() -> None:
    """Wait for every rank and leave the process group (a clean exit for the launcher)."""
    global _ACCELERATOR
    if _ACCELERATOR is None:
        return
    _ACCELERATOR.wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _ACCELERATOR = None
