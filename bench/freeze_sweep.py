"""Freeze sweep: unfreeze vs Hugging Face ``Trainer``, same model, frozen parameters and hyperparameters.

movie-snippets, MiniLM, k in {0, 2, 4, 6} frozen blocks, 3 epochs, 3 seeds, 1,000
training examples, one process. The Trainer trains the same architecture (mean pooling
over the last block and a linear head), with the same parameters frozen, the same
AdamW groups (body 5e-5, head 1e-3, decay 0.01 off biases and norms), linear warm-up
10% and decay, clipping at 1.0, batch size 32; neither validates during training.
Prints per-k test accuracy and seconds for both, and the total time ratio.

    python bench/freeze_sweep.py [--quick] [--precision auto|fp32|bf16] [--unfreeze-only]

``--precision`` is unfreeze's (default auto: bf16 for the frozen-prefix pass where the CPU
runs bf16 fast; the trained blocks as ``unfreeze.machine.hardware`` decides); ``--unfreeze-only``
skips the Trainer, to compare unfreeze's precisions with each other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    build_peer_model,
    freeze_bottom,
    mean,
    movie_snippets,
    print_closing,
    print_machine,
    timer,
    trainer_fit_score,
)

BATCH, LR, HEAD_LR, DECAY, WARMUP = 32, 5e-5, 1e-3, 0.01, 0.1


def run_unfreeze(train, test, k: int, epochs: int, seed: int, precision: str = "auto") -> float:
    from unfreeze import Classifier, Freeze, Training

    training = Training(
        epochs=epochs,
        learning_rate=LR,
        head_learning_rate=HEAD_LR,
        weight_decay=DECAY,
        warmup_ratio=WARMUP,
        validation_fraction=0,
    )
    clf = Classifier(
        "minilm-l6",
        strategy=Freeze(k=k),
        training=training,
        batch_size=BATCH,
        seed=seed,
        progress=False,
        device="cpu",
        precision=precision,
    )
    clf.fit(train.inputs, train.labels)
    return clf.score(test.inputs, test.labels)


def run_trainer(train, test, k: int, epochs: int, seed: int, workdir: str) -> float:
    model, tokenizer, classes = build_peer_model(seed)
    freeze_bottom(model, k)
    return trainer_fit_score(model, tokenizer, classes, train, test, epochs, seed, workdir, LR, HEAD_LR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="300 examples, k in {0, 3, 6}, 1 epoch, 1 seed")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--unfreeze-only", action="store_true", help="skip the Trainer")
    args = parser.parse_args()
    print_machine()
    from unfreeze.machine.hardware import run_precision

    print(f"unfreeze precision {args.precision}: {run_precision(args.precision, 'cpu').describe()}")
    torch.set_num_threads(torch.get_num_threads())
    if args.quick:
        n_train, n_test, ks, epochs, seeds = 300, 500, [0, 3, 6], 1, [0]
    else:
        n_train, n_test, ks, epochs, seeds = 1000, 1000, [0, 2, 4, 6], 3, [0, 1, 2]
    import tempfile

    workdir = tempfile.mkdtemp(prefix="bench-trainer-")
    rows = []
    for k in ks:
        ours_acc, theirs_acc, ours_s, theirs_s = [], [], [], []
        for seed in seeds:
            train, test = movie_snippets(n_train, n_test, seed)
            if not args.unfreeze_only:
                with timer(theirs_s):
                    theirs_acc.append(run_trainer(train, test, k, epochs, seed, workdir))
            with timer(ours_s):
                ours_acc.append(run_unfreeze(train, test, k, epochs, seed, args.precision))
            peer = "" if args.unfreeze_only else f"Trainer {theirs_acc[-1]:.4f} in {theirs_s[-1]:.1f} s, "
            print(f"  k={k} seed={seed}: {peer}unfreeze {ours_acc[-1]:.4f} in {ours_s[-1]:.1f} s", flush=True)
        rows.append(
            (
                k,
                mean(theirs_acc) if theirs_acc else float("nan"),
                sum(theirs_s) or float("nan"),
                mean(ours_acc),
                sum(ours_s),
            )
        )
    print(
        f"\nmovie-snippets, minilm-l6, n_train={n_train}, n_test={n_test}, epochs={epochs}, seeds={seeds}, "
        f"threads={torch.get_num_threads()}"
    )
    print(f"{'k':>3}{'Trainer acc':>13}{'Trainer s':>11}{'unfreeze acc':>14}{'unfreeze s':>12}{'speed-up':>10}")
    for k, ta, ts, oa, os_ in rows:
        print(f"{k:>3}{ta:>13.4f}{ts:>11.1f}{oa:>14.4f}{os_:>12.1f}{ts / os_:>9.2f}x")
    total_theirs, total_ours = sum(r[2] for r in rows), sum(r[4] for r in rows)
    print(
        f"total seconds: Trainer {total_theirs:.1f}, unfreeze {total_ours:.1f}; "
        f"unfreeze mean accuracy {mean([r[3] for r in rows]):.4f}"
    )
    if not args.unfreeze_only:
        print_closing(total_theirs / total_ours, mean([r[3] for r in rows]) - mean([r[1] for r in rows]))


if __name__ == "__main__":
    main()
