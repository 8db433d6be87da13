"""``bilstm``: a two-layer BiLSTM on cached token states of the frozen model, then a linear head.

BERT's feature-based setting (Devlin et al. 2019, section 5.3 and Table 7): the token
states of chosen hidden states (default: the last four, concatenated) feed a randomly
initialised two-layer bidirectional LSTM; its final states feed the classifier. The model
is never changed (``changes_weights = False``). The token states are computed in one
forward pass and kept in float16 (``unfreeze.features.token_states``: in memory up to
``memory_gib``, then in a memory-mapped file in the cache folder, deleted when the fit
ends), so no epoch runs the backbone. Padding never reaches the LSTM: batches are packed
(``pack_padded_sequence``).

Imports no torch (the command line reads the declaration); the work imports it lazily.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..inference.predictors import Predictor, PredictorState, Tensors, load_trained, register_predictor
from ..params import float_in, int_at_least, is_bool, setting
from .base import FitContext, FitResult, Strategy, training_split
from .frozen import CHOICE_HELP, check_layer_choice, resolve_layer_choice
from .mix import CACHED_TRAINING_SETTINGS

if TYPE_CHECKING:
    from ..models.backbone import Backbone, TextInput
    from ..training.state_networks import BiLSTMHead


@dataclass(repr=False)
class BiLSTM(Strategy):
    """A BiLSTM over token states of the frozen model (BERT's feature-based setting), then a linear head.

    Parameters
    ----------
    token_layers : str or list of int
        The hidden states whose token states are concatenated: ``"last4"`` (default: the
        top four, BERT's best feature-based choice), ``"all"``, ``"lastN"`` or a list such
        as ``"-4,-3,-2,-1"``. The Classifier's ``layers`` and ``pooling`` are not used.
    hidden_size : int
        LSTM units per direction (default 64: BERT's GPU setting used 768; on a CPU, 64 keeps
        an epoch far below a fine-tuning epoch, and scored as well as 128 on movie-snippets).
    num_layers : int
        Stacked BiLSTM layers (BERT's setting: 2).
    dropout : float
        Dropout between LSTM layers and before the head, in [0, 1).
    layer_norm : bool
        Normalise each hidden state's slice of a token's features (no learned scale) before
        the LSTM: hidden states of different layers differ in scale.
    memory_gib : float
        GiB of token states kept in memory; the rest go to a memory-mapped file in the cache
        folder (``$UNFREEZE_CACHE/token-states``), deleted after the fit. 0 keeps everything
        on disk. Where they live never changes a result.

    Notes
    -----
    ``learning_rate`` (default 1e-3) trains the LSTM and the head (both new); epochs default
    to 10 (an epoch costs no forward pass of the backbone).
    """

    name: ClassVar[str] = "bilstm"
    summary: ClassVar[str] = (
        "a two-layer BiLSTM on cached frozen token states (default: last four concatenated) and a linear head"
    )
    # its batches pad to their longest text, as the backbone's do
    training_settings: ClassVar[frozenset[str]] = CACHED_TRAINING_SETTINGS | {"group_by_length"}
    default_learning_rate: ClassVar[float | None] = 1e-3
    default_epochs: ClassVar[int | None] = 10
    changes_weights: ClassVar[bool] = False

    token_layers: str = setting(
        "last4", f"Hidden states whose token states are concatenated: {CHOICE_HELP}.", check_layer_choice
    )
    hidden_size: int = setting(64, "BiLSTM units per direction.", int_at_least(1))
    num_layers: int = setting(2, "Stacked BiLSTM layers.", int_at_least(1))
    dropout: float = setting(
        0.1,
        "Dropout between LSTM layers and before the head.",
        float_in(0.0, 1.0, low_inclusive=True, high_exclusive=True),
    )
    layer_norm: bool = setting(
        True, "Normalise each hidden state's part of a token's features before the LSTM.", is_bool
    )
    memory_gib: float = setting(
        2.0,
        "GiB of token states kept in memory; the rest spill to a file in the cache folder (0: all on disk).",
        float_in(0.0, low_inclusive=True),
    )

    def state_layers(self, num_blocks: int) -> tuple[int, ...]:
        return resolve_layer_choice(self.token_layers, num_blocks, "token_layers", self.name)

    def check_model(self, backbone: Backbone, layers: Sequence[int]) -> None:
        from ..features.token_states import check_token_states

        self.state_layers(backbone.num_blocks)
        check_token_states(backbone)

    def frozen_blocks(self, num_blocks: int) -> int:
        return num_blocks

    def pooled_layers(self, num_blocks: int, layers: Sequence[int]) -> tuple[int, ...]:
        return ()  # token states, not pooled ones: the sweep's embedding pass has nothing to do for it

    def fit(self, context: FitContext, inputs: list[TextInput], y: np.ndarray) -> FitResult:
        import torch

        from ..features.token_states import compute_token_states
        from ..training.cached import train_cached
        from ..training.memory import PeakMemory
        from ..training.state_networks import BiLSTMHead

        backbone, config = context.backbone, context.training
        assert config is not None
        layers = self.state_layers(backbone.num_blocks)
        inputs, y, train_rows, val_rows = training_split(context, inputs, y)
        device = backbone.device
        started = time.perf_counter()
        encoded = backbone.encode(inputs, context.max_length)
        with PeakMemory(device) as memory:
            store = compute_token_states(
                backbone, encoded, layers, context.batch_size, int(self.memory_gib * 2**30), context.progress
            )
        states_seconds = time.perf_counter() - started
        try:
            torch.manual_seed(context.seed)  # the LSTM's and the head's initial weights
            module = BiLSTMHead(
                store.width,
                self.hidden_size,
                self.num_layers,
                context.fitted_task.n_outputs,
                self.dropout,
                backbone.hidden_size if self.layer_norm else None,
            ).to(device)

            def forward(rows: list[int]) -> torch.Tensor:
                states, lengths = store.batch(rows, device)
                return module(states, lengths)

            record = train_cached(
                module,
                forward,
                [],
                y,
                train_rows,
                val_rows,
                config,
                device,
                context.fitted_task,
                lengths=encoded.lengths,
            ).as_dict()
            token_bytes = {
                "tokens": int(store.offsets[-1]),
                "bytes_in_memory": store.bytes_in_memory,
                "bytes_on_disk": store.bytes_on_disk,
            }
        finally:
            store.close()
        record.update(
            {
                "total_parameters": backbone.n_parameters() + sum(p.numel() for p in module.parameters()),
                "peak_memory_bytes": max(record["peak_memory_bytes"], memory.peak_bytes),
                # the part held in memory (the rest spills to disk past memory_gib)
                "state_bytes_per_example": token_bytes["bytes_in_memory"] / max(len(inputs), 1),
                "seconds": time.perf_counter() - started,
                "states_seconds": states_seconds,
                "token_layers": list(layers),
                "token_states": token_bytes,
            }
        )
        predictor = BiLSTMPredictor(backbone, module, layers, context.max_length, context.batch_size)
        return FitResult(predictor, record, encoded.n_truncated, encoded.max_length)

    def fit_lines(self, record: dict) -> list[str]:
        kept = record.get("token_states")
        if not kept:
            return []
        return [
            f"token states: {kept['tokens']:,} tokens, {kept['bytes_in_memory'] / 2**20:.1f} MiB in memory, "
            f"{kept['bytes_on_disk'] / 2**20:.1f} MiB on disk (removed)"
        ]


@register_predictor
@dataclass
class BiLSTMPredictor(Predictor):
    """The BiLSTM and its head on token states of the untouched model (float16-rounded, as in training)."""

    type_name: ClassVar[str] = "bilstm"

    backbone: Backbone
    module: BiLSTMHead
    layers: tuple[int, ...]
    max_length: int
    batch_size: int
    progress: bool = False
    n_truncated: int = field(default=0, init=False)

    def logits(self, inputs: Sequence[TextInput]) -> np.ndarray:
        import torch

        from ..features.token_states import batch_token_states

        encoded = self.backbone.encode(inputs, self.max_length)
        self.n_truncated = encoded.n_truncated
        out = np.empty((len(encoded), self.module.head.out_features), dtype=np.float32)
        model = self.backbone.model
        was_training = model.training
        model.eval()
        self.module.eval()
        try:
            with torch.inference_mode():
                for idx, batch in self.backbone.batches(encoded, self.batch_size):
                    states = batch_token_states(self.backbone, batch, self.layers).float()
                    lengths = batch["attention_mask"].sum(dim=1)
                    out[idx] = self.module(states, lengths).float().cpu().numpy()
        finally:
            model.train(was_training)
        return out

    def state(self) -> PredictorState:
        lstm = self.module.lstm
        tensors: Tensors = {name: p.detach().cpu().contiguous() for name, p in self.module.named_parameters()}
        return PredictorState(
            {"bilstm": tensors},
            {
                "type": self.type_name,
                "layers": list(self.layers),
                "input_size": lstm.input_size,
                "hidden_size": lstm.hidden_size,
                "num_layers": lstm.num_layers,
                "n_classes": self.module.head.out_features,
                "dropout": self.module.dropout.p,
                "layer_width": self.module.layer_width,
            },
        )

    @classmethod
    def from_state(cls, context: FitContext, strategy: Strategy, state: PredictorState) -> BiLSTMPredictor:
        from ..training.state_networks import BiLSTMHead

        meta = state.meta
        width = meta.get("layer_width")
        module = BiLSTMHead(
            int(meta["input_size"]),
            int(meta["hidden_size"]),
            int(meta["num_layers"]),
            int(meta["n_classes"]),
            float(meta["dropout"]),
            int(width) if width else None,
        )
        load_trained(module, state.files["bilstm"], "bilstm.safetensors")
        module.to(context.backbone.device).eval()
        return cls(
            context.backbone,
            module,
            tuple(int(i) for i in meta["layers"]),
            context.max_length,
            context.batch_size,
            progress=context.progress,
        )


__all__ = ["BiLSTM", "BiLSTMPredictor"]
