"""``Classifier``: a scikit-learn compatible text classifier on a pretrained transformer.

The constructor only stores parameters; ``fit`` validates them, loads the backbone,
and fits; fitted state ends in ``_``. ``clone``, ``cross_val_score`` and pipelines work.
"""

from __future__ import annotations

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

STRATEGIES = ("features",)

# Loaded backbones, shared by every Classifier in the process: clones and CV folds
# should not reload weights. Only strategies that never change weights use them.
_BACKBONES: dict[tuple[str, str], Backbone] = {}


def shared_backbone(reference: str, device: str | None = None) -> Backbone:
    key = (reference, str(device))
    if key not in _BACKBONES:
        _BACKBONES[key] = Backbone.load(reference, device=device)
    return _BACKBONES[key]


class Classifier(ClassifierMixin, BaseEstimator):
    """Text classifier: a pretrained backbone, pooling, and a trained head.

    Parameters
    ----------
    model : str
        Catalog name (``unfreeze models``), local model folder, or hub id.
    strategy : str
        How much of the model is trained. ``"features"``: nothing; a logistic
        regression on pooled hidden states.
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

    # -- validation ---------------------------------------------------------------------

    def _validate_params(self) -> None:
        owner = type(self).__name__
        if self.strategy not in STRATEGIES:
            raise invalid_parameter("strategy", owner, f"one of {', '.join(map(repr, STRATEGIES))}", self.strategy)
        if not isinstance(self.model, (str, Path)) or not str(self.model):
            raise invalid_parameter("model", owner, "a catalog name, model folder or hub id", self.model)
        for name in ("max_length", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise invalid_parameter(name, owner, "an int >= 1", value)
        if not isinstance(self.cv, numbers.Integral) or self.cv < 2:
            raise invalid_parameter("cv", owner, "an int >= 2", self.cv)
        if self.C is not None and (not isinstance(self.C, numbers.Real) or self.C <= 0):
            raise invalid_parameter("C", owner, "a float > 0 or None", self.C)
        if self.pooling != "auto":
            resolve_pooling(self.pooling, False, owner)

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
        self._validate_params()
        inputs = self._check_inputs(X)
        y_arr = np.asarray(list(y.tolist() if hasattr(y, "tolist") else y))
        if len(y_arr) != len(inputs):
            raise UnfreezeError(f"X has {len(inputs)} inputs but y has {len(y_arr)} labels; they must match.")
        check_classification_targets(y_arr)
        self.classes_, y_idx = np.unique(y_arr, return_inverse=True)
        if len(self.classes_) < 2:
            raise UnfreezeError(f"y has a single class ({self.classes_[0]!r}); a classifier needs at least two.")

        start = time.perf_counter()
        backbone = shared_backbone(str(self.model), self.device)
        self.pooling_ = resolve_pooling(self.pooling, backbone.is_decoder, type(self).__name__)
        self.layers_ = parse_layers(self.layers, backbone.num_blocks, type(self).__name__)
        features = self._features(backbone, inputs)
        self.head_ = LogisticHead(C=self.C, cv=self.cv, seed=self.seed).fit(features, y_idx)
        self.backbone_ = backbone
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _features(self, backbone: Backbone, inputs: list[TextInput]) -> np.ndarray:
        result = embed(backbone, inputs, self.layers_, self.pooling_, self.max_length, self.batch_size,
                       use_cache=self.cache, progress=self.progress)
        self.n_truncated_ = result.n_truncated
        self.max_length_ = result.max_length
        return result.features(self.layers_)

    # -- prediction -------------------------------------------------------------------------

    def predict_proba(self, X: Sequence[TextInput]) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "head_")
        return self.head_.predict_proba(self._features(self.backbone_, self._check_inputs(X)))

    def decision_function(self, X: Sequence[TextInput]) -> np.ndarray:
        check_is_fitted(self, "head_")
        return self.head_.decision_function(self._features(self.backbone_, self._check_inputs(X)))

    def predict(self, X: Sequence[TextInput]) -> np.ndarray:
        """Labels, in the values that ``fit`` was given."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def evaluate(self, X: Sequence[TextInput], y: Sequence) -> dict[str, float]:
        """Accuracy, macro-F1 and MCC on ``X``, ``y``."""
        return classification_metrics(list(y), self.predict(X).tolist())

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        """Write a bundle folder (JSON + safetensors); atomic: all or nothing."""
        from .bundle import save_bundle

        return save_bundle(self, Path(path), metrics=metrics)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> Classifier:
        """Load a bundle written by ``save``; never unpickles."""
        from .bundle import load_bundle

        return load_bundle(Path(path), device=device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
