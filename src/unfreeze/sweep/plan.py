"""What a sweep run does, shared by its backends: planning, running one cell, warming the shared caches.

Shared work: one embedding pass per seed over that seed's largest training sample and the
test set serves every cell of a strategy that never changes the model's weights
(``features``; ``mix``, whose layers it pools too: ``Strategy.pooled_layers``) and the probe
(nested samples are subsets of it); one prefix pass keeping
the output of every frozen-block count k, over the same texts, serves the training and the
scoring of every cell trained by the shared loop above a frozen prefix (``freeze`` k >= 1,
``lora`` with ``top_blocks``, ``reinit`` with k). Cells already in the store are skipped;
a failing cell is recorded with its error and the sweep goes on.

The local backend (``local.py``) and the Ray backend (``ray_backend.py``) both import this
module: the planning (``plan_sweep``: data, cell keys, what is pending) and the recording
(``SweepPlan.record``: only the driver appends to the store) are the same code, so resume,
``--retry-failed``, failure isolation and the progress bar behave the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..storage.cache import atomic_path, sha256_json
from ..data import TextDataset, hold_out, sample, train_test_split
from ..data.splits import load_splits
from ..errors import UnfreezeError
from .grid import Cell, SweepSpec, expand
from .store import ResultsStore

SPEC_FILE = "sweep.json"
PROBE_FILE = "probe.json"
# test texts whose prediction is timed per cell (prediction time per text: the report's second cost)
PREDICT_TIMING_TEXTS = 128


@dataclass
class SweepData:
    train_pool: TextDataset
    test: TextDataset
    fingerprint: str


def load_sweep_data(spec: SweepSpec) -> SweepData:
    """The pool every training sample is drawn from, and the test set (``fit``'s rules; a file with
    neither ``test`` nor ``test_size`` holds out 20%: a sweep needs a test set)."""
    pool, test = load_splits(spec.data, spec.test, spec.test_size, spec.text_col, spec.label_col,
                             spec.text_pair_col, seed=0)
    if test is None:
        pool, test = train_test_split(pool, 0.2, seed=0)
    if spec.n_test is not None and spec.n_test < len(test):
        test = sample(test, n_total=spec.n_test, seed=0)
    largest = max(spec.n_train)
    if largest + spec.validation_size > len(pool):
        held = f" besides the --validation-size {spec.validation_size} held out" if spec.validation_size else ""
        raise UnfreezeError(f"--n-train {largest}{held} is more than the {len(pool)} training examples of "
                            f"{spec.data}. Use at most {len(pool) - spec.validation_size}.")
    return SweepData(pool, test, sha256_json([pool.fingerprint(), test.fingerprint()]))


def seed_samples(spec: SweepSpec, pool: TextDataset, n_train: int, seed: int) -> tuple[TextDataset, TextDataset | None]:
    """A cell's training sample and its fixed validation set (None: the sample holds its own split).

    With ``validation_size`` the seed's validation set is held out of the pool first and the
    nested training samples come from the rest."""
    if not spec.validation_size:
        return sample(pool, n_total=n_train, seed=seed), None
    validation, rest = hold_out(pool, spec.validation_size, seed)
    if 0 < spec.validation_used < len(validation):  # the first of its stratified order: nested, every class kept
        validation = validation.subset(list(range(spec.validation_used)))
    return sample(rest, n_total=n_train, seed=seed), validation


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def runner_info(backend: str) -> dict:
    """Where a cell ran: differs between runs by nature, so result comparisons leave it out."""
    return {"backend": backend, "host": socket.gethostname(), "pid": os.getpid()}


@dataclass
class SweepPlan:
    """What a sweep run will do, and the driver's side of recording results."""

    spec: SweepSpec
    run_dir: Path
    data: SweepData
    num_blocks: int
    model_fingerprint: str
    pending: list[tuple[Cell, str]]
    context: dict
    store: ResultsStore
    counts: dict[str, int] = field(default_factory=dict)

    def seed_cells(self, seed: int) -> list[Cell]:
        return [c for c, _ in self.pending if c.seed == seed]

    def largest_n(self, seed: int) -> int:
        """The training size whose sample holds every pending cell's sample of this seed (nested samples)."""
        return max(c.n_train for c in self.seed_cells(seed))

    def embed_seeds(self) -> list[int]:
        return sorted({c.seed for c, _ in self.pending}) or self.spec.seeds[:1]

    def needs_embeddings(self) -> bool:
        return any(embeds_frozen(c) for c, _ in self.pending) or probe_needed(self.spec, self.run_dir)

    def record(self, cell: Cell, record: dict, bar: CellProgress) -> None:
        """Append one finished cell to the store (the driver alone writes it) and count it."""
        record.update({k: v for k, v in self.context.items() if k not in record})
        self.store.append(record)
        self.counts[record["status"]] += 1
        bar.finished(cell, record)


def plan_sweep(spec: SweepSpec, run_dir: str | Path, retry_failed: bool = False, device: str | None = None) -> SweepPlan:
    """Load the data and the model's identity, write sweep.json, and list the unfinished cells."""
    from ..inference.bundle import package_versions
    from ..models.loaded import shared_backbone

    run_dir = Path(run_dir)
    data = load_sweep_data(spec)
    backbone = shared_backbone(spec.model, device)
    cells = expand(spec, backbone.num_blocks)
    model_fp = backbone.fingerprint()
    store = ResultsStore(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / SPEC_FILE) as tmp:
        tmp.write_text(json.dumps({"spec": spec.as_dict(), "model_fingerprint": model_fp,
                                   "data_fingerprint": data.fingerprint, "num_blocks": backbone.num_blocks,
                                   "n_train_pool": len(data.train_pool), "n_test": len(data.test)}, indent=2))
    latest = store.latest()
    keyed = [(cell, cell.key(data.fingerprint, model_fp, spec.cell_settings(cell.strategy))) for cell in cells]
    pending = [(cell, key) for cell, key in keyed
               if key not in latest or (retry_failed and latest[key]["status"] == "failed")]
    counts = {"total": len(cells), "skipped": len(cells) - len(pending), "done": 0, "failed": 0}
    context = {"versions": package_versions(), "git_revision": git_revision(), "python": platform.python_version(),
               "device": str(backbone.device), "model": spec.model, "data": spec.data}
    return SweepPlan(spec, run_dir, data, backbone.num_blocks, model_fp, pending, context, store, counts)


class CellProgress:
    """A sweep's progress: a bar on a terminal, one plain line per finished cell otherwise.

    Piped into a log or `tee` (CI, `make demo | tee log`), a bar prints nothing until it
    ends; a line per cell shows that the sweep is alive and what each cell scored.
    """

    def __init__(self, total: int, skipped: int, enabled: bool = True, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total, self.count = total, skipped
        terminal = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, initial=skipped, desc="sweep", unit="cell", file=self.stream) if terminal else None
        if enabled and self.bar is None and skipped:
            self.line(f"sweep: {skipped} of {total} cells already done")

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.enabled:
            print(text, file=self.stream, flush=True)

    def running(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def finished(self, cell: Cell, record: dict) -> None:
        self.count += 1
        if record["status"] == "failed":
            self.line(f"cell failed ({cell.describe()}): {record['error']}")
        elif self.bar is None:
            test = record.get("test", {}).get("accuracy")
            seconds = record.get("fit", {}).get("seconds")
            self.line(f"sweep: cell {self.count}/{self.total} done: {cell.describe()}"
                      + (f", test accuracy {test:.4f}" if test is not None else "")
                      + (f" ({seconds:.1f} s)" if seconds is not None else ""))
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_bar(plan: SweepPlan, progress: bool) -> CellProgress:
    return CellProgress(plan.counts["total"], plan.counts["skipped"], progress)


def shared_caches() -> contextlib.ExitStack:
    """The in-memory pools a sweep shares across cells: pooled embeddings and frozen-prefix states."""
    from ..features.embed import shared_embeddings
    from ..training.prefix import shared_prefix_states

    stack = contextlib.ExitStack()
    stack.enter_context(shared_embeddings())
    stack.enter_context(shared_prefix_states())
    return stack


def embeds_frozen(cell: Cell) -> bool:
    """A cell whose strategy pools the untouched model's states: the shared embedding pass serves it."""
    return not cell.make_strategy().changes_weights


def frozen_layers(spec: SweepSpec, num_blocks: int) -> set[int]:
    """Every pooled hidden state the sweep's frozen-model cells read (``Strategy.pooled_layers``):
    the sweep's ``layers`` for ``features``, every state (or its own set) for ``mix``, none for ``bilstm``."""
    from ..models.pooling import parse_layers

    spec_layers = parse_layers(spec.layers, num_blocks, "sweep")
    layers: set[int] = set()
    for cell in {cell.label: cell for cell in expand(spec, num_blocks)}.values():  # one cell per configuration
        strategy = cell.make_strategy()
        if strategy.changes_weights:
            continue
        try:
            layers |= set(strategy.pooled_layers(num_blocks, spec_layers))
        except UnfreezeError:
            continue  # a value this model does not allow: that cell fails with its own message
    return layers


def inference_backbone(spec: SweepSpec, device: str | None = None):
    """The shared model a sweep's passes without gradients run on (embeddings, frozen prefixes): the base
    model in the precision ``spec.precision`` gives on this hardware (a bf16 copy where that is fast)."""
    from ..machine.hardware import run_precision
    from ..models.loaded import shared_backbone

    base = shared_backbone(spec.model, device)
    return shared_backbone(spec.model, device, run_precision(spec.precision, base.device).inference_dtype)


def embed_everything(spec: SweepSpec, data: SweepData, backbone, seeds: list[int]) -> None:
    """One embedding pass over every text that a frozen-model cell or the probe will need.

    The union of each seed's largest sample and the test set, with every layer the cells
    and the probe read: later calls on any subset are served from memory.
    """
    from ..features.embed import embed
    from ..models.pooling import resolve_pooling

    pooling = resolve_pooling(spec.pooling, backbone.is_decoder, "sweep")
    layers = frozen_layers(spec, backbone.num_blocks)
    if spec.probe:
        layers |= set(range(backbone.num_blocks + 1))
    if not layers:
        return  # the frozen-model cells read no pooled states (bilstm reads token states)
    texts: dict[object, None] = {}
    for seed in seeds:
        largest, validation = seed_samples(spec, data.train_pool, max(spec.n_train), seed)
        texts.update(dict.fromkeys(largest.inputs))
        texts.update(dict.fromkeys(validation.inputs if validation is not None else []))
    texts.update(dict.fromkeys(data.test.inputs))
    embed(backbone, list(texts), sorted(layers), pooling, spec.max_length, spec.batch_size, progress=False)


def prefix_ks(cells: list[Cell], num_blocks: int) -> list[int]:
    """The frozen-block counts k >= 1 of cells trained by the shared loop: the prefixes worth sharing."""
    from ..strategies import TunedStrategy

    ks = set()
    for cell in cells:
        strategy = cell.make_strategy()
        if isinstance(strategy, TunedStrategy) and strategy.frozen_blocks(num_blocks) >= 1:
            ks.add(strategy.frozen_blocks(num_blocks))
    return sorted(ks)


def warm_prefixes(spec: SweepSpec, data: SweepData, backbone, seed: int, n_largest: int, ks: list[int]) -> None:
    """One prefix pass over this seed's largest sample and the test set, keeping the output of every k in ``ks``.

    The states of an example do not depend on which ks are kept (the pass stops after
    the highest), so a Ray task that keeps only its own k gets the very numbers the
    local backend shares across a seed's cells.
    """
    from ..features.embed import input_keys
    from ..training.prefix import PREFIX_POOLS, compute_prefix_states

    largest, validation = seed_samples(spec, data.train_pool, n_largest, seed)
    PREFIX_POOLS.clear()  # the previous seed's states: the test set's are recomputed, the rest not needed again
    if ks:
        # the training sample (the cells' validation splits are inside it, or held out beside it) and the test set
        held = [validation.inputs] if validation is not None else []
        for inputs in (largest.inputs, *held, data.test.inputs):
            encoded = backbone.encode(inputs, spec.max_length)
            compute_prefix_states(backbone, encoded, ks, spec.batch_size,
                                  pool_key=(backbone.fingerprint(), encoded.max_length), keys=input_keys(inputs))


def cell_header(spec: SweepSpec, cell: Cell, key: str) -> dict:
    """The part of a result row that names the cell; the rest says how it went."""
    return {"key": key, "cell": {"strategy": cell.strategy, **dict(cell.params), "n_train": cell.n_train,
                                 "seed": cell.seed, "label": cell.label},
            "settings": spec.cell_settings(cell.strategy), "started": time.time()}


def failed_record(spec: SweepSpec, cell: Cell, key: str, error: str, trace: str = "") -> dict:
    record = cell_header(spec, cell, key)
    record.update({"status": "failed", "error": error.splitlines()[0] if error else "failed", "traceback": trace,
                   "finished": time.time()})
    return record


def cell_classifier(spec: SweepSpec, cell: Cell, device: str | None = None, use_cache: bool = True):
    """The unfitted Classifier of one cell: its strategy object, and the sweep's settings it reads."""
    from ..estimators import Classifier
    from ..training.settings import Training

    strategy = cell.make_strategy()
    training = spec.training_for(type(strategy))
    if "prefix_cache" in strategy.training_settings:
        training["prefix_cache"] = use_cache and spec.prefix_cache
    return Classifier(model=spec.model, strategy=strategy, training=Training(**training), pooling=spec.pooling,
                      layers=spec.layers, max_length=spec.max_length, batch_size=spec.batch_size, seed=cell.seed,
                      device=device, progress=False, cache=use_cache, precision=spec.precision)


def run_cell(spec: SweepSpec, data: SweepData, cell: Cell, key: str, device: str | None = None,
             use_cache: bool = True, score_test: bool = True, after_fit=None) -> dict:
    """Fit and score one cell; never raises for a failure of the cell itself: records it.

    ``score_test=False`` leaves the test set alone (the advisor decides on validation scores
    only); ``after_fit(clf, train, record)`` may add to the row (the advisor times prediction)."""
    record = cell_header(spec, cell, key)
    try:
        train, validation = seed_samples(spec, data.train_pool, cell.n_train, cell.seed)
        clf = cell_classifier(spec, cell, device, use_cache).fit(
            train.inputs, train.labels, validation=None if validation is None else (validation.inputs,
                                                                                      validation.labels))
        fit_record = dict(clf.fit_record_)
        history = fit_record.pop("history", [])
        val = history[fit_record.get("best_epoch", 0) - 1] if history and "val_accuracy" in history[-1] else {}
        searched = fit_record.pop("validation", None)
        if searched:  # the rate search scored every rate on the held-out split; this is the chosen one's
            val = {f"val_{k}": v for k, v in searched.items()}
        elif validation is not None and not val:  # a fit that did not validate (features): its score there
            val = validation_scores(clf, validation)
        elif spec.searches_rates and not clf.strategy_.changes_weights:
            val = holdout_validation(spec, cell, device, use_cache, train)
        if validation is not None and val and "val_n" not in val:  # an epoch's scores on the held-out set
            val = {**val, "val_n": len(validation)}
        record.update({
            "status": "done",
            "train": clf.evaluate(train.inputs, train.labels),
            **({"test": clf.evaluate(data.test.inputs, data.test.labels),
                "predict_seconds_per_text": prediction_seconds_per_text(clf, data.test.inputs[:PREDICT_TIMING_TEXTS])}
               if score_test else {}),
            "validation": {k.removeprefix("val_"): v for k, v in val.items() if k.startswith("val_")},
            "fit": fit_record,
            "n_test": len(data.test),
            "device": fit_record.get("device", str(device)),
        })
        if after_fit is not None:
            after_fit(clf, train, record)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a cell's failure (bad parameter, out of memory) is a result
        record.update({"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                       "traceback": traceback.format_exc(limit=8)})
    record["finished"] = time.time()
    return record


def holdout_validation(spec: SweepSpec, cell: Cell, device: str | None, use_cache: bool, train) -> dict:
    """A validation score for a cell whose fit holds nothing out (``features``): the same strategy fitted on the
    cell's training split and scored on its validation split, the split a rate search uses, so that every
    cell of a tuned sweep is scored on the same examples (cheap: the frozen model's embeddings are shared)."""
    import numpy as np

    from ..strategies.base import validation_split

    _, y_idx = np.unique(np.asarray(train.labels), return_inverse=True)
    train_idx, val_idx = validation_split(y_idx, spec.validation_fraction, cell.seed)
    if not len(val_idx):
        return {}
    clf = cell_classifier(spec, cell, device, use_cache)
    clf.fit([train.inputs[i] for i in train_idx], [train.labels[i] for i in train_idx])
    return {**validation_scores(clf, train.subset(val_idx)), "val_holdout": True}


def validation_scores(clf, validation: TextDataset) -> dict:
    """``val_``-prefixed metrics, log-loss and size of fitted ``clf`` on ``validation``."""
    import numpy as np

    from ..metrics import classification_metrics

    proba = np.clip(clf.predict_proba(validation.inputs), 1e-12, 1.0)
    y_val = np.searchsorted(clf.classes_, validation.labels)
    metrics = classification_metrics(list(validation.labels), clf.classes_[proba.argmax(axis=1)].tolist())
    return {**{f"val_{k}": v for k, v in metrics.items()},
            "val_loss": float(-np.log(proba[np.arange(len(y_val)), y_val]).mean()), "val_n": len(validation)}


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
            clf.predict_proba(inputs)
            return (time.perf_counter() - start) / max(len(inputs), 1)
        finally:
            if use_cache is not None:
                predictor.use_cache = use_cache


def probe_needed(spec: SweepSpec, run_dir: Path) -> bool:
    return spec.probe and not (run_dir / PROBE_FILE).exists()


def probe_rows(spec: SweepSpec, data: SweepData, shared_cache: bool, device: str | None = None) -> dict:
    """Per-layer probe on the largest training size (first seed); its curve goes in the report."""
    from ..features.probe import run_probe

    train = sample(data.train_pool, n_total=max(spec.n_train), seed=spec.seeds[0])
    rows = run_probe(train, data.test, spec.model, spec.pooling, spec.max_length, spec.batch_size,
                     seed=spec.seeds[0], cache=shared_cache, progress=False, device=device, precision=spec.precision)
    return {"n_train": len(train), "model": spec.model, "rows": rows}


def write_probe(run_dir: Path, result: dict) -> None:
    with atomic_path(run_dir / PROBE_FILE) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
