"""The learning-rate search of a ``Classifier`` fit: one fit per rate, scored on a validation split, the best kept.

``Classifier.fit`` asks :func:`searched_rates` which rates to try (none: it fits once) and
hands them to :func:`search_rates`. Its record (``tuned``, ``learning_rate``, ``lr_search``
with one entry per rate, ``validation``) joins ``fit_record_``. Rates are compared by the
task's ``selection`` (``unfreeze.tasks``): its default metric, then validation loss; each
trial records ``val_score`` (that metric), ``val_<metric>`` under its own name (single:
``val_accuracy``) and ``val_loss``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import numpy as np

from .errors import TrainingDivergedError

if TYPE_CHECKING:
    from .models.backbone import Backbone
    from .strategies import FitContext, FitResult, Strategy
    from .tasks import Task
    from .training.settings import Training


def searched_rates(strategy: Strategy, training: Training) -> list[float]:
    """The learning rates to try (two or more), or [] for one fit."""
    if "learning_rate" not in strategy.training_settings:
        return []
    rate = training.learning_rate
    rates = list(strategy.learning_rate_grid()) if rate == "auto" else rate if isinstance(rate, list) else []
    return rates if len(rates) >= 2 else []


def search_rates(
    strategy: Strategy,
    context: FitContext,
    rates: list[float],
    inputs: list,
    y_idx: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    model: str,
    device: str | None,
) -> tuple[FitResult, Backbone, dict]:
    """Fit once per rate on ``train_idx``, score each on ``val_idx`` (never on test data), keep the best.

    Every fit starts from the same pristine weights, seed and batch order: the rates are
    compared paired. The best is by the task's ``selection`` (single: validation accuracy,
    then validation log-loss); a tie keeps the smaller rate. ``model`` and ``device`` load
    each later rate's pristine copy.
    Returns the best fit's result, its backbone, and the search's record.
    """
    from .features.embed import shared_embeddings
    from .models.loaded import private_backbone
    from .training.prefix import shared_prefix_states

    assert context.training is not None  # a strategy that reads learning_rate is given its training config
    task = context.fitted_task
    train_inputs = [inputs[i] for i in train_idx]
    val_inputs, y_val = [inputs[i] for i in val_idx], y_idx[val_idx]
    trials, best = [], None
    diverged: TrainingDivergedError | None = None
    # the frozen prefix (and a frozen model's embeddings) of these texts are the same for every rate
    with shared_prefix_states(), shared_embeddings():
        if not strategy.changes_weights:
            _embed_once(strategy, context, inputs)
        for i, rate in enumerate(rates):
            started = time.perf_counter()
            # each rate trains a pristine copy (the first takes the one the fit already made)
            backbone = private_backbone(model, device) if strategy.changes_weights and i else context.backbone
            trial_context = dataclasses.replace(
                context,
                backbone=backbone,
                validation=(val_inputs, y_val),
                training=dataclasses.replace(context.training, learning_rate=rate),
            )
            try:
                result = strategy.fit(trial_context, train_inputs, y_idx[train_idx])
            except TrainingDivergedError as exc:
                # a rate too high for this data is a lost trial, not a lost search
                diverged = exc
                trials.append({"learning_rate": rate, "diverged": str(exc), "seconds": time.perf_counter() - started})
                continue
            score, loss, selection = _scored(task, task.logits_of(result.predictor, val_inputs), y_val)
            trials.append(_trial(task, rate, score, loss, result, started))
            if best is None or selection > best[0]:
                best = (selection, rate, result, backbone, score, loss)
    if best is None:  # every rate diverged: the last one's message names it
        assert diverged is not None
        raise diverged
    _, rate, result, backbone, score, loss = best
    metric = task.default_metric
    search = {
        "tuned": True,
        "learning_rate": rate,
        "lr_search": trials,
        "validation": {metric: score, "loss": loss, "n": len(val_idx), "score": score, "metric": metric},
    }
    return result, backbone, search


def _scored(task: Task, logits: np.ndarray, targets: np.ndarray) -> tuple[float, float, tuple[float, float]]:
    """(the task's default metric, the validation loss, the task's ``selection``) of validation outputs."""
    selection = task.selection(targets, logits)
    score = selection[0] * task.sign(task.default_metric)  # selection's first part is oriented higher-is-better
    return float(score), float(-selection[1]), selection


def _embed_once(strategy: Strategy, context: FitContext, inputs: list) -> None:
    """A frozen model's pooled states of every input, once (from the on-disk cache when there):
    each rate's fit and scoring then reads its subset from the pool."""
    from .features.embed import embed

    layers = strategy.pooled_layers(context.backbone.num_blocks, context.layers)
    if layers:
        embed(
            context.backbone,
            inputs,
            layers,
            context.pooling,
            context.max_length,
            context.batch_size,
            use_cache=context.cache,
            progress=context.progress,
        )


def _trial(task: Task, rate: float, score: float, loss: float, result: FitResult, started: float) -> dict:
    """One rate's entry of ``lr_search``: its validation scores and what its fit cost."""
    record = result.record
    return {
        "learning_rate": rate,
        f"val_{task.default_metric}": score,
        "val_loss": loss,
        "val_score": score,
        "epochs_run": record.get("epochs_run"),
        "best_epoch": record.get("best_epoch"),
        "step_seconds": record.get("step_seconds"),
        "prefix_seconds": record.get("prefix_seconds"),
        "validation_seconds": record.get("validation_seconds"),
        "validation_texts": record.get("validation_texts"),
        "examples_seen": record.get("examples_seen"),
        "seconds": time.perf_counter() - started,
    }
