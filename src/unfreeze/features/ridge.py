"""A regression head on pooled features: ridge regression with its strength chosen by cross-validation.

``RidgeHead`` standardises features as ``LogisticHead`` does and fits scikit-learn's
``RidgeCV`` over ``ALPHA_GRID``: the strength is chosen by efficient leave-one-out
cross-validation (RidgeCV's default, exact and one decomposition for every alpha), unless
given. The targets are a regression task's, already standardised (mean 0, scale 1), so one
grid fits scores of any scale. Saved as safetensors + JSON like every head.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.linear_model import Ridge, RidgeCV
from threadpoolctl import threadpool_limits

from .saved import SavedHead

# half-decade steps over eight decades: on standardised features the best strength grows with the
# dimension and shrinks with the rows, from a few dozen texts to thousands
ALPHA_GRID = np.logspace(-3, 5, 17)


class RidgeHead(SavedHead):
    """Standardisation + ridge regression over standardised scores [n] (one output).

    Parameters
    ----------
    alpha : float or None
        L2 strength on standardised features; ``None`` chooses it from ``ALPHA_GRID`` by
        leave-one-out cross-validation (``RidgeCV``).
    """

    type_name = "ridge"

    def __init__(self, alpha: float | None = None) -> None:
        self.alpha = alpha

    def fit(self, features: np.ndarray, targets: np.ndarray) -> RidgeHead:
        """Standardise ``features`` [n, d], fit on ``targets`` [n]; sets ``mean_``, ``scale_``, ``alpha_``,
        ``coef_`` [1, d] and ``intercept_`` [1]."""
        features = np.asarray(features, dtype=np.float64)
        values = np.asarray(targets, dtype=np.float64).reshape(-1)
        self.mean_ = features.mean(axis=0)
        self.scale_ = features.std(axis=0)
        self.scale_[self.scale_ < 1e-12] = 1.0  # constant features stay constant instead of dividing by 0
        z = self._standardise(features)
        # one BLAS thread: small decompositions, as for the logistic heads (see features.logistic)
        with threadpool_limits(limits=1, user_api="blas"):
            if self.alpha is None:
                model: Ridge | RidgeCV = RidgeCV(alphas=ALPHA_GRID).fit(z, values)
                self.alpha_ = float(model.alpha_)
            else:
                model = Ridge(alpha=float(self.alpha)).fit(z, values)
                self.alpha_ = float(self.alpha)
        self.coef_ = np.asarray(model.coef_, dtype=np.float64).reshape(1, -1)
        self.intercept_ = np.asarray([model.intercept_], dtype=np.float64).reshape(1)
        return self

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float64) - self.mean_) / self.scale_

    @property
    def n_outputs(self) -> int:
        return 1

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The predicted standardised score, [n, 1]."""
        return self._standardise(features) @ self.coef_.T + self.intercept_

    decision_function = logits

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        raise TypeError("a ridge head predicts values, not probabilities; use logits")

    def record(self) -> dict[str, object]:
        """What a fit record says about the fitted head."""
        return {"alpha": self.alpha_}

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """The arrays (for safetensors) and the JSON-able description of the fitted head."""
        tensors = {"mean": self.mean_, "scale": self.scale_, "coef": self.coef_, "intercept": self.intercept_}
        return tensors, {"type": self.type_name, "alpha": self.alpha_}

    @classmethod
    def from_state(cls, tensors: Mapping[str, object], meta: dict) -> RidgeHead:
        """The inverse of ``state()``: a head that predicts exactly as the saved one."""
        arrays = {k: np.asarray(v) for k, v in tensors.items()}
        head = cls(alpha=float(meta["alpha"]))
        head.alpha_ = float(meta["alpha"])
        head.mean_, head.scale_ = arrays["mean"], arrays["scale"]
        head.coef_, head.intercept_ = arrays["coef"], arrays["intercept"]
        if head.coef_.shape != (1, len(head.mean_)) or head.intercept_.shape != (1,):
            raise ValueError(f"a ridge head holds coef {head.coef_.shape} for {len(head.mean_)} features")
        return head
