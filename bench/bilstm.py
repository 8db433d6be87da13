"""BiLSTM on frozen token states (``bilstm``, BERT's feature-based setting) on MiniLM, against fine-tuning.

movie-snippets, MiniLM, 1,000 training examples and 1,000 test texts, seeds 0, 1, 2
(``--quick``: 400 and 500, seed 0); batch size 32, every fit in this process:

- ``bilstm`` (defaults: the last four hidden states concatenated, 4 x 384 = 1,536 features
  per token, a two-layer BiLSTM of 64 units per direction): one forward pass stores the
  token states in fp16 (its ``states_seconds``), then every epoch trains the BiLSTM and the
  head on them; seconds per epoch come from the fit record (``epoch_seconds``, validation
  included).
- the same with ``memory_gib=0`` (seed 0): every token state in the memory-mapped file on
  disk; the same numbers, and the epoch time of the disk path.
- a fine-tuning epoch of the same model (``full``, one epoch, no validation), seed 0.
- ``features`` on the last four hidden states concatenated (pooled), the same hidden
  states the BiLSTM reads token by token.

Closing lines: ``ratio`` = a fine-tuning epoch's seconds / the median seconds of bilstm's epochs 2..N
(target: at least 10); ``accuracy-delta`` = bilstm minus features (last four).

    python bench/bilstm.py [--quick]
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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import mean, movie_snippets, print_closing
from mix import BATCH, cpu_model, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="400 training examples, 500 test texts, 1 seed")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})", flush=True)
    n_train, n_test, seeds = (400, 500, [0]) if args.quick else (1000, 1000, [0, 1, 2])

    from unfreeze import BiLSTM, Features, Full, Training

    samples = {seed: movie_snippets(n_train, n_test, seed) for seed in seeds}  # read with the usual cache
    scratch = tempfile.mkdtemp(prefix="bench-bilstm-cache-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    os.environ["UNFREEZE_CACHE"] = scratch  # nothing cached: real passes

    rows = []
    for seed in seeds:
        train, test = samples[seed]
        lstm = fit(BiLSTM(), train, seed)
        record = lstm.fit_record_
        features = fit(Features(), train, seed, layers="-4,-3,-2,-1")
        row = {
            "seed": seed,
            "bilstm": lstm.score(test.inputs, test.labels),
            "features": features.score(test.inputs, test.labels),
            "states_s": record["states_seconds"],
            "epoch_s": record["epoch_seconds"],
            "mib": record["token_states"]["bytes_in_memory"] / 2**20,
            "tokens": record["token_states"]["tokens"],
            "features_s": features.fit_record_["seconds"],
        }
        rows.append(row)
        print(
            f"  seed {seed}: bilstm {row['bilstm']:.4f} ({record['epochs_run']} epochs, best "
            f"{record['best_epoch']}), features last4 {row['features']:.4f}; token states {row['tokens']:,} "
            f"tokens, {row['mib']:.1f} MiB, pass {row['states_s']:.1f} s; epochs "
            f"{', '.join(f'{s:.2f}' for s in row['epoch_s'])} s",
            flush=True,
        )
        if seed == seeds[0]:
            first_proba = lstm.predict_proba(test.inputs)

    train, test = samples[seeds[0]]
    on_disk = fit(BiLSTM(memory_gib=0.0), train, seeds[0])
    disk = on_disk.fit_record_
    same = bool(np.array_equal(on_disk.predict_proba(test.inputs), first_proba))
    print(
        f"  seed {seeds[0]}, memory_gib=0: {disk['token_states']['bytes_on_disk'] / 2**20:.1f} MiB on disk, "
        f"epochs {', '.join(f'{s:.2f}' for s in disk['epoch_seconds'])} s; same probabilities as in memory: {same}",
        flush=True,
    )
    tuned = fit(Full(), train, seeds[0], training=Training(epochs=1, validation_fraction=0.0))
    finetune_epoch = tuned.fit_record_["epoch_seconds"][0]
    later = [s for row in rows for s in row["epoch_s"][1:]] or [s for row in rows for s in row["epoch_s"]]
    # the median: on a shared machine one epoch that waited for another process must not decide it
    lstm_epoch = statistics.median(later)
    disk_epoch = mean(disk["epoch_seconds"][1:] or disk["epoch_seconds"])

    print(f"\nmovie-snippets, minilm-l6, n_train={n_train}, n_test={n_test}, seeds={seeds}, batch size {BATCH}")
    print(f"{'':<40}{'accuracy':>10}{'seconds':>10}")
    print(f"{'bilstm (last 4, 64 units per direction)':<40}{mean([r['bilstm'] for r in rows]):>10.4f}{'':>10}")
    print(
        f"{'features (last 4 concatenated, pooled)':<40}{mean([r['features'] for r in rows]):>10.4f}"
        f"{mean([r['features_s'] for r in rows]):>10.1f}"
    )
    print(f"{'bilstm: the one forward pass':<40}{'':>10}{mean([r['states_s'] for r in rows]):>10.2f}")
    print(f"{'bilstm: one epoch (median of 2..N)':<40}{'':>10}{lstm_epoch:>10.2f}")
    print(f"{'bilstm: one epoch (mean of 2..N)':<40}{'':>10}{mean(later):>10.2f}")
    print(f"{'bilstm: one epoch, states on disk':<40}{'':>10}{disk_epoch:>10.2f}")
    print(f"{'full fine-tuning: one epoch':<40}{'':>10}{finetune_epoch:>10.2f}")
    print(f"a fine-tuning epoch costs {finetune_epoch / lstm_epoch:.1f}x a bilstm epoch (target: at least 10x)")
    print_closing(finetune_epoch / lstm_epoch, mean([r["bilstm"] for r in rows]) - mean([r["features"] for r in rows]))


if __name__ == "__main__":
    main()
