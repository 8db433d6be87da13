"""Run a sweep's cells locally, sharing the expensive work, resumable.

Shared work: one embedding pass per seed over that seed's largest training sample and
the test set serves every ``features`` cell and the probe (nested samples are subsets
of it); one prefix pass keeping the output of every k, over the same texts, serves the
training and the scoring of every ``freeze`` cell of that seed. Cells already in the store are skipped; a failing cell is recorded with
its error and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..cache import atomic_path, sha256_json
from ..data import BUILTIN, TextDataset, load_data, sample, train_test_split
from ..errors import UnfreezeError
from .grid import Cell, SweepSpec, expand
from .store import ResultsStore

SPEC_FILE = "sweep.json"


@dataclass
class SweepData:
    train_pool: TextDataset
    test: TextDataset
    fingerprint: str


def load_sweep_data(spec: SweepSpec) -> SweepData:
    name, _, split = spec.data.partition(":")
    if name in BUILTIN and not split:
        pool = load_data(f"{name}:train")
        test = load_data(f"{name}:test") if spec.test is None else load_data(spec.test)
    else:
        pool = load_data(spec.data, spec.text_col, spec.label_col, spec.text_pair_col)
        if spec.test is not None:
            test = load_data(spec.test, spec.text_col, spec.label_col, spec.text_pair_col)
        else:
            pool, test = train_test_split(pool, spec.test_size or 0.2, seed=0)
    if spec.n_test is not None and spec.n_test < len(test):
        test = sample(test, n_total=spec.n_test, seed=0)
    largest = max(spec.n_train)
    if largest > len(pool):
        raise UnfreezeError(f"--n-train {largest} is more than the {len(pool)} training examples of {spec.data}. "
                            f"Use at most {len(pool)}.")
    return SweepData(pool, test, sha256_json([pool.fingerprint(), test.fingerprint()]))


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_sweep(spec: SweepSpec, run_dir: str | Path, retry_failed: bool = False, shared_cache: bool = True,
              progress: bool = True, device: str | None = None) -> dict[str, int]:
    """Run every unfinished cell of ``spec`` into ``run_dir``; returns counts (done, failed, skipped)."""
    from ..bundle import package_versions
    from ..classifier import shared_backbone
    from ..embed import shared_embeddings
    from ..training.prefix import shared_prefix_states

    run_dir = Path(run_dir)
    data = load_sweep_data(spec)
    backbone = shared_backbone(spec.model, device)
    cells = expand(spec, backbone.num_blocks)
    settings = spec.training_settings()
    model_fp = backbone.fingerprint()
    store = ResultsStore(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / SPEC_FILE) as tmp:
        import json

        tmp.write_text(json.dumps({"spec": spec.as_dict(), "model_fingerprint": model_fp,
                                   "data_fingerprint": data.fingerprint, "num_blocks": backbone.num_blocks,
                                   "n_train_pool": len(data.train_pool), "n_test": len(data.test)}, indent=2))
    latest = store.latest()
    keyed = [(cell, cell.key(data.fingerprint, model_fp, settings)) for cell in cells]
    pending = [(cell, key) for cell, key in keyed
               if key not in latest or (retry_failed and latest[key]["status"] == "failed")]
    counts = {"total": len(cells), "skipped": len(cells) - len(pending), "done": 0, "failed": 0}
    context = {"versions": package_versions(), "git_revision": git_revision(), "python": platform.python_version(),
               "device": str(backbone.device), "model": spec.model, "data": spec.data}

    bar = tqdm(total=len(cells), initial=counts["skipped"], desc="sweep", unit="cell", disable=not progress or None)
    embed_all = shared_cache and (any(c.strategy == "features" for c, _ in pending) or probe_needed(spec, run_dir))
    shared = (contextlib.ExitStack() if not shared_cache else _shared_context(shared_embeddings, shared_prefix_states))
    try:
        with shared:
            if embed_all:
                _embed_everything(spec, data, backbone, sorted({c.seed for c, _ in pending}) or spec.seeds[:1])
            current_seed = None
            for cell, key in pending:
                bar.set_postfix_str(cell.describe())
                if shared_cache and cell.seed != current_seed:
                    current_seed = cell.seed
                    _warm_shared(spec, data, backbone, cell.seed, [c for c, _ in pending if c.seed == cell.seed])
                record = run_cell(spec, data, cell, key, device, use_cache=shared_cache)
                record.update(context)
                store.append(record)
                counts[record["status"]] += 1
                bar.update(1)
                if record["status"] == "failed":
                    tqdm.write(f"cell failed ({cell.describe()}): {record['error']}")
            if probe_needed(spec, run_dir):
                _run_probe(spec, data, run_dir, shared_cache)
    finally:
        bar.close()
    return counts


def _shared_context(*factories) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    for factory in factories:
        stack.enter_context(factory())
    return stack


def _embed_everything(spec: SweepSpec, data: SweepData, backbone, seeds: list[int]) -> None:
    """One embedding pass over every text that a features cell or the probe will need.

    The union of each seed's largest sample and the test set, with every layer the cells
    and the probe read: later calls on any subset are served from memory.
    """
    from ..embed import embed
    from ..models.pooling import parse_layers, resolve_pooling

    pooling = resolve_pooling(spec.pooling, backbone.is_decoder, "sweep")
    layers = set(parse_layers(spec.layers, backbone.num_blocks, "sweep"))
    if spec.probe:
        layers |= set(range(backbone.num_blocks + 1))
    texts: dict[object, None] = {}
    for seed in seeds:
        texts.update(dict.fromkeys(sample(data.train_pool, n_total=max(spec.n_train), seed=seed).inputs))
    texts.update(dict.fromkeys(data.test.inputs))
    embed(backbone, list(texts), sorted(layers), pooling, spec.max_length, spec.batch_size, progress=False)


def _warm_shared(spec: SweepSpec, data: SweepData, backbone, seed: int, seed_cells: list[Cell]) -> None:
    """One prefix pass over this seed's largest sample and the test set, keeping every k of the seed's cells."""
    from ..embed import input_keys
    from ..training.prefix import _POOLS, compute_prefix_states

    largest = sample(data.train_pool, n_total=max(c.n_train for c in seed_cells), seed=seed)
    if _POOLS is not None:
        _POOLS.clear()  # the previous seed's states: the test set's are recomputed, the rest not needed again
    ks = sorted({dict(c.params)["k"] for c in seed_cells if c.strategy == "freeze" and dict(c.params)["k"] >= 1})
    if ks:
        # the training sample (the cells' validation splits are inside it) and the test set
        for inputs in (largest.inputs, data.test.inputs):
            encoded = backbone.encode(inputs, spec.max_length)
            compute_prefix_states(backbone, encoded, ks, spec.batch_size,
                                  pool_key=(backbone.fingerprint(), encoded.max_length), keys=input_keys(inputs))


def run_cell(spec: SweepSpec, data: SweepData, cell: Cell, key: str, device: str | None = None,
             use_cache: bool = True) -> dict:
    """Fit and score one cell; never raises for a failure of the cell itself: records it."""
    from ..classifier import Classifier

    started = time.time()
    record = {"key": key, "cell": {"strategy": cell.strategy, **dict(cell.params), "n_train": cell.n_train,
                                   "seed": cell.seed, "label": cell.label},
              "settings": spec.training_settings(), "started": started}
    try:
        train = sample(data.train_pool, n_total=cell.n_train, seed=cell.seed)
        params = dict(cell.params)
        clf = Classifier(model=spec.model, strategy=cell.strategy, pooling=spec.pooling, layers=spec.layers,
                         max_length=spec.max_length, batch_size=spec.batch_size, seed=cell.seed, epochs=spec.epochs,
                         learning_rate=spec.learning_rate, head_learning_rate=spec.head_learning_rate,
                         validation_fraction=spec.validation_fraction, device=device, progress=False,
                         cache=use_cache, prefix_cache=use_cache, **params)
        clf.fit(train.inputs, train.labels)
        fit_record = dict(clf.fit_record_)
        history = fit_record.pop("history", [])
        val = history[fit_record.get("best_epoch", 0) - 1] if history and "val_accuracy" in history[-1] else {}
        record.update({
            "status": "done",
            "train": clf.evaluate(train.inputs, train.labels),
            "test": clf.evaluate(data.test.inputs, data.test.labels),
            "validation": {k.removeprefix("val_"): v for k, v in val.items() if k.startswith("val_")},
            "fit": fit_record,
            "n_test": len(data.test),
        })
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a cell's failure (bad parameter, out of memory) is a result
        record.update({"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                       "traceback": traceback.format_exc(limit=8)})
    record["finished"] = time.time()
    return record


PROBE_FILE = "probe.json"


def probe_needed(spec: SweepSpec, run_dir: Path) -> bool:
    return spec.probe and not (run_dir / PROBE_FILE).exists()


def _run_probe(spec: SweepSpec, data: SweepData, run_dir: Path, shared_cache: bool) -> None:
    """Per-layer probe on the largest training size (first seed); its curve goes in the report."""
    import json

    from ..probe import run_probe

    train = sample(data.train_pool, n_total=max(spec.n_train), seed=spec.seeds[0])
    rows = run_probe(train, data.test, spec.model, spec.pooling, spec.max_length, spec.batch_size,
                     seed=spec.seeds[0], cache=shared_cache, progress=False)
    with atomic_path(run_dir / PROBE_FILE) as tmp:
        tmp.write_text(json.dumps({"n_train": len(train), "model": spec.model, "rows": rows}, indent=2))
