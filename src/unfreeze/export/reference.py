"""PyTorch's own outputs of what is exported: what an export's self-check compares its graph with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .graphs import eval_mode


def torch_heads_proba(
    backbone, heads: Mapping[str, Any], inputs: Sequence, max_length: int, batch_size: int = 32
) -> dict[str, np.ndarray]:
    """PyTorch's outputs of every head in its task's shape (single: its ``predict_proba``): one
    ``forward_pooled`` pass."""
    from ..features.embed import forward_pooled
    from ..inference.head_tasks import head_outputs, task_of

    encoded = backbone.encode(list(inputs), max_length)
    wanted = [(int(layer), h.pooling) for h in heads.values() for layer in h.layers]
    pooled = forward_pooled(backbone, encoded, wanted, batch_size, progress=False)
    return {
        name: np.asarray(
            head_outputs(
                h.head,
                task_of(h),
                np.concatenate([pooled[(int(layer), h.pooling)] for layer in h.layers], axis=1),
            )
        )
        for name, h in heads.items()
    }


def torch_network_proba(
    model, backbone, inputs: Sequence, max_length: int, batch_size: int = 32, task: Any = None
) -> np.ndarray:
    """PyTorch's outputs of a ``TextClassificationModel`` in its ``task``'s shape (None: single, the softmax)
    (in eval mode; every module's mode is restored)."""
    from .numpy_heads import NetworkLogits, softmax

    encoded = backbone.encode(list(inputs), max_length)
    logits = np.empty((len(encoded), model.head.out_features), dtype=np.float32)
    with eval_mode(model, False), torch.inference_mode():
        for idx, batch in backbone.batches(encoded, batch_size):
            logits[idx] = model(batch).float().cpu().numpy()
    return softmax(logits) if task is None else task.outputs_of(NetworkLogits(logits), None)


__all__ = ["torch_heads_proba", "torch_network_proba"]
