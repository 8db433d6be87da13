"""``Classifier``: a scikit-learn compatible text classifier on a pretrained transformer.

The constructor only stores parameters; ``fit`` validates them, loads the backbone,
and fits; fitted state ends in ``_``. ``clone``, ``cross_val_score`` and pipelines work.
"""

from __future__ import annotations

import copy
import numbers
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .embed import embed
from .errors import UnfreezeError, invalid_parameter
from .heads import LogisticHead
from .metrics import classification_metrics
from .models.backbone import Backbone, TextInput
from .models.catalog import DEFAULT_MODEL
from .models.pooling import parse_layers, resolve_pooling
from .strategies import STRATEGIES, StrategyConfig, strategy_config

# body learning rates when none is given: adapters need larger steps than full weights
# (PEFT's examples use 1e-4..1e-3); 2e-5 is SetFit's body rate
DEFAULT_LEARNING_RATES = {"lora": 5e-4, "setfit": 2e-5}

# Loaded backbones, shared by every Classifier in the process: clones and CV folds
# should not reload weights. Only strategies that never change weights use them.
_BACKBONES: dict[tuple[str, str], Backbone] = {}


def _check_int(value: object, name: str, owner: str, low: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise invalid_parameter(name, owner, f"an int >= {low}", value)


def shared_backbone(reference: str, device: str | None = None) -> Backbone:
    key = (reference, str(device))
    if key not in _BACKBONES:
        _BACKBONES[key] = Backbone.load(reference, device=device)
    return _BACKBONES[key]


def private_backbone(reference: str, device: str | None = None) -> Backbone:
    """A copy of the shared backbone that training may change."""
    base = shared_backbone(reference, device)
    return Backbone(copy.deepcopy(base.model), base.tokenizer, base.reference)


class Classifier(ClassifierMixin, BaseEstimator):
    """Text classifier: a pretrained backbone, pooling, and a trained head.

    Parameters
    ----------
    model : str
        Catalog name (``unfreeze models``), local model folder, or hub id.
    strategy : {"features", "freeze", "full", "reinit", "lora", "setfit"}
        How much of the model is trained. ``features``: nothing, a logistic regression
        on pooled states. ``freeze``: the top L-k blocks and a linear head. ``full``:
        everything. ``reinit``: everything above k after re-initialising the top m
        blocks. ``lora``: low-rank adapters (PEFT) and the head. ``setfit``: the body
        contrastively on pairs (above k), then a logistic head.
    pooling : {"auto", "mean", "cls", "last", "max"}
        ``auto`` is ``last`` for decoders and ``mean`` otherwise.
    layers : str, int or list of int
        Hidden states to pool: 0 embeddings, -1 the last block; several are concatenated.
    max_length : int
        Tokens per input; longer inputs are truncated (counted in ``n_truncated_``).
    batch_size : int
        Inputs per forward pass.
    C : float or None
        Inverse L2 strength of the logistic head; None picks it by stratified CV.
    cv : int
        Folds for choosing C.
    seed : int
        Seeds the folds and the head.
    cache : bool
        Reuse pooled embeddings from the on-disk cache.
    device : str or None
        ``"cpu"``, ``"cuda"``...; None picks CUDA when present.
    progress : bool
        Show progress bars.
    k : int or None
        Frozen blocks from the bottom (freeze: default L // 2; reinit, setfit: default 0).
    m : int
        reinit: top blocks to re-initialise.
    r, lora_alpha, lora_dropout, target_modules, top_blocks
        lora: rank, scale numerator, adapter dropout, module names inside a block
        (default: the family's attention projections), adapt only the top N blocks.
    num_iterations : int
        setfit: pair rounds per example.
    epochs : int or None
        Passes over the data (default 3; setfit 1).
    learning_rate : float or None
        Body learning rate (default 5e-5; lora 5e-4; setfit 2e-5).
    head_learning_rate : float
        Learning rate of the new linear head.
    weight_decay, warmup_ratio, max_steps, grad_clip
        AdamW decay, linear warm-up fraction, optional step budget, gradient-norm clip.
    validation_fraction : float
        Held out of the training data for per-epoch validation, early stopping and best
        weights (0 disables).
    patience : int or None
        Epochs without validation improvement before stopping.
    class_weight : {None, "balanced"}
        Weights of the cross-entropy loss.
    prefix_cache : bool
        Run the frozen prefix once and train from its output.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        strategy: str = "features",
        pooling: str = "auto",
        layers: str | int | Sequence[int] = "-1",
        max_length: int = 256,
        batch_size: int = 32,
        C: float | None = None,
        cv: int = 5,
        seed: int = 0,
        cache: bool = True,
        device: str | None = None,
        progress: bool = True,
        k: int | None = None,
        m: int = 1,
        r: int = 8,
        lora_alpha: float = 16,
        lora_dropout: float = 0.1,
        target_modules: str | Sequence[str] | None = None,
        top_blocks: int | None = None,
        num_iterations: int = 20,
        epochs: int | None = None,
        learning_rate: float | None = None,
        head_learning_rate: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        max_steps: int | None = None,
        grad_clip: float = 1.0,
        validation_fraction: float = 0.1,
        patience: int | None = 2,
        class_weight: str | None = None,
        prefix_cache: bool = True,
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.pooling = pooling
        self.layers = layers
        self.max_length = max_length
        self.batch_size = batch_size
        self.C = C
        self.cv = cv
        self.seed = seed
        self.cache = cache
        self.device = device
        self.progress = progress
        self.k = k
        self.m = m
        self.r = r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.target_modules = target_modules
        self.top_blocks = top_blocks
        self.num_iterations = num_iterations
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.max_steps = max_steps
        self.grad_clip = grad_clip
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.class_weight = class_weight
        self.prefix_cache = prefix_cache

    # -- validation ---------------------------------------------------------------------

    def _validate_params(self) -> StrategyConfig:
        """Check the parameters that do not depend on the model; return the strategy's config."""
        owner = type(self).__name__
        if self.strategy not in STRATEGIES:
            raise invalid_parameter("strategy", owner, f"one of {', '.join(map(repr, STRATEGIES))}", self.strategy)
        if not isinstance(self.model, (str, Path)) or not str(self.model):
            raise invalid_parameter("model", owner, "a catalog name, model folder or hub id", self.model)
        for name in ("max_length", "batch_size"):
            _check_int(getattr(self, name), name, owner, 1)
        for name in ("epochs", "max_steps", "patience"):
            if getattr(self, name) is not None:
                _check_int(getattr(self, name), name, owner, 1)
        _check_int(self.cv, "cv", owner, 2)
        if self.C is not None and (not isinstance(self.C, numbers.Real) or self.C <= 0):
            raise invalid_parameter("C", owner, "a float > 0 or None", self.C)
        for name in ("learning_rate", "head_learning_rate"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, numbers.Real) or value <= 0):
                raise invalid_parameter(name, owner, "a float > 0", value)
        for name, high in (("weight_decay", None), ("warmup_ratio", 1.0), ("grad_clip", None)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or value < 0 or (high is not None and value > high):
                raise invalid_parameter(name, owner, f"a float in [0, {high}]" if high else "a float >= 0", value)
        if not isinstance(self.validation_fraction, numbers.Real) or not 0 <= self.validation_fraction < 1:
            raise invalid_parameter("validation_fraction", owner, "a float in [0, 1)", self.validation_fraction)
        if self.class_weight not in (None, "balanced"):
            raise invalid_parameter("class_weight", owner, "None or 'balanced'", self.class_weight)
        if self.pooling != "auto":
            resolve_pooling(self.pooling, False, owner)
        return strategy_config(self.strategy, self.get_params(), owner)

    @staticmethod
    def _check_inputs(X: Sequence[TextInput], what: str = "X") -> list[TextInput]:
        if isinstance(X, str):
            raise UnfreezeError(f"{what} must be a list of texts, not a single string. Wrap it: [text].")
        items = list(X.tolist() if hasattr(X, "tolist") else X)
        if not items:
            raise UnfreezeError(f"{what} is empty: give at least one text.")
        return items

    # -- fitting --------------------------------------------------------------------------

    def fit(self, X: Sequence[TextInput], y: Sequence) -> Classifier:
        """Fit on texts (or (text, text_pair) tuples) ``X`` and labels ``y``. Returns self."""
        config = self._validate_params()
        inputs = self._check_inputs(X)
        y_arr = np.asarray(list(y.tolist() if hasattr(y, "tolist") else y))
        if len(y_arr) != len(inputs):
            raise UnfreezeError(f"X has {len(inputs)} inputs but y has {len(y_arr)} labels; they must match.")
        check_classification_targets(y_arr)
        self.classes_, y_idx = np.unique(y_arr, return_inverse=True)
        if len(self.classes_) < 2:
            raise UnfreezeError(f"y has a single class ({self.classes_[0]!r}); a classifier needs at least two.")
        for name in ("model_", "head_", "fit_record_"):
            self.__dict__.pop(name, None)  # a refit must not keep the previous strategy's state

        start = time.perf_counter()
        owner = type(self).__name__
        if config.kind == "features":
            backbone = shared_backbone(str(self.model), self.device)
        else:
            backbone = private_backbone(str(self.model), self.device)
        self.base_fingerprint_ = shared_backbone(str(self.model), self.device).fingerprint()
        self.pooling_ = resolve_pooling(self.pooling, backbone.is_decoder, owner)
        self.layers_ = parse_layers(self.layers, backbone.num_blocks, owner)
        config.check(backbone)
        self.strategy_config_ = config
        if config.kind == "features":
            from .training.memory import PeakMemory

            with PeakMemory(backbone.device) as memory:
                features = self._features(backbone, inputs)
                self.head_ = LogisticHead(C=self.C, cv=self.cv, seed=self.seed).fit(features, y_idx)
            self.backbone_ = backbone
            self.fit_record_ = {"trainable_parameters": 0, "total_parameters": backbone.n_parameters(),
                                "peak_memory_bytes": memory.peak_bytes, "device": str(backbone.device),
                                "examples_seen": len(inputs)}
        else:
            self._fit_trained(config, backbone, inputs, y_idx)
        self.fit_seconds_ = time.perf_counter() - start
        self.fit_record_["seconds"] = self.fit_seconds_
        self.fit_record_["seed"] = self.seed
        return self

    def _train_config(self, config: StrategyConfig):
        from .training import TrainConfig

        setfit = config.kind == "setfit"
        return TrainConfig(
            epochs=self.epochs or (1 if setfit else 3),
            batch_size=self.batch_size,
            learning_rate=self.learning_rate or DEFAULT_LEARNING_RATES.get(config.name, 5e-5),
            head_learning_rate=self.head_learning_rate, weight_decay=self.weight_decay,
            warmup_ratio=self.warmup_ratio, max_steps=self.max_steps, grad_clip=self.grad_clip,
            patience=self.patience, class_weight=self.class_weight, seed=self.seed,
            prefix_cache=self.prefix_cache, progress=self.progress,
        )

    def _fit_trained(self, config: StrategyConfig, backbone: Backbone, inputs: list[TextInput],
                     y_idx: np.ndarray) -> None:
        import torch

        from .training import TextClassificationModel, train
        from .training.contrastive import train_contrastive

        owner = type(self).__name__
        frozen_k = config.frozen_blocks(backbone.num_blocks)
        if config.kind in ("loop", "setfit") and min(self.layers_) < frozen_k:
            raise invalid_parameter(
                "layers", owner, f"hidden states at or above the frozen blocks (>= {frozen_k}) for {config.name} "
                f"with k={frozen_k}", self.layers)
        torch.manual_seed(self.seed)  # the head's initial weights, re-initialised blocks
        backbone.model = config.prepare(backbone)
        encoded = backbone.encode(inputs, self.max_length)
        self.n_truncated_, self.max_length_ = encoded.n_truncated, encoded.max_length
        torch.manual_seed(self.seed)
        net = TextClassificationModel(backbone, len(self.classes_), self.pooling_, self.layers_)
        train_config = self._train_config(config)
        if config.kind == "setfit":
            record = train_contrastive(net, backbone, frozen_k, encoded, y_idx, config.num_iterations, train_config)
            backbone.model.eval()
            features = self._features(backbone, inputs, use_cache=False)
            self.head_ = LogisticHead(C=self.C, cv=self.cv, seed=self.seed).fit(features, y_idx)
        else:
            from .embed import input_keys

            train_idx, val_idx = self._validation_split(y_idx)
            val = (encoded.subset(val_idx), y_idx[val_idx]) if len(val_idx) else (None, None)
            keys = input_keys(inputs)
            # the prefix below k is the base model's, unchanged by prepare: its states are shared
            prefix_pool = ((self.base_fingerprint_, encoded.max_length), [keys[i] for i in train_idx],
                           [keys[i] for i in val_idx])
            record = train(net, backbone, frozen_k, encoded.subset(train_idx), y_idx[train_idx], train_config, *val,
                           prefix_pool=prefix_pool)
            self.model_ = net
        self.backbone_ = backbone
        self.fit_record_ = record.as_dict()

    def _validation_split(self, y_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stratified, seeded hold-out; none when too small to hold every class twice over."""
        everything = np.arange(len(y_idx))
        counts = np.bincount(y_idx)
        n_val = int(round(self.validation_fraction * len(y_idx)))
        if self.validation_fraction == 0 or n_val < len(counts) or counts.min() < 4:
            return everything, everything[:0]
        rng = np.random.default_rng(self.seed)
        val = []
        for c in range(len(counts)):
            members = rng.permutation(np.flatnonzero(y_idx == c))
            val.extend(members[: max(1, int(round(len(members) * self.validation_fraction)))].tolist())
        val_set = set(val)
        return np.array([i for i in everything if i not in val_set]), np.array(sorted(val))

    def _features(self, backbone: Backbone, inputs: list[TextInput], use_cache: bool | None = None) -> np.ndarray:
        result = embed(backbone, inputs, self.layers_, self.pooling_, self.max_length, self.batch_size,
                       use_cache=self.cache if use_cache is None else use_cache, progress=self.progress)
        self.n_truncated_ = result.n_truncated
        self.max_length_ = result.max_length
        return result.features(self.layers_)

    # -- prediction -------------------------------------------------------------------------

    def predict_proba(self, X: Sequence[TextInput]) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "classes_")
        if hasattr(self, "model_"):
            logits = self.decision_function(X)
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            return exp / exp.sum(axis=1, keepdims=True)
        return self.head_.predict_proba(self._head_features(X))

    def decision_function(self, X: Sequence[TextInput]) -> np.ndarray:
        """Logits of the trained linear head, or the logistic head's decision values."""
        check_is_fitted(self, "classes_")
        if hasattr(self, "model_"):
            from .embed import input_keys
            from .training import predict_logits
            from .training.prefix import compute_prefix_states, prefix_pool_active

            inputs = self._check_inputs(X)
            encoded = self.backbone_.encode(inputs, self.max_length)
            frozen_k = self.strategy_config_.frozen_blocks(self.backbone_.num_blocks)
            prefix = None
            if frozen_k >= 1 and self.prefix_cache and prefix_pool_active():
                # in a sweep, the frozen prefix of the test texts is computed once for every cell
                states, tuple_length = compute_prefix_states(
                    self.backbone_, encoded, [frozen_k], self.batch_size,
                    pool_key=(self.base_fingerprint_, encoded.max_length), keys=input_keys(inputs))
                prefix = (frozen_k, states[frozen_k], tuple_length)
            return predict_logits(self.model_, self.backbone_, encoded, self.batch_size, prefix)
        return self.head_.decision_function(self._head_features(X))

    def _head_features(self, X: Sequence[TextInput]) -> np.ndarray:
        check_is_fitted(self, "head_")
        # the embedding cache is for frozen backbones; a tuned (setfit) body is embedded afresh
        cached = self.cache and self.strategy_config_.kind == "features"
        return self._features(self.backbone_, self._check_inputs(X), use_cache=cached)

    def predict(self, X: Sequence[TextInput]) -> np.ndarray:
        """Labels, in the values that ``fit`` was given."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def evaluate(self, X: Sequence[TextInput], y: Sequence) -> dict[str, float]:
        """Accuracy, macro-F1 and MCC on ``X``, ``y``."""
        return classification_metrics(list(y), self.predict(X).tolist())

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        """Write a bundle folder (JSON + safetensors); atomic: all or nothing."""
        from .bundle import save_bundle

        return save_bundle(self, Path(path), metrics=metrics)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, head: str | None = None) -> Classifier:
        """Load a bundle written by ``save``; never unpickles. From a multi-head bundle, ``head``
        names the one to load (it may be omitted when there is only one)."""
        from .bundle import load_bundle

        return load_bundle(Path(path), device=device, head=head)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
