"""Fitted predictors: what a strategy's fit returns, and what a bundle stores.

Two shapes cover every strategy so far:

- :class:`EmbeddingHead`: a head (the task's: logistic, one-vs-rest or ridge) on pooled hidden states
  of a body that is the base model (``features``) or a tuned copy of it (``setfit``);
- :class:`NetworkPredictor`: a tuned network, body and linear head (``freeze``, ``full``,
  ``reinit``, ``lora``).

Each has ``logits(inputs)`` and ``proba(inputs)``, ``state()`` (tensors by file stem, and
JSON metadata) and ``from_state(...)``, the inverse used when a bundle is loaded. A new
strategy may bring its own predictor class: registering it under ``type_name`` lets
bundles find it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import UnfreezeError

if TYPE_CHECKING:
    from pathlib import Path

    from ..export.onnx import ExportResult
    from ..features.embed import Embeddings
    from ..features.heads import FittedHead
    from ..models.backbone import Backbone, Encoded, TextInput
    from ..strategies.base import FitContext, Strategy
    from ..training.model import TextClassificationModel

Tensors = dict[str, object]  # name -> numpy array or torch tensor


@dataclass
class PredictorState:
    """What a bundle stores of a predictor: tensors per file stem (``head`` -> head.safetensors), and metadata."""

    files: dict[str, Tensors]
    meta: dict


PREDICTORS: dict[str, type[Predictor]] = {}


def register_predictor(cls: type[Predictor]) -> type[Predictor]:
    PREDICTORS[cls.type_name] = cls
    return cls


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


class Predictor:
    """Base class: a fitted model that maps inputs to class scores (columns: class indices 0..K-1)."""

    type_name: ClassVar[str] = ""
    numpy_files: ClassVar[frozenset[str]] = frozenset()  # file stems read as numpy arrays (the rest: torch)
    backbone: Backbone | None  # None for a predictor that runs no PyTorch model (an ONNX export)
    batch_size: int  # inputs per forward pass when predicting
    progress: bool  # show a progress bar when predicting
    precision: str = "fp32"  # what prediction's forward passes run in ("bf16": a rounded copy of the model)

    def logits(self, inputs: Sequence[TextInput]) -> np.ndarray:
        """Unnormalised class scores, [n_inputs, n_classes]."""
        raise NotImplementedError

    def proba(self, inputs: Sequence[TextInput]) -> np.ndarray:
        return softmax(self.logits(inputs))

    def state(self) -> PredictorState:
        raise NotImplementedError

    def n_outputs(self) -> int | None:
        """How many classes the fitted model scores (None when it cannot say without running)."""
        return None

    @classmethod
    def from_state(cls, context: FitContext, strategy: Strategy, state: PredictorState) -> Predictor:
        raise NotImplementedError

    def export_onnx(
        self,
        classes: np.ndarray,
        folder: Path,
        check_inputs: list,
        check_labels: list | None,
        batch_size: int,
        **options,
    ) -> tuple[str, ExportResult]:
        """Write this predictor's ONNX export into ``folder``, checked against PyTorch on ``check_inputs``
        (``check_labels``: their labels, None where unknown); returns the export's kind ("heads" or
        "network") and its result. A predictor class without an export leaves this alone, and
        ``unfreeze export`` refuses its bundles (see :meth:`exports_onnx`)."""
        raise NotImplementedError

    @classmethod
    def exports_onnx(cls) -> bool:
        """Whether this class has an ONNX export: it (or a base class) implements ``export_onnx``."""
        return cls.export_onnx is not Predictor.export_onnx


@register_predictor
@dataclass
class EmbeddingHead(Predictor):
    """A head on pooled hidden states; the body is the base model or, with ``tuned``, a tuned copy.

    The head is the task's (``unfreeze.features.heads``): a logistic regression (single), one per label
    (multilabel), or ridge (regression); ``logits`` are its raw outputs [n, n_outputs]."""

    type_name: ClassVar[str] = "embedding_head"
    numpy_files: ClassVar[frozenset[str]] = frozenset({"head"})

    backbone: Backbone
    pooling: str
    layers: tuple[int, ...]
    max_length: int
    batch_size: int
    head: FittedHead | None
    use_cache: bool = True  # the embedding cache is keyed by the base model's weights: never for a tuned body
    progress: bool = True
    tuned: bool = False
    # the precision embeddings are computed in: a frozen body is given in it (a shared bf16 copy); a tuned
    # body in fp32 embeds through a bf16 copy of itself, made on first use
    precision: str = "fp32"
    n_truncated: int = field(default=0, init=False)
    _rounded: Backbone | None = field(default=None, init=False, repr=False)

    def embedding_backbone(self) -> Backbone:
        """The model the embeddings run on, in ``precision``."""
        import torch

        if self.precision != "bf16" or self.backbone.dtype == torch.bfloat16:
            return self.backbone
        if self._rounded is None:
            import copy

            from ..models.backbone import Backbone

            model = copy.deepcopy(self.backbone.model).to(torch.bfloat16).eval()
            self._rounded = Backbone(model, self.backbone.tokenizer, self.backbone.reference)
        return self._rounded

    def embed(self, inputs: Sequence[TextInput]) -> Embeddings:
        from ..features.embed import embed

        result = embed(
            self.embedding_backbone(),
            inputs,
            self.layers,
            self.pooling,
            self.max_length,
            self.batch_size,
            use_cache=self.use_cache and not self.tuned,
            progress=self.progress,
            use_pool=not self.tuned,
        )
        self.n_truncated = result.n_truncated
        return result

    def features(self, inputs: Sequence[TextInput]) -> np.ndarray:
        return self.embed(inputs).features(self.layers)

    def fitted_head(self) -> FittedHead:
        if self.head is None:
            raise RuntimeError("this EmbeddingHead has no fitted head yet")
        return self.head

    def logits(self, inputs: Sequence[TextInput]) -> np.ndarray:
        """The head's raw outputs [n, n_outputs]: class scores (two classes: 0 and the log-odds of class 1),
        each label's log-odds (multilabel), or the standardised score (regression)."""
        return self.fitted_head().logits(self.features(inputs))

    def proba(self, inputs: Sequence[TextInput]) -> np.ndarray:
        return self.fitted_head().predict_proba(self.features(inputs))

    def n_outputs(self) -> int | None:
        return self.fitted_head().n_outputs

    def state(self) -> PredictorState:
        tensors, meta = self.fitted_head().state()
        files: dict[str, Tensors] = {"head": dict(tensors)}
        if self.tuned:
            files["trained"] = trained_tensors(self.backbone.model)
        return PredictorState(
            files, {"type": self.type_name, "head": meta, "tuned": self.tuned, "precision": self.precision}
        )

    @classmethod
    def from_state(cls, context: FitContext, strategy: Strategy, state: PredictorState) -> EmbeddingHead:
        from ..features.heads import head_from_state

        backbone = context.backbone
        tuned = bool(state.meta.get("tuned"))
        if tuned:
            backbone.model = strategy.prepare(backbone)
            load_trained(backbone.model, state.files["trained"], "trained.safetensors")
            backbone.model.eval()
        head = head_from_state(state.files["head"], state.meta["head"])
        return cls(
            backbone,
            context.pooling,
            context.layers,
            context.max_length,
            context.batch_size,
            head,
            use_cache=context.cache,
            progress=context.progress,
            tuned=tuned,
            precision=context.inference_precision,
        )

    def export_onnx(
        self,
        classes: np.ndarray,
        folder: Path,
        check_inputs: list,
        check_labels: list | None,
        batch_size: int,
        **options,
    ) -> tuple[str, ExportResult]:
        """One graph to the pooled layers; the logistic head is applied after it, in numpy."""
        from ..export.manifest import DEFAULT_HEAD
        from ..export.onnx import ExportHead, write_heads_export

        head = ExportHead(self.pooling, list(self.layers), classes, self.head)
        labels = None if check_labels is None else {DEFAULT_HEAD: check_labels}
        return "heads", write_heads_export(
            self.backbone,
            {DEFAULT_HEAD: head},
            folder,
            max_length=self.max_length,
            check_inputs=check_inputs,
            check_labels=labels,
            batch_size=batch_size,
            **options,
        )


def rebuilt_network(context: FitContext, n_outputs: int) -> TextClassificationModel:
    """The untrained network a bundle's tensors go into: the task's (tokens: a head per token), or, with no task
    in ``context``, pooled states and a linear head."""
    from ..training import TextClassificationModel

    if context.task is None:
        return TextClassificationModel(context.backbone, n_outputs, context.pooling, context.layers)
    return context.task.network(context.backbone, context.pooling, context.layers, n_outputs)


@register_predictor
@dataclass
class NetworkPredictor(Predictor):
    """A tuned network: the body (the blocks above ``frozen_k`` trained) and a linear head."""

    type_name: ClassVar[str] = "network"

    backbone: Backbone
    network: TextClassificationModel
    frozen_k: int
    prefix_key: str  # the fingerprint of the model the frozen prefix runs on: its states' key in a sweep's pool
    max_length: int
    batch_size: int
    prefix_cache: bool = True
    progress: bool = False  # prediction of a tuned network shows no bar
    prefix_backbone: Backbone | None = None  # the shared base model in the inference precision (None: backbone)
    precision: str = "fp32"  # work without gradients: the prefix pass, prediction on a GPU
    n_truncated: int = field(default=0, init=False)

    def logits(self, inputs: Sequence[TextInput]) -> np.ndarray:
        from ..features.embed import input_keys

        encoded = self.backbone.encode(inputs, self.max_length)
        return self.encoded_logits(encoded, input_keys(inputs))

    def encoded_logits(self, encoded: Encoded, keys: list[str] | None = None) -> np.ndarray:
        """Logits of tokenised examples (a token task's windows: [n, tokens, K]); ``keys`` name them in a
        sweep's prefix pool (None: no pool)."""
        from ..training import predict_logits
        from ..training.prefix import compute_prefix_states, prefix_pool_active

        self.n_truncated = encoded.n_truncated
        prefix = None
        if self.frozen_k >= 1 and self.prefix_cache and keys is not None and prefix_pool_active():
            # in a sweep, the frozen prefix of the test texts is computed once for every cell
            states = compute_prefix_states(
                self.prefix_backbone or self.backbone,
                encoded,
                [self.frozen_k],
                self.batch_size,
                pool_key=(self.prefix_key, encoded.max_length),
                keys=keys,
            )
            prefix = states[self.frozen_k]
        # a tuned network predicts under bf16 autocast on a GPU with fast bf16; on a CPU it stays fp32
        bf16 = self.precision == "bf16" and self.backbone.device.type == "cuda"
        return predict_logits(self.network, self.backbone, encoded, self.batch_size, prefix, bf16=bf16)

    def n_outputs(self) -> int | None:
        return self.network.head.out_features

    def state(self) -> PredictorState:
        return PredictorState(
            {"trained": trained_tensors(self.network)},
            {"type": self.type_name, "n_classes": self.network.head.out_features, "prefix_cache": self.prefix_cache},
        )

    @classmethod
    def from_state(cls, context: FitContext, strategy: Strategy, state: PredictorState) -> NetworkPredictor:
        import torch

        backbone = context.backbone
        torch.manual_seed(0)  # prepare may draw (re-initialised blocks); the saved tensors overwrite what trains
        backbone.model = strategy.prepare(backbone)
        network = rebuilt_network(context, int(state.meta.get("n_classes", context.n_classes)))
        load_trained(network, state.files["trained"], "trained.safetensors")
        network.to(backbone.device).eval()
        backbone.model.eval()
        prefix_key = (
            context.inference_backbone.fingerprint()
            if context.inference_backbone is not None
            else context.base_fingerprint
        )
        return cls(
            backbone,
            network,
            strategy.frozen_blocks(backbone.num_blocks),
            prefix_key,
            context.max_length,
            context.batch_size,
            prefix_cache=bool(state.meta.get("prefix_cache", True)),
            prefix_backbone=context.inference_backbone,
            precision=context.inference_precision,
        )

    def export_onnx(
        self,
        classes: np.ndarray,
        folder: Path,
        check_inputs: list,
        check_labels: list | None,
        batch_size: int,
        **options,
    ) -> tuple[str, ExportResult]:
        """One graph to the logits, the network as loaded (a LoRA body merged into its weights, on a copy): a
        strategy that changes the network's structure exports without code of its own."""
        from ..export.onnx import write_network_export

        return "network", write_network_export(
            self.network,
            self.backbone,
            classes,
            folder,
            max_length=self.max_length,
            check_inputs=check_inputs,
            check_labels=check_labels,
            batch_size=batch_size,
            **options,
        )


def predictor_class(type_name: str) -> type[Predictor]:
    if type_name not in PREDICTORS:
        raise UnfreezeError(f"unknown predictor type {type_name!r} (known: {', '.join(PREDICTORS)})")
    return PREDICTORS[type_name]


def trained_tensors(module) -> Tensors:
    """The parameters that training changed (those that require gradients), on the CPU."""
    return {name: p.detach().cpu().contiguous() for name, p in module.named_parameters() if p.requires_grad}


def load_trained(module, saved: Tensors, file_name: str) -> None:
    """Copy saved trained tensors into ``module``; every saved name must match a parameter of that shape."""
    import torch

    own = dict(module.named_parameters())
    unknown = sorted(set(saved) - set(own))
    if unknown:
        raise ValueError(
            f"{file_name} holds tensors this model does not have (first: {unknown[0]}): it was "
            "made by another unfreeze or model version"
        )
    with torch.no_grad():
        for name, tensor in saved.items():
            tensor = torch.as_tensor(tensor)
            if own[name].shape != tensor.shape:
                raise ValueError(
                    f"{file_name}: {name} has shape {tuple(tensor.shape)}, the model expects {tuple(own[name].shape)}"
                )
            own[name].copy_(tensor.to(own[name].device))
