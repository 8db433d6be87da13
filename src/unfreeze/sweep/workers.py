"""Several cells at once on this machine: ``unfreeze sweep ... --workers N``.

One small cell leaves a GPU mostly idle: a MiniLM freeze cell of 2,000 examples is bound
by kernel launches and Python, not by the card's arithmetic. N worker processes, each
with its own model and its own CUDA context, run N cells at once on the same GPU (the
GPU interleaves their kernels), or spread over the GPUs of the machine when ``--device
cuda`` names none in particular. On a CPU they split its cores (each worker gets
1/N of the driver's threads), which pays off only when one cell cannot use them all.

What is shared, as on the Ray backend (``ray_backend.py``): the driver plans the sweep,
computes the pooled embeddings of the frozen-model cells once and hands them to every
worker at its start, and alone appends rows to the store. Each worker runs the
frozen-prefix pass of a seed once (every k of that seed's pending cells) and keeps it for
the cells of that seed it gets. A cell's numbers are those of the one-at-a-time run: the
same texts in the same batches, the same seeds.

A worker process that dies (out of memory, killed) stops the sweep with one line: the
cells recorded so far stay, and the same command again runs the rest.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ..errors import UnfreezeError
from .cell import run_cell
from .grid import Cell, SweepSpec
from .plan import SweepPlan, probe_needed, probe_rows, runner_info, write_probe
from .progress import progress_bar
from .samples import SweepData
from .warm import embed_everything, inference_backbone, prefix_ks, shared_caches, warm_prefixes

# what a worker process keeps between its cells
_WORKER: dict = {}


def worker_device(device: str | None, index: int, cuda_count: int) -> str | None:
    """The device worker ``index`` runs on: a plain ``cuda`` spreads the workers over the GPUs (round robin);
    a device with an index (``cuda:1``), ``cpu`` or None (the default device) is every worker's."""
    if device == "cuda" and cuda_count > 1:
        return f"cuda:{index % cuda_count}"
    return device


def _start_worker(
    spec: SweepSpec, data: SweepData, device: str | None, shared_cache: bool, pools: list, threads: int, counter
) -> None:
    """A worker's start: its share of the threads, its device, the shared embeddings.

    The model loads at its first cell.
    """
    import torch

    torch.set_num_threads(threads)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    cuda_count = torch.cuda.device_count() if device == "cuda" else 0
    caches = contextlib.ExitStack()
    if shared_cache:
        caches.enter_context(shared_caches())  # held for the worker's life: the process ends with the sweep
        if pools:
            from ..features.embed import import_pools

            import_pools(pools)
    _WORKER.update(
        spec=spec,
        data=data,
        device=worker_device(device, index, cuda_count),
        shared_cache=shared_cache,
        caches=caches,
        warm=None,
        info={**runner_info("local"), "worker": index},
    )


def _run_in_worker(cell: Cell, key: str, n_largest: int, ks: tuple[int, ...]) -> dict:
    """One cell in a worker; the seed's prefix pass runs once per worker and seed (``ks``: every k of the seed)."""
    spec, data, device, shared_cache = (_WORKER[name] for name in ("spec", "data", "device", "shared_cache"))
    if shared_cache and ks and _WORKER["warm"] != (cell.seed, n_largest, ks):
        warm_prefixes(spec, data, inference_backbone(spec, device), cell.seed, n_largest, list(ks))
        _WORKER["warm"] = (cell.seed, n_largest, ks)
    record = run_cell(spec, data, cell, key, device, use_cache=shared_cache)
    record["runner"] = dict(_WORKER["info"])
    return record


def run_workers(
    plan: SweepPlan, workers: int, shared_cache: bool = True, progress: bool = True, device: str | None = None
) -> dict[str, int]:
    """Run ``plan``'s pending cells in ``workers`` processes on this machine; returns the counts."""
    import torch

    from ..features.embed import export_pools, shared_embeddings

    spec = plan.spec
    bar = progress_bar(plan, progress)
    executor = None
    in_flight: dict[Future, tuple[Cell, str]] = {}
    try:
        # the driver's embedding pool: its export goes to every worker, and the probe (run here) reads it too
        with shared_embeddings() if shared_cache else contextlib.nullcontext():
            pools: list = []
            if shared_cache and plan.needs_embeddings():
                bar.running("embedding")
                embed_everything(spec, plan.data, inference_backbone(spec, device), plan.embed_seeds())
                pools = export_pools()
            threads = max(1, torch.get_num_threads() // workers)
            context = multiprocessing.get_context("spawn")  # a forked CUDA context is unusable; spawn is safe
            executor = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(spec, plan.data, device, shared_cache, pools, threads, context.Value("i", 0)),
            )
            seed_ks = {seed: tuple(prefix_ks(plan.seed_cells(seed), plan.num_blocks)) for seed in plan.embed_seeds()}
            for cell, key in plan.pending:
                future = executor.submit(
                    _run_in_worker, cell, key, plan.largest_n(cell.seed), seed_ks.get(cell.seed, ())
                )
                in_flight[future] = (cell, key)
            bar.running(f"{min(workers, len(in_flight))} at once")
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    cell, key = in_flight.pop(future)
                    try:
                        record = future.result()
                    except BrokenProcessPool:
                        raise UnfreezeError(
                            f"A worker process died (out of memory, or killed) with {len(in_flight) + 1} cells "
                            f"unfinished; the {plan.counts['done'] + plan.counts['failed']} cells finished are "
                            "recorded. Run the same command again to run the rest, with fewer --workers if memory "
                            "ran out."
                        ) from None
                    plan.record(cell, record, bar)
            if probe_needed(spec, plan.run_dir):
                write_probe(plan.run_dir, probe_rows(spec, plan.data, shared_cache, device))
    finally:
        bar.close()
        if executor is not None:
            # interrupted (or a worker died): drop the queued cells and end the running ones with their processes
            processes = list((getattr(executor, "_processes", None) or {}).values()) if in_flight else []
            executor.shutdown(wait=not in_flight, cancel_futures=True)
            for process in processes:
                process.terminate()
    return plan.counts


def check_workers(workers: object, backend: str = "local") -> int:
    """``workers`` as a positive int that the backend takes, or a one-line error."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UnfreezeError(f"--workers must be a whole number >= 1 (cells run at once). Got {workers!r}.")
    if workers > 1 and backend != "local":
        raise UnfreezeError(
            "--workers applies to the local backend; on Ray each cell is a task: "
            "set what a cell reserves with --cpus-per-cell and --gpus-per-cell."
        )
    return workers
