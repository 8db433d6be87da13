"""What the advisor may try, on which data, within which budget: ``AdviseSpec`` and the sizes it derives."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..errors import UnfreezeError
from ..storage.cache import sha256_json
from ..sweep.grid import SweepSpec
from ..tasks import DEFAULT_TASK

FIRST_RUNG_RATES = ("first-seed", "every-seed")
# the settings whose values named an advisor run before AdviseSpec became a SweepSpec: a run resumed from then
# keeps its plan id; a setting added since joins the id only when it is not at its default
_PLAN_ID_V1 = (
    "data",
    "model",
    "strategies",
    "k",
    "grid",
    "seeds",
    "budget",
    "eta",
    "finalists",
    "first_rung_rate",
    "growth",
    "min_size",
    "max_size",
    "target",
    "tolerance",
    "max_loss",
    "test",
    "test_size",
    "text_col",
    "label_col",
    "text_pair_col",
    "pooling",
    "layers",
    "max_length",
    "batch_size",
    "learning_rate",
    "epochs",
    "validation_fraction",
    "validation_size",
    "precision",
)
# sweep settings an advisor run does not take from its user: the advisor sets them per cell
_SET_PER_CELL = ("n_train", "validation_used", "prefix_cache")


@dataclass
class AdviseSpec(SweepSpec):
    """What the advisor may try, on which data, within which budget: a sweep's settings (data, model,
    strategies and their grid, seeds, model input, training settings) and how to spend the budget.

    ``sizes`` are derived: ``min_size`` times ``growth`` per rung, up to ``max_size`` (default:
    all the labelled data). ``k`` None gives freeze k in {0, L/2, L-1}.
    """

    # the advisor's own defaults for settings a sweep has too
    strategies: list[str] = field(default_factory=lambda: ["features", "freeze", "lora"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    learning_rate: float | str | list[float] | None = "auto"
    # one validation set per seed, held out before the nested samples: every rung's decision and
    # every cell's rate choice are scored on the same examples. None: default_validation_size;
    # 0: validation_fraction of each sample (6 examples at a 64-example rung: a coin toss)
    validation_size: int | None = None  # type: ignore[assignment]  # None: chosen from the pool, unlike a sweep's
    budget: float = 900.0
    eta: int = 3
    # never fewer trained configurations than this go on; they then go on through every size the budget reaches
    finalists: int = 2
    # the first rung searches each configuration's rate on the first seed only and the other seeds
    # reuse it ("first-seed"), a third of the cost of searching on every seed ("every-seed"); later rungs
    # search on every seed unless only sharing the rate lets the finalists reach three sizes
    first_rung_rate: str = "first-seed"
    growth: float = 2.0
    min_size: int | None = None
    max_size: int | None = None
    target: float | None = None
    tolerance: float = 0.0
    # a cheaper configuration is never recommended when it measured more than this below the best (or than
    # the tolerance, if larger), even where three seeds cannot show the difference (it is better on one)
    max_loss: float = 0.01
    # torch threads; None: no more than the cores other work leaves free (``machine.cores.use_threads``)
    threads: int | None = None
    # the validation score that ranks, halves and draws the learning curves; None: the task's default
    metric: str | None = None

    def __post_init__(self) -> None:
        held = self.validation_size
        self.validation_size = 0 if held is None else held
        super().__post_init__()
        self.validation_size = held

    def ranking_metric(self) -> str:
        """The validation score the advisor ranks by: ``metric``, or the task's default score. One line for a
        metric the task does not report, or one where lower is better: the learning curves assume a score
        that rises with more data."""
        task = self.task_object()
        metric = task.default_metric if self.metric is None else task.check_metric(self.metric)
        if task.sign(metric) < 0:
            rising = ", ".join(m for m in task.metrics if task.sign(m) > 0)
            raise UnfreezeError(
                f"--metric {metric} is lower-is-better; the advisor's learning curves assume a score that rises "
                f"with more data. Rank by one of: {rising}."
            )
        return metric

    def check(self) -> None:
        """The model-free checks: one line each, before anything loads."""
        if not isinstance(self.budget, (int, float)) or self.budget <= 0:
            raise UnfreezeError(f"--budget must be a positive duration such as 15m or 90s. Got {self.budget!r}.")
        metric = self.ranking_metric()
        if self.target is not None and not 0 < self.target <= 1:
            raise UnfreezeError(
                f"--target is a score in (0, 1] ({metric}); {self.target} can never be reached. "
                "Give e.g. --target 0.85."
            )
        if not 0 <= self.tolerance < 1:
            raise UnfreezeError(f"--tolerance is a score difference in [0, 1), e.g. 0.01. Got {self.tolerance}.")
        if not 0 <= self.max_loss < 1:
            raise UnfreezeError(f"--max-loss is a score difference in [0, 1), e.g. 0.01. Got {self.max_loss}.")
        if not isinstance(self.eta, int) or self.eta < 2:
            raise UnfreezeError(f"--eta must be an int >= 2 (keep the best 1/eta per rung). Got {self.eta!r}.")
        if not isinstance(self.finalists, int) or isinstance(self.finalists, bool) or self.finalists < 1:
            raise UnfreezeError(
                f"--finalists must be an int >= 1 (trained configurations compared at the largest "
                f"size). Got {self.finalists!r}."
            )
        if self.first_rung_rate not in FIRST_RUNG_RATES:
            raise UnfreezeError(
                f"--first-rung-rate must be one of {', '.join(FIRST_RUNG_RATES)}. Got {self.first_rung_rate!r}."
            )
        if not (math.isfinite(self.growth) and self.growth > 1):
            raise UnfreezeError(f"--growth must be > 1 (each rung trains on more examples). Got {self.growth}.")
        if self.validation_size is not None and (
            not isinstance(self.validation_size, int)
            or isinstance(self.validation_size, bool)
            or self.validation_size < 0
        ):
            raise UnfreezeError(
                f"--validation-size must be an int >= 0 (0: a fraction of each sample). Got {self.validation_size!r}."
            )
        if not 0 < self.validation_fraction < 1:
            raise UnfreezeError(
                "The advisor decides on validation scores: --validation-fraction must be in (0, 1). "
                f"Got {self.validation_fraction}."
            )
        for name in ("min_size", "max_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 4):
                raise UnfreezeError(f"--{name.replace('_', '-')} must be an int >= 4. Got {value!r}.")
        if self.min_size and self.max_size and self.min_size > self.max_size:
            raise UnfreezeError(f"--min-size {self.min_size} is above --max-size {self.max_size}.")
        if self.threads is not None and (
            not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1
        ):
            raise UnfreezeError(f"--threads must be an int >= 1 (torch threads). Got {self.threads!r}.")

    def sweep_spec(self, k: list[int] | str | None = None, validation_size: int = 0) -> SweepSpec:
        """The sweep settings every cell of the advisor shares (its keys are sweep keys)."""
        shared = {f.name: getattr(self, f.name) for f in fields(SweepSpec) if f.name not in _SET_PER_CELL}
        shared.update(
            strategies=list(self.strategies),
            seeds=list(self.seeds),
            n_train=[1],
            validation_size=validation_size,
            k=k if k is not None else self.k,
            prefix_cache=self.prefix_cache,
        )
        return SweepSpec(**shared)

    def plan_id(self) -> str:
        """Names this advisor run's decisions: everything that could change one (not the thread count: a run
        resumed with other threads replays the same decisions)."""
        values = {name: getattr(self, name) for name in _PLAN_ID_V1}
        for f in fields(SweepSpec):
            if f.name not in values and f.name not in _SET_PER_CELL and getattr(self, f.name) != _default(f):
                values[f.name] = getattr(self, f.name)
        # a single-label run keeps the id it had before tasks (--task single is the default spelled out), and a
        # run ranked by its task's own score the id it has without --metric
        if values.get("task") == DEFAULT_TASK:
            del values["task"]
        if self.metric is not None and self.metric != self.task_object().default_metric:
            values["metric"] = self.metric
        return sha256_json(values)[:16]

    def as_dict(self) -> dict:
        return asdict(self)


def _default(f) -> object:
    from dataclasses import MISSING

    return f.default_factory() if f.default_factory is not MISSING else f.default


def check_sizes(spec: AdviseSpec, full: int, held: int, trainable: int, min_size: int, n_classes: int) -> None:
    """Data too small for the sizes asked for: one line each, before anything loads."""
    if min_size > trainable and spec.validation_size is not None:
        # the validation set the user asked for leaves too little to train on: name that option, not --min-size
        room = full - min_size
        fits = (
            f"Give --validation-size {room} or less (the default here is {default_validation_size(full, n_classes)})"
            if room >= 8 * n_classes
            else f"Give a smaller --validation-size and --min-size (now {min_size}), or more data"
        )
        raise UnfreezeError(
            f"--validation-size {held} takes too much of the {full} labelled examples of {spec.data}: the smallest "
            f"rung trains on {min_size} besides it. {fits}."
        )
    if min_size > trainable:
        besides = f" besides {held} held out for validation" if held else ""
        raise UnfreezeError(
            f"{spec.data} has {full} labelled examples, too few for the smallest rung "
            f"({min_size}){besides}. Give --min-size {max(4, trainable // 4)} or more data."
        )
    if spec.max_size is not None and spec.max_size > trainable:
        besides = f" ({full} labelled, {held} held out for validation)" if held else ""
        raise UnfreezeError(
            f"--max-size {spec.max_size} is more than the {trainable} training examples of "
            f"{spec.data}{besides}. Use at most {trainable}."
        )
    if not held and (round(min_size * spec.validation_fraction) < n_classes or min_size < 4 * n_classes):
        needed = max(4 * n_classes, math.ceil(n_classes / spec.validation_fraction))
        raise UnfreezeError(
            f"--min-size {min_size} is too small for a validation split holding each of the "
            f"{n_classes} classes. Give --min-size {needed} or more."
        )


def rung_sizes(min_size: int, max_size: int, growth: float) -> list[int]:
    """Geometric sizes from ``min_size``; the last is ``max_size`` (a short last step merges into it)."""
    sizes = [min_size]
    while sizes[-1] * growth < max_size:
        sizes.append(round(sizes[-1] * growth))
    if max_size / sizes[-1] >= math.sqrt(growth) or len(sizes) == 1:
        sizes.append(max_size)
    else:
        sizes[-1] = max_size
    return sorted(set(sizes))


def default_validation_size(pool_size: int, n_classes: int) -> int:
    """The advisor's validation set per seed: a fifth of the pool, from 8 per class up to 200 examples.

    200 examples (x 3 seeds, paired) resolve accuracy differences of a few points; more costs
    every cell an evaluation per epoch and rate for little more resolution."""
    return max(8 * n_classes, min(200, pool_size // 5))


def default_min_size(n_classes: int) -> int:
    # enough for a validation split holding every class (validation_split needs 4 per class)
    return max(64, 16 * n_classes)


__all__ = ["FIRST_RUNG_RATES", "AdviseSpec", "check_sizes", "default_min_size", "default_validation_size", "rung_sizes"]
