"""A study's file: one published claim, the sweep(s) that test it, the analysis, and the verdict rule.

A study is a TOML file (``studies/NAME.toml``)::

    [study]                       # what is tested and where the claim comes from
    title = "Unfreezing more is better ..."
    claim = "..."
    source = "..."
    design = "..."                # why these cells (printed in FINDINGS.md)
    analysis = "two_way"          # one of ANALYSES (unfreeze.studies.analyses)
    metric = "accuracy"            # default: the data's task's own score (accuracy, micro_f1, spearman)
    datasets = ["movie-snippets", "bbc-news", "tweets"]   # where docs/FINDINGS.md runs it
    models = ["minilm-l6", "mpnet-base"]

    [sweep]                       # SweepSpec settings shared by every arm
    strategies = ["freeze"]
    grid = { freeze = { k = [0, "L/3", "2L/3", "L-1", "L"] } }
    n_train = [100, 300, 1000]    # or n_per_class = [8, 16, 32]
    seeds = [0, 1, 2]

    [[arm]]                       # optional: several sweeps in one study (settings on top of [sweep])
    name = "last4"
    label = "features, last four concatenated"
    strategies = ["features"]
    layers = "-4,-3,-2,-1"

    [quick]                       # optional: what --quick changes (default: QUICK_DEFAULTS)
    [analysis]                    # the analysis' parameters (each kind declares its own)
    [verdict]                     # the rule, as expressions over the analysis' quantities
    holds = "slope_low > 0 and interaction_p >= 0.05"
    partly = "slope_low > 0"
    explain = "Holds when ..."

Values of a strategy's parameters may count blocks from the model's depth L: ``"L"``,
``"L-1"``, ``"L/2"``, ``"2L/3"`` (rounded to the nearest block), resolved when the model
is known, so one file serves a 6-block and a 12-block model. Every key is checked when
the file is read: an unknown one is a one-line error. Imports no torch.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import UnfreezeError
from ..sweep.grid import LEGACY_AXES, SweepSpec, as_list

STUDY_KEYS = {"name", "number", "title", "claim", "source", "design", "analysis", "metric", "datasets", "models"}
REQUIRED_STUDY_KEYS = ("title", "claim", "source", "analysis")
TOP_KEYS = {"study", "sweep", "arm", "quick", "analysis", "verdict"}
VERDICT_KEYS = {"holds", "partly", "explain"}
ARM_KEYS = {"name", "label"}
# sweep settings a study may not set: where the data and the model come from are the command's
# (--data, --model; defaults: the study's first dataset and model), and a study is scored on one test set
STUDY_ONLY_SWEEP_KEYS = {"n_per_class"}
FORBIDDEN_SWEEP_KEYS = {"data", "model", "probe"}
# --quick: one seed, the smallest sizes (the analysis says how many it needs; at most QUICK_MAX_N examples),
# one epoch, one learning rate per cell (no search), a small test sample: minutes, to check that a study works
# on new data
QUICK_DEFAULTS: dict[str, Any] = {"epochs": 1, "learning_rate": "fixed", "n_test": 200}
# --quick caps training sizes (given in total, not per class) at this many examples
QUICK_MAX_N = 200
QUICK_KEYS = {"n_train", "n_per_class", "seeds", "epochs", "learning_rate", "n_test", "max_length"}
# the depth assumed to check L-relative values before the model is known
CHECK_DEPTH = 12
_L_VALUE = re.compile(r"^\s*(\d*)\s*L\s*(?:/\s*(\d+))?\s*(?:([+-])\s*(\d+))?\s*$")


def resolve_depth(value: object, num_blocks: int) -> object:
    """``"L"``, ``"L-1"``, ``"L/2"``, ``"2L/3"``, ``"L/3+1"`` as an int for a model of ``num_blocks`` blocks
    (rounded half up); any other value is returned as it is."""
    if not isinstance(value, str):
        return value
    match = _L_VALUE.match(value)
    if not match:
        return value
    times, divide, sign, offset = match.groups()
    if divide is not None and int(divide) == 0:
        raise UnfreezeError(f'{value!r} divides the depth L by zero. Write L/N with N >= 1, e.g. "L/2".')
    x = num_blocks * (int(times) if times else 1) / (int(divide) if divide else 1)
    if sign:
        x = x + int(offset) if sign == "+" else x - int(offset)
    return math.floor(x + 0.5)


def _resolve_axes(settings: dict, num_blocks: int) -> dict:
    """``settings`` with every L-relative value of the grid and the flat axes resolved (duplicates dropped)."""
    out = dict(settings)

    def resolve_list(values: object) -> object:
        if values == "all":
            return values
        resolved = [resolve_depth(v, num_blocks) for v in as_list(values)]
        return list(dict.fromkeys(resolved))

    if isinstance(out.get("grid"), dict):
        out["grid"] = {
            s: {p: resolve_list(v) for p, v in dict(axes).items()} if isinstance(axes, dict) else axes
            for s, axes in out["grid"].items()
        }
    for flat in LEGACY_AXES:
        if out.get(flat) is not None:
            out[flat] = resolve_list(out[flat])
    return out


@dataclass
class Arm:
    """One sweep of a study: its name (its folder under ``arms/``), how its configurations are labelled,
    and its settings on top of the study's ``[sweep]``."""

    name: str
    label: str | None
    settings: dict

    def config_label(self, cell_label: str, single: bool) -> str:
        """The name a configuration of this arm has in the study's tables: the arm's label (``{cell}`` in it
        stands for the cell's label), or the cell's own label."""
        if self.label is None:
            return cell_label
        if "{cell}" in self.label:
            return self.label.replace("{cell}", cell_label)
        return self.label if single else f"{self.label}: {cell_label}"


@dataclass
class Study:
    """A study file, read and checked."""

    path: Path
    name: str
    number: int | None
    title: str
    claim: str
    source: str
    design: str
    analysis: str
    metric: str | None  # None: the data's task's default score (``metric_for``)
    datasets: list[str]
    models: list[str]
    sweep: dict
    arms: list[Arm]
    quick: dict
    analysis_params: dict
    verdict: dict[str, str]
    raw: dict = field(default_factory=dict, repr=False)

    def metric_for(self, task: str | None) -> str:
        """The test metric the study reads on data of ``task`` (None: single): its own, or the task's default
        score; one line when the task does not report the study's."""
        from ..tasks import DEFAULT_TASK, make_task

        kind = make_task(task or DEFAULT_TASK)
        return kind.default_metric if self.metric is None else kind.check_metric(self.metric, f"{self.path}: metric")

    @property
    def default_data(self) -> str:
        return self.datasets[0] if self.datasets else "movie-snippets"

    @property
    def default_model(self) -> str:
        return self.models[0] if self.models else "minilm-l6"

    def arm_settings(
        self, arm: Arm, quick: bool = False, num_blocks: int = CHECK_DEPTH, overrides: dict | None = None
    ) -> dict:
        """The settings of one arm: ``[sweep]``, the arm's own, ``--quick``'s, the command's overrides, with
        L-relative values resolved for ``num_blocks`` (``n_per_class`` still unresolved)."""
        # cells search their learning rate unless the file says otherwise, as `unfreeze sweep` does
        settings = {"learning_rate": "auto", **self.sweep, **arm.settings}
        if quick:
            settings.update(self.quick_settings(settings))
        settings.update(overrides or {})
        return _resolve_axes(settings, num_blocks)

    def quick_settings(self, settings: dict) -> dict:
        """What ``--quick`` sets on top of ``settings``: one seed, the smallest sizes, one epoch, no rate search."""
        from .analyses import analysis_kind

        need = analysis_kind(self.analysis).quick_sizes
        quick = dict(QUICK_DEFAULTS)
        quick["seeds"] = as_list(settings.get("seeds", [0]))[:1]
        for name in ("n_per_class", "n_train"):
            if name in settings:
                smallest = sorted(int(v) for v in as_list(settings[name]))[:need]
                quick[name] = sorted({min(v, QUICK_MAX_N) for v in smallest} if name == "n_train" else set(smallest))
        if settings.get("n_test") is not None:
            quick["n_test"] = min(int(settings["n_test"]), QUICK_DEFAULTS["n_test"])
        quick.update(self.quick)
        return quick

    def as_dict(self) -> dict:
        """The study as read (the raw tables): stored in a run's study.json so the run explains itself."""
        return self.raw


def load_study(path: str | Path) -> Study:
    """Read and check a study file; every problem is one line naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise UnfreezeError(
            f"Study file not found: {path}."
            if not path.exists()
            else f"Study file {path} is a folder, not a TOML file."
            if path.is_dir()
            else f"Study file {path} is not a regular file (a named pipe?). Give a TOML file."
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UnfreezeError(f"{path} is not valid TOML: {exc}.") from exc
    return study_from_dict(raw, path)


def _unknown(path: Path, table: str, keys: set[str], allowed: set[str]) -> None:
    unknown = sorted(set(keys) - allowed)
    if unknown:
        raise UnfreezeError(f"{path}: unknown key {unknown[0]!r} in {table}. Keys: {', '.join(sorted(allowed))}.")


def _table(raw: dict, name: str, path: Path) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise UnfreezeError(f"{path}: [{name}] must be a table of settings. Got {value!r}.")
    return {k.replace("-", "_"): v for k, v in value.items()}


def _text(table: dict, key: str, path: Path, where: str, required: bool = True) -> str:
    value = table.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise UnfreezeError(f'{path}: {where} needs {key} = "..." (a non-empty string). Got {value!r}.')
    return " ".join(value.split())


def _paragraphs(value: object) -> str:
    """A multi-line TOML string as paragraphs: lines joined, blank lines kept as paragraph breaks."""
    if not isinstance(value, str):
        return ""
    return "\n\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", value.strip()) if p.strip())


def study_from_dict(raw: dict, path: Path) -> Study:
    """A ``Study`` from a study file's tables (also a run's stored copy)."""
    from .analyses import ANALYSES, analysis_kind
    from .rules import check_rule

    _unknown(path, "the file", set(raw), TOP_KEYS)
    head = _table(raw, "study", path)
    _unknown(path, "[study]", set(head), STUDY_KEYS)
    for key in REQUIRED_STUDY_KEYS:
        _text(head, key, path, "[study]")
    kind = head["analysis"]
    if kind not in ANALYSES:
        raise UnfreezeError(f"{path}: unknown analysis {kind!r} in [study]. Analyses: {', '.join(sorted(ANALYSES))}.")
    analysis = analysis_kind(kind)
    metric = head.get("metric")  # None: the task's default score (accuracy for single-label data)
    from ..tasks import TASKS

    known = list(dict.fromkeys(m for cls in TASKS.values() for m in cls.metrics))
    if metric is not None and metric not in known:
        raise UnfreezeError(f"{path}: unknown metric {metric!r} in [study]. Metrics: {', '.join(known)}.")
    lists = {}
    for key in ("datasets", "models"):
        value = head.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise UnfreezeError(f"{path}: {key} in [study] must be a list of names. Got {value!r}.")
        lists[key] = value
    number = head.get("number")
    if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
        raise UnfreezeError(f"{path}: number in [study] must be an int. Got {number!r}.")

    sweep = _table(raw, "sweep", path)
    allowed = {f.name for f in fields(SweepSpec)} - FORBIDDEN_SWEEP_KEYS | STUDY_ONLY_SWEEP_KEYS
    forbidden = sorted(set(sweep) & FORBIDDEN_SWEEP_KEYS)
    if forbidden:
        raise UnfreezeError(
            f"{path}: {forbidden[0]!r} cannot be set in [sweep]: a study runs on the data and model "
            "the command gives (--data, --model; default: the study's first dataset and model)."
        )
    _unknown(path, "[sweep]", set(sweep), allowed)
    arms_raw = raw.get("arm", [{}])
    if not isinstance(arms_raw, list) or not arms_raw or not all(isinstance(a, dict) for a in arms_raw):
        raise UnfreezeError(f"{path}: [[arm]] must be one or more tables of settings.")
    arms = []
    for i, table in enumerate(arms_raw):
        table = {k.replace("-", "_"): v for k, v in table.items()}
        forbidden = sorted(set(table) & FORBIDDEN_SWEEP_KEYS)
        if forbidden:
            raise UnfreezeError(
                f"{path}: {forbidden[0]!r} cannot be set in an [[arm]]: a study runs on the data and "
                "model the command gives."
            )
        _unknown(path, f"[[arm]] number {i + 1}", set(table), allowed | ARM_KEYS)
        name = table.pop("name", "main" if len(arms_raw) == 1 else None)
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise UnfreezeError(
                f"{path}: [[arm]] number {i + 1} needs name = \"...\" (letters, digits, '.', '_', "
                f"'-'; it names the arm's folder). Got {name!r}."
            )
        label = table.pop("label", None)
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise UnfreezeError(f"{path}: label of [[arm]] {name!r} must be a non-empty string. Got {label!r}.")
        arms.append(Arm(name, label, table))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise UnfreezeError(f"{path}: two [[arm]] tables are named {next(n for n in names if names.count(n) > 1)!r}.")

    quick = _table(raw, "quick", path)
    _unknown(path, "[quick]", set(quick), QUICK_KEYS)
    params = _table(raw, "analysis", path)
    params = analysis.check_params(params, path)
    verdict = _table(raw, "verdict", path)
    _unknown(path, "[verdict]", set(verdict), VERDICT_KEYS)
    rules = {
        "holds": _text(verdict, "holds", path, "[verdict]"),
        "partly": _text(verdict, "partly", path, "[verdict]", required=False),
        "explain": _text(verdict, "explain", path, "[verdict]"),
    }
    quantities = analysis.quantity_names(params)
    for key in ("holds", "partly"):
        if rules[key]:
            check_rule(rules[key], quantities, f"{path}: [verdict] {key}")
    study = Study(
        path=path,
        name=head.get("name") or path.stem,
        number=number,
        title=_text(head, "title", path, ""),
        claim=_text(head, "claim", path, ""),
        source=_text(head, "source", path, ""),
        design=_paragraphs(head.get("design", "")),
        analysis=kind,
        metric=metric,
        datasets=lists["datasets"],
        models=lists["models"],
        sweep=sweep,
        arms=arms,
        quick=quick,
        analysis_params=params,
        verdict=rules,
        raw=raw,
    )
    # every arm must be a valid sweep (on a model of CHECK_DEPTH blocks: the real depth is checked at run time),
    # in its full and its quick form
    for arm in arms:
        for quick_form in (False, True):
            try:
                settings = study.arm_settings(arm, quick_form)
            except UnfreezeError as exc:
                raise UnfreezeError(f"{path} (arm {arm.name!r}): {exc}") from None
            check_sweep_settings(settings, path, arm.name, quick_form)
    return study


def check_sweep_settings(settings: dict, path: Path | str, arm: str, quick: bool = False) -> SweepSpec:
    """Build the arm's SweepSpec (sizes per class stood in for by the per-class numbers) to check it now."""
    settings = dict(settings)
    per_class = settings.pop("n_per_class", None)
    if per_class is not None:
        values = as_list(per_class)
        if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
            raise UnfreezeError(f"{path}: n_per_class must be a list of ints >= 1. Got {per_class!r}.")
        if "n_train" in settings:
            raise UnfreezeError(f"{path}: give n_train or n_per_class, not both (arm {arm!r}).")
        settings["n_train"] = values
    try:
        return SweepSpec(**settings)
    except UnfreezeError as exc:
        where = f"arm {arm!r}" + (" with --quick" if quick else "")
        raise UnfreezeError(f"{path} ({where}): {exc}") from None
    except TypeError as exc:  # a setting of the wrong shape (a table where a value is expected)
        raise UnfreezeError(f"{path} (arm {arm!r}): {exc}.") from None


__all__ = ["QUICK_DEFAULTS", "Arm", "Study", "check_sweep_settings", "load_study", "resolve_depth", "study_from_dict"]
