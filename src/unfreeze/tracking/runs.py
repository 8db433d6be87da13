"""A result row as the content of one tracked run: parameters, metrics, per-epoch curves and tags.

Reads the rows a sweep, the advisor or a study writes to ``results.jsonl`` (and the row ``fit``
builds the same way); imports no tracker, so the mapping is tested without one.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

# tags this package sets on a run; an export finds what it logged before by them
CELL_KEY_TAG = "unfreeze.cell_key"
RECORD_TAG = "unfreeze.record"  # a digest of the row: a row rewritten (a failed cell retried) is logged again
PARENT_KEY_TAG = "unfreeze.run_key"
KIND_TAG = "unfreeze.kind"
ARM_TAG = "unfreeze.arm"
RUN_DIR_TAG = "unfreeze.run_dir"
DATA_TAG = "unfreeze.data_fingerprint"
MODEL_TAG = "unfreeze.model_fingerprint"
STATUS_TAG = "unfreeze.status"
ERROR_TAG = "unfreeze.error"

# MLflow keeps a parameter's value to 6,000 characters and a tag's to 8,000; these stay far below
MAX_VALUE = 500

# the fit record's numbers that are metrics of the run (seconds, memory, size, what it saw)
FIT_METRICS = (
    "seconds",
    "peak_memory_bytes",
    "trainable_parameters",
    "total_parameters",
    "epochs_run",
    "best_epoch",
    "steps",
    "examples_seen",
    "tokens_seen",
    "prefix_seconds",
    "step_seconds",
    "validation_seconds",
)
# the row's own settings that are parameters of the run
ROW_PARAMS = ("model", "data", "task", "device", "n_test")


@dataclass
class RunContent:
    """What one tracked run holds. ``steps``: a metric's values by step (epoch), e.g. a validation curve."""

    name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    steps: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    failed: bool = False


def record_digest(record: dict) -> str:
    """A short digest of a whole row: two exports of the same row agree on it, a rewritten row does not."""
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cell_run(record: dict, context: dict[str, str] | None = None) -> RunContent:
    """The run of one cell's row: its cell and settings as parameters; its scores (train, test, validation),
    fit seconds, peak memory and parameter counts as metrics; each epoch's loss and validation scores as
    steps; its key, status and ``context`` (data fingerprint, arm...) as tags."""
    cell = record.get("cell") or {}
    fit: dict = record["fit"] if isinstance(record.get("fit"), dict) else {}
    name = str(cell.get("label") or cell.get("strategy") or record.get("key"))
    if "n_train" in cell:
        name += f" n={cell['n_train']} seed={cell.get('seed', 0)}"
    run = RunContent(name=name, failed=record.get("status") != "done")
    run.params.update({k: _text(v) for k, v in cell.items() if k != "label" and v is not None})
    run.params.update({k: _text(record[k]) for k in ROW_PARAMS if record.get(k) is not None})
    run.params.update(flatten(record.get("settings") or {}, "settings."))
    if fit.get("learning_rate") is not None:
        run.params["learning_rate_chosen"] = _text(fit["learning_rate"])
    if fit.get("lr_search"):
        run.params["rates_tried"] = ",".join(_text(t.get("learning_rate")) for t in fit["lr_search"])
    for split in ("train", "test", "validation"):
        for metric, value in (record.get(split) or {}).items():
            _put(run.metrics, f"{split}_{metric}", value)
    for name_ in FIT_METRICS:
        _put(run.metrics, name_ if name_ != "seconds" else "fit_seconds", fit.get(name_))
    _put(run.metrics, "predict_seconds_per_text", record.get("predict_seconds_per_text"))
    for entry in fit.get("curve") or fit.get("history") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("epoch"), int):
            continue
        for metric, value in entry.items():
            # a fit's history also counts its examples: the curve is its loss and validation scores
            if (metric == "train_loss" or metric.startswith("val_")) and _number(value) is not None:
                run.steps.setdefault(f"epoch_{metric}", []).append((entry["epoch"], float(value)))
    for epoch, seconds in enumerate(fit.get("epoch_seconds") or [], start=1):
        if _number(seconds) is not None:
            run.steps.setdefault("epoch_seconds", []).append((epoch, float(seconds)))
    for i, trial in enumerate(fit.get("lr_search") or []):  # each rate tried, in order: its validation scores
        for metric, value in trial.items():
            if metric.startswith("val_") and _number(value) is not None:
                run.steps.setdefault(f"rate_search_{metric}", []).append((i, float(value)))
    run.tags.update(context or {})
    run.tags.update(
        {
            CELL_KEY_TAG: str(record.get("key", "")),
            RECORD_TAG: record_digest(record),
            STATUS_TAG: str(record.get("status", "")),
        }
    )
    if record.get("error"):
        run.tags[ERROR_TAG] = _text(record["error"])
    return run


def flatten(values: dict, prefix: str = "") -> dict[str, str]:
    """Nested settings as ``prefix + a.b`` parameters (lists joined with commas; None left out)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        elif value is not None:
            out[f"{prefix}{key}"] = _text(value)
    return out


def _text(value: Any) -> str:
    text = ",".join(_text(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    return text[:MAX_VALUE]


def _number(value: Any) -> float | None:
    """A finite number (not a bool), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _put(metrics: dict[str, float], name: str, value: Any) -> None:
    number = _number(value)
    if number is not None:
        metrics[name] = number
