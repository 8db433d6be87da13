"""Several sweep cells at once on one device (``unfreeze sweep --workers N``): cells per minute vs one at a time.

The sweep: movie-snippets, MiniLM, ``freeze`` at k in {0, 2, 4} x 500 and 2,000 training
examples x seeds 0-3 (24 cells), 3 epochs, batch 32, the release's fixed learning rate, 1,000
test texts. Each worker count runs the whole sweep into a fresh run folder, in a fresh set of
worker processes: the wall time includes starting them and loading the model in each (what a
user waits for). Printed per worker count: wall seconds, cells per minute, its ratio to one
worker, the GPU's mean utilisation and peak memory in use (sampled through NVML when there is a
GPU), and the largest difference of any cell's test accuracy from the one-at-a-time run (the
cells compute the same numbers; on a GPU, kernels that choose their algorithm at run time may
differ in the last bits). ``ratio:`` is the best worker count's cells per minute over one worker's.

    python bench/sweep_workers.py --device cuda [--workers 1,2,4,8]
    python bench/sweep_workers.py --device cpu --quick      # 8 small cells, 1 and 2 workers
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_closing, print_machine


class GpuSampler:
    """Mean utilisation and peak memory in use of GPU 0 (all processes) inside a ``with`` block, via NVML."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.samples, self.peak_mib = interval, [], 0.0
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no GPU or no NVML: nothing to sample
            self.nvml = None

    def __enter__(self) -> GpuSampler:
        self._stop = threading.Event()
        if self.nvml is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            self.peak_mib = max(self.peak_mib, self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used / 2**20)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.nvml is not None:
            self._thread.join()

    @property
    def mean_utilisation(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def run(spec, workers: int, device: str, folder: Path) -> dict:
    from unfreeze.sweep import ResultsStore
    from unfreeze.sweep.runner import run_sweep

    out = folder / f"workers-{workers}"
    with GpuSampler() as gpu:
        start = time.perf_counter()
        counts = run_sweep(spec, out, progress=False, device=device, workers=workers)
        seconds = time.perf_counter() - start
    records = ResultsStore(out).records()
    failed = [r for r in records if r["status"] != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} cells failed with {workers} workers: {failed[0]['error']}")
    return {
        "workers": workers,
        "cells": counts["done"],
        "seconds": round(seconds, 2),
        "cells_per_minute": round(60 * counts["done"] / seconds, 2),
        "gpu_utilisation": None if gpu.mean_utilisation is None else round(gpu.mean_utilisation, 1),
        "gpu_peak_mib": round(gpu.peak_mib) if gpu.nvml is not None else None,
        "cell_fit_seconds": round(sum(r["fit"]["seconds"] for r in records), 2),
        "test": {r["key"]: r["test"]["accuracy"] for r in records},
        "device": records[0]["device"] if records else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--quick", action="store_true", help="k in {0, 3}, 200 examples, seeds 0-1, 1 epoch, 200 test")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    print_machine()
    import torch

    from unfreeze.sweep import SweepSpec

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but torch sees no GPU")
        print(f"device: {args.device} ({torch.cuda.get_device_name()}); torch {torch.__version__}", flush=True)
    else:
        print(f"device: {args.device}, {torch.get_num_threads()} threads; torch {torch.__version__}", flush=True)
    if args.quick:
        spec = SweepSpec(
            data="movie-snippets",
            model=args.model,
            strategies=["freeze"],
            k=[0, 3],
            n_train=[200],
            seeds=[0, 1, 2, 3],
            epochs=1,
            n_test=200,
            batch_size=32,
        )
    else:
        spec = SweepSpec(
            data="movie-snippets",
            model=args.model,
            strategies=["freeze"],
            k=[0, 2, 4],
            n_train=[500, 2000],
            seeds=[0, 1, 2, 3],
            epochs=3,
            n_test=1000,
            batch_size=32,
        )
    counts = [int(w) for w in args.workers.split(",")]
    if counts[0] != 1:
        counts.insert(0, 1)  # the baseline
    print(
        f"sweep: movie-snippets, {spec.model}, freeze k={spec.k}, n_train={spec.n_train}, seeds={spec.seeds}, "
        f"epochs={spec.epochs}, n_test={spec.n_test}; workers {counts}",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="sweep-workers-") as folder:
        for workers in counts:
            rows.append(run(spec, workers, args.device, Path(folder)))
            row = rows[-1]
            row["ratio"] = round(row["cells_per_minute"] / rows[0]["cells_per_minute"], 2)
            row["max_test_difference"] = max(abs(row["test"][key] - rows[0]["test"][key]) for key in rows[0]["test"])
            print(json.dumps({k: v for k, v in row.items() if k != "test"}), flush=True)
    columns = [
        "workers",
        "cells",
        "seconds",
        "cells_per_minute",
        "ratio",
        "gpu_utilisation",
        "gpu_peak_mib",
        "cell_fit_seconds",
        "max_test_difference",
    ]
    print("\n" + " | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    mean_test = sum(rows[0]["test"].values()) / len(rows[0]["test"])
    print(f"mean test accuracy (one at a time): {mean_test:.4f}")
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "test"} for r in rows], indent=2) + "\n")
    best = max(rows, key=lambda r: r["cells_per_minute"])
    print(f"best: {best['workers']} workers")
    print_closing(best["ratio"])


if __name__ == "__main__":
    main()
