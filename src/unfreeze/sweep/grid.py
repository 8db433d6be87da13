"""A sweep's specification, its expansion into cells, and the key of each cell.

Cells are strategies x their parameter values x training sizes x seeds. Every registered
strategy can be swept: ``grid`` maps a strategy to lists of values of its own parameters
(``{"lora": {"r": [4, 16]}}``); a strategy not in ``grid`` runs with the values its class
declares in ``sweep_defaults`` (``freeze``: k=0; ``lora``: r=8). The flat ``k``, ``m``, ``r``
and ``num_iterations`` of earlier releases still mean freeze's k, reinit's m, lora's r and
setfit's num_iterations. Imports no torch: reports read specs without a model.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import UnfreezeError
from ..params import coerce, is_int
from ..storage.cache import sha256_json
from ..strategies import registered, strategy_class

# flat settings (k, m, r, num_iterations: those of release 0.1.0; j: truncate's blocks kept)
# and the strategy parameter each stands for
LEGACY_AXES = {
    "k": ("freeze", "k"),
    "m": ("reinit", "m"),
    "r": ("lora", "r"),
    "num_iterations": ("setfit", "num_iterations"),
    "j": ("truncate", "j"),
}
# settings that were part of every cell's key in release 0.1.0; newer settings join the key
# only when they differ from their default, so that runs of that release keep their keys
_V1_SETTINGS = (
    "n_test",
    "pooling",
    "layers",
    "max_length",
    "batch_size",
    "epochs",
    "learning_rate",
    "head_learning_rate",
    "validation_fraction",
)


def as_list(value: object) -> list:
    """A TOML or CLI scalar where a list is expected is a list of one; a string is comma-separated."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


@dataclass
class SweepSpec:
    """What to run: data x model x strategies x their parameters x training sizes x seeds, and shared settings.

    Training settings (epochs, learning_rate, ...) apply to the strategies that read them
    (``Strategy.training_settings``); ``features`` cells, for example, ignore ``epochs``.
    """

    data: str = "movie-snippets"
    model: str = "minilm-l6"
    strategies: list[str] = field(default_factory=lambda: ["features", "freeze"])
    grid: dict[str, dict[str, list | str]] = field(default_factory=dict)  # values per parameter; k may be "all"
    k: list[int] | str | None = None
    m: int | list[int] | None = None
    r: int | list[int] | None = None
    num_iterations: int | list[int] | None = None
    j: int | list[int] | None = None
    n_train: list[int] = field(default_factory=lambda: [128])
    seeds: list[int] = field(default_factory=lambda: [0])
    test: str | None = None
    test_size: float | None = None
    n_test: int | None = None
    text_col: str = "text"
    label_col: str = "label"
    text_pair_col: str | None = None
    # how the labels are read (None: the data's own task: a built-in's, else single), how a file's multi-label
    # strings split, and multilabel's decision thresholds ("global" or "per-label")
    task: str | None = None
    label_sep: str | None = None
    thresholds: str = "global"
    pooling: str = "auto"
    layers: str = "-1"
    max_length: int = 256
    batch_size: int = 32
    epochs: int | None = None
    # None (the strategy's default rate, one fit) keeps release 0.1.0's keys; the command line's
    # default is "auto" (each cell searches the strategy's rate grid on its validation split)
    learning_rate: float | str | list[float] | None = None
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_steps: int | None = None
    grad_clip: float = 1.0
    validation_fraction: float = 0.1
    # > 0: one fixed validation set of this many examples per seed, held out of the pool before
    # the nested training samples are drawn (every size judged on the same examples); 0: each
    # sample's own validation_fraction, as in release 0.1.0
    validation_size: int = 0
    # > 0: score on the first this-many of that validation set (its stratified order), a subset that grows with
    # the advisor's rungs; 0: all of it
    validation_used: int = 0
    patience: int | None = 2
    class_weight: str | None = None
    layer_decay: float = 1.0
    group_by_length: bool | None = None  # None: the task's choice (Task.groups_by_length)
    # the frozen bottom blocks run once per sample and cells train from their cached output (off: also with
    # the command line's --no-cache)
    prefix_cache: bool = True
    probe: bool = False
    precision: str = "auto"

    def __post_init__(self) -> None:
        self.strategies = [str(s) for s in as_list(self.strategies)]
        if not self.strategies:
            raise UnfreezeError("The sweep has no strategies. Give --strategies, e.g. features,freeze.")
        known = registered()
        unknown = [s for s in self.strategies if s not in known]
        if unknown:
            raise UnfreezeError(f"Unknown strategy {unknown[0]!r} in the sweep. Strategies: {', '.join(known)}.")
        for name in ("n_train", "seeds"):
            values = as_list(getattr(self, name))
            values = [int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v for v in values]
            if not values or any(not isinstance(v, int) or isinstance(v, bool) for v in values):
                raise UnfreezeError(
                    f"--{name.replace('_', '-')} must be a non-empty list of ints. Got {getattr(self, name)!r}."
                )
            setattr(self, name, values)
        if any(n < 1 for n in self.n_train):
            raise UnfreezeError(f"--n-train values must be >= 1. Got {self.n_train}.")
        if any(s < 0 for s in self.seeds):
            raise UnfreezeError(f"--seeds must be ints >= 0. Got {self.seeds}.")
        if (
            not isinstance(self.validation_size, int)
            or isinstance(self.validation_size, bool)
            or self.validation_size < 0
        ):
            raise UnfreezeError(
                f"--validation-size must be an int >= 0 (0: a fraction of each sample). Got {self.validation_size!r}."
            )
        if (
            not isinstance(self.validation_used, int)
            or isinstance(self.validation_used, bool)
            or self.validation_used < 0
        ):
            raise UnfreezeError(
                f"validation_used must be an int >= 0 (the first texts of the validation set to "
                f"score on; 0: all of them). Got {self.validation_used!r}."
            )
        if isinstance(self.k, str) and self.k.strip() != "all":
            try:
                self.k = [int(v) for v in as_list(self.k)]
            except ValueError:
                raise UnfreezeError(f"--k must be a comma-separated list of ints or 'all'. Got {self.k!r}.") from None
        elif isinstance(self.k, str):
            self.k = "all"
        elif self.k is not None:
            self.k = as_list(self.k)
        if not isinstance(self.grid, dict):
            raise UnfreezeError(f"The sweep's grid must map strategies to {{parameter: values}}. Got {self.grid!r}.")
        for strategy, axes in self.grid.items():
            if not isinstance(axes, dict):
                raise UnfreezeError(
                    f"The sweep's grid entry for {strategy!r} must map its parameters to values, e.g. "
                    f"grid.lora = {{ r = [4, 16] }}. Got {axes!r}."
                )
        self.grid = {
            str(s): {str(p): (v if p == "k" and v == "all" else as_list(v)) for p, v in dict(axes).items()}
            for s, axes in self.grid.items()
        }
        for strategy, axes in self.grid.items():
            if strategy not in known:
                raise UnfreezeError(
                    f"The sweep's grid names unknown strategy {strategy!r}. Strategies: {', '.join(known)}."
                )
            names = known[strategy].setting_names()
            for param, swept in axes.items():
                if param not in names:
                    raise UnfreezeError(
                        f"Strategy {strategy!r} has no parameter {param!r} to sweep. "
                        f"Its parameters: {', '.join(names) or 'none'}."
                    )
                if swept != "all" and not swept:
                    raise UnfreezeError(f"The sweep's grid gives no values for {strategy}.{param}.")
                if swept != "all":
                    axes[param] = [coerce(known[strategy], param, v) for v in swept]
        from ..training.settings import check_learning_rate, normalise_learning_rate

        check_learning_rate(self.learning_rate, "learning_rate", "sweep")
        self.learning_rate = normalise_learning_rate(self.learning_rate)
        self._check_settings()
        self._check_strategy_values()
        self.task_object()  # an unknown task, or thresholds it does not take: one line now

    def task_name(self) -> str:
        """The task the cells fit: ``task`` when given, else the data's own (a built-in's; a file's: single).
        The same as the loaded data's ``TextDataset.task``, known without reading the data."""
        from ..data.builtin import BUILTIN
        from ..tasks import DEFAULT_TASK

        if self.task is not None:
            return self.task
        builtin = BUILTIN.get(str(self.data).partition(":")[0])
        return getattr(builtin, "task", DEFAULT_TASK) if builtin is not None else DEFAULT_TASK

    def groups_by_length(self) -> bool:
        """Whether the cells' training batches are drawn by length: ``group_by_length``, else the task's choice."""
        return self.task_object().groups_by_length if self.group_by_length is None else self.group_by_length

    def task_object(self, name: str | None = None):
        """A fresh task object of ``name`` (default: ``task_name()``) with the spec's task settings."""
        from ..tasks import make_task, task_class

        cls = task_class(name or self.task_name(), "--task")
        if "thresholds" in cls().params():
            return make_task(cls.name, thresholds=self.thresholds)
        if self.thresholds != "global":
            raise UnfreezeError(
                f"--thresholds {self.thresholds} sets multi-label decision thresholds; the {cls.name} task has "
                "none. Drop --thresholds."
            )
        return make_task(cls.name)

    @property
    def searches_rates(self) -> bool:
        """Cells of strategies with a learning rate try several rates ("auto" or a list)."""
        return self.learning_rate == "auto" or isinstance(self.learning_rate, list)

    def cell_settings(self, strategy: str) -> dict:
        """The settings in a cell's key: ``training_settings()``, plus, when the rate is searched, the rates and
        epoch ceiling this strategy's cells use (its grid may change between releases; its key must then too)."""
        settings = self.training_settings()
        cls = strategy_class(strategy, "sweep")
        if self.searches_rates and "learning_rate" in cls.training_settings:
            rates = list(cls().learning_rate_grid()) if self.learning_rate == "auto" else self.learning_rate
            settings["search"] = {"rates": rates, "epochs": self.epochs or cls().epochs_for(True)}
        return settings

    def axes(self, strategy: str, num_blocks: int | None = None) -> dict[str, list | str]:
        """The parameter values the cells of ``strategy`` take: its sweep defaults (for a model of
        ``num_blocks`` blocks, when known), the flat settings, the grid."""
        cls = strategy_class(strategy, "sweep")
        defaults = cls.sweep_defaults if num_blocks is None else cls.sweep_defaults_for(num_blocks)
        axes: dict[str, list | str] = {name: list(values) for name, values in defaults.items()}
        for flat, (owner, param) in LEGACY_AXES.items():
            value = getattr(self, flat)
            if owner == strategy and value is not None:
                axes[param] = value if value == "all" else [coerce(cls, param, v) for v in as_list(value)]
        axes.update(self.grid.get(strategy, {}))
        order = cls.setting_names()
        return dict(sorted(axes.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))

    def _check_settings(self) -> None:
        """The settings every cell shares, checked as ``fit`` checks them (one line naming the setting), so that a
        bad value is refused before any cell runs rather than recorded as a failure in every cell."""
        from ..params import check_float, check_int
        from ..training.settings import TRAINING_SETTINGS, Training

        for name in ("max_length", "batch_size"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise UnfreezeError(
                    f"{name} (--{name.replace('_', '-')}) must be an int >= 1. Got {getattr(self, name)!r}."
                )
        if self.n_test is not None:
            check_int(self.n_test, "n_test", "sweep", 1)
        if self.test_size is not None:
            check_float(self.test_size, "test_size", "sweep", 0.0, 1.0, high_exclusive=True)
        Training(**{name: getattr(self, name) for name in TRAINING_SETTINGS if hasattr(self, name)}).check()

    def _check_strategy_values(self) -> None:
        """Build every strategy object of the grid once, so a bad value is one line now, not a failed cell later."""
        for strategy in self.strategies:
            cls = strategy_class(strategy, "sweep")
            axes = {p: v for p, v in self.axes(strategy).items() if v != "all"}
            for values in itertools.product(*axes.values()):
                cls(**dict(zip(axes, values))).check()

    def resolved_axes(self, strategy: str, num_blocks: int) -> dict[str, list]:
        axes = self.axes(strategy, num_blocks)
        for param, values in axes.items():
            if values == "all":
                axes[param] = list(range(num_blocks + 1))
            elif param == "k":
                bad = [k for k in values if isinstance(k, int) and not 0 <= k <= num_blocks]
                if bad:
                    raise UnfreezeError(
                        f"--k value {bad[0]} is out of range: this model has {num_blocks} blocks "
                        f"(k in 0..{num_blocks}, or 'all')."
                    )
                axes[param] = sorted(set(values))
            else:
                axes[param] = list(dict.fromkeys(values))
        return axes  # type: ignore[return-value]

    def training_settings(self) -> dict:
        """Everything besides the cell's own coordinates that changes a cell's result (part of its key)."""
        settings = {name: getattr(self, name) for name in _V1_SETTINGS}
        for f in fields(self):
            if f.name not in settings and f.name not in _SPEC_ONLY and getattr(self, f.name) != f.default:
                settings[f.name] = getattr(self, f.name)
        # keyed by what the batches are, not how it was said: grouped batches (every earlier cell's) add nothing
        settings.pop("group_by_length", None)
        if not self.groups_by_length():
            settings["group_by_length"] = False
        return settings

    def training_for(self, strategy_cls) -> dict:
        """The training settings a cell of ``strategy_cls`` is fitted with: those it reads."""
        from ..training.settings import TRAINING_SETTINGS

        # prefix_cache is set per cell with the shared caches (``sweep.plan.cell_classifier``)
        return {
            name: getattr(self, name)
            for name in TRAINING_SETTINGS
            if name in strategy_cls.training_settings and hasattr(self, name) and name != "prefix_cache"
        }

    @classmethod
    def from_toml(cls, path: str | Path, defaults: dict | None = None) -> SweepSpec:
        """The spec a TOML file describes; ``defaults`` fill the settings the file does not give (the
        command line's own defaults, e.g. ``learning_rate="auto"``)."""
        path = Path(path)
        if not path.is_file():
            raise UnfreezeError(
                f"Sweep config not found: {path}."
                if not path.exists()
                else f"Sweep config {path} is a folder, not a TOML file."
                if path.is_dir()
                else f"Sweep config {path} is not a regular file (a named pipe?). Give a TOML file."
            )
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UnfreezeError(f"{path} is not valid TOML: {exc}.") from exc
        table = raw.get("sweep", raw)
        table = {k.replace("-", "_"): v for k, v in table.items()}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise UnfreezeError(f"{path}: unknown sweep setting {unknown[0]!r}. Settings: {', '.join(sorted(known))}.")
        # paths in the file are relative to the file, wherever the command runs
        for name in ("data", "test"):
            value = table.get(name)
            if isinstance(value, str):
                table[name] = _relative_to(value, path.parent)
        return cls(**{**(defaults or {}), **table})

    def as_dict(self) -> dict:
        return asdict(self)


# coordinates of cells and where the data come from: not settings of a cell's fit
_SPEC_ONLY = {
    "data",
    "model",
    "strategies",
    "grid",
    "k",
    "m",
    "r",
    "num_iterations",
    "j",
    "n_train",
    "seeds",
    "probe",
    "prefix_cache",
    "test",
    "test_size",
    "text_col",
    "label_col",
    "text_pair_col",
    # the data's fingerprint holds what these change (a task other than single, the labels a separator splits)
    "task",
    "label_sep",
}


def _relative_to(value: str, folder: Path) -> str:
    """A data reference from a TOML file: a built-in name stays; a relative path is relative to the file's folder."""
    from ..data.builtin import BUILTIN

    if value.partition(":")[0] in BUILTIN or Path(value).expanduser().is_absolute():
        return value
    return str(folder / value)


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

    def make_strategy(self):
        """The strategy object this cell fits."""
        return strategy_class(self.strategy, "sweep")(**dict(self.params))

    def key(self, data_fingerprint: str, model_fingerprint: str, settings: dict) -> str:
        return sha256_json(
            {
                "data": data_fingerprint,
                "model": model_fingerprint,
                "strategy": self.strategy,
                "params": dict(self.params),
                "n_train": self.n_train,
                "seed": self.seed,
                "settings": settings,
                "version": 1,
            }
        )[:24]


def expand(spec: SweepSpec, num_blocks: int) -> list[Cell]:
    """Every cell of the grid, ordered by seed, then training size, then strategy."""
    per_strategy: list[tuple[str, tuple]] = []
    for strategy in spec.strategies:
        axes = spec.resolved_axes(strategy, num_blocks)
        for values in itertools.product(*axes.values()):
            per_strategy.append((strategy, tuple(zip(axes, values))))
    return [
        Cell(strategy, params, n, seed)
        for seed in spec.seeds
        for n in sorted(spec.n_train)
        for strategy, params in per_strategy
    ]
