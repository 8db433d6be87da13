"""Intrinsic dimension from a run's results alone: score vs d, d90, and its plot (no torch).

``unfreeze intrinsic-dim`` runs ``subspace`` cells over a grid of d and ``full`` cells in one
run folder and writes ``intrinsic.json``: the cell keys of each d and of full fine-tuning.
This module reads that file and ``results.jsonl`` and says:

- the mean (± std over seeds) test score at every d, and full fine-tuning's;
- d90 (Aghajanyan et al. 2020; Li et al. 2018 call it d_int90): the smallest d whose mean
  score reaches 90% of full fine-tuning's mean score. Reported two ways, each named: the
  first grid point that reaches it (what was measured), and a log-linear interpolation
  between that point and the grid point below it (an estimate between measurements).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UnfreezeError
from ..sweep.store import ResultsStore, row_task

INTRINSIC_FILE = "intrinsic.json"
PLOT_FILE = "intrinsic.png"


@dataclass
class Point:
    d: int | None  # None: full fine-tuning
    mean: float
    std: float
    seeds: int
    trainable: float | None = None
    seconds: float | None = None


@dataclass
class IntrinsicResult:
    metric: str
    fraction: float
    full: Point | None
    points: list[Point] = field(default_factory=list)  # by increasing d, only those with finished cells
    missing: list[int] = field(default_factory=list)  # grid values without a finished cell
    failed: int = 0

    @property
    def target(self) -> float | None:
        return None if self.full is None else self.fraction * self.full.mean

    @property
    def d90_grid(self) -> int | None:
        """The first grid point (increasing d) whose mean score reaches the target."""
        target = self.target
        if target is None:
            return None
        return next((p.d for p in self.points if p.mean >= target), None)

    @property
    def d90_interpolated(self) -> float | None:
        """Log-linear interpolation of d at the target, between d90_grid and the grid point below it."""
        hit, target = self.d90_grid, self.target
        if hit is None or target is None:
            return None
        index = [p.d for p in self.points].index(hit)
        if index == 0:
            return None  # nothing measured below: the target may be reached at any smaller d
        below, above = self.points[index - 1], self.points[index]
        if below.d is None or above.d is None:  # grid points always have a d (only full's is None)
            return None
        share = (target - below.mean) / (above.mean - below.mean)
        return math.exp(math.log(below.d) + share * (math.log(above.d) - math.log(below.d)))

    def sentence(self) -> str:
        """The d90 line: which d, how it was found, the numbers behind it."""
        label = f"d{round(self.fraction * 100)}"
        metric = self.metric.replace("_", "-")
        if self.full is None:
            return f"{label}: unknown (full fine-tuning has no finished cell yet; rerun to resume)."
        if not self.points:
            return f"{label}: unknown (no subspace cell has finished yet; rerun to resume)."
        target, hit = self.target, self.d90_grid
        base = f"{self.fraction:.0%} of full fine-tuning's test {metric} ({self.full.mean:.4f}), {target:.4f}"
        if hit is None:
            best = max(self.points, key=lambda p: p.mean)
            return (
                f"{label} > {self.points[-1].d}: no grid point reaches {base} (best: {best.mean:.4f} at "
                f"d={best.d}). Add larger d to --d."
            )
        reached = next(p for p in self.points if p.d == hit)
        interpolated = self.d90_interpolated
        if interpolated is None:
            return (
                f"{label} <= {hit}: the first grid point, d={hit}, already reaches {base}, with {reached.mean:.4f}; "
                "add smaller d to --d to narrow it."
            )
        index = [p.d for p in self.points].index(hit)
        below = self.points[index - 1]
        return (
            f"{label} = {hit}: the first grid point reaching {base}, with {reached.mean:.4f}; interpolated "
            f"log-linearly between d={below.d} ({below.mean:.4f}) and d={hit}: {label} ~ {interpolated:.0f}."
        )

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(
            {
                "target": self.target,
                "d90_grid": self.d90_grid,
                "d90_interpolated": self.d90_interpolated,
                "sentence": self.sentence(),
            }
        )
        return out


def _point(d: int | None, records: list[dict], metric: str) -> Point | None:
    done = [r for r in records if r.get("status") == "done" and metric in (r.get("test") or {})]
    if not done:
        return None
    scores = [float(r["test"][metric]) for r in done]
    fit = [r.get("fit") or {} for r in done]
    trainable = [f["trainable_parameters"] for f in fit if f.get("trainable_parameters") is not None]
    seconds = [f["seconds"] for f in fit if f.get("seconds") is not None]
    return Point(
        d,
        statistics.fmean(scores),
        statistics.stdev(scores) if len(scores) > 1 else 0.0,
        len(scores),
        statistics.fmean(trainable) if trainable else None,
        statistics.fmean(seconds) if seconds else None,
    )


def intrinsic_result(run_dir: str | Path, metric: str | None = None, fraction: float | None = None) -> IntrinsicResult:
    """Score per d, full fine-tuning's, and d90, from ``intrinsic.json`` and ``results.jsonl``.

    ``metric`` and ``fraction`` (0.9 for d90) default to the run's own."""
    run_dir = Path(run_dir)
    file = run_dir / INTRINSIC_FILE
    if not file.is_file():
        raise UnfreezeError(
            f"{run_dir} holds no intrinsic-dimension run (no {INTRINSIC_FILE}). "
            f"Run `unfreeze intrinsic-dim DATA -o {run_dir}`."
        )
    try:
        plan = json.loads(file.read_text(encoding="utf-8"))
        given = metric or plan.get("metric")  # None: the task's default score
        fraction = float(fraction if fraction is not None else plan.get("fraction", 0.9))
        full_keys = list(plan["full"]["keys"])
        grid = {int(d): list(keys) for d, keys in plan["subspace"]["keys"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UnfreezeError(f"{file} is damaged ({exc}). Run `unfreeze intrinsic-dim` again to rewrite it.") from exc
    latest = ResultsStore(run_dir).latest()
    task = next((row_task(r) for r in latest.values() if r.get("status") == "done" and "cell" in r), None)
    metric = given or (task.default_metric if task is not None else "accuracy")
    wanted = set(full_keys) | {k for keys in grid.values() for k in keys}
    failed = sum(1 for k in wanted if latest.get(k, {}).get("status") == "failed")
    full = _point(None, [latest[k] for k in full_keys if k in latest], metric)
    points, missing = [], []
    for d in sorted(grid):
        point = _point(d, [latest[k] for k in grid[d] if k in latest], metric)
        (points.append(point) if point is not None else missing.append(d))
    return IntrinsicResult(metric, fraction, full, points, missing, failed)


def plot_intrinsic(result: IntrinsicResult, path: str | Path, title: str = "") -> Path | None:
    """Score vs d (log x) with ± std over seeds, full fine-tuning's line, the 90% line and d90."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import color_of

    if not result.points and result.full is None:
        return None
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    metric = result.metric.replace("_", "-")
    if result.points:
        ds = [math.nan if p.d is None else p.d for p in result.points]  # grid points: every d is set
        ax.errorbar(
            ds,
            [p.mean for p in result.points],
            yerr=[p.std for p in result.points],
            marker="o",
            ms=4,
            capsize=3,
            color=color_of("subspace"),
            label="subspace (theta in d dims)",
        )
    target = result.target  # set whenever full fine-tuning's score is
    if result.full is not None and target is not None:
        full = result.full
        ax.axhline(full.mean, color=color_of("full"), lw=1.5, label=f"full fine-tuning ({full.mean:.3f})")
        if full.std > 0:
            ax.axhspan(full.mean - full.std, full.mean + full.std, color=color_of("full"), alpha=0.1, lw=0)
        ax.axhline(target, color="gray", ls="--", lw=1, label=f"{result.fraction:.0%} of full ({target:.3f})")
    label = f"d{round(result.fraction * 100)}"
    if result.d90_grid is not None:
        ax.axvline(result.d90_grid, color="black", ls=":", lw=1, label=f"{label} (grid) = {result.d90_grid}")
    if result.d90_interpolated is not None and target is not None:
        ax.plot(
            [result.d90_interpolated],
            [target],
            marker="x",
            ms=8,
            color="black",
            ls="none",
            label=f"{label} (interpolated) ~ {result.d90_interpolated:.0f}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("d, dimension of the trained subspace (log scale)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(title or "Score vs subspace dimension (mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def table_text(result: IntrinsicResult) -> str:
    """The per-d table the CLI prints."""
    metric = result.metric.replace("_", "-")
    lines = [f"{'d':>10}  {'test ' + metric:>16}  {'seeds':>5}  {'trainable':>12}  {'fit s':>8}"]

    def row(name: str, p: Point) -> str:
        trainable = f"{int(p.trainable):,}" if p.trainable is not None else "?"
        seconds = f"{p.seconds:.1f}" if p.seconds is not None else "?"
        return f"{name:>10}  {p.mean:>9.4f} ±{p.std:.3f}  {p.seeds:>5}  {trainable:>12}  {seconds:>8}"

    lines.extend(row(str(p.d), p) for p in result.points)
    if result.full is not None:
        lines.append(row("full", result.full))
    if result.missing:
        lines.append(f"(no finished cell yet for d = {', '.join(map(str, result.missing))})")
    return "\n".join(lines)
