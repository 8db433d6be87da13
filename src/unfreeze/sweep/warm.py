"""Warming the sweep's shared caches before its cells run.

One embedding pass per seed over that seed's largest training sample and the test set
serves every cell of a strategy that never changes the model's weights (``features``;
``mix``, whose layers it pools too: ``Strategy.pooled_layers``) and the probe (nested
samples are subsets of it); one prefix pass keeping the output of every frozen-block
count k, over the same texts, serves the training and the scoring of every cell trained
by the shared loop above a frozen prefix (``freeze`` k >= 1, ``lora`` with ``top_blocks``,
``reinit`` with k).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..errors import UnfreezeError
from .grid import Cell, SweepSpec, expand
from .samples import SweepData, seed_samples

if TYPE_CHECKING:
    from ..models.backbone import TextInput


def shared_caches() -> contextlib.ExitStack:
    """The in-memory pools a sweep shares across cells: pooled embeddings and frozen-prefix states."""
    from ..features.embed import shared_embeddings
    from ..training.prefix import shared_prefix_states

    stack = contextlib.ExitStack()
    stack.enter_context(shared_embeddings())
    stack.enter_context(shared_prefix_states())
    return stack


def embeds_frozen(cell: Cell) -> bool:
    """A cell whose strategy pools the untouched model's states: the shared embedding pass serves it."""
    return not cell.make_strategy().changes_weights


def frozen_layers(spec: SweepSpec, num_blocks: int) -> set[int]:
    """Every pooled hidden state the sweep's frozen-model cells read (``Strategy.pooled_layers``):
    the sweep's ``layers`` for ``features``, every state (or its own set) for ``mix``, none for ``bilstm``."""
    from ..models.pooling import parse_layers

    spec_layers = parse_layers(spec.layers, num_blocks, "sweep")
    layers: set[int] = set()
    for cell in {cell.label: cell for cell in expand(spec, num_blocks)}.values():  # one cell per configuration
        strategy = cell.make_strategy()
        if strategy.changes_weights:
            continue
        try:
            layers |= set(strategy.pooled_layers(num_blocks, spec_layers))
        except UnfreezeError:
            continue  # a value this model does not allow: that cell fails with its own message
    return layers


def inference_backbone(spec: SweepSpec, device: str | None = None):
    """The shared model a sweep's passes without gradients run on (embeddings, frozen prefixes): the base
    model in the precision ``spec.precision`` gives on this hardware (a bf16 copy where that is fast)."""
    from ..machine.hardware import run_precision
    from ..models.loaded import shared_backbone

    base = shared_backbone(spec.model, device)
    return shared_backbone(spec.model, device, run_precision(spec.precision, base.device).inference_dtype)


def embed_everything(spec: SweepSpec, data: SweepData, backbone, seeds: list[int]) -> None:
    """One embedding pass over every text that a frozen-model cell or the probe will need.

    The union of each seed's largest sample and the test set, with every layer the cells
    and the probe read: later calls on any subset are served from memory.
    """
    from ..features.embed import embed
    from ..models.pooling import resolve_pooling

    pooling = resolve_pooling(spec.pooling, backbone.is_decoder, "sweep")
    layers = frozen_layers(spec, backbone.num_blocks)
    if spec.probe:
        layers |= set(range(backbone.num_blocks + 1))
    if not layers:
        return  # the frozen-model cells read no pooled states (bilstm reads token states)
    texts: dict[TextInput, None] = {}
    for seed in seeds:
        largest, validation = seed_samples(spec, data.train_pool, max(spec.n_train), seed)
        texts.update(dict.fromkeys(largest.inputs))
        texts.update(dict.fromkeys(validation.inputs if validation is not None else []))
    texts.update(dict.fromkeys(data.test.inputs))
    embed(backbone, list(texts), sorted(layers), pooling, spec.max_length, spec.batch_size, progress=False)


def prefix_ks(cells: list[Cell], num_blocks: int) -> list[int]:
    """The frozen-block counts k >= 1 of cells trained by the shared loop: the prefixes worth sharing."""
    from ..strategies import TunedStrategy

    ks = set()
    for cell in cells:
        strategy = cell.make_strategy()
        if isinstance(strategy, TunedStrategy) and strategy.frozen_blocks(num_blocks) >= 1:
            ks.add(strategy.frozen_blocks(num_blocks))
    return sorted(ks)


def warm_prefixes(spec: SweepSpec, data: SweepData, backbone, seed: int, n_largest: int, ks: list[int]) -> None:
    """One prefix pass over this seed's largest sample and the test set, keeping the output of every k in ``ks``.

    The states of an example do not depend on which ks are kept (the pass stops after
    the highest), so a Ray task that keeps only its own k gets the very numbers the
    local backend shares across a seed's cells.
    """
    from ..features.embed import input_keys
    from ..training.prefix import PREFIX_POOLS, compute_prefix_states

    largest, validation = seed_samples(spec, data.train_pool, n_largest, seed)
    PREFIX_POOLS.clear()  # the previous seed's states: the test set's are recomputed, the rest not needed again
    if ks:
        # the training sample (the cells' validation splits are inside it, or held out beside it) and the test set
        held = [validation.inputs] if validation is not None else []
        for inputs in (largest.inputs, *held, data.test.inputs):
            encoded = backbone.encode(inputs, spec.max_length)
            compute_prefix_states(
                backbone,
                encoded,
                ks,
                spec.batch_size,
                pool_key=(backbone.fingerprint(), encoded.max_length),
                keys=input_keys(inputs),
            )
