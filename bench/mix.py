"""Scalar mix (``mix``, ELMo) on frozen MiniLM: epochs that cost no forward pass, against fine-tuning.

movie-snippets, MiniLM (6 blocks: 7 hidden states), 1,000 training examples and 1,000 test
texts, seeds 0, 1, 2 (``--quick``: 400 and 500, seed 0). Every fit runs in this process on the
same texts with batch size 32:

- ``mix``: one forward pass pools all 7 hidden states of the training texts (its
  ``states_seconds``), then every epoch trains the mix weights, gamma and the head on those
  cached states; seconds per epoch come from the fit record (``epoch_seconds``, validation
  included). The cache starts empty (a temporary ``UNFREEZE_CACHE``), so the pass is real.
- a fine-tuning epoch of the same model (``full``, one epoch, no validation), seed 0: its
  ``epoch_seconds``.
- ``features`` on the last four hidden states concatenated (BERT's best feature-based
  choice): it reads the states of the same forward pass from the cache (no pass of its own).
- ``mix --mix-layers last4`` for reference (same states).

Closing lines: ``ratio`` = a fine-tuning epoch's seconds / the median seconds of mix's epochs 2..N
(target: at least 10); ``accuracy-delta`` = mix (all layers) minus features (last four).

    python bench/mix.py [--quick]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import mean, movie_snippets, print_closing

BATCH = 32


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def fit(strategy, train, seed: int, **kwargs):
    from unfreeze import Classifier

    return Classifier(
        "minilm-l6", strategy=strategy, batch_size=BATCH, seed=seed, progress=False, device="cpu", **kwargs
    ).fit(train.inputs, train.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="400 training examples, 500 test texts, 1 seed")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})", flush=True)
    n_train, n_test, seeds = (400, 500, [0]) if args.quick else (1000, 1000, [0, 1, 2])

    from unfreeze import Features, Full, Mix, Training

    samples = {seed: movie_snippets(n_train, n_test, seed) for seed in seeds}  # read with the usual cache
    scratch = tempfile.mkdtemp(prefix="bench-mix-cache-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    os.environ["UNFREEZE_CACHE"] = scratch  # embeddings start from nothing

    rows = []
    for seed in seeds:
        train, test = samples[seed]
        mixed = fit(Mix(), train, seed)
        record = mixed.fit_record_
        last4 = fit(Mix(mix_layers="last4"), train, seed)
        features = fit(Features(), train, seed, layers="-4,-3,-2,-1")
        row = {
            "seed": seed,
            "mix": mixed.score(test.inputs, test.labels),
            "mix_last4": last4.score(test.inputs, test.labels),
            "features": features.score(test.inputs, test.labels),
            "states_s": record["states_seconds"],
            "epochs": record["epochs_run"],
            "epoch_s": record["epoch_seconds"],
            "weights": record["layer_weights"],
            "features_s": features.fit_record_["seconds"],
        }
        rows.append(row)
        print(
            f"  seed {seed}: mix {row['mix']:.4f} ({row['epochs']} epochs, best {record['best_epoch']}), "
            f"mix last4 {row['mix_last4']:.4f}, features last4 {row['features']:.4f}; forward pass "
            f"{row['states_s']:.1f} s, epochs {', '.join(f'{s:.2f}' for s in row['epoch_s'])} s",
            flush=True,
        )

    train, _ = samples[seeds[0]]
    tuned = fit(Full(), train, seeds[0], training=Training(epochs=1, validation_fraction=0.0))
    finetune_epoch = tuned.fit_record_["epoch_seconds"][0]
    # epochs 2..N: the first epoch also warms up allocations; none of them runs the backbone
    later = [s for row in rows for s in row["epoch_s"][1:]] or [s for row in rows for s in row["epoch_s"]]
    # the median: on a shared machine one epoch that waited for another process must not decide it
    mix_epoch = statistics.median(later)

    print(f"\nmovie-snippets, minilm-l6, n_train={n_train}, n_test={n_test}, seeds={seeds}, batch size {BATCH}")
    print(f"{'':<34}{'accuracy':>10}{'seconds':>10}")
    print(f"{'mix (all 7 states)':<34}{mean([r['mix'] for r in rows]):>10.4f}{'':>10}")
    print(f"{'mix (last 4)':<34}{mean([r['mix_last4'] for r in rows]):>10.4f}{'':>10}")
    print(
        f"{'features (last 4 concatenated)':<34}{mean([r['features'] for r in rows]):>10.4f}"
        f"{mean([r['features_s'] for r in rows]):>10.1f}"
    )
    print(f"{'mix: the one forward pass':<34}{'':>10}{mean([r['states_s'] for r in rows]):>10.2f}")
    print(f"{'mix: one epoch (median of 2..N)':<34}{'':>10}{mix_epoch:>10.3f}")
    print(f"{'mix: one epoch (mean of 2..N)':<34}{'':>10}{mean(later):>10.3f}")
    print(f"{'full fine-tuning: one epoch':<34}{'':>10}{finetune_epoch:>10.2f}")
    weights = [sum(r["weights"][i] for r in rows) / len(rows) for i in range(len(rows[0]["weights"]))]
    print("mix layer weights (0 = embeddings): " + "  ".join(f"{i}: {w:.3f}" for i, w in enumerate(weights)))
    print(f"a fine-tuning epoch costs {finetune_epoch / mix_epoch:.0f}x a mix epoch (target: at least 10x)")
    print_closing(finetune_epoch / mix_epoch, mean([r["mix"] for r in rows]) - mean([r["features"] for r in rows]))


if __name__ == "__main__":
    main()
