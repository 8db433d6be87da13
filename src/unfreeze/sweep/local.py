"""The local backend: every cell in this process, one after another, sharing the in-memory caches."""

from __future__ import annotations

import contextlib

from .cell import run_cell
from .plan import SweepPlan, probe_needed, probe_rows, runner_info, write_probe
from .progress import progress_bar
from .warm import embed_everything, inference_backbone, prefix_ks, shared_caches, warm_prefixes


def run_local(
    plan: SweepPlan, shared_cache: bool = True, progress: bool = True, device: str | None = None
) -> dict[str, int]:
    """Run ``plan``'s pending cells here; returns the counts (total, done, failed, skipped)."""
    spec, data = plan.spec, plan.data
    backbone = inference_backbone(spec, device)
    info = runner_info("local")
    bar = progress_bar(plan, progress)
    try:
        with shared_caches() if shared_cache else contextlib.nullcontext():
            if shared_cache and plan.needs_embeddings():
                embed_everything(spec, data, backbone, plan.embed_seeds())
            current_seed = None
            for cell, key in plan.pending:
                bar.running(cell.describe())
                if shared_cache and cell.seed != current_seed:
                    current_seed = cell.seed
                    warm_prefixes(
                        spec,
                        data,
                        backbone,
                        cell.seed,
                        plan.largest_n(cell.seed),
                        prefix_ks(plan.seed_cells(cell.seed), plan.num_blocks),
                    )
                record = run_cell(spec, data, cell, key, device, use_cache=shared_cache)
                record["runner"] = info
                plan.record(cell, record, bar)
            if probe_needed(spec, plan.run_dir):
                write_probe(plan.run_dir, probe_rows(spec, data, shared_cache, device))
    finally:
        bar.close()
    return plan.counts
