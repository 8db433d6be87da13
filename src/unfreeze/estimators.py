"""``Classifier`` and ``Regressor``: scikit-learn compatible estimators on a pretrained transformer.

The constructor only stores parameters; ``fit`` validates them, loads the backbone, fits
the task on the labels (``unfreeze.tasks``: one class, a set of labels, or a number per
text) and hands the work to the strategy object, which returns a fitted predictor; fitted
state ends in ``_``. ``clone``, ``cross_val_score``, ``GridSearchCV`` over ``strategy__k``
or ``training__learning_rate``, and pipelines work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .data.dataset import check_no_surrogates
from .errors import UnfreezeError, invalid_parameter
from .models.backbone import TextInput
from .models.catalog import DEFAULT_MODEL
from .params import check_int, is_bool
from .strategies import Strategy, make_strategy, split_shorthand, users_of
from .tasks import Task, make_task, task_class
from .training.settings import Training, normalise_learning_rate


class TextEstimator(BaseEstimator):
    """What ``Classifier`` and ``Regressor`` share: the parameters, the fit, persistence. Use one of them."""

    task: str | Task
    # a seeded sample of the training inputs that `unfreeze export` checks its graphs on; None in bundles
    # written before it was kept
    check_texts_: dict | None

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        strategy: str | Strategy = "features",
        training: Training | None = None,
        pooling: str = "auto",
        layers: str | int | Sequence[int] = "-1",
        max_length: int = 256,
        batch_size: int = 32,
        seed: int = 0,
        cache: bool = True,
        device: str | None = None,
        progress: bool = True,
        precision: str = "auto",
        **shorthand: object,
    ) -> None:
        if shorthand:
            # the short form: place each name where it belongs (unknown names fail here, as any
            # unexpected keyword would; values are validated in fit)
            strategy, training_changes = split_shorthand(strategy, shorthand)
            if training_changes:
                training = Training() if training is None else Training(**training.get_params(deep=False))
                training.set_params(**training_changes)
        self.model = model
        self.strategy = strategy
        self.training = training
        self.pooling = pooling
        self.layers = layers
        self.max_length = max_length
        self.batch_size = batch_size
        self.seed = seed
        self.cache = cache
        self.device = device
        self.progress = progress
        self.precision = precision

    def set_params(self, **params: Any) -> TextEstimator:
        # nested names reach a strategy given by name, or the default training settings
        if any(k.startswith("strategy__") for k in params) and not isinstance(self.strategy, Strategy):
            self.strategy = make_strategy(params.get("strategy", self.strategy))
        if any(k.startswith("training__") for k in params) and self.training is None and "training" not in params:
            self.training = Training()
        return super().set_params(**params)

    # -- validation ---------------------------------------------------------------------

    def _validated(self) -> tuple[Strategy, Training]:
        """Check the parameters that do not depend on the model; the strategy and training to fit with."""
        owner = type(self).__name__
        if not isinstance(self.model, (str, Path)) or not str(self.model):
            raise invalid_parameter("model", owner, "a catalog name, model folder or hub id", self.model)
        for name in ("max_length", "batch_size"):
            check_int(getattr(self, name), name, owner, 1)
        check_int(self.seed, "seed", owner, 0)
        for name in ("cache", "progress"):
            is_bool(getattr(self, name), name, owner)
        from .machine.hardware import PRECISIONS

        if self.precision not in PRECISIONS:
            raise invalid_parameter("precision", owner, "one of " + ", ".join(map(repr, PRECISIONS)), self.precision)
        if self.pooling != "auto":
            from .models.pooling import resolve_pooling

            resolve_pooling(self.pooling, False, owner)
        strategy = make_strategy(self.strategy, owner)
        strategy.check()
        if self.training is not None and not isinstance(self.training, Training):
            raise invalid_parameter("training", owner, "a Training object or None", self.training)
        training = Training() if self.training is None else Training(**self.training.get_params(deep=False))
        training.check()
        training.learning_rate = normalise_learning_rate(training.learning_rate)
        for name in training.changed():
            if name not in strategy.training_settings:
                reads = ", ".join(sorted(strategy.training_settings)) or "none"
                users = ", ".join(u for u in users_of(name) if u != strategy.name) or "none"
                raise UnfreezeError(
                    f"The training setting {name!r} is not used by strategy {strategy.name!r} (the settings it "
                    f"reads: {reads}); strategies that use it: {users}. Drop the setting or change the strategy."
                )
        return strategy, training

    @staticmethod
    def check_inputs(X: Sequence[TextInput], what: str = "X") -> list[TextInput]:
        """X as a list of texts or (text, pair) tuples; a single string or an empty X is an error."""
        if isinstance(X, str):
            raise UnfreezeError(f"{what} must be a list of texts, not a single string. Wrap it: [text].")
        items = list(X.tolist() if hasattr(X, "tolist") else X)
        if not items:
            raise UnfreezeError(f"{what} is empty: give at least one text.")
        check_no_surrogates(items, what)
        return items

    @classmethod
    def with_task(cls, task: str | Task, **params: Any) -> TextEstimator:
        """An unfitted estimator of this class for ``task`` (a name or a ``Task``), with ``params``."""
        return cls(**params, task=task)

    def _make_task(self) -> Task:
        """A fresh task object from the ``task`` parameter (a name or a ``Task``)."""
        if isinstance(self.task, Task):
            return self.task.fresh()
        if not isinstance(self.task, str) or not self.task:
            raise invalid_parameter("task", type(self).__name__, "a task name or a Task object", self.task)
        return make_task(task_class(self.task, f"the 'task' parameter of {type(self).__name__}").name)

    def outputs(self, X: Sequence[TextInput]) -> np.ndarray:
        """The task's outputs: class probabilities [n, K] (single: softmax, multilabel: a sigmoid per label),
        or predicted values [n] (regression)."""
        check_is_fitted(self, "predictor_")
        inputs = self.check_inputs(X)
        self.task_.check_inputs(inputs)
        return self.task_.outputs_of(self.predictor_, inputs)

    def predict(self, X: Sequence[TextInput]) -> Any:
        """Predictions in the form ``fit`` was given: class labels, label sets (or an indicator matrix), values."""
        outputs = self.outputs(X)
        return self.task_.decide(outputs)

    def evaluate(self, X: Sequence[TextInput], y: Any) -> dict[str, float]:
        """Every metric of the task on ``X``, ``y`` (single: accuracy, macro-F1, MCC; see ``unfreeze.tasks``);
        a label that no training label held is scored as missed."""
        outputs = self.outputs(X)
        self.task_.check_inputs(self.check_inputs(X), "X", y)
        # a label the training labels lacked counts as missed, as scikit-learn scores it (`unfreeze evaluate`
        # refuses such a file before anything runs)
        return self.task_.scores_of_outputs(self.task_.encode(y, "y", unseen=True), outputs)

    # -- fitting --------------------------------------------------------------------------

    def fit(
        self, X: Sequence[TextInput], y: Any, validation: tuple[Sequence[TextInput], Any] | None = None
    ) -> TextEstimator:
        """Fit on texts (or (text, text_pair) tuples) ``X`` and labels ``y``. Returns self.

        ``validation``, an ``(X_val, y_val)`` pair held out by the caller, is what the
        learning-rate search and the choice of the best epoch score on, instead of
        ``validation_fraction`` of ``X`` (which then all trains). A sweep passes one fixed set
        per seed so that every training size is judged on the same examples.
        """
        from .fitting import fit_estimator

        fit_estimator(self, X, y, validation)
        return self

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        """Write a bundle folder (JSON + safetensors); atomic: all or nothing."""
        from .inference.classifier_bundle import save_classifier

        return save_classifier(self, path, metrics)

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | None = None,
        head: str | None = None,
        runtime: str = "torch",
        precision: str | None = None,
        onnx: str | Path | None = None,
    ) -> Self:
        """Load a bundle written by ``save``; never unpickles. From a multi-head bundle, ``head``
        names the one to load (it may be omitted when there is only one).

        The bundle's task decides the estimator: ``Classifier.load`` reads single- and multi-label
        bundles, ``Regressor.load`` regression ones, and each refuses the other's in one line that
        names the right one; ``TextEstimator.load`` (``unfreeze.load_estimator``) returns whichever
        the bundle holds. A bundle of an earlier release is a single-label ``Classifier``.

        ``precision``: the precision prediction runs in; None predicts in the one the bundle
        was fitted in (``fit_record_["precision"]``), ``"auto"``, ``"fp32"`` or ``"bf16"``
        choose (see the ``precision`` parameter).

        ``runtime="onnx"`` predicts with the bundle's ONNX export instead (``unfreeze export``
        writes it to ``path/onnx``; ``onnx`` gives another folder; ``precision`` ``"fp32"`` or
        ``"int8"``): the same ``predict``/``predict_proba``/``classes_``, no PyTorch weights
        loaded, prediction only (see ``unfreeze.export.onnx_predictor``).
        """
        from .inference.classifier_bundle import load_classifier

        return load_classifier(cls, path, device, head, runtime, precision, onnx)

    @classmethod
    def from_head(
        cls,
        model: str,
        head,
        max_length: int,
        batch_size: int = 32,
        device: str | None = None,
        progress: bool = True,
        fingerprint: str | None = None,
        path: Path | None = None,
        precision: str | None = None,
    ) -> Classifier:
        """A fitted ``features`` classifier from one head of a multi-head bundle (``unfreeze.features.logistic.Head``),
        on the shared backbone (in ``precision``: a setting, the suite's; None: fp32). With
        ``fingerprint``, refuses a backbone whose weights differ."""
        from .inference.classifier_bundle import classifier_from_head

        return classifier_from_head(
            cls, model, head, max_length, batch_size, device, progress, fingerprint, path, precision
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


class Classifier(ClassifierMixin, TextEstimator):
    """Text classifier: a pretrained backbone, a strategy that says how much of it to train, and a head.

    Parameters
    ----------
    model : str
        Catalog name (``unfreeze models``), local model folder, or hub id.
    strategy : str or Strategy
        How much of the model is trained: a strategy object such as ``Freeze(k=4)``,
        ``Lora(r=16)`` or ``Features(C=1.0)``, or a registered name (``"freeze"`` means
        ``Freeze()``). ``unfreeze strategies`` lists them.
    training : Training or None
        Training settings of the strategies that train (epochs, learning rate, ...);
        None means ``Training()``. A setting the strategy does not read is an error.
    pooling : {"auto", "mean", "cls", "last", "max"}
        ``auto`` is ``last`` for decoders and ``mean`` otherwise.
    layers : str, int or list of int
        Hidden states to pool: 0 embeddings, -1 the last block; several are concatenated.
    max_length : int
        Tokens per input; longer inputs are truncated (counted in ``n_truncated_``).
    batch_size : int
        Inputs per forward pass and per training step.
    seed : int
        Seeds sampling of validation data, the head, training and cross-validation folds.
    cache : bool
        Reuse pooled embeddings of the untouched model from the on-disk cache.
    device : str or None
        ``"cpu"``, ``"cuda"``...; None picks CUDA when present.
    progress : bool
        Show progress bars.
    precision : {"auto", "fp32", "bf16"}
        Precision of the work without gradients (embedding, the frozen-prefix pass, SetFit's
        head embedding, prediction of frozen-backbone bundles) and of the trained blocks'
        compute. ``auto``: where the hardware runs bf16 fast (a CPU with AMX or AVX-512 BF16,
        a CUDA GPU with native bf16), bf16 weights for work without gradients and bf16
        autocast for the trained blocks; fp32 elsewhere. ``fit_record_["precision"]`` says
        what ran, and a bundle predicts in it. ``bf16`` on hardware without fast bf16 works,
        slowly, and says so once.
    task : {"single", "multilabel", "tokens"} or Task
        ``single``: one class per text. ``multilabel``: a set of labels per text, given as lists
        (or sets) of labels or as a binary indicator matrix, predicted in the same form; each
        label has its own sigmoid and a decision threshold chosen on the validation split
        (``MultiLabel(thresholds="per-label")`` for one per label). ``tokens``: X is a list of
        sentences, each a list of words, and y a list of tag lists (one tag per word, e.g. IOB2);
        ``predict`` gives one tag per word (long sentences through overlapping windows) and
        ``score`` entity-level micro-F1 (seqeval, strict). For scores, use ``Regressor``.
    **shorthand
        The strategy's parameters and training settings by name, for the short form
        ``Classifier(strategy="freeze", k=4, epochs=2)`` (= ``strategy=Freeze(k=4),
        training=Training(epochs=2)``). A name that is neither is an error that says which
        strategies have it.

    Attributes
    ----------
    classes_ : ndarray
        The labels seen in ``fit``, in the order of ``predict_proba``'s columns.
    task_ : Task
        The fitted task: its label encoding, metrics and (multilabel) thresholds.
    strategy_ : Strategy
        The strategy object that was fitted (a copy: the parameter is left as given).
    predictor_ : Predictor
        What the fit produced (``unfreeze.inference.predictors``): a head on embeddings or a tuned network.
    fit_record_ : dict
        Seconds, peak memory, trainable and total parameters, examples seen, history...
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        strategy: str | Strategy = "features",
        training: Training | None = None,
        pooling: str = "auto",
        layers: str | int | Sequence[int] = "-1",
        max_length: int = 256,
        batch_size: int = 32,
        seed: int = 0,
        cache: bool = True,
        device: str | None = None,
        progress: bool = True,
        precision: str = "auto",
        task: str | Task = "single",
        **shorthand: object,
    ) -> None:
        super().__init__(
            model,
            strategy,
            training,
            pooling,
            layers,
            max_length,
            batch_size,
            seed,
            cache,
            device,
            progress,
            precision,
            **shorthand,
        )
        self.task = task

    def _make_task(self) -> Task:
        task = super()._make_task()
        if not task.is_classification:
            raise invalid_parameter(
                "task", "Classifier", "'single' or 'multilabel' (for scores, use unfreeze.Regressor)", self.task
            )
        return task

    def predict_proba(self, X: Sequence[TextInput]) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_`` (multilabel: each label's own)."""
        return self.outputs(X)

    def score(self, X: Sequence[TextInput], y: Any, sample_weight: Any = None) -> float:
        """Accuracy; multilabel: subset accuracy (every label of a text right), as scikit-learn's multi-label
        classifiers score, for labels given as lists as well as an indicator matrix."""
        from sklearn.metrics import accuracy_score

        check_is_fitted(self, "predictor_")
        if self.task_.score_is_default_metric:  # tokens: entity-level F1, the task's ranking metric
            if sample_weight is not None:
                raise UnfreezeError(f"score of a {self.task_.name} task takes no sample_weight.")
            return float(self.evaluate(X, y)[self.task_.default_metric])
        predicted = self.predict(X)
        if isinstance(predicted, list):  # label sets: compared as their indicator matrices
            y, predicted = self.task_.encode(y, "y"), self.task_.encode(predicted, "predictions")
        return float(accuracy_score(y, predicted, sample_weight=sample_weight))

    def decision_function(self, X: Sequence[TextInput]) -> np.ndarray:
        """Class scores (logits), [n, n_classes]; for two single-label classes, scikit-learn's one column: the
        score of class 1."""
        check_is_fitted(self, "predictor_")
        inputs = self.check_inputs(X)
        self.task_.check_inputs(inputs)
        logits = self.task_.logits_of(self.predictor_, inputs)  # tokens: [n, words, K], zeros past the end
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 and self.task_.exclusive_classes else logits


class Regressor(RegressorMixin, TextEstimator):
    """Text regressor: a score per text (or text pair) from a pretrained backbone, trained as ``strategy`` says.

    The parameters are ``Classifier``'s (but ``task``, which is ``regression``). The head
    learns the scores standardised; ``features`` fits ridge regression with its strength by
    cross-validation (scikit-learn's ``RidgeCV``), the strategies that train a network
    minimise the mean squared error. ``score`` is R^2, as scikit-learn's regressors';
    ``evaluate`` adds Spearman (how sweeps and the advisor rank), Pearson, RMSE and MAE.
    """

    # the parameters and __init__ are TextEstimator's: its signature is the one scikit-learn's get_params reads
    task = "regression"

    @classmethod
    def with_task(cls, task: str | Task, **params: Any) -> TextEstimator:
        name = task.name if isinstance(task, Task) else task
        if name != cls.task:
            raise invalid_parameter("task", "Regressor", repr(cls.task), task)
        return cls(**params)


# which estimator fits a task, by ``Task.is_classification``: what `unfreeze fit` builds, and what a bundle loads as
ESTIMATORS: dict[bool, type[TextEstimator]] = {True: Classifier, False: Regressor}


def estimator_class(task: str | Task | type[Task]) -> type[TextEstimator]:
    """``Classifier`` for a classification task (single, multilabel), ``Regressor`` otherwise."""
    kind = task if isinstance(task, type) else type(task) if isinstance(task, Task) else task_class(task)
    return ESTIMATORS[kind.is_classification]


def make_estimator(task: str | Task, **params: Any) -> TextEstimator:
    """An unfitted estimator for ``task`` (a name, or a Task such as ``MultiLabel(thresholds="per-label")``)."""
    return estimator_class(task).with_task(task, **params)
