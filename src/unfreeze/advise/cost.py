"""The cost model: from the pilot's rows, each configuration's cost on all the data.

Fit seconds at the full size come from what the fit will do, step by step: at the rate the
pilot's searches chose, epochs of training steps and validation, at the seconds per training
example and epoch and per validation text that the pilot's searched cells measured, plus the
frozen prefix once and the fixed set-up (``fit_seconds_from_steps``).
The point is the median over the cells at the pilot's largest size; the interval runs from
the fastest cell at the epochs it ran to the slowest at the epoch ceiling. A whole cell
scaled up would read one contended cell as the rule (a 64-example cell on a busy machine
projected 4.3 h for 8,455 texts). Rows without that split (older stores, strategies with
their own loops) fall back to ``a + b * n`` with a, b >= 0 over the cells' seconds. A frozen
model's cells read embeddings pooled across cells; its fit pays one forward pass per text on top.

Peak memory is the measured peak at the largest size the pilot ran plus, for each further
example, the bytes of cached state the fit holds per example (the frozen-prefix cache, the
embeddings; recorded by the fit): the rest of the peak (model, optimiser, one batch's
activations) does not depend on n. A line fitted through peaks measured in one long process
would read the process's history (caches of earlier cells, freed memory the allocator
keeps) as growth with n. Prediction time per text and trainable parameters do not depend on
n: the median of the measurements. No torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def linear_nonnegative(n: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """``a + b * n`` with a, b >= 0, least squares; one size: proportional (a = 0)."""
    from scipy.optimize import nnls

    n_arr, y_arr = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    if len(set(n_arr.tolist())) < 2:
        return 0.0, float(y_arr.mean() / max(n_arr.mean(), 1.0))
    (a, b), _ = nnls(np.column_stack([np.ones_like(n_arr), n_arr]), y_arr)
    return float(a), float(b)


def cost_at(rows: list[dict], size: int, validation_fraction: float = 0.1) -> dict:
    """Predicted costs of one configuration at ``size`` examples, from its done rows (advisor cells)."""
    n = [r["cell"]["n_train"] for r in rows]
    others = _other_costs(rows, size)
    projected = [fit_seconds_from_steps(r, size, validation_fraction) for r in rows if searched_rate(r)]
    per_epoch = [f for f in projected if f is not None]
    if per_epoch:
        # seconds per training example and epoch, per validation text, per prefix text: each cell that searched
        # gives a projection; the point is the median of the cells at the largest size, the interval all of them
        largest = max(n)
        at_largest = [
            f for r, f in zip([r for r in rows if searched_rate(r)], per_epoch) if r["cell"]["n_train"] == largest
        ] or per_epoch
        return {
            "fit_seconds": float(np.median([f[1] for f in at_largest])),
            "fit_interval": [min(f[0] for f in per_epoch), max(f[2] for f in per_epoch)],
            "fit_basis": "steps",
            **others,
            "measured_sizes": sorted(set(n)),
        }
    # a fit of a configuration whose cells searched their rate searches too: cells that trained once at a rate
    # shared from another seed's search (the first rung's) would make it look cheaper than it is
    timed = [r for r in rows if searched_rate(r)] or rows
    timed_n = [r["cell"]["n_train"] for r in timed]
    if len(set(timed_n)) >= 2:
        a, b = linear_nonnegative(timed_n, [cell_seconds(r) for r in timed])
    else:
        # one size: what grows with n (the training steps) is proportional to it, the rest is fixed
        fixed, per_example = zip(*(split_cell_seconds(r) for r in timed))
        a, b = float(np.mean(fixed)), float(np.mean(per_example))
    trainable = others["trainable_parameters"]
    if trainable == 0 and others["predict_ms_per_text"]:
        # a frozen model's cells read pooled embeddings that the pilot computed once for all of them; a fit on
        # all the data embeds every text itself: one forward pass each, as prediction (timed with caches off)
        b += others["predict_ms_per_text"] / 1e3
    return {
        "fit_seconds": a + b * size,
        "fit_interval": None,
        "fit_basis": "cells",
        "seconds_per_example": b,
        "fixed_seconds": a,
        **others,
        "measured_sizes": sorted(set(n)),
    }


def fit_seconds_from_steps(row: dict, size: int, validation_fraction: float) -> tuple[float, float, float] | None:
    """A fit on ``size`` examples at the rate a searched cell chose, projected per example and epoch: (low, point,
    high).

    The fit (``advise --fit``) holds out ``validation_fraction`` of the examples, trains on the
    rest for up to the epoch ceiling and scores the held-out texts after each epoch; the frozen
    prefix is computed once. Seconds per example and epoch, per validation text and per prefix text
    come from the cell's trials (every rate it tried costs the same per step); its other seconds
    (copies, set-up) stay. Low: the epochs the trials ran; point and high: the ceiling (on more
    data early stopping ends later), high at the slowest trial's rates. None for rows that did not
    record the split.
    """
    fit = row.get("fit") or {}
    trials = fit.get("lr_search") or []
    keys = ("step_seconds", "prefix_seconds", "validation_seconds", "validation_texts", "examples_seen", "seconds")
    if not trials or any(t.get(k) is None for t in trials for k in keys) or any(not t["examples_seen"] for t in trials):
        return None
    n = int(row["cell"]["n_train"])
    validation = int((row.get("validation") or {}).get("n") or 0)
    ran = [max(int(t.get("epochs_run") or 1), 1) for t in trials]
    ceiling = int(((row.get("settings") or {}).get("search") or {}).get("epochs") or max(ran))
    held = validation_fraction * size
    trained = size - held
    # examples_seen counts every epoch's examples: seconds per example and epoch
    step = [max(t["step_seconds"] - t["prefix_seconds"], 0.0) / t["examples_seen"] for t in trials]
    validate = [t["validation_seconds"] / t["validation_texts"] if t["validation_texts"] else 0.0 for t in trials]
    fixed = float(np.mean([max(t["seconds"] - t["step_seconds"] - t["validation_seconds"], 0.0) for t in trials]))
    prefix = sum(t["prefix_seconds"] for t in trials) / max(n + validation, 1) * size

    def total(epochs: float, steps: float, validates: float) -> float:
        return prefix + fixed + epochs * (steps * trained + validates * held)

    mean_step, mean_validate = float(np.mean(step)), float(np.mean(validate))
    return (
        total(float(np.mean(ran)), mean_step, mean_validate),
        total(ceiling, mean_step, mean_validate),
        total(ceiling, max(step), max(validate)),
    )


def _other_costs(rows: list[dict], size: int) -> dict:
    """Peak memory at ``size``, prediction time per text and trainable parameters (see the module's doc)."""
    fits = [(r["cell"]["n_train"], r.get("fit") or {}) for r in rows]
    fits = [(n, fit) for n, fit in fits if fit.get("peak_memory_bytes")]
    mem_bytes = None
    if fits and all("state_bytes_per_example" in fit for _, fit in fits):
        largest = max(n for n, _ in fits)
        at_largest = [fit for n, fit in fits if n == largest]
        per_example = float(np.median([fit["state_bytes_per_example"] for fit in at_largest]))
        mem_bytes = max(fit["peak_memory_bytes"] for fit in at_largest) + per_example * (size - largest)
    elif fits:
        # rows written before fits recorded their cached state: the largest peak measured, no growth with n
        # (a line through peaks of one long process reads its history as growth: 1.6 GB at 64 examples
        # became 12 GB at 8,455)
        mem_bytes = max(fit["peak_memory_bytes"] for _, fit in fits)
    per_text = [r["predict_seconds_per_text"] for r in rows if r.get("predict_seconds_per_text")]
    counted = [(r.get("fit") or {}).get("trainable_parameters") for r in rows]
    trainable = [t for t in counted if t is not None]
    return {
        "predict_ms_per_text": float(np.median(per_text)) * 1e3 if per_text else None,
        "peak_memory_mib": mem_bytes / 2**20 if mem_bytes else None,
        "trainable_parameters": int(np.median(trainable)) if trainable else None,
    }


def cell_seconds(row: dict) -> float:
    """A cell's wall time as the pilot spent it: fit, validation scoring and timing (not the test set)."""
    started, finished = row.get("started"), row.get("finished")
    if isinstance(started, (int, float)) and isinstance(finished, (int, float)) and finished >= started:
        return float(finished - started)
    return float((row.get("fit") or {}).get("seconds") or 0.0)


def scaling_seconds(row: dict) -> float | None:
    """The seconds of a cell that grow with the training size: its fits' training steps (every rate its search
    tried) and passes over the examples' cached states; None for a row that did not record them."""
    fit = row.get("fit") or {}
    trials = fit.get("lr_search") or []
    if trials and all(t.get("step_seconds") is not None for t in trials):
        steps = sum(t["step_seconds"] for t in trials)
    elif fit.get("step_seconds") is not None:
        steps = fit["step_seconds"]
    else:
        return None
    return float(steps) + float(fit.get("states_seconds") or 0.0)


def searched_rate(row: dict) -> bool:
    """Whether the cell's fit searched its learning rate (rather than training once at a given one)."""
    return bool((row.get("fit") or {}).get("lr_search"))


def split_cell_seconds(row: dict) -> tuple[float, float]:
    """A cell's (fixed seconds, seconds per training example): what grows with the training size per example,
    the rest (validation each epoch, model copies, timing) fixed. What grows: the fits' steps and passes over
    cached states (``scaling_seconds``) and, for a model that trains, the cell's seconds outside its fit, which
    score its training sample (a frozen model's cell scores its validation set there too: fixed). A row without
    the split is all per example."""
    total, n = cell_seconds(row), max(int(row["cell"]["n_train"]), 1)
    scaling = scaling_seconds(row)
    if scaling is None:
        return 0.0, total / n
    fit = row.get("fit") or {}
    scoring = total - float(fit["seconds"]) if fit.get("trainable_parameters") and fit.get("seconds") else 0.0
    grows = min(scaling + max(scoring, 0.0), total)
    return total - grows, grows / n


def projected_cell_seconds(row: dict, size: int, validation: int | None = None, padding: dict | None = None) -> float:
    """A cell's seconds at ``size`` training examples, from its row at another size (``split_cell_seconds``).

    At 64 examples and a 200-text validation set the fixed part is most of a cell: scaling it
    too over-projects a larger rung by half. ``validation``: the texts the cell at ``size`` will
    validate on, where that grows with the rung; the seconds the row spent validating scale with it.
    ``padding``: the pool's padded tokens per text by the texts in a cell's batches (``StepCosts.padding``): a
    larger sample's batches group texts of closer lengths, so each example and validation text costs less.
    """
    fixed, per_example = split_cell_seconds(row)
    n = max(int(row["cell"]["n_train"]), 1)
    scored = int((row.get("validation") or {}).get("n") or 0)
    if validation is not None and scored and validation != scored:
        fit = row.get("fit") or {}
        spent = sum(float(t.get("validation_seconds") or 0.0) for t in fit.get("lr_search") or [fit])
        grown = validation / scored * padding_ratio(padding, "validate", validation, scored)
        fixed += min(spent, fixed) * (grown - 1.0)
    return fixed + per_example * size * padding_ratio(padding, "train", size, n)


def padding_ratio(padding: dict | None, table: str, texts: float, measured: float) -> float:
    """Padded tokens per text in batches over ``texts`` texts over those over ``measured`` (1 without tables)."""
    from .padding import padding_at

    if not padding or not padding.get(table) or texts <= 0 or measured <= 0:
        return 1.0
    return padding_at(padding[table], texts) / padding_at(padding[table], measured)


def human_seconds(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = [
    "cell_seconds",
    "cost_at",
    "fit_seconds_from_steps",
    "human_seconds",
    "linear_nonnegative",
    "padding_ratio",
    "projected_cell_seconds",
    "scaling_seconds",
    "searched_rate",
    "split_cell_seconds",
]
