"""Run a sweep's cells, sharing the expensive work, resumable; locally or on Ray.

``plan.py`` holds what both backends share (planning, one cell, the shared caches);
``local.py`` runs cells in this process; ``ray_backend.py`` runs them as Ray tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UnfreezeError
from .grid import SweepSpec
from .plan import plan_sweep

if TYPE_CHECKING:
    from .ray_backend import RayOptions

BACKENDS = ("local", "ray")


def run_sweep(
    spec: SweepSpec,
    run_dir: str | Path,
    retry_failed: bool = False,
    shared_cache: bool = True,
    progress: bool = True,
    device: str | None = None,
    backend: str = "local",
    ray_options: RayOptions | None = None,
    workers: int = 1,
) -> dict[str, int]:
    """Run every unfinished cell of ``spec`` into ``run_dir``; returns counts (total, done, failed, skipped).

    ``backend="ray"`` runs each cell as a Ray task (``ray_options``: address, resources per cell).
    ``workers=N`` (local backend) runs N cells at once, each in a worker process of its own
    (several cells on one GPU, or spread over the GPUs with ``device="cuda"``).
    """
    if backend not in BACKENDS:
        raise UnfreezeError(f"Unknown backend {backend!r}. Backends: {', '.join(BACKENDS)}.")
    from .workers import check_workers

    check_workers(workers, backend)
    if backend == "ray":
        from .ray_backend import RayOptions, connect, require_ray, run_sweep_ray

        ray = require_ray()
        options = ray_options or RayOptions()
        # before loading anything: a missing package or a wrong address is the first thing to say
        started_here = connect(options.address)
        try:
            # the driver needs only the model's identity and size: keep its copy off the GPUs the cells use
            plan = plan_sweep(spec, run_dir, retry_failed, device or "cpu")
            return run_sweep_ray(plan, options, shared_cache, progress, device)
        finally:
            if started_here:
                ray.shutdown()
    if workers > 1:
        from .workers import run_workers

        return run_workers(plan_sweep(spec, run_dir, retry_failed, device), workers, shared_cache, progress, device)
    from .local import run_local

    return run_local(plan_sweep(spec, run_dir, retry_failed, device), shared_cache, progress, device)
