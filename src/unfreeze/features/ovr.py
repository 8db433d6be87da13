"""A multi-label head on pooled features: one L2 logistic regression per label (one-vs-rest).

``OneVsRestHead`` standardises features as ``LogisticHead`` does and fits scikit-learn's
binary ``LogisticRegression`` for each label of an indicator matrix [n, K]. Unless C is
given, **one C for every label** is chosen from ``C_GRID`` by the cross-validated
**micro-F1** (the multilabel task's score), pooled over the out-of-fold decisions at 0.5.
Why one C and not one per label (what ``OneVsRestClassifier(LogisticRegressionCV)`` does):
a per-label choice scores each label on its own folds, where a rare label has one or two
positives: its accuracy is best when it is never predicted (so strong regularisation wins
and its recall is lost) and its own F1 is mostly noise. One C judged on the pooled score
uses every label's decisions at once and optimises what the task reports.

The search is ``LogisticHead``'s fast path: one BLAS thread, each fold's models walk the
grid from strong to weak regularisation warm-started from the previous C, folds run in
threads on large problems, and the walk stops once the score has clearly fallen past its
peak. Folds are stratified by each row's rarest label. The out-of-fold decision scores at
the chosen C (``oof_logits_``) are kept: a multilabel task tunes its thresholds on them
when no validation split exists. A label that is always on (or always off) in the training
data, or in a fold's training part, gets a constant output instead of a fit.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from ..errors import invalid_parameter
from ..tasks.multilabel import rarest_label_groups
from .logistic import C_GRID, CLASS_WEIGHTS, PARALLEL_FOLDS_ABOVE, PATH_MARGIN, PATH_PATIENCE, _Serial, _usable_cores
from .saved import SavedHead

# the raw output of a label that never varied in the training data: sigmoid(±20) is 0 or 1 to 9 digits
CONSTANT_LOGIT = 20.0


class OneVsRestHead(SavedHead):
    """Standardisation + one L2 logistic regression per label over indicator targets [n, K].

    Parameters
    ----------
    C : float or None
        Inverse regularisation strength on standardised features, the same for every label;
        ``None`` chooses it from ``C_GRID`` by ``cv``-fold cross-validated micro-F1.
    cv : int
        Folds (fewer when there are fewer rows; below 2, C falls back to 1.0 and no
        out-of-fold scores exist).
    seed : int
        Seeds the fold split; the fit is otherwise deterministic.
    max_iter : int
        Iteration limit of each lbfgs fit.
    class_weight : None or "balanced"
        Passed to each label's regression: "balanced" weighs a label's positives and
        negatives inversely to their frequency.
    out_of_fold : bool
        With a given C, still run the folds once to keep ``oof_logits_`` (a chosen C always keeps them).
    """

    type_name = "ovr_logistic"

    def __init__(
        self,
        C: float | None = None,
        cv: int = 5,
        seed: int = 0,
        max_iter: int = 2000,
        class_weight: str | None = None,
        out_of_fold: bool = False,
    ) -> None:
        self.C = C
        self.cv = cv
        self.seed = seed
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.out_of_fold = out_of_fold

    def fit(self, features: np.ndarray, targets: np.ndarray) -> OneVsRestHead:
        """Standardise ``features`` [n, d], choose C when not given, fit every label on everything.

        Sets ``mean_``, ``scale_``, ``C_``, ``coef_`` [K, d], ``intercept_`` [K], ``constant_`` [K]
        (labels that never varied), and, when folds ran, ``cv_scores_`` (the pooled out-of-fold
        micro-F1 of each C visited) and ``oof_logits_`` [n, K] (out-of-fold scores at ``C_``).
        """
        if self.class_weight not in CLASS_WEIGHTS:
            raise invalid_parameter("class_weight", "OneVsRestHead", "None or 'balanced'", self.class_weight)
        features = np.asarray(features, dtype=np.float64)
        truth = (np.asarray(targets) > 0.5).astype(np.int64)
        for name in ("cv_scores_", "oof_logits_"):
            self.__dict__.pop(name, None)  # a refit must not keep the last search's
        self.mean_ = features.mean(axis=0)
        self.scale_ = features.std(axis=0)
        self.scale_[self.scale_ < 1e-12] = 1.0  # constant features stay constant instead of dividing by 0
        z = self._standardise(features)
        folds = min(self.cv, len(z))
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            if folds >= 2 and (self.C is None or self.out_of_fold):
                grid = C_GRID if self.C is None else np.array([float(self.C)])
                self.C_, self.cv_scores_, self.oof_logits_ = self._choose_C(z, truth, folds, grid)
            else:
                self.C_ = 1.0 if self.C is None else float(self.C)  # too few rows to cross-validate
            models = [self._estimator(self.C_) for _ in range(truth.shape[1])]
            self.coef_, self.intercept_, self.constant_ = _fit_labels(models, z, truth)
        return self

    def _estimator(self, C: float, warm_start: bool = False) -> LogisticRegression:
        return LogisticRegression(
            C=C, max_iter=self.max_iter, random_state=self.seed, class_weight=self.class_weight, warm_start=warm_start
        )

    def _choose_C(
        self, z: np.ndarray, truth: np.ndarray, folds: int, grid: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """The C of ``grid`` with the best pooled out-of-fold micro-F1 (the smallest among ties), the scores
        of the Cs visited, and the out-of-fold scores at that C."""
        from sklearn.metrics import f1_score

        groups = rarest_label_groups(truth.astype(np.float32), min_group=folds)
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(z, groups))
        data = [(z[train], truth[train], z[val]) for train, val in splits]
        k = truth.shape[1]
        models = [[self._estimator(grid[0], warm_start=True) for _ in range(k)] for _ in data]

        def step(i: int, C: float) -> np.ndarray:
            z_train, t_train, z_val = data[i]
            for model in models[i]:
                model.set_params(C=C)  # warm-started from the previous C
            coef, intercept, _ = _fit_labels(models[i], z_train, t_train)
            return z_val @ coef.T + intercept

        work = len(data[0][1]) * z.shape[1] * k
        workers = min(len(data), _usable_cores()) if work > PARALLEL_FOLDS_ABOVE else 1
        margin = max(PATH_MARGIN, 2.0 / truth.size)
        scores: list[float] = []
        best_oof = np.zeros(truth.shape, dtype=np.float64)
        with ThreadPoolExecutor(workers) if workers > 1 else _Serial() as pool:
            for C in grid:
                # each fold owns its models, so the result does not depend on thread timing
                oof = np.zeros(truth.shape, dtype=np.float64)
                for (_, val), logits in zip(splits, pool.map(step, range(len(data)), [C] * len(data)), strict=True):
                    oof[val] = logits
                scores.append(float(f1_score(truth, (oof >= 0).astype(np.int64), average="micro", zero_division=0)))
                if scores[-1] > max(scores[:-1], default=-1.0):
                    best_oof = oof
                best = max(scores)
                if len(scores) > PATH_PATIENCE and all(s < best - margin for s in scores[-PATH_PATIENCE:]):
                    break
        return float(grid[int(np.argmax(scores))]), np.asarray(scores), best_oof

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float64) - self.mean_) / self.scale_

    @property
    def n_outputs(self) -> int:
        return len(self.coef_)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Each label's decision score (log-odds) [n, K]."""
        return self._standardise(features) @ self.coef_.T + self.intercept_

    decision_function = logits

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Each label's own probability [n, K] (they do not sum to 1)."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(features), -60, 60)))

    def record(self) -> dict[str, object]:
        """What a fit record says about the fitted head."""
        return {"C": self.C_}

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """The arrays (for safetensors) and the JSON-able description of the fitted head."""
        tensors = {"mean": self.mean_, "scale": self.scale_, "coef": self.coef_, "intercept": self.intercept_}
        meta: dict[str, object] = {
            "type": self.type_name,
            "C": self.C_,
            "n_labels": int(self.n_outputs),
            "constant": [bool(c) for c in self.constant_],
        }
        if self.class_weight is not None:
            meta["class_weight"] = self.class_weight
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: Mapping[str, object], meta: dict) -> OneVsRestHead:
        """The inverse of ``state()``: a head that predicts exactly as the saved one."""
        arrays = {k: np.asarray(v) for k, v in tensors.items()}
        head = cls(C=float(meta["C"]), class_weight=meta.get("class_weight"))
        head.C_ = float(meta["C"])
        head.mean_, head.scale_ = arrays["mean"], arrays["scale"]
        head.coef_, head.intercept_ = arrays["coef"], arrays["intercept"]
        if head.coef_.ndim != 2 or head.intercept_.shape != (len(head.coef_),) or len(head.coef_) != meta["n_labels"]:
            raise ValueError(f"a one-vs-rest head of {meta['n_labels']} labels holds coef {head.coef_.shape}")
        head.constant_ = np.asarray(meta.get("constant", [False] * len(head.coef_)), dtype=bool)
        return head


def _fit_labels(
    models: list[LogisticRegression], z: np.ndarray, truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``models[j]`` on label j; (coef [K, d], intercept [K], constant [K]). A label without both values
    gets coefficients 0 and an intercept of ±CONSTANT_LOGIT."""
    k = truth.shape[1]
    coef, intercept = np.zeros((k, z.shape[1])), np.zeros(k)
    constant = np.zeros(k, dtype=bool)
    for j, model in enumerate(models):
        column = truth[:, j]
        if column.min() == column.max():
            constant[j] = True
            intercept[j] = CONSTANT_LOGIT if column[0] else -CONSTANT_LOGIT
            continue
        model.fit(z, column)
        coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
    return coef, intercept, constant
