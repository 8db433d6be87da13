"""Run a study: check it against the data and the model, run each arm's sweep (resumable), write FINDINGS.md.

Everything that can be wrong is found before any cell runs: data too small for the
study's sizes, a strategy the model cannot run (``Strategy.check_model``: a BiLSTM on a
model without token states, a block count out of range), a configuration the analysis
names that no arm has. Each arm is an ordinary sweep (``unfreeze.sweep``) in
``arms/NAME``: cells already in its results store are not run again, and a killed run
continues where it stopped. ``reuse`` folders lend finished cells with the same cell key
(same data, model, strategy, parameters, size, seed and settings: the same computation),
so studies that share cells (full fine-tuning at 1,000 examples) pay for them once.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import UnfreezeError
from ..sweep.grid import SweepSpec, expand
from ..sweep.store import RESULTS_FILE, ResultsStore
from ..tasks import DEFAULT_TASK
from .analyses import analysis_kind
from .findings import Findings, write_findings
from .results import ARMS_FOLDER, STUDY_FILE, STUDY_FORMAT, read_meta, write_meta
from .spec import Study, check_sweep_settings

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _sizes(settings: dict, n_classes: int) -> tuple[list[int], dict[int, int]]:
    """The arm's training sizes (n_train) and, when given per class, n_train -> examples per class."""
    from ..sweep.grid import as_list

    if settings.get("n_per_class") is not None:
        per = sorted({int(v) for v in as_list(settings["n_per_class"])})
        return [p * n_classes for p in per], {p * n_classes: p for p in per}
    return sorted({int(v) for v in as_list(settings.get("n_train", [128]))}), {}


def _arm_spec(settings: dict, sizes: list[int], study: Study, arm: str) -> SweepSpec:
    settings = {k: v for k, v in settings.items() if k != "n_per_class"}
    settings["n_train"] = sizes
    return check_sweep_settings(settings, study.path, arm)


def check_strategies(study: Study, specs: dict[str, SweepSpec], backbone, model: str) -> dict[str, dict[str, str]]:
    """Check every configuration against the loaded model (as a fit would, before any cell runs); returns
    each arm's {cell label: the study's configuration label}."""
    from ..models.pooling import parse_layers

    L = backbone.num_blocks
    configs: dict[str, dict[str, str]] = {}
    seen: dict[str, str] = {}
    for arm in study.arms:
        spec = specs[arm.name]
        try:
            cells = expand(spec, L)
        except UnfreezeError as exc:
            raise UnfreezeError(f"Study {study.name!r} (arm {arm.name!r}) cannot run on {model}: {exc}") from None
        labels = list(dict.fromkeys(cell.label for cell in cells))
        by_label = {cell.label: cell for cell in cells}
        single = len(labels) == 1
        for label in labels:
            name = arm.config_label(label, single)
            named = label if name == label else f"{name} ({label})"
            strategy = by_label[label].make_strategy()
            try:
                strategy.check()
                layers = parse_layers(spec.layers, strategy.kept_blocks(L), strategy.name)
                strategy.check_model(backbone, layers)
                frozen = strategy.frozen_blocks(L)
                if strategy.changes_weights and min(layers) < frozen:
                    raise UnfreezeError(
                        f"layers {spec.layers} reads hidden states below the {frozen} frozen blocks of {label}"
                    )
            except UnfreezeError as exc:
                raise UnfreezeError(
                    f"Study {study.name!r} needs {named} (arm {arm.name!r}), which {model} cannot "
                    f"run: {str(exc).rstrip('.')}."
                ) from None
        configs[arm.name] = {label: arm.config_label(label, single) for label in labels}
        for config in configs[arm.name].values():
            if config in seen:
                raise UnfreezeError(
                    f"{study.path}: arms {seen[config]!r} and {arm.name!r} both have a configuration "
                    f"named {config!r}; give the arms labels that tell them apart."
                )
            seen[config] = arm.name
    needed = analysis_kind(study.analysis).labels(study.analysis_params)
    missing = [label for label in needed if label not in seen]
    if missing:
        raise UnfreezeError(
            f"{study.path}: [analysis] reads configuration {missing[0]!r}, which no arm has on "
            f"{model}. Configurations: {', '.join(seen)}."
        )
    return configs


def _majority(pool, test) -> dict:
    """The majority-class baseline: the training pool's most frequent class, predicted for every test text."""
    from ..metrics import classification_metrics

    if pool.task != DEFAULT_TASK:  # a majority class is a single-label baseline; other tasks have none
        return {}
    counts = pool.class_counts()
    top = max(counts, key=lambda c: (counts[c], str(c)))
    metrics = classification_metrics([str(y) for y in test.labels], [str(top)] * len(test))
    return {"class": str(top), **metrics}


def _reuse_index(folders: Iterable[Path], exclude: Path) -> dict[str, tuple[dict, Path]]:
    """Finished cells of other run folders by cell key (the first found wins)."""
    index: dict[str, tuple[dict, Path]] = {}
    exclude = exclude.resolve()
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            raise UnfreezeError(f"--reuse folder {folder} does not exist.")
        for path in sorted(folder.rglob(RESULTS_FILE)):
            source = path.parent.resolve()
            if source == exclude or exclude in source.parents:
                continue
            for key, record in ResultsStore(source).latest(require_cell=True).items():
                if record.get("status") == "done" and not record.get("reused_from") and key not in index:
                    index[key] = (record, path.parent)
    return index


def _machine() -> str:
    from ..machine.hardware import describe

    return describe()


def run_study(
    study: Study,
    output: str | Path,
    data: str | None = None,
    model: str | None = None,
    quick: bool = False,
    reuse: Iterable[str | Path] = (),
    retry_failed: bool = False,
    device: str | None = None,
    progress: bool = True,
    test: str | None = None,
    text_col: str | None = None,
    label_col: str | None = None,
    log: Log = _stderr,
    test_size: float | None = None,
    text_pair_col: str | None = None,
    precision: str | None = None,
    data_task: dict | None = None,
) -> Findings:
    """Run ``study`` into ``output`` on ``data`` with ``model`` (defaults: the study's first), then write its
    findings. Resumable; with every cell done it runs nothing and rewrites FINDINGS.md. ``data_task``: how the
    labels are read (``task``, ``label_sep``, ``thresholds``: the command's options; None values: the study's
    [sweep], else the data's own task)."""
    from ..models.loaded import shared_backbone
    from ..sweep.local import run_local
    from ..sweep.plan import git_revision, load_sweep_data, plan_sweep

    started = time.perf_counter()
    output = Path(output)
    data = data or study.default_data
    model = model or study.default_model
    identity = {"name": study.name, "data": data, "model": model, "quick": quick, "test": test}
    given_task = {k: v for k, v in (data_task or {}).items() if v is not None and (k, v) != ("thresholds", "global")}
    if given_task.get("task"):  # a run of earlier releases, or one without --task, has none: same identity
        identity["task"] = given_task["task"]
    if (output / STUDY_FILE).exists():
        previous = read_meta(output)
        different = [k for k, v in identity.items() if previous.get(k) != v]
        if different:
            was = ", ".join(f"{k}={previous.get(k)!r}" for k in different)
            raise UnfreezeError(
                f"{output} holds a run of study {previous.get('name')!r} with {was}; this run has "
                + ", ".join(f"{k}={identity[k]!r}" for k in different)
                + ". Choose another -o for it."
            )
    overrides: dict = {"data": data, "model": model}
    for key, value in (
        ("test", test),
        ("text_col", text_col),
        ("label_col", label_col),
        ("test_size", test_size),
        ("text_pair_col", text_pair_col),
        ("precision", precision),
        *given_task.items(),
    ):
        if value is not None:
            overrides[key] = value

    # 1. the data: sizes the study needs against what the data has (before loading any model)
    first = study.arm_settings(study.arms[0], quick, overrides=overrides)
    probe_spec = _arm_spec(first, [1], study, study.arms[0].name)
    loaded = load_sweep_data(probe_spec)
    pool, test_set = loaded.train_pool, loaded.test
    study.metric_for(pool.task)  # a metric the data's task does not report: one line before anything runs
    n_classes = len(pool.classes)
    arm_sizes: dict[str, tuple[list[int], dict[int, int]]] = {}
    for arm in study.arms:
        settings = study.arm_settings(arm, quick, overrides=overrides)
        sizes, per_class = _sizes(settings, n_classes)
        arm_sizes[arm.name] = (sizes, per_class)
        if max(sizes) > len(pool):
            what = (
                f"{per_class[max(sizes)]} per class x {n_classes} classes = {max(sizes)}"
                if per_class
                else str(max(sizes))
            )
            hint = "" if quick else " Use --quick to check it at its smallest sizes, or"
            raise UnfreezeError(
                f"Study {study.name!r} needs {what} training examples (its largest size), and {data} "
                f"has {len(pool)} once its test set is held out.{hint} give larger data."
            )
    # 2. the model: every configuration must be one it can run
    backbone = shared_backbone(model, device)
    L = backbone.num_blocks
    specs = {}
    for arm in study.arms:
        settings = study.arm_settings(arm, quick, num_blocks=L, overrides=overrides)
        specs[arm.name] = _arm_spec(settings, arm_sizes[arm.name][0], study, arm.name)
    configs = check_strategies(study, specs, backbone, model)
    # 3. plan every arm (its cell keys), record the study, then run the arms in order
    plans = {
        arm.name: plan_sweep(specs[arm.name], output / ARMS_FOLDER / arm.name, retry_failed, device)
        for arm in study.arms
    }
    meta = read_meta(output) if (output / STUDY_FILE).exists() else {}
    invocation: dict[str, Any] = {
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "seconds": 0.0,
        "cells_run": 0,
        "cells_reused": 0,
        "machine": _machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "git_revision": git_revision(),
        "complete": False,
    }
    meta.update(
        {
            "format": STUDY_FORMAT,
            "version": 1,
            **identity,
            "study": study.as_dict(),
            "study_file": str(study.path),
            "output": str(output),
            "text_col": text_col,
            "label_col": label_col,
            "num_blocks": L,
            "model_fingerprint": backbone.fingerprint(),
            "data_summary": {
                "train_pool": len(pool),
                "n_test": len(test_set),
                "train_class_counts": {str(k): v for k, v in pool.class_counts().items()},
                "test_class_counts": {str(k): v for k, v in test_set.class_counts().items()},
            },
            "majority": _majority(pool, test_set),
            # the data's task (a single-label run's file is as before tasks existed)
            **({"task": pool.task} if pool.task != DEFAULT_TASK else {}),
        }
    )
    meta["arms"] = []
    for arm in study.arms:
        plan, spec = plans[arm.name], specs[arm.name]
        keys = [
            cell.key(plan.data.fingerprint, plan.model_fingerprint, spec.cell_settings(cell.strategy))
            for cell in expand(spec, plan.num_blocks)
        ]
        sizes, per_class = arm_sizes[arm.name]
        meta["arms"].append(
            {
                "name": arm.name,
                "label": arm.label,
                "folder": f"{ARMS_FOLDER}/{arm.name}",
                "keys": keys,
                "configs": configs[arm.name],
                "sizes": sizes,
                "per_class": {str(n): p for n, p in per_class.items()},
                "spec": json.loads(json.dumps(spec.as_dict(), default=str)),
            }
        )
    meta.setdefault("invocations", []).append(invocation)
    write_meta(output, meta)

    def tick(cells: int = 0, reused: int = 0) -> None:
        invocation["cells_run"] += cells
        invocation["cells_reused"] += reused
        invocation["seconds"] = round(time.perf_counter() - started, 1)
        write_meta(output, meta)

    index = _reuse_index([Path(p) for p in reuse], output) if reuse else {}
    for i, arm in enumerate(study.arms, start=1):
        plan = plans[arm.name]
        copied = 0
        for _cell, key in plan.pending:
            if key in index:
                record, source = index[key]
                plan.store.append({**record, "reused_from": str(source)})
                copied += 1
        if copied:
            plan = plan_sweep(specs[arm.name], output / ARMS_FOLDER / arm.name, retry_failed, device)
            tick(reused=copied)
        log(
            f"study {study.name}: arm {arm.name} ({i}/{len(study.arms)}): {plan.counts['total']} cells, "
            f"{len(plan.pending)} to run" + (f", {copied} reused" if copied else "")
        )
        if not plan.pending:
            continue
        record_cell = plan.record

        def recorded(cell, record, bar, _record=record_cell) -> None:
            _record(cell, record, bar)
            tick(cells=1)

        plan.record = recorded  # type: ignore[method-assign]
        run_local(plan, shared_cache=True, progress=progress, device=device)
    invocation["complete"] = True
    tick()
    return write_findings(output)


__all__ = ["check_strategies", "run_study"]
