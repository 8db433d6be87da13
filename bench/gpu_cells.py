"""One freeze sweep cell per model on a device: seconds per epoch and test accuracy, as a table.

The cell: movie-snippets, ``freeze`` with k = half the blocks, 2,000 training examples,
3 epochs, seed 0, scored on 1,000 test examples (``--quick``: 500 examples, 1 epoch,
500 test). It runs through the sweep's own ``run_cell``, so the numbers are those a sweep
row records; per-epoch seconds come from the fit record (``epoch_seconds``).

This is a device timing table, not a comparison with a peer tool: it ends with the
table, not a ``ratio:`` line.

    python bench/gpu_cells.py --device cuda
    python bench/gpu_cells.py --device cpu --quick --models minilm-l6
    python bench/gpu_cells.py --device cuda --model-dir mpnet-base=/data/models/all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common  # noqa: E402,F401  (offline settings)


def run_one(name: str, reference: str, device: str, n_train: int, epochs: int, n_test: int) -> dict:
    from unfreeze.classifier import shared_backbone
    from unfreeze.sweep import Cell, SweepSpec
    from unfreeze.sweep.runner import load_sweep_data, run_cell

    num_blocks = shared_backbone(reference, device).num_blocks
    k = num_blocks // 2
    spec = SweepSpec(data="movie-snippets", model=reference, strategies=["freeze"], k=[k], n_train=[n_train],
                     seeds=[0], n_test=n_test, epochs=epochs, validation_fraction=0.0)
    row = run_cell(spec, load_sweep_data(spec), Cell("freeze", (("k", k),), n_train, 0), key="bench",
                   device=device)
    if row["status"] != "done":
        raise SystemExit(f"{name}: the cell failed: {row['error']}")
    fit = row["fit"]
    return {"model": name, "blocks": num_blocks, "k": k, "device": fit["device"],
            "epoch_seconds": fit.get("epoch_seconds", []), "prefix_seconds": fit.get("prefix_seconds", 0.0),
            "fit_seconds": fit["seconds"], "peak_gib": fit["peak_memory_bytes"] / 2**30,
            "accuracy": row["test"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="500 examples, 1 epoch, 500 test examples")
    parser.add_argument("--models", default="minilm-l6,mpnet-base", help="catalog names, comma-separated")
    parser.add_argument("--model-dir", action="append", default=[], metavar="NAME=PATH",
                        help="use a local model folder for NAME (repeatable)")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here; use --device cpu")
    overrides = dict(item.split("=", 1) for item in args.model_dir)
    n_train, epochs, n_test = (500, 1, 500) if args.quick else (2000, 3, 1000)

    rows = [run_one(name, overrides.get(name, name), args.device, n_train, epochs, n_test)
            for name in args.models.split(",") if name]
    print(f"freeze k=L/2, movie-snippets, n_train={n_train}, epochs={epochs}, n_test={n_test}, seed 0")
    print(f"{'model':<12}{'blocks':>7}{'k':>4}  {'device':<8}{'s/epoch':>9}{'epochs (s)':>24}{'prefix s':>10}"
          f"{'fit s':>8}{'peak GiB':>10}{'accuracy':>10}")
    for r in rows:
        per_epoch = r["epoch_seconds"]
        mean = sum(per_epoch) / len(per_epoch) if per_epoch else float("nan")
        each = ", ".join(f"{s:.1f}" for s in per_epoch)
        print(f"{r['model']:<12}{r['blocks']:>7}{r['k']:>4}  {r['device']:<8}{mean:>9.2f}{each:>24}"
              f"{r['prefix_seconds']:>10.1f}{r['fit_seconds']:>8.1f}{r['peak_gib']:>10.2f}{r['accuracy']:>10.4f}")


if __name__ == "__main__":
    main()
