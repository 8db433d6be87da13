"""LoRA: unfreeze's ``lora`` strategy vs PEFT + transformers ``Trainer`` with the same config.

movie-snippets, MiniLM, 1,000 training examples (quick: 300), LoRA r=8, alpha=16,
dropout 0.1 on query/key/value of every block, mean pooling + linear head trained in
full, AdamW (adapters 5e-4, head 1e-3), 3 epochs, batch 32, 3 seeds, one process.
Prints accuracy, seconds, peak memory (RSS) and trainable parameters for both.

    python bench/lora.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import build_peer_model, mean, movie_snippets, print_closing, timer, trainer_fit_score

R, ALPHA, DROPOUT, LR, HEAD_LR, BATCH = 8, 16, 0.1, 5e-4, 1e-3, 32


def run_unfreeze(train, test, epochs: int, seed: int) -> tuple[float, int]:
    from unfreeze import Classifier, Lora, Training

    clf = Classifier(
        "minilm-l6",
        strategy=Lora(r=R, lora_alpha=ALPHA, lora_dropout=DROPOUT),
        training=Training(epochs=epochs, learning_rate=LR, head_learning_rate=HEAD_LR, validation_fraction=0),
        batch_size=BATCH,
        seed=seed,
        progress=False,
        device="cpu",
    )
    clf.fit(train.inputs, train.labels)
    return clf.score(test.inputs, test.labels), clf.fit_record_["trainable_parameters"]


def run_peft(train, test, epochs: int, seed: int, workdir: str) -> tuple[float, int]:
    from peft import LoraConfig, get_peft_model

    model, tokenizer, classes = build_peer_model(seed)
    model.body = get_peft_model(
        model.body,
        LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules=["query", "key", "value"], bias="none"),
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainer_fit_score(model, tokenizer, classes, train, test, epochs, seed, workdir, LR, HEAD_LR), trainable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="300 examples, 1 epoch, 1 seed")
    args = parser.parse_args()
    n_train, n_test, epochs, seeds = (300, 500, 1, [0]) if args.quick else (1000, 1000, 3, [0, 1, 2])
    from unfreeze.training.memory import PeakMemory

    workdir = tempfile.mkdtemp(prefix="bench-lora-")
    results = {"PEFT + Trainer": ([], [], [], 0), "unfreeze": ([], [], [], 0)}
    for seed in seeds:
        train, test = movie_snippets(n_train, n_test, seed)
        for name, run in (
            ("PEFT + Trainer", partial(run_peft, train, test, epochs, seed, workdir)),
            ("unfreeze", partial(run_unfreeze, train, test, epochs, seed)),
        ):
            acc, secs, mem, _ = results[name]
            with PeakMemory(torch.device("cpu")) as peak, timer(secs):
                accuracy, trainable = run()
            acc.append(accuracy)
            mem.append(peak.peak_bytes / 2**20)
            results[name] = (acc, secs, mem, trainable)
            print(
                f"  seed={seed} {name}: accuracy {accuracy:.4f} in {secs[-1]:.1f} s, peak RSS {mem[-1]:.0f} MiB",
                flush=True,
            )
    print(
        f"\nmovie-snippets, minilm-l6, n_train={n_train}, n_test={n_test}, r={R}, alpha={ALPHA}, epochs={epochs}, "
        f"seeds={seeds}, threads={torch.get_num_threads()}"
    )
    print(f"{'tool':<16}{'accuracy':>10}{'seconds':>10}{'peak RSS MiB':>14}{'trainable':>12}")
    for name, (acc, secs, mem, trainable) in results.items():
        print(f"{name:<16}{mean(acc):>10.4f}{sum(secs):>10.1f}{max(mem):>14.0f}{trainable:>12,}")
    peer, ours = results["PEFT + Trainer"], results["unfreeze"]
    print_closing(sum(peer[1]) / sum(ours[1]), mean(ours[0]) - mean(peer[0]))


if __name__ == "__main__":
    main()
