"""Running one cell of a sweep: fit its classifier, score it, time its prediction, and record the row.

A failing cell is recorded with its error (``run_cell`` never raises for the cell's own
failure) and the sweep goes on.
"""

from __future__ import annotations

import time
import traceback

from ..data import TextDataset
from ..tasks import DEFAULT_TASK
from .grid import Cell, SweepSpec
from .samples import SweepData, seed_samples

# test texts whose prediction is timed per cell (prediction time per text: the report's second cost)
PREDICT_TIMING_TEXTS = 128


def cell_header(spec: SweepSpec, cell: Cell, key: str) -> dict:
    """The part of a result row that names the cell; the rest says how it went."""
    return {
        "key": key,
        "cell": {
            "strategy": cell.strategy,
            **dict(cell.params),
            "n_train": cell.n_train,
            "seed": cell.seed,
            "label": cell.label,
        },
        "settings": spec.cell_settings(cell.strategy),
        "started": time.time(),
    }


def failed_record(spec: SweepSpec, cell: Cell, key: str, error: str, trace: str = "") -> dict:
    record = cell_header(spec, cell, key)
    record.update(
        {
            "status": "failed",
            "error": error.splitlines()[0] if error else "failed",
            "traceback": trace,
            "finished": time.time(),
        }
    )
    return record


def cell_classifier(spec: SweepSpec, cell: Cell, device: str | None = None, use_cache: bool = True):
    """The unfitted estimator of one cell: a ``Classifier`` of the spec's task (a ``Regressor`` for a task that
    is no classification), its strategy object, and the sweep's settings it reads."""
    from ..estimators import Classifier, Regressor
    from ..training.settings import Training

    strategy = cell.make_strategy()
    training = spec.training_for(type(strategy))
    if "prefix_cache" in strategy.training_settings:
        training["prefix_cache"] = use_cache and spec.prefix_cache
    task = spec.task_object()
    settings = dict(
        model=spec.model,
        strategy=strategy,
        training=Training(**training),
        pooling=spec.pooling,
        layers=spec.layers,
        max_length=spec.max_length,
        batch_size=spec.batch_size,
        seed=cell.seed,
        device=device,
        progress=False,
        cache=use_cache,
        precision=spec.precision,
    )
    if task.is_classification:
        return Classifier(**settings, task=task)
    return Regressor(**settings)


def run_cell(
    spec: SweepSpec,
    data: SweepData,
    cell: Cell,
    key: str,
    device: str | None = None,
    use_cache: bool = True,
    score_test: bool = True,
    after_fit=None,
) -> dict:
    """Fit and score one cell; never raises for a failure of the cell itself: records it.

    ``score_test=False`` leaves the test set alone (the advisor decides on validation scores
    only); ``after_fit(clf, train, record)`` may add to the row (the advisor times prediction)."""
    record = cell_header(spec, cell, key)
    try:
        train, validation = seed_samples(spec, data.train_pool, cell.n_train, cell.seed)
        clf = cell_classifier(spec, cell, device, use_cache).fit(
            train.inputs,
            train.labels,
            validation=None if validation is None else (validation.inputs, validation.labels),
        )
        fit_record = dict(clf.fit_record_)
        history = fit_record.pop("history", [])
        curve = epoch_curve(history)
        if curve:  # the per-epoch losses and validation scores (experiment trackers draw them as steps)
            fit_record["curve"] = curve
        scored = f"val_{clf.task_.default_metric}"  # an epoch's history entry that validated holds it
        best_epoch = history[fit_record.get("best_epoch", 0) - 1] if history and scored in history[-1] else {}
        val = best_epoch
        searched = fit_record.pop("validation", None)
        if searched:  # the rate search scored every rate on the held-out split; this is the chosen one's
            # (its metrics by name, loss and size: the row's keys as in earlier releases, not its "score"/"metric")
            val = {f"val_{k}": v for k, v in searched.items() if k not in ("score", "metric")}
            if clf.task_.name != DEFAULT_TASK:
                # the search scores the default metric; the chosen fit's best epoch, on the same examples, has
                # every metric (a single-label row keeps the keys of earlier releases)
                val = {**{k: v for k, v in best_epoch.items() if k.startswith("val_")}, **val}
        elif validation is not None and not val:  # a fit that did not validate (features): its score there
            val = validation_scores(clf, validation)
        elif spec.searches_rates and not clf.strategy_.changes_weights:
            val = holdout_validation(spec, cell, device, use_cache, train)
        if validation is not None and val and "val_n" not in val:  # an epoch's scores on the held-out set
            val = {**val, "val_n": len(validation)}
        record.update(
            {
                "status": "done",
                "train": clf.evaluate(train.inputs, train.labels),
                **(
                    {
                        "test": clf.evaluate(data.test.inputs, data.test.labels),
                        "predict_seconds_per_text": prediction_seconds_per_text(
                            clf, data.test.inputs[:PREDICT_TIMING_TEXTS]
                        ),
                    }
                    if score_test
                    else {}
                ),
                "validation": {k.removeprefix("val_"): v for k, v in val.items() if k.startswith("val_")},
                "fit": fit_record,
                "n_test": len(data.test),
                "device": fit_record.get("device", str(device)),
                # rows of single-label sweeps keep the keys of earlier releases: no task there means single
                **({"task": clf.task_.name} if clf.task_.name != DEFAULT_TASK else {}),
            }
        )
        if after_fit is not None:
            after_fit(clf, train, record)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a cell's failure (bad parameter, out of memory) is a result
        record.update(
            {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                "traceback": traceback.format_exc(limit=8),
            }
        )
    record["finished"] = time.time()
    return record


def epoch_curve(history: list[dict]) -> list[dict]:
    """Each epoch's number, training loss and validation scores from a fit's history (its counts and
    timings left out: they are not a curve, and timings differ between two runs of a cell)."""
    return [
        {k: v for k, v in entry.items() if k in ("epoch", "train_loss") or k.startswith("val_")}
        for entry in history
        if isinstance(entry, dict) and "epoch" in entry
    ]


def holdout_validation(spec: SweepSpec, cell: Cell, device: str | None, use_cache: bool, train) -> dict:
    """A validation score for a cell whose fit holds nothing out (``features``): the same strategy fitted on the
    cell's training split and scored on its validation split, the split a rate search uses, so that every
    cell of a tuned sweep is scored on the same examples (cheap: the frozen model's embeddings are shared)."""
    task = spec.task_object()
    train_idx, val_idx = task.split(task.fit_labels(train.labels), spec.validation_fraction, cell.seed)
    if not len(val_idx):
        return {}
    clf = cell_classifier(spec, cell, device, use_cache)
    clf.fit([train.inputs[i] for i in train_idx], [train.labels[i] for i in train_idx])
    return {**validation_scores(clf, train.subset(val_idx)), "val_holdout": True}


def validation_scores(clf, validation: TextDataset) -> dict:
    """``val_``-prefixed metrics of the task, its loss and the size of fitted ``clf`` on ``validation``."""
    import numpy as np

    task = clf.task_
    targets = task.encode(validation.labels, "the validation set", unseen=True)
    outputs = task.outputs_of(clf.predictor_, validation.inputs)
    if np.ndim(outputs) == 2 and np.ndim(targets) == 1:
        # class probabilities and class indices: the log-loss as earlier releases computed it (floored at 1e-12)
        proba = np.clip(outputs, 1e-12, 1.0)
        k = proba.shape[1]  # a class the training sample lacked (index >= k) has the floor's probability
        loss = float(
            -np.log(np.where(targets < k, proba[np.arange(len(targets)), np.minimum(targets, k - 1)], 1e-12)).mean()
        )
    else:
        logits = clf.predictor_.logits(validation.inputs)
        seen = targets[:, : logits.shape[1]] if np.ndim(targets) == 2 else targets  # labels the fit never saw: no loss
        loss = task.validation_loss(seen, logits)
    return {
        **{f"val_{k}": v for k, v in task.scores_of_outputs(targets, outputs).items()},
        "val_loss": loss,
        "val_n": len(validation),
    }


def prediction_seconds_per_text(clf, inputs: list) -> float:
    """Seconds per text that ``clf`` takes to predict ``inputs`` as a user's prediction would run.

    The sweep's shared pools and the embedding cache would serve these texts without a
    forward pass (features cells, frozen prefixes): they are set aside while timing.
    """
    from ..features.embed import EMBEDDING_POOLS
    from ..training.prefix import PREFIX_POOLS

    predictor = clf.predictor_
    use_cache = getattr(predictor, "use_cache", None)
    with EMBEDDING_POOLS.suspended(), PREFIX_POOLS.suspended():
        if use_cache is not None:
            predictor.use_cache = False
        try:
            start = time.perf_counter()
            clf.outputs(inputs)  # probabilities or values: what the task predicts
            return (time.perf_counter() - start) / max(len(inputs), 1)
        finally:
            if use_cache is not None:
                predictor.use_cache = use_cache
