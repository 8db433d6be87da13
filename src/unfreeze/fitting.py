"""The fit of ``Classifier`` and ``Regressor``: check the data, fit the task on the labels, load the backbone,
search the learning rate or fit the strategy once, and keep the fitted state on the estimator.

``TextEstimator.fit`` calls :func:`fit_estimator`; the estimator classes keep the parameters and the API.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UnfreezeError, invalid_parameter
from .inference.bundle import check_sample
from .machine.hardware import run_precision
from .models.backbone import TextInput
from .rate_search import search_rates, searched_rates
from .strategies import check_serves

if TYPE_CHECKING:
    from .estimators import TextEstimator
    from .tasks import Task


def fit_estimator(
    est: TextEstimator, X: Sequence[TextInput], y: Any, validation: tuple[Sequence[TextInput], Any] | None = None
) -> None:
    """Fit ``est`` on ``X``, ``y`` (see ``TextEstimator.fit``): its fitted attributes, ending in ``_``, are set."""
    from .models.loaded import private_backbone, shared_backbone
    from .models.pooling import parse_layers, resolve_pooling
    from .strategies.base import FitContext
    from .training.loop import TrainConfig

    strategy, training = est._validated()
    task = est._make_task()
    check_serves(strategy, task.name)
    if training.class_weight is not None and not task.weighs_classes:
        raise UnfreezeError(
            f"class_weight={training.class_weight!r} weighs classes; a {task.name} task has none. Drop it."
        )
    inputs = est.check_inputs(X)
    if len(y) != len(inputs):
        raise UnfreezeError(f"X has {len(inputs)} inputs but y has {len(y)} labels; they must match.")
    task.check_inputs(inputs, "X", y)
    y_idx = task.fit_labels(y)
    given_validation = checked_validation(type(est), validation, task)
    for name in [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]:
        del est.__dict__[name]  # a refit must not keep the previous fit's state

    start = time.perf_counter()
    owner = type(est).__name__
    reference = str(est.model)
    base = shared_backbone(reference, est.device)
    precision = run_precision(est.precision, base.device)
    # the untouched model for work without gradients, in its precision (the fp32 base, or a bf16 copy)
    frozen = shared_backbone(reference, est.device, precision.inference_dtype)
    backbone = private_backbone(reference, est.device) if strategy.changes_weights else frozen
    pooling = resolve_pooling(est.pooling, backbone.is_decoder, owner)
    # layers count on the fitted model's blocks (truncate keeps only the bottom j)
    layers = parse_layers(est.layers, strategy.kept_blocks(backbone.num_blocks), owner)
    strategy.check_model(backbone, layers)
    frozen_k = strategy.frozen_blocks(backbone.num_blocks)
    if strategy.changes_weights and min(layers) < frozen_k:
        # a pooled state below the frozen blocks never sees a trained block
        raise invalid_parameter(
            "layers",
            owner,
            f"hidden states at or above the frozen blocks (>= {frozen_k}) for {strategy.name} with k={frozen_k}",
            est.layers,
        )
    rates = searched_rates(strategy, training)
    if given_validation is not None:
        # the caller's validation set follows the training inputs; every training input trains
        val_inputs, y_val = given_validation
        train_idx, val_idx = np.arange(len(y_idx)), np.arange(len(y_idx), len(y_idx) + len(y_val))
        inputs, y_idx = [*inputs, *val_inputs], task.join([y_idx, y_val])
    else:
        # a task that tunes its decision on validation outputs (multilabel's thresholds) splits even
        # without a rate to search, unless the strategy tunes it on out-of-fold outputs of every text
        train_idx, val_idx = (
            task.split(y_idx, training.validation_fraction, est.seed)
            if rates or (task.tunes_on_validation and not strategy.tunes_decision)
            else (np.arange(len(y_idx)), np.arange(0))
        )
    note = None
    if rates and not len(val_idx):
        if isinstance(training.learning_rate, list):
            raise UnfreezeError(
                f"Choosing among learning rates {training.learning_rate} needs a validation split, and "
                f"validation_fraction={training.validation_fraction} of {len(y_idx)} examples gives none. "
                "Raise validation_fraction, or give one rate."
            )
        rates, note = [], "rate not searched: no validation split (validation_fraction 0 or too few examples)"
    config = TrainConfig(
        **{
            **training.get_params(deep=False),
            "epochs": training.epochs or strategy.epochs_for(bool(rates)),
            "learning_rate": (
                training.learning_rate if isinstance(training.learning_rate, float) else strategy.default_learning_rate
            ),
            "group_by_length": (
                task.groups_by_length if training.group_by_length is None else training.group_by_length
            ),
        },
        batch_size=est.batch_size,
        seed=est.seed,
        progress=est.progress,
        compute=precision.training,
    )
    context = FitContext(
        backbone,
        base.fingerprint(),
        pooling,
        layers,
        est.max_length,
        est.batch_size,
        est.seed,
        est.cache,
        est.progress,
        task.n_outputs,
        config,
        inference_backbone=frozen if strategy.changes_weights else None,
        inference_precision=precision.inference,
        training_precision=precision.training,
        task=task,
    )
    if rates:
        result, backbone, search = search_rates(
            strategy, context, rates, inputs, y_idx, train_idx, val_idx, str(est.model), est.device
        )
    else:
        if len(val_idx):
            context = dataclasses.replace(context, validation=([inputs[i] for i in val_idx], y_idx[val_idx]))
        result, search = strategy.fit(context, [inputs[i] for i in train_idx], y_idx[train_idx]), {}
        if "learning_rate" in strategy.training_settings:
            search = {"tuned": False, "learning_rate": config.learning_rate, **({"tuning": note} if note else {})}

    decision = tune_decision(task, result.predictor, inputs, y_idx, val_idx, result.record)
    est.task_ = task
    if task.classes_ is not None:
        est.classes_ = task.classes_
    est.strategy_ = strategy
    est.training_ = training
    est.predictor_ = result.predictor
    est.backbone_ = backbone
    est.base_fingerprint_ = base.fingerprint()
    est.pooling_, est.layers_ = pooling, layers
    est.n_truncated_, est.max_length_ = result.n_truncated, result.max_length
    est.fit_seconds_ = time.perf_counter() - start
    est.fit_record_ = {
        **result.record,
        **search,
        "seconds": est.fit_seconds_,
        "seed": est.seed,
        "precision": precision.as_dict(),
        **decision,
    }
    # a few training inputs travel with the bundle: `unfreeze export` checks its graphs on them
    train_inputs = [inputs[i] for i in train_idx]
    est.check_texts_ = check_sample(train_inputs, task.decide_targets(y_idx[train_idx]), est.seed)


def tune_decision(
    task: Task, predictor, inputs: list, targets: np.ndarray, val_idx: np.ndarray, record: dict | None = None
) -> dict:
    """Let a task that decides on validation outputs (multilabel's thresholds) choose; what the fit record
    says about it. A strategy that tuned it already (its record says ``decision_tuned``) is not overruled."""
    if not task.tunes_on_validation:
        return {}
    if (record or {}).get("decision_tuned"):
        return {"decision": task.state()}
    if not len(val_idx):
        return {"decision": task.state(), "decision_note": "not tuned: no validation split"}
    task.tune(targets[val_idx], predictor.logits([inputs[i] for i in val_idx]))
    return {"decision": task.state()}


def checked_validation(
    est_type: type[TextEstimator], validation: Any, task: Task
) -> tuple[list[TextInput], np.ndarray] | None:
    """``validation`` as (inputs, the fitted ``task``'s targets), or None; one-line errors."""
    if validation is None:
        return None
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise UnfreezeError(f"validation must be a pair (X_val, y_val). Got {type(validation).__name__}.")
    val_inputs = est_type.check_inputs(validation[0], "validation X_val")
    if len(validation[1]) != len(val_inputs):
        raise UnfreezeError(
            f"validation has {len(val_inputs)} inputs but {len(validation[1])} labels; they must match."
        )
    task.check_inputs(val_inputs, "validation X_val", validation[1])
    return val_inputs, task.encode(validation[1], "validation")
