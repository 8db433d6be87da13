"""Run a sweep's cells as Ray tasks: ``unfreeze sweep ... --backend ray``.

The driver (the process running ``unfreeze sweep``) plans the sweep exactly as the local
backend does (``plan.plan_sweep``), submits one Ray task per unfinished cell, and
appends each result row to ``results.jsonl`` as it arrives. Only the driver writes the
store, hence:

- a worker process that dies mid-cell is retried by Ray (``max_retries``); the cell is
  still recorded once, by the driver, when a try returns;
- a driver killed mid-sweep loses the cells in flight only (Ray ends a dead driver's
  tasks); the same command again skips every recorded cell;
- an exception inside a cell is a failed row, as locally; so is a cell whose worker died
  more often than Ray retries it, or whose node was lost. The sweep goes on.

Caches across workers (what is shared, and how):

- Pooled embeddings (``features`` cells, the probe) are computed once, by one task, in one
  pass over every text those cells need, and travel through the Ray object store to
  every features task, which puts them in its in-memory pool. Through the object store
  rather than the disk cache because it needs no shared filesystem and no task races
  another to compute them; they are small (texts x layers x hidden x 4 bytes: 2,000
  texts of MiniLM's last layer are 3 MB).
- Frozen-prefix states (``freeze`` cells) are not shipped: they hold every token's
  hidden state (GBs for a 12-block model and a few thousand texts), too much for the
  object store, and a prefix pass costs one forward pass, less than the training it
  saves. Each freeze task runs its own pass over its seed's largest sample and the test
  set, keeping its own k only: the local backend's one pass per seed becomes one per
  cell, and the numbers are the same as locally (the same texts in the same batches).
  Measured (MiniLM, 1,000 + 500 texts, 256 tokens, 2 CPU threads): a pass costs 3.5 s
  (k=3) to 4.9 s (every k), a 1-epoch k=3 cell 9.8 s. Grouping a seed's freeze cells into
  one task would save those passes but run them one after another; parallel cells win
  as soon as more than a couple of workers are free, so one task per cell it is.
- The on-disk cache (materialised models, datasets, embedding files): when the driver
  has ``UNFREEZE_CACHE`` set, every task uses that path; put it on a filesystem that
  every node mounts at the same path, and models and datasets are materialised once.
  Without it, each node uses its own default cache and makes its own copy (correct,
  slower the first time). Catalog models' packages must be installed on every node.
- A worker process keeps its loaded model between tasks (Ray reuses workers), so a
  model is loaded once per worker, not once per cell.

Which fields of a row differ from the local backend's: see ``store.VOLATILE_FIELDS``
(wall clock, timings, memory, ``runner``: backend, host, pid, Ray node).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnfreezeError
from ..params import is_real
from .cell import failed_record, run_cell
from .grid import Cell, SweepSpec
from .plan import SweepPlan, probe_needed, probe_rows, runner_info, write_probe
from .progress import progress_bar
from .samples import SweepData
from .warm import embed_everything, embeds_frozen, inference_backbone, prefix_ks, shared_caches, warm_prefixes

INSTALL_HINT = "the Ray backend needs the 'ray' package: pip install 'unfreeze[ray]'"
TASK_PREFIX = "unfreeze-cell-"  # a cell's task is named TASK_PREFIX + its key (Ray shows it in process titles)


def require_ray():
    """The ``ray`` module, or a one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UnfreezeError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where the cells run and what each reserves.

    address: None or "local" starts a Ray instance on this machine for the sweep; "auto"
    joins the cluster this machine belongs to (``ray start`` ran here); "HOST:PORT" joins
    the cluster whose head listens there. cpus_per_cell / gpus_per_cell: the resources
    each cell's task reserves (fractions of a GPU let cells share one). max_retries: how
    often Ray re-runs a cell whose worker process died. A process already connected to Ray
    (``ray.init`` called before) keeps that connection and ignores ``address``.
    """

    address: str | None = None
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        for name, low_ok in (("cpus_per_cell", False), ("gpus_per_cell", True)):
            value = getattr(self, name)
            flag = "--" + name.replace("_", "-")
            if not is_real(value) or value < 0 or (value == 0 and not low_ok):
                raise UnfreezeError(f"{flag} must be a number {'>= 0' if low_ok else '> 0'}. Got {value!r}.")
            if value > 1 and value != int(value):
                # Ray's own rule: fractions only below one unit
                raise UnfreezeError(
                    f"{flag} above 1 must be a whole number (Ray splits only single units). Got {value!r}."
                )
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise UnfreezeError(f"max_retries must be an int >= 0. Got {self.max_retries!r}.")


# -- what runs on the workers ----------------------------------------------------------------


def _worker_setup(cache_root: str | None) -> dict:
    if cache_root:
        os.environ["UNFREEZE_CACHE"] = cache_root  # read by unfreeze.storage.cache at every use
    info = runner_info("ray")
    try:
        import ray

        info["node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - called outside a task (tests): no node
        pass
    return info


def embed_task(spec: SweepSpec, data: SweepData, seeds: list[int], device: str | None, cache_root: str | None) -> dict:
    """One embedding pass for every features cell and the probe; returns the pools, or why not."""
    _worker_setup(cache_root)
    from ..features.embed import export_pools, shared_embeddings

    try:
        backbone = inference_backbone(spec, device)
        with shared_embeddings():
            embed_everything(spec, data, backbone, seeds)
            return {"pools": export_pools()}
    except Exception as exc:  # noqa: BLE001 - the cells then embed for themselves
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def cell_task(
    spec: SweepSpec,
    data: SweepData,
    cell: Cell,
    key: str,
    device: str | None,
    shared_cache: bool,
    cache_root: str | None,
    n_largest: int,
    pools: dict | None,
) -> tuple[dict, dict]:
    """Run one cell in a Ray worker; returns (result row, where it ran)."""
    info = _worker_setup(cache_root)
    if not shared_cache:
        return run_cell(spec, data, cell, key, device, use_cache=False), info
    from ..features.embed import import_pools

    with shared_caches():
        if pools and "pools" in pools:
            import_pools(pools["pools"])
        backbone = inference_backbone(spec, device)
        ks = prefix_ks([cell], backbone.num_blocks)
        if ks:
            warm_prefixes(spec, data, backbone, cell.seed, n_largest, ks)
        return run_cell(spec, data, cell, key, device, use_cache=True), info


def probe_task(
    spec: SweepSpec, data: SweepData, shared_cache: bool, device: str | None, cache_root: str | None, pools: dict | None
) -> dict:
    _worker_setup(cache_root)
    from ..features.embed import import_pools, shared_embeddings

    with shared_embeddings():
        if pools and "pools" in pools:
            import_pools(pools["pools"])
        return probe_rows(spec, data, shared_cache, device)


# -- the driver ------------------------------------------------------------------------------


def connect(address: str | None) -> bool:
    """Join (or start) the Ray cluster; True when this call started Ray here (and should shut it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address in (None, "local"):
            ray.init(include_dashboard=False, **quiet)
        else:
            _check_reachable(address)
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        where = (
            "a Ray cluster on this machine (--address auto)" if address == "auto" else f"the Ray cluster at {address}"
        )
        raise UnfreezeError(
            f"Could not connect to {where}: {str(exc).strip().splitlines()[0]} "
            "Start one with `ray start --head` and give --address HOST:PORT (or auto on a cluster node), "
            "or leave --address out to start Ray on this machine."
        ) from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT where nothing listens: Ray itself retries for about a minute."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected auto or HOST:PORT, got {address!r}.")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {address} ({exc.strerror or exc}).") from None


def _error_line(exc: BaseException) -> str:
    """One line for a row: the cell's own exception, or what Ray says happened to its worker."""
    ray = require_ray()
    if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
        cause = exc.cause
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def run_sweep_ray(
    plan: SweepPlan, options: RayOptions, shared_cache: bool = True, progress: bool = True, device: str | None = None
) -> dict[str, int]:
    """Run ``plan``'s pending cells as Ray tasks; the driver records every result. Returns the counts."""
    ray = require_ray()
    started_here = connect(options.address)
    spec = plan.spec
    # a cell that reserved no GPU must not use one: Ray would not stop it sharing a GPU with others
    cell_device = device or ("cuda" if options.gpus_per_cell > 0 else "cpu")
    cache_root = (
        str(Path(os.environ["UNFREEZE_CACHE"]).expanduser().resolve()) if os.environ.get("UNFREEZE_CACHE") else None
    )
    resources = {
        "num_cpus": options.cpus_per_cell,
        "num_gpus": options.gpus_per_cell,
        "max_retries": options.max_retries,
        "retry_exceptions": False,
    }
    bar = progress_bar(plan, progress)
    in_flight: dict = {}
    try:
        data_ref = ray.put(plan.data)  # shipped once, not once per task
        pools_ref = probe_ref = None
        if shared_cache and plan.needs_embeddings():
            pools_ref = (
                ray.remote(embed_task)
                .options(name="unfreeze-embed", **resources)
                .remote(spec, data_ref, plan.embed_seeds(), cell_device, cache_root)
            )
        remote_cell = ray.remote(cell_task)
        for cell, key in plan.pending:
            ref = remote_cell.options(name=TASK_PREFIX + key, **resources).remote(
                spec,
                data_ref,
                cell,
                key,
                cell_device,
                shared_cache,
                cache_root,
                plan.largest_n(cell.seed),
                pools_ref if embeds_frozen(cell) else None,
            )
            in_flight[ref] = (cell, key)
        if probe_needed(spec, plan.run_dir):
            probe_ref = (
                ray.remote(probe_task)
                .options(name="unfreeze-probe", **resources)
                .remote(spec, data_ref, shared_cache, cell_device, cache_root, pools_ref)
            )
        bar.running(f"{len(in_flight)} on Ray")
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                cell, key = in_flight.pop(ref)
                try:
                    record, info = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    # the task itself failed (its worker died past the retries, its node was lost...)
                    record = failed_record(spec, cell, key, _error_line(exc), traceback.format_exc(limit=4))
                    info = {"backend": "ray"}
                record["runner"] = info
                plan.record(cell, record, bar)
                bar.running(f"{len(in_flight)} on Ray")
        if probe_ref is not None:
            try:
                write_probe(plan.run_dir, ray.get(probe_ref))
            except ray.exceptions.RayError as exc:
                bar.line(f"probe failed: {_error_line(exc)}")
            probe_ref = None
    finally:
        bar.close()
        for ref in [*in_flight, *([probe_ref] if probe_ref is not None else [])]:
            # interrupted: do not leave cells running on the cluster (best effort on the way out)
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
    return plan.counts
