"""One sweep cell per model on a device: seconds per epoch and test accuracy.

The cell: movie-snippets, a stratified training sample (seed 0), freeze the bottom half of
the blocks (MiniLM k=3 of 6, MPNet k=6 of 12), train the rest and a linear head for 3
epochs (batch 32, no validation hold-out, so every epoch sees every example), then score
the fixed test split. ``--strategy truncate`` keeps the bottom two thirds of the blocks
(``--j``; MPNet j=8) and fine-tunes them all; ``--strategy gradual`` unfreezes from the top,
the head alone in epoch 1 and one more block each epoch (``--schedule``), with ULMFiT's
discriminative rates. Run it on the CPU and on a GPU and compare the tables; on CUDA the
loop trains under bf16 autocast. Seconds per epoch exclude the frozen prefix, which is
computed once before the first epoch (shown on its own). On CUDA a small untimed cell per
model runs first: the first cell in a process otherwise pays for CUDA's start-up.

    python bench/gpu_cells.py --device cuda [--models minilm-l6,mpnet-base] [--n-train 2000]
    python bench/gpu_cells.py --device cpu --quick
    python bench/gpu_cells.py --model-dir mpnet-base=/path/to/folder ...   # model folders by hand
    python bench/gpu_cells.py --device cuda --strategy truncate [--j 8]    # or: --strategy gradual [--schedule 1,1,2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import movie_snippets


def cell_strategy(strategy: str, blocks: int, j: int | None = None, schedule: str | None = None):
    """The strategy object of the cell: freeze the bottom half, truncate to 2L/3 (or j), or gradual."""
    from unfreeze import Freeze, Gradual, Truncate

    if strategy == "truncate":
        return Truncate(j=j or max(1, round(2 * blocks / 3)))
    if strategy == "gradual":
        return Gradual(schedule=schedule)
    return Freeze(k=blocks // 2)


def run_cell(
    model: str,
    reference: str,
    device: str,
    n_train: int,
    n_test: int,
    epochs: int,
    seed: int,
    strategy: str = "freeze",
    j: int | None = None,
    schedule: str | None = None,
) -> dict:
    from unfreeze import Classifier, Training
    from unfreeze.models.backbone import Backbone

    blocks = Backbone.load(reference, device="cpu").num_blocks
    train, test = movie_snippets(n_train, n_test, seed)
    clf = Classifier(
        model=reference,
        strategy=cell_strategy(strategy, blocks, j, schedule),
        training=Training(epochs=epochs, validation_fraction=0.0, patience=None),
        batch_size=32,
        seed=seed,
        device=device,
        progress=False,
    )
    start = time.perf_counter()
    clf.fit(train.texts, train.labels)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    accuracy = clf.evaluate(test.texts, test.labels)["accuracy"]
    predict_seconds = time.perf_counter() - start
    record = clf.fit_record_
    per_epoch = (record["seconds"] - record["prefix_seconds"]) / max(record["epochs_run"], 1)
    return {
        "model": model,
        "device": record["device"],
        "cell": clf.strategy_.describe(),
        "k": clf.predictor_.frozen_k,
        "blocks": blocks,
        "n_train": len(train),
        "n_test": len(test),
        "epochs": record["epochs_run"],
        "prefix_s": round(record["prefix_seconds"], 2),
        "s_per_epoch": round(per_epoch, 2),
        "fit_s": round(fit_seconds, 2),
        "predict_s": round(predict_seconds, 2),
        "texts_per_s": round(len(test) / predict_seconds, 1),
        "test_accuracy": round(accuracy, 4),
        "trainable_parameters": record["trainable_parameters"],
        "peak_memory_mb": round(record["peak_memory_bytes"] / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default="minilm-l6,mpnet-base")
    parser.add_argument(
        "--model-dir", action="append", default=[], metavar="NAME=PATH", help="use this folder for catalog model NAME"
    )
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", choices=("freeze", "truncate", "gradual"), default="freeze")
    parser.add_argument("--j", type=int, help="truncate: blocks kept (default: two thirds)")
    parser.add_argument("--schedule", help="gradual: blocks unfrozen per epoch, e.g. 1,1,2 (default: 0,1,1,...)")
    parser.add_argument("--quick", action="store_true", help="500 train, 500 test, 1 epoch")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.quick:
        args.n_train, args.n_test, args.epochs = 500, 500, 1
    folders = dict(item.split("=", 1) for item in args.model_dir)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no GPU")
    name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    )
    print(f"device: {args.device} ({name}); torch {torch.__version__}")
    rows = []
    if args.device.startswith("cuda"):
        for model in args.models.split(","):
            run_cell(
                model,
                folders.get(model, model),
                args.device,
                64,
                64,
                1,
                args.seed,
                args.strategy,
                args.j,
                args.schedule,
            )  # warm-up, not reported
    for model in args.models.split(","):
        rows.append(
            run_cell(
                model,
                folders.get(model, model),
                args.device,
                args.n_train,
                args.n_test,
                args.epochs,
                args.seed,
                args.strategy,
                args.j,
                args.schedule,
            )
        )
        print(json.dumps(rows[-1]), flush=True)
    columns = [
        "model",
        "device",
        "cell",
        "k",
        "n_train",
        "epochs",
        "prefix_s",
        "s_per_epoch",
        "fit_s",
        "predict_s",
        "texts_per_s",
        "test_accuracy",
        "peak_memory_mb",
    ]
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
