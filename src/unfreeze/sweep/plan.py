"""Planning a sweep run, shared by its backends: its data, cell keys, what is pending, and the recording.

The local backend (``local.py``), the worker pool (``workers.py``) and the Ray backend
(``ray_backend.py``) all plan with this module: the planning (``plan_sweep``: data, cell
keys, what is pending) and the recording (``SweepPlan.record``: only the driver appends to
the store) are the same code, so resume, ``--retry-failed``, failure isolation and the
progress bar behave the same. Cells already in the store are skipped.

The parts a backend runs: ``samples`` (the data and each seed's samples), ``warm`` (the
shared caches), ``cell`` (one cell), ``progress`` (the display); their names are
importable from here too.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..data import sample
from ..storage import strict_json
from ..storage.cache import atomic_path
from ..tasks import DEFAULT_TASK
from .cell import (
    PREDICT_TIMING_TEXTS,
    cell_classifier,
    cell_header,
    failed_record,
    holdout_validation,
    prediction_seconds_per_text,
    run_cell,
    validation_scores,
)
from .grid import Cell, SweepSpec, expand
from .progress import CellProgress, progress_bar
from .samples import SweepData, load_sweep_data, seed_samples
from .store import ResultsStore
from .warm import (
    embed_everything,
    embeds_frozen,
    frozen_layers,
    inference_backbone,
    prefix_ks,
    shared_caches,
    warm_prefixes,
)

SPEC_FILE = "sweep.json"


PROBE_FILE = "probe.json"


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
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


def plan_sweep(
    spec: SweepSpec, run_dir: str | Path, retry_failed: bool = False, device: str | None = None, run_kind: str = "sweep"
) -> SweepPlan:
    """Load the data and the model's identity, write sweep.json, and list the unfinished cells.

    ``run_kind``: the kind of run folder sweep.json records (``storage.outputs.run_kind_of``), e.g.
    "intrinsic-dim" for the sweeps that command runs into its folder."""
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
        tmp.write_text(
            strict_json.dumps(
                {
                    "run_kind": run_kind,
                    "spec": spec.as_dict(),
                    "model_fingerprint": model_fp,
                    "data_fingerprint": data.fingerprint,
                    "num_blocks": backbone.num_blocks,
                    "n_train_pool": len(data.train_pool),
                    "n_test": len(data.test),
                    # the data's task (a built-in's own without --task); a single-label sweep's file is as before
                    **({"task": data.train_pool.task} if data.train_pool.task != DEFAULT_TASK else {}),
                },
                indent=2,
            )
        )
    latest = store.latest()
    keyed = [(cell, cell.key(data.fingerprint, model_fp, spec.cell_settings(cell.strategy))) for cell in cells]
    pending = [
        (cell, key) for cell, key in keyed if key not in latest or (retry_failed and latest[key]["status"] == "failed")
    ]
    counts = {"total": len(cells), "skipped": len(cells) - len(pending), "done": 0, "failed": 0}
    context = {
        "versions": package_versions(),
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "device": str(backbone.device),
        "model": spec.model,
        "data": spec.data,
    }
    return SweepPlan(spec, run_dir, data, backbone.num_blocks, model_fp, pending, context, store, counts)


def probe_needed(spec: SweepSpec, run_dir: Path) -> bool:
    return spec.probe and not (run_dir / PROBE_FILE).exists()


def probe_rows(spec: SweepSpec, data: SweepData, shared_cache: bool, device: str | None = None) -> dict:
    """Per-layer probe on the largest training size (first seed); its curve goes in the report."""
    from ..features.probe import run_probe

    train = sample(data.train_pool, n_total=max(spec.n_train), seed=spec.seeds[0])
    rows = run_probe(
        train,
        data.test,
        spec.model,
        spec.pooling,
        spec.max_length,
        spec.batch_size,
        seed=spec.seeds[0],
        cache=shared_cache,
        progress=False,
        device=device,
        precision=spec.precision,
        task=spec.task_object(),
    )
    return {"n_train": len(train), "model": spec.model, "rows": rows}


def write_probe(run_dir: Path, result: dict) -> None:
    with atomic_path(run_dir / PROBE_FILE) as tmp:
        tmp.write_text(strict_json.dumps(result, indent=2))


__all__ = [
    "PREDICT_TIMING_TEXTS",
    "PROBE_FILE",
    "SPEC_FILE",
    "CellProgress",
    "SweepData",
    "SweepPlan",
    "cell_classifier",
    "cell_header",
    "embed_everything",
    "embeds_frozen",
    "failed_record",
    "frozen_layers",
    "git_revision",
    "holdout_validation",
    "inference_backbone",
    "load_sweep_data",
    "plan_sweep",
    "prediction_seconds_per_text",
    "prefix_ks",
    "probe_needed",
    "probe_rows",
    "progress_bar",
    "run_cell",
    "runner_info",
    "seed_samples",
    "shared_caches",
    "validation_scores",
    "warm_prefixes",
    "write_probe",
]
