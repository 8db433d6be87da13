"""``mix``: a learned softmax weighting of the frozen model's pooled hidden states, then a linear head.

ELMo's scalar mix (Peters et al. 2018): ``gamma * sum_j softmax(w)_j * h_j`` over the
chosen hidden states (every one by default, or a set such as the last four), the "weighted
sum" rows of BERT's Table 7. The model is never changed (``changes_weights = False``): the
per-layer pooled states come from ``unfreeze.features.embed.embed`` in one forward pass, with its
on-disk cache and a sweep's shared embedding pool, so no epoch runs the backbone. The mix
weights, gamma and the head train with the shared skeleton (``training.cached``); the fit
record and ``unfreeze fit`` report the learned layer weights, and the report plots them.

Imports no torch (the command line reads the declaration); the work imports it lazily.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..inference.predictors import Predictor, PredictorState, Tensors, load_trained, register_predictor
from ..params import is_bool, setting
from .base import FitContext, FitResult, Strategy, training_split
from .frozen import CHOICE_HELP, check_layer_choice, resolve_layer_choice

if TYPE_CHECKING:
    from ..models.backbone import Backbone, TextInput
    from ..training.state_networks import ScalarMix

# every Training setting but the prefix cache (the backbone never runs in an epoch) and the head's own
# rate: everything these strategies train is new, so one learning rate trains it all (measured on
# movie-snippets, MiniLM, 400 and 1,000 examples, 3 seeds: the mix at 5e-3 with its head at the
# Training default 1e-3 stopped early half-trained, 0.69 / 0.75 test accuracy; both at 5e-3, 0.73 / 0.77)
CACHED_TRAINING_SETTINGS = frozenset(
    (
        "epochs",
        "learning_rate",
        "weight_decay",
        "warmup_ratio",
        "max_steps",
        "grad_clip",
        "validation_fraction",
        "patience",
        "class_weight",
    )
)


@dataclass(repr=False)
class Mix(Strategy):
    """A scalar mix of pooled hidden states of the frozen model (ELMo), then a linear head.

    Parameters
    ----------
    mix_layers : str or list of int
        The hidden states mixed: ``"all"`` (0 = embeddings .. L), ``"lastN"`` (the top N,
        e.g. ``"last4"``) or a list such as ``"-4,-3,-2,-1"``. Each is pooled with the
        Classifier's ``pooling``; the Classifier's ``layers`` is not used.
    layer_norm : bool
        Normalise each pooled state (zero mean, unit variance over its features, no learned
        scale) before mixing, as ELMo's ``do_layer_norm``: layers differ in scale, and the
        weights should compare layers rather than scales.

    Notes
    -----
    ``learning_rate`` (default 5e-3) trains the mix weights, gamma and the linear head (all
    new: no pretrained weights whose rate should differ); epochs default to 20 (an epoch
    costs no forward pass).
    """

    name: ClassVar[str] = "mix"
    summary: ClassVar[str] = (
        "a learned softmax weighting of every layer's pooled state (frozen model, ELMo's scalar mix) and a linear head"
    )
    training_settings: ClassVar[frozenset[str]] = CACHED_TRAINING_SETTINGS
    # a handful of scalars: they need larger steps than transformer weights to move in a few hundred steps
    default_learning_rate: ClassVar[float | None] = 5e-3
    default_epochs: ClassVar[int | None] = 20
    changes_weights: ClassVar[bool] = False

    mix_layers: str = setting("all", f"Hidden states mixed: {CHOICE_HELP}.", check_layer_choice)
    layer_norm: bool = setting(True, "Normalise each pooled state before mixing (ELMo's do_layer_norm).", is_bool)

    def mixed_layers(self, num_blocks: int) -> tuple[int, ...]:
        return resolve_layer_choice(self.mix_layers, num_blocks, "mix_layers", self.name)

    def check_model(self, backbone: Backbone, layers: Sequence[int]) -> None:
        self.mixed_layers(backbone.num_blocks)

    def frozen_blocks(self, num_blocks: int) -> int:
        return num_blocks

    def pooled_layers(self, num_blocks: int, layers: Sequence[int]) -> tuple[int, ...]:
        return self.mixed_layers(num_blocks)

    def fit(self, context: FitContext, inputs: list[TextInput], y: np.ndarray) -> FitResult:
        import torch

        from ..features.embed import embed
        from ..training.cached import train_cached
        from ..training.memory import PeakMemory
        from ..training.state_networks import ScalarMix

        backbone, config = context.backbone, context.training
        assert config is not None
        layers = self.mixed_layers(backbone.num_blocks)
        inputs, y, train_rows, val_rows = training_split(context, inputs, y)
        device = backbone.device
        started = time.perf_counter()
        with PeakMemory(device) as memory:
            # one forward pass for every layer (or none: the on-disk cache, a sweep's pool)
            embedded = embed(
                backbone,
                inputs,
                layers,
                context.pooling,
                context.max_length,
                context.batch_size,
                use_cache=context.cache,
                progress=context.progress,
            )
            states = stack_layers(embedded.layers, layers, device)
        states_seconds = time.perf_counter() - started
        torch.manual_seed(context.seed)  # the head's initial weights
        task = context.fitted_task
        module = ScalarMix(len(layers), backbone.hidden_size, task.n_outputs, self.layer_norm).to(device)
        record = train_cached(
            module, lambda rows: module(states[rows]), [], y, train_rows, val_rows, config, device, task
        ).as_dict()
        weights = [float(w) for w in module.layer_weights().detach().cpu()]
        record.update(
            {
                "total_parameters": backbone.n_parameters() + sum(p.numel() for p in module.parameters()),
                "peak_memory_bytes": max(record["peak_memory_bytes"], memory.peak_bytes),
                "state_bytes_per_example": states.numel() * states.element_size() / max(len(inputs), 1),
                "seconds": time.perf_counter() - started,
                "states_seconds": states_seconds,
                "states_from_cache": embedded.from_cache,
                "mixed_layers": list(layers),
                "layer_weights": weights,
                "gamma": float(module.gamma.detach()),
            }
        )
        predictor = MixPredictor(
            backbone,
            module,
            layers,
            context.pooling,
            context.max_length,
            context.batch_size,
            use_cache=context.cache,
            progress=context.progress,
        )
        return FitResult(predictor, record, embedded.n_truncated, embedded.max_length)

    def fit_lines(self, record: dict) -> list[str]:
        if "layer_weights" not in record:
            return []
        weights = "  ".join(f"{layer}: {w:.3f}" for layer, w in zip(record["mixed_layers"], record["layer_weights"]))
        return [f"layer weights (hidden state: weight; 0 = embeddings): {weights}  gamma {record['gamma']:.3f}"]


def stack_layers(layers: dict[int, np.ndarray], order: Sequence[int], device):
    """Pooled states per layer -> one float32 tensor [n, len(order), hidden] on ``device``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.stack([layers[i] for i in order], axis=1), dtype=np.float32)).to(
        device
    )


@register_predictor
@dataclass
class MixPredictor(Predictor):
    """The scalar mix and its head on pooled states of the untouched model (from the embedding cache when there)."""

    type_name: ClassVar[str] = "scalar_mix"

    backbone: Backbone
    module: ScalarMix
    layers: tuple[int, ...]
    pooling: str
    max_length: int
    batch_size: int
    use_cache: bool = True
    progress: bool = True
    n_truncated: int = field(default=0, init=False)

    def layer_weights(self) -> dict[int, float]:
        """The learned weight of each mixed hidden state (they sum to 1)."""
        return {layer: float(w) for layer, w in zip(self.layers, self.module.layer_weights().detach().cpu())}

    def logits(self, inputs: Sequence[TextInput]) -> np.ndarray:
        import torch

        from ..features.embed import embed

        embedded = embed(
            self.backbone,
            inputs,
            self.layers,
            self.pooling,
            self.max_length,
            self.batch_size,
            use_cache=self.use_cache,
            progress=self.progress,
        )
        self.n_truncated = embedded.n_truncated
        states = stack_layers(embedded.layers, self.layers, self.backbone.device)
        self.module.eval()
        with torch.inference_mode():
            return self.module(states).float().cpu().numpy()

    def state(self) -> PredictorState:
        # only the mix: its weights, gamma and the head (the backbone is the base model's)
        tensors: Tensors = {name: p.detach().cpu().contiguous() for name, p in self.module.named_parameters()}
        return PredictorState(
            {"mix": tensors},
            {
                "type": self.type_name,
                "layers": list(self.layers),
                "n_classes": self.module.head.out_features,
                "hidden_size": self.module.head.in_features,
                "layer_norm": self.module.layer_norm,
                "layer_weights": list(self.layer_weights().values()),
            },
        )

    @classmethod
    def from_state(cls, context: FitContext, strategy: Strategy, state: PredictorState) -> MixPredictor:
        from ..training.state_networks import ScalarMix

        meta = state.meta
        layers = tuple(int(i) for i in meta["layers"])
        module = ScalarMix(len(layers), int(meta["hidden_size"]), int(meta["n_classes"]), bool(meta["layer_norm"]))
        load_trained(module, state.files["mix"], "mix.safetensors")
        module.to(context.backbone.device).eval()
        return cls(
            context.backbone,
            module,
            layers,
            context.pooling,
            context.max_length,
            context.batch_size,
            use_cache=context.cache,
            progress=context.progress,
        )


__all__ = ["CACHED_TRAINING_SETTINGS", "Mix", "MixPredictor"]
