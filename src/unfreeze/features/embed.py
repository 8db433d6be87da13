"""Pooled hidden states with no gradients, and their on-disk cache.

The cache is keyed by the model's weights, pooling, max length and the exact inputs;
one file per key holds any number of layers, so a probe (every layer) also serves
later single-layer fits on the same texts without a forward pass.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from ..models.backbone import Backbone, TextInput, split_inputs
from ..models.pooling import pool
from ..storage.cache import atomic_path, cache_dir, sha256_json
from .pools import ScopedPool


@dataclass
class Embeddings:
    """Pooled states per requested layer, in input order: ``layers[i]`` is [n_inputs, hidden]."""

    layers: dict[int, np.ndarray]
    n_truncated: int
    max_length: int
    from_cache: bool

    def features(self, layer_indices: Sequence[int]) -> np.ndarray:
        """The concatenation of the requested layers, [n_inputs, hidden * len(layer_indices)]."""
        return np.concatenate([self.layers[i] for i in layer_indices], axis=1)


@dataclass
class _Pool:
    """Pooled states of many inputs, in memory: serves any subset of them without a forward pass."""

    rows: dict[str, int] = field(default_factory=dict)
    layers: dict[int, np.ndarray] = field(default_factory=dict)
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


# (model fingerprint, pooling, max length) -> _Pool; active only inside shared_embeddings()
EMBEDDING_POOLS = ScopedPool()


def shared_embeddings() -> contextlib.AbstractContextManager:
    """Within this block, every embedded input is kept in memory and reused by later calls on
    any subset of the same inputs (a sweep's cells are subsets of one pool of texts)."""
    return EMBEDDING_POOLS.active()


def export_pools() -> list[tuple[tuple[str, str, int], dict]]:
    """The active in-memory pools as plain data (key, rows, layers, truncation flags).

    A Ray sweep computes the pool once in one task and hands it to the others through
    the object store; ``import_pools`` puts it back in place in their processes.
    """
    data = EMBEDDING_POOLS.data  # None outside a shared_embeddings() block
    if data is None:
        return []
    return [
        (key, {"rows": dict(p.rows), "layers": dict(p.layers), "truncated": p.truncated}) for key, p in data.items()
    ]


def import_pools(exported: list[tuple[tuple[str, str, int], dict]]) -> None:
    """Install pools made by ``export_pools`` into the active ``shared_embeddings()`` block."""
    data = EMBEDDING_POOLS.data
    if data is None:
        raise RuntimeError("import_pools needs an active shared_embeddings() block")
    for key, parts in exported:
        data[tuple(key)] = _Pool(dict(parts["rows"]), dict(parts["layers"]), np.asarray(parts["truncated"]))


def input_keys(inputs: Sequence[TextInput]) -> list[str]:
    """One key per input (text and optional pair)."""
    texts, pairs = split_inputs(inputs)
    return [
        hashlib.blake2b((t + "\x1f" + (pairs[i] if pairs else "")).encode(), digest_size=16).hexdigest()
        for i, t in enumerate(texts)
    ]


def inputs_digest(inputs: Sequence[TextInput]) -> str:
    texts, pairs = split_inputs(inputs)
    digest = hashlib.sha256()
    for i, text in enumerate(texts):
        digest.update(text.encode() + b"\x1f" + (pairs[i].encode() if pairs else b"") + b"\x1e")
    return digest.hexdigest()


def embed(
    backbone: Backbone,
    inputs: Sequence[TextInput],
    layer_indices: Sequence[int],
    pooling: str,
    max_length: int = 256,
    batch_size: int = 32,
    use_cache: bool = True,
    progress: bool = True,
    use_pool: bool = True,
) -> Embeddings:
    """Pool the hidden states ``layer_indices`` (0 = embeddings) of every input.

    ``use_cache``: read and write the on-disk cache. ``use_pool``: read and add to the
    in-memory pool when one is active (a sweep, a learning-rate search: ``shared_embeddings``);
    both are keyed by the base model's weights, so neither may serve a tuned body.
    """
    wanted = sorted(set(layer_indices))
    limit = backbone.length_limit(max_length)
    from_pool = _from_pool(backbone, inputs, wanted, pooling, limit) if use_pool else None
    if from_pool is not None:
        return from_pool
    path = _cache_path(backbone, inputs, pooling, limit) if use_cache else None
    stored: dict[int, np.ndarray] = {}
    n_truncated = 0
    if path is not None and path.exists():
        stored, n_truncated = _read(path)
        if all(i in stored for i in wanted):
            if use_pool:
                _to_pool(backbone, inputs, stored, None, pooling, limit)
            return Embeddings({i: stored[i] for i in wanted}, n_truncated, limit, from_cache=True)
    encoded = backbone.encode(inputs, limit)
    computed = _forward_pooled(backbone, encoded, wanted, pooling, batch_size, progress)
    if path is not None:
        _write(path, {**stored, **computed}, encoded.n_truncated)
    if use_pool:
        _to_pool(backbone, inputs, computed, encoded.truncated, pooling, limit)
    return Embeddings(computed, encoded.n_truncated, limit, from_cache=False)


def _from_pool(
    backbone: Backbone, inputs: Sequence[TextInput], wanted: list[int], pooling: str, limit: int
) -> Embeddings | None:
    data = EMBEDDING_POOLS.data
    if data is None:
        return None
    pool = data.get((backbone.fingerprint(), pooling, limit))
    if pool is None or any(i not in pool.layers for i in wanted):
        return None
    rows = [pool.rows.get(key) for key in input_keys(inputs)]
    if any(r is None for r in rows):
        return None
    index = np.asarray(rows)
    return Embeddings(
        {i: pool.layers[i][index] for i in wanted}, int(pool.truncated[index].sum()), limit, from_cache=True
    )


def _to_pool(
    backbone: Backbone,
    inputs: Sequence[TextInput],
    layers: dict[int, np.ndarray],
    truncated: list[bool] | None,
    pooling: str,
    limit: int,
) -> None:
    """Add these rows to the in-memory pool; rows already there keep their place."""
    data = EMBEDDING_POOLS.data
    if data is None:
        return
    pool = data.setdefault((backbone.fingerprint(), pooling, limit), _Pool())
    if pool.rows and set(layers) != set(pool.layers):
        pool.rows, pool.layers, pool.truncated = {}, {}, np.zeros(0, dtype=bool)  # another layer set: start afresh
    new: dict[str, int] = {}  # key -> its first position in this call (inputs may repeat)
    for j, key in enumerate(input_keys(inputs)):
        if key not in pool.rows and key not in new:
            new[key] = j
    start = len(pool.truncated)  # rows in the arrays
    for offset, key in enumerate(new):
        pool.rows[key] = start + offset
    picked = list(new.values())
    flags = np.zeros(len(inputs), dtype=bool) if truncated is None else np.asarray(truncated, dtype=bool)
    pool.truncated = np.concatenate([pool.truncated, flags[picked]])
    for i, values in layers.items():
        block = values[picked]
        pool.layers[i] = block if i not in pool.layers else np.concatenate([pool.layers[i], block])


def _forward_pooled(
    backbone: Backbone, encoded, layer_indices: list[int], pooling: str, batch_size: int, progress: bool
) -> dict[int, np.ndarray]:
    pooled = forward_pooled(backbone, encoded, [(i, pooling) for i in layer_indices], batch_size, progress)
    return {i: pooled[(i, pooling)] for i in layer_indices}


@torch.inference_mode()
def forward_pooled(
    backbone: Backbone,
    encoded,
    wanted: Sequence[tuple[int, str]],
    batch_size: int = 32,
    progress: bool = True,
) -> dict[tuple[int, str], np.ndarray]:
    """One no-grad pass over ``encoded``, pooling every requested (layer, pooling) pair.

    Several heads with different layers and poolings share this one forward pass.
    """
    wanted = list(dict.fromkeys(wanted))
    model = backbone.model
    was_training = model.training
    model.eval()
    only_last = all(layer == backbone.num_blocks for layer, _ in wanted)
    out = {key: np.empty((len(encoded), backbone.hidden_size), dtype=np.float32) for key in wanted}
    bar = tqdm(total=len(encoded), desc="embedding", unit="text", disable=not progress or None, leave=False)
    try:
        for idx, batch in backbone.batches(encoded, batch_size):
            # asking for every hidden state costs memory; the last one alone is the usual case
            result = model(**batch, output_hidden_states=not only_last)
            for layer, pooling in wanted:
                hidden = result.last_hidden_state if only_last else result.hidden_states[layer]
                out[(layer, pooling)][idx] = pool(hidden.float(), batch["attention_mask"], pooling).cpu().numpy()
            bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return out


def _cache_path(backbone: Backbone, inputs: Sequence[TextInput], pooling: str, limit: int) -> Path:
    key = sha256_json(
        {
            "model": backbone.fingerprint(),
            "pooling": pooling,
            "max_length": limit,
            "inputs": inputs_digest(inputs),
            "version": 1,
        }
    )
    return cache_dir("embeddings") / f"{key[:40]}.safetensors"


def _read(path: Path) -> tuple[dict[int, np.ndarray], int]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        n_truncated = int((handle.metadata() or {}).get("n_truncated", 0))
    tensors = load_file(str(path))
    return {int(name.removeprefix("layer_")): value for name, value in tensors.items()}, n_truncated


def _write(path: Path, layers: dict[int, np.ndarray], n_truncated: int) -> None:
    with atomic_path(path) as tmp:
        save_file(
            {f"layer_{i}": np.ascontiguousarray(v) for i, v in layers.items()},
            str(tmp),
            metadata={"n_truncated": str(n_truncated)},
        )
