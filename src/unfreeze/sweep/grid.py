"""A sweep's specification, its expansion into cells, and the key of each cell."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..cache import sha256_json
from ..errors import UnfreezeError

# the names of unfreeze.strategies.STRATEGIES, kept here so that reading a sweep needs no torch
STRATEGY_NAMES = ("features", "freeze", "full", "reinit", "lora", "setfit")

# strategies whose cells vary k
K_STRATEGIES = ("freeze",)


@dataclass
class SweepSpec:
    """What to run: data x model x strategies x k x training sizes x seeds, and shared settings."""

    data: str = "movie-snippets"
    model: str = "minilm-l6"
    strategies: list[str] = field(default_factory=lambda: ["features", "freeze"])
    k: list[int] | str = field(default_factory=lambda: [0])
    n_train: list[int] = field(default_factory=lambda: [128])
    seeds: list[int] = field(default_factory=lambda: [0])
    test: str | None = None
    test_size: float | None = None
    n_test: int | None = None
    text_col: str = "text"
    label_col: str = "label"
    text_pair_col: str | None = None
    pooling: str = "auto"
    layers: str = "-1"
    max_length: int = 256
    batch_size: int = 32
    epochs: int | None = None
    learning_rate: float | None = None
    head_learning_rate: float = 1e-3
    validation_fraction: float = 0.1
    m: int = 1
    r: int = 8
    num_iterations: int = 20
    probe: bool = False

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGY_NAMES]
        if unknown:
            raise UnfreezeError(
                f"Unknown strategy {unknown[0]!r} in the sweep. Strategies: {', '.join(STRATEGY_NAMES)}.")
        if not self.strategies:
            raise UnfreezeError("The sweep has no strategies. Give --strategies, e.g. features,freeze.")
        if isinstance(self.k, str) and self.k != "all":
            raise UnfreezeError(f"--k must be a comma-separated list of ints or 'all'. Got {self.k!r}.")
        for name in ("n_train", "seeds"):
            values = getattr(self, name)
            if not values or any(not isinstance(v, int) or isinstance(v, bool) for v in values):
                raise UnfreezeError(f"--{name.replace('_', '-')} must be a non-empty list of ints. Got {values!r}.")
        if any(n < 1 for n in self.n_train):
            raise UnfreezeError(f"--n-train values must be >= 1. Got {self.n_train}.")

    def resolved_k(self, num_blocks: int) -> list[int]:
        ks = list(range(num_blocks + 1)) if self.k == "all" else sorted(set(self.k))  # type: ignore[arg-type]
        bad = [k for k in ks if not 0 <= k <= num_blocks]
        if bad:
            raise UnfreezeError(f"--k value {bad[0]} is out of range: this model has {num_blocks} blocks "
                                f"(k in 0..{num_blocks}, or 'all').")
        return ks

    def training_settings(self) -> dict:
        """Everything besides the cell's own coordinates that changes a cell's result."""
        skip = {"data", "model", "strategies", "k", "n_train", "seeds", "probe", "test", "test_size", "text_col",
                "label_col", "text_pair_col", "m", "r", "num_iterations"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    @classmethod
    def from_toml(cls, path: str | Path) -> SweepSpec:
        path = Path(path)
        if not path.exists():
            raise UnfreezeError(f"Sweep config not found: {path}.")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise UnfreezeError(f"{path} is not valid TOML: {exc}.") from exc
        table = raw.get("sweep", raw)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise UnfreezeError(f"{path}: unknown sweep setting {unknown[0]!r}. Settings: {', '.join(sorted(known))}.")
        return cls(**{k.replace("-", "_"): v for k, v in table.items()})

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Cell:
    strategy: str
    params: tuple[tuple[str, object], ...]
    n_train: int
    seed: int

    @property
    def label(self) -> str:
        """A short name: 'freeze k=4', 'lora r=8', 'features'."""
        return " ".join([self.strategy, *(f"{k}={v}" for k, v in self.params)])

    def describe(self) -> str:
        return f"{self.label}, n={self.n_train}, seed={self.seed}"

    def key(self, data_fingerprint: str, model_fingerprint: str, settings: dict) -> str:
        return sha256_json({"data": data_fingerprint, "model": model_fingerprint, "strategy": self.strategy,
                            "params": dict(self.params), "n_train": self.n_train, "seed": self.seed,
                            "settings": settings, "version": 1})[:24]


def expand(spec: SweepSpec, num_blocks: int) -> list[Cell]:
    """Every cell of the grid, ordered by seed, then training size, then strategy."""
    per_strategy: list[tuple[str, tuple]] = []
    for strategy in spec.strategies:
        if strategy in K_STRATEGIES:
            per_strategy.extend((strategy, (("k", k),)) for k in spec.resolved_k(num_blocks))
        elif strategy == "reinit":
            per_strategy.append((strategy, (("m", spec.m),)))
        elif strategy == "lora":
            per_strategy.append((strategy, (("r", spec.r),)))
        elif strategy == "setfit":
            per_strategy.append((strategy, (("num_iterations", spec.num_iterations),)))
        else:
            per_strategy.append((strategy, ()))
    return [Cell(strategy, params, n, seed) for seed in spec.seeds for n in sorted(spec.n_train)
            for strategy, params in per_strategy]
