"""One forward pass for many classifiers: 8 heads in one multi-head bundle vs 8 single-head bundles.

Eight logistic heads on MiniLM, each with its own pooling and layer spec (fitted on
movie-snippets), saved once as 8 single-head bundles and once as one multi-head bundle.
Both predict the same 2,000 texts (no embedding cache, so every bundle really runs the
model); the single-head bundles run the backbone once each, the multi-head bundle once
for all. Same process, interleaved repeats; prints the time ratio (above 1: the multi-head
bundle is faster) and the largest probability difference between the two.

    python bench/multihead.py [--quick] [--n 2000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import movie_snippets, print_closing

# (name, pooling, layers): 8 heads, as an application with several classifiers would have them
HEADS = [
    ("mean-last", "mean", "-1"),
    ("cls-last", "cls", "-1"),
    ("max-last", "max", "-1"),
    ("mean-5", "mean", "-2"),
    ("cls-5", "cls", "-2"),
    ("mean-top3", "mean", "-3,-2,-1"),
    ("max-4", "max", "-3"),
    ("mean-emb", "mean", "0"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 texts, 1 repeat")
    parser.add_argument("--n", type=int, default=2000, help="texts to predict")
    parser.add_argument("--n-train", type=int, default=500, help="training examples per head")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    n, repeats = (500, 1) if args.quick else (args.n, args.repeats)

    from unfreeze import Classifier, MultiHeadClassifier

    torch.manual_seed(0)
    train, test = movie_snippets(args.n_train, n, seed=0)
    texts = test.texts
    folder = Path(tempfile.mkdtemp(prefix="bench-multihead-"))
    suite = MultiHeadClassifier("minilm-l6", batch_size=args.batch_size, device="cpu", progress=False)
    for name, pooling, layers in HEADS:
        clf = Classifier(
            model="minilm-l6", pooling=pooling, layers=layers, batch_size=args.batch_size, device="cpu", progress=False
        ).fit(train.texts, train.labels)
        clf.save(folder / name)
        suite.add_classifier(name, clf)
    suite.save(folder / "suite")
    print(f"fitted {len(HEADS)} heads on {len(train)} movie-snippets each; predicting {len(texts)} texts")

    singles = [Classifier.load(folder / name) for name, *_ in HEADS]
    for clf in singles:
        clf.cache, clf.progress = False, False  # every bundle runs its own forward pass
    multi = MultiHeadClassifier.load(folder / "suite")
    multi.progress = False

    def single_bundles() -> dict[str, np.ndarray]:
        return {name: clf.predict_proba(texts) for (name, *_), clf in zip(HEADS, singles)}

    def multi_head() -> dict[str, np.ndarray]:
        return multi.predict_proba(texts)

    a, b = single_bundles(), multi_head()  # warm-up, and the two must agree
    difference = max(float(np.abs(a[name] - b[name]).max()) for name, *_ in HEADS)
    timings: dict[str, list[float]] = {"single": [], "multi": []}
    for _ in range(repeats):
        for label, run in (("single", single_bundles), ("multi", multi_head)):
            start = time.perf_counter()
            run()
            timings[label].append(time.perf_counter() - start)
    single_s, multi_s = statistics.median(timings["single"]), statistics.median(timings["multi"])
    accuracy = np.mean(
        [np.mean(suite.heads[name].classes[b[name].argmax(1)] == np.asarray(test.labels)) for name, *_ in HEADS]
    )
    print(f"{'':<28}{'seconds':>9}{'texts/s':>10}")
    print(f"{'8 single-head bundles':<28}{single_s:>9.2f}{len(texts) / single_s:>10.1f}")
    print(f"{'1 bundle with 8 heads':<28}{multi_s:>9.2f}{len(texts) / multi_s:>10.1f}")
    print(f"max |probability difference|: {difference:.2e}; mean test accuracy of the heads: {accuracy:.4f}")
    print(f"(median of {repeats} interleaved runs, {torch.get_num_threads()} torch threads, CPU)")
    print_closing(single_s / multi_s)


if __name__ == "__main__":
    main()
