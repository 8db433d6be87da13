"""Classifier heads on pooled features, saved as safetensors + JSON (never pickle).

``LogisticHead`` standardises features and fits scikit-learn's L2 logistic regression,
with C chosen by stratified cross-validation unless given.

Choosing C walks each fold's regularisation path from strong to weak, warm-starting every
fit from the previous C's solution, exactly as ``LogisticRegressionCV`` does. What makes
it fast:

- BLAS runs on one thread during the fit. The problems are small matrix-vector products
  (1,500 x 384 for MiniLM); OpenBLAS threads cost more to wake and synchronise than they
  save, and on a busy 2-core machine they made LogisticRegressionCV's search about 75x
  slower (26 s instead of 0.35 s on 1,500 MiniLM embeddings). Large problems use the cores
  for folds instead.
- The path stops once the cross-validated accuracy has clearly fallen past its peak: the
  weakly regularised end of the path is where lbfgs needs the most iterations, and where
  the curve of an L2 logistic regression does not come back up.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from ..errors import invalid_parameter
from .saved import SavedHead

# The Cs of release 0.1.0 (on standardised features): the same grid keeps the chosen C, and
# so the fitted head, what it was.
C_GRID = np.logspace(-4, 2, 13)
# The path stops after this many consecutive Cs whose mean fold accuracy is below the best
# so far by more than the margin (at least 1 point, and at least 2 examples' worth on small
# sets, where one example moves the accuracy by more than a point).
PATH_PATIENCE = 3
PATH_MARGIN = 0.01
# Above this many multiply-adds per pass over a training fold (rows x features x outputs),
# folds run in parallel threads; below it a thread costs more than the fit.
PARALLEL_FOLDS_ABOVE = 4_000_000
CLASS_WEIGHTS = (None, "balanced")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LogisticHead(SavedHead):
    """Standardisation + L2 logistic regression over class indices 0..K-1.

    Parameters
    ----------
    C : float or None
        Inverse regularisation strength on standardised features; ``None`` chooses it from
        ``C_GRID`` by stratified ``cv``-fold cross-validated accuracy.
    cv : int
        Number of folds (reduced to the size of the smallest class when that is smaller;
        below 2, C falls back to 1.0).
    seed : int
        Seeds the fold split; the fit is otherwise deterministic.
    max_iter : int
        Iteration limit of each lbfgs fit.
    class_weight : None or "balanced"
        Passed to scikit-learn: "balanced" weighs each class inversely to its frequency.
    """

    def __init__(
        self, C: float | None = None, cv: int = 5, seed: int = 0, max_iter: int = 2000, class_weight: str | None = None
    ) -> None:
        self.C = C
        self.cv = cv
        self.seed = seed
        self.max_iter = max_iter
        self.class_weight = class_weight

    def fit(self, features: np.ndarray, y: np.ndarray) -> LogisticHead:
        """Standardise ``features`` [n, d], choose C when not given, fit on everything.

        Returns
        -------
        LogisticHead
            ``self``, with ``mean_``, ``scale_``, ``C_`` and ``model_`` set, and, when C was
            chosen, ``cv_scores_``: the mean fold accuracy of each C of ``C_GRID`` visited.
        """
        if self.class_weight not in CLASS_WEIGHTS:
            raise invalid_parameter("class_weight", "LogisticHead", "None or 'balanced'", self.class_weight)
        features = np.asarray(features, dtype=np.float64)
        y = np.asarray(y)
        self.__dict__.pop("cv_scores_", None)  # a refit with a given C must not keep the last search's
        self.mean_ = features.mean(axis=0)
        self.scale_ = features.std(axis=0)
        self.scale_[self.scale_ < 1e-12] = 1.0  # constant features stay constant instead of dividing by 0
        z = self._standardise(features)
        smallest_class = int(np.bincount(y).min())
        folds = min(self.cv, smallest_class)
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.C is None and folds >= 2:
                self.C_, self.cv_scores_ = self._choose_C(z, y, folds)
            else:
                # too few examples per class to cross-validate: sklearn's default strength
                self.C_ = 1.0 if self.C is None else float(self.C)
            self.model_ = self._estimator(self.C_).fit(z, y)
        return self

    def _estimator(self, C: float, warm_start: bool = False) -> LogisticRegression:
        return LogisticRegression(
            C=C, max_iter=self.max_iter, random_state=self.seed, class_weight=self.class_weight, warm_start=warm_start
        )

    def _choose_C(self, z: np.ndarray, y: np.ndarray, folds: int) -> tuple[float, np.ndarray]:
        """The C of ``C_GRID`` with the best mean fold accuracy (the smallest C among ties,
        like ``LogisticRegressionCV``), and the mean accuracies of the Cs visited."""
        splits = StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(z, y)
        # each fold's arrays once, not once per C
        data = [(z[train], y[train], z[val], y[val]) for train, val in splits]
        models = [self._estimator(C_GRID[0], warm_start=True) for _ in data]

        def step(i: int, C: float) -> float:
            z_train, y_train, z_val, y_val = data[i]
            models[i].set_params(C=C).fit(z_train, y_train)  # warm-started from the previous C
            return float(np.mean(models[i].predict(z_val) == y_val))

        n_classes = len(np.unique(y))
        work = len(data[0][1]) * z.shape[1] * (1 if n_classes == 2 else n_classes)
        workers = min(len(data), _usable_cores()) if work > PARALLEL_FOLDS_ABOVE else 1
        margin = max(PATH_MARGIN, 2.0 / len(y))
        means: list[float] = []
        with ThreadPoolExecutor(workers) if workers > 1 else _Serial() as pool:
            for C in C_GRID:
                # each fold owns its model, so the result does not depend on thread timing
                means.append(float(np.mean(list(pool.map(step, range(len(data)), [C] * len(data))))))
                best = max(means)
                if len(means) > PATH_PATIENCE and all(m < best - margin for m in means[-PATH_PATIENCE:]):
                    break
        return float(C_GRID[int(np.argmax(means))]), np.asarray(means)

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float64) - self.mean_) / self.scale_

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities [n, K] of ``features`` [n, d]."""
        return self.model_.predict_proba(self._standardise(features))

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """Scores before the softmax: [n] for two classes, [n, K] otherwise."""
        return self.model_.decision_function(self._standardise(features))

    @property
    def n_outputs(self) -> int:
        return len(self.model_.classes_)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Scores before the softmax, [n, K]; two classes: [0, the log-odds of class 1] (the same softmax)."""
        scores = self.decision_function(features)
        # scikit-learn gives one column for two classes: the log-odds of class 1
        return np.column_stack([np.zeros_like(scores), scores]) if scores.ndim == 1 else scores

    def record(self) -> dict[str, object]:
        """What a fit record says about the fitted head."""
        return {"C": self.C_}

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """The arrays (for safetensors) and the JSON-able description of the fitted head."""
        tensors = {
            "mean": self.mean_,
            "scale": self.scale_,
            "coef": self.model_.coef_,
            "intercept": self.model_.intercept_,
        }
        meta: dict[str, object] = {"type": "logistic", "C": self.C_, "n_classes": len(self.model_.classes_)}
        if self.class_weight is not None:  # absent otherwise, so default heads are written as before
            meta["class_weight"] = self.class_weight
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: Mapping[str, object], meta: dict) -> LogisticHead:
        """The inverse of ``state()``: a head that predicts exactly as the saved one."""
        arrays = {k: np.asarray(v) for k, v in tensors.items()}
        head = cls(C=float(meta["C"]), class_weight=meta.get("class_weight"))
        head.C_ = float(meta["C"])
        head.mean_, head.scale_ = arrays["mean"], arrays["scale"]
        # Rebuild the fitted estimator from its arrays: these attributes are all that
        # LogisticRegression's predict_proba reads.
        model = LogisticRegression(C=head.C_, class_weight=head.class_weight)
        model.coef_ = arrays["coef"]
        model.intercept_ = arrays["intercept"]
        model.classes_ = np.arange(int(meta["n_classes"]))
        model.n_features_in_ = arrays["coef"].shape[1]
        head.model_ = model
        return head


class _Serial:
    """The part of an executor that ``_choose_C`` uses, in the calling thread."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def map(fn, *iterables):
        return map(fn, *iterables)


@dataclass
class Head:
    """One named head of a multi-head bundle: how to pool the backbone's hidden states, and the fitted head."""

    name: str
    pooling: str
    layers: tuple[int, ...]
    classes: np.ndarray
    head: LogisticHead  # or any fitted head of unfreeze.features.heads (its task's: ``logits``, ``state()``)
    info: dict = field(default_factory=dict)  # params, fit record, metrics, data source, time added
    # the fitted task (``unfreeze.tasks``) that turns the head's scores into outputs; None: single (a head
    # of an earlier release)
    task: Any = None
