"""Classifier heads on pooled features, saved as safetensors + JSON (never pickle).

``LogisticHead`` standardises features and fits scikit-learn's L2 logistic regression,
with C chosen by stratified cross-validation unless given.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

C_GRID = np.logspace(-4, 2, 13)


class LogisticHead:
    """Standardisation + L2 logistic regression over class indices 0..K-1."""

    def __init__(self, C: float | None = None, cv: int = 5, seed: int = 0, max_iter: int = 2000,
                 class_weight: str | None = None) -> None:
        self.C = C
        self.cv = cv
        self.seed = seed
        self.max_iter = max_iter
        self.class_weight = class_weight

    def fit(self, features: np.ndarray, y: np.ndarray) -> LogisticHead:
        features = np.asarray(features, dtype=np.float64)
        self.mean_ = features.mean(axis=0)
        self.scale_ = features.std(axis=0)
        self.scale_[self.scale_ < 1e-12] = 1.0  # constant features stay constant instead of dividing by 0
        z = self._standardise(features)
        smallest_class = int(np.bincount(y).min())
        folds = min(self.cv, smallest_class)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # sklearn 1.8+ announces API changes of LogisticRegressionCV we do not depend on
            warnings.simplefilter("ignore", FutureWarning)
            if self.C is None and folds >= 2:
                search = LogisticRegressionCV(
                    Cs=C_GRID, cv=StratifiedKFold(folds, shuffle=True, random_state=self.seed),
                    scoring="accuracy", max_iter=self.max_iter, random_state=self.seed,
                    class_weight=self.class_weight,
                )
                search.fit(z, y)
                self.C_ = float(np.atleast_1d(search.C_)[0])
            else:
                # too few examples per class to cross-validate: sklearn's default strength
                self.C_ = 1.0 if self.C is None else float(self.C)
            model = LogisticRegression(C=self.C_, max_iter=self.max_iter, random_state=self.seed,
                                       class_weight=self.class_weight)
            model.fit(z, y)
        self.model_ = model
        return self

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float64) - self.mean_) / self.scale_

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(self._standardise(features))

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(self._standardise(features))

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        tensors = {"mean": self.mean_, "scale": self.scale_, "coef": self.model_.coef_,
                   "intercept": self.model_.intercept_}
        return tensors, {"type": "logistic", "C": self.C_, "n_classes": len(self.model_.classes_)}

    def save(self, folder: Path, prefix: str = "head") -> dict[str, object]:
        tensors, meta = self.state()
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / f"{prefix}.safetensors"))
        return meta

    @classmethod
    def load(cls, folder: Path, meta: dict, prefix: str = "head") -> LogisticHead:
        return cls.from_state(load_file(str(folder / f"{prefix}.safetensors")), meta)

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], meta: dict) -> LogisticHead:
        """The inverse of ``state()``: a head that predicts exactly as the saved one."""
        head = cls(C=float(meta["C"]))
        head.C_ = float(meta["C"])
        head.mean_, head.scale_ = tensors["mean"], tensors["scale"]
        # Rebuild the fitted estimator from its arrays: these attributes are all that
        # LogisticRegression's predict_proba reads.
        model = LogisticRegression(C=head.C_)
        model.coef_ = tensors["coef"]
        model.intercept_ = tensors["intercept"]
        model.classes_ = np.arange(int(meta["n_classes"]))
        model.n_features_in_ = tensors["coef"].shape[1]
        head.model_ = model
        return head


@dataclass
class Head:
    """One named head of a multi-head bundle: how to pool the backbone's hidden states, and the fitted head."""

    name: str
    pooling: str
    layers: tuple[int, ...]
    classes: np.ndarray
    head: LogisticHead
    info: dict = field(default_factory=dict)  # params, fit record, metrics, data source, time added
