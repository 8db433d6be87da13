"""SetFit: unfreeze's ``setfit`` strategy vs the ``setfit`` library on the same samples.

movie-snippets, MiniLM, 8 and 64 examples per class, the same num_iterations (20),
1 epoch, pair batch size 16, body learning rate 2e-5, 3 seeds, one process. Both
tune the whole body with the cosine-similarity loss and fit a logistic-regression
head (setfit: C=1 on normalised embeddings; unfreeze: C by cross-validation on
standardised ones). Prints accuracy and seconds per setting, and the time ratio.

    python bench/setfit.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

# this file is named setfit.py: drop its folder from the path so `import setfit` finds the library
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
_spec = importlib.util.spec_from_file_location("_common", _HERE / "_common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
mean, print_closing, timer = _common.mean, _common.print_closing, _common.timer

BATCH, LR, EPOCHS = 16, 2e-5, 1


def samples(per_class: int, n_test: int, seed: int):
    from unfreeze.data import load_data, sample

    train = sample(load_data("movie-snippets:train"), n_per_class=per_class, seed=seed)
    test = sample(load_data("movie-snippets:test"), n_total=n_test, seed=0)
    return train, test


def run_unfreeze(train, test, iterations: int, seed: int) -> float:
    from unfreeze import Classifier, SetFit, Training

    clf = Classifier(
        "minilm-l6",
        strategy=SetFit(num_iterations=iterations),
        training=Training(epochs=EPOCHS, learning_rate=LR),
        batch_size=BATCH,
        seed=seed,
        progress=False,
        device="cpu",
    )
    clf.fit(train.texts, train.labels)
    return clf.score(test.texts, test.labels)


def run_setfit(train, test, iterations: int, seed: int) -> float:
    model = _common.setfit_peer_model(train.texts, train.labels, iterations, seed, BATCH, LR, EPOCHS)
    predicted = np.asarray(model.predict(test.texts, show_progress_bar=False))
    return float(np.mean(predicted == np.asarray(test.labels)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 and 32 per class, 5 iterations, 1 seed")
    args = parser.parse_args()
    if args.quick:
        sizes, iterations, seeds, n_test = [8, 32], 5, [0], 500
    else:
        sizes, iterations, seeds, n_test = [8, 64], 20, [0, 1, 2], 1000
    rows = []
    for per_class in sizes:
        ours_acc, theirs_acc, ours_s, theirs_s = [], [], [], []
        for seed in seeds:
            train, test = samples(per_class, n_test, seed)
            with timer(theirs_s):
                theirs_acc.append(run_setfit(train, test, iterations, seed))
            with timer(ours_s):
                ours_acc.append(run_unfreeze(train, test, iterations, seed))
            print(
                f"  {per_class}/class seed={seed}: setfit {theirs_acc[-1]:.4f} in {theirs_s[-1]:.1f} s, "
                f"unfreeze {ours_acc[-1]:.4f} in {ours_s[-1]:.1f} s",
                flush=True,
            )
        rows.append((per_class, mean(theirs_acc), sum(theirs_s), mean(ours_acc), sum(ours_s)))
    print(
        f"\nmovie-snippets, minilm-l6, num_iterations={iterations}, epochs={EPOCHS}, batch={BATCH}, "
        f"n_test={n_test}, seeds={seeds}, threads={torch.get_num_threads()}"
    )
    print(f"{'per class':>10}{'setfit acc':>12}{'setfit s':>10}{'unfreeze acc':>14}{'unfreeze s':>12}{'speed-up':>10}")
    for n, ta, ts, oa, os_ in rows:
        print(f"{n:>10}{ta:>12.4f}{ts:>10.1f}{oa:>14.4f}{os_:>12.1f}{ts / os_:>9.2f}x")
    total_theirs, total_ours = sum(r[2] for r in rows), sum(r[4] for r in rows)
    print(f"total seconds: setfit {total_theirs:.1f}, unfreeze {total_ours:.1f}")
    print_closing(total_theirs / total_ours, mean([r[3] for r in rows]) - mean([r[1] for r in rows]))


if __name__ == "__main__":
    main()
