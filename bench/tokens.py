"""Token classification (named entities, CoNLL-2003) with the product's own loop, against a Hugging Face Trainer.

MiniLM-L6, one process, the same sentences for both sides: a freeze sweep over k in {0, 3, 6} frozen
blocks, unfreeze's ``Classifier(task="tokens", strategy=Freeze(k))`` against ``Trainer`` with
``AutoModelForTokenClassification`` (a linear head per token after dropout on the last hidden state, the
first sub-word of each word labelled, -100 elsewhere), the same frozen parameters, AdamW groups (no decay
on biases and norms, the head at its own rate), linear schedule with warm-up, epochs and batch size;
neither validates. Scored on the dev split (BERT's Table 7 reports dev F1) with seqeval strict IOB2
entity micro-F1, one tag per word. Differences that remain: unfreeze reads a sentence longer than
``max_length`` through overlapping windows where the Trainer truncates it (its cut words count as "O"),
and unfreeze draws batches of similar lengths where the Trainer shuffles.

Prints the CPU, per-k scores and seconds, ``ratio:`` (Trainer seconds / unfreeze seconds) and
``score-delta:`` (unfreeze minus Trainer, mean entity F1).

    python bench/tokens.py [--quick] [--n-train 2000] [--n-test 1000] [--ks 0,3,6] [--epochs N] [--seeds 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
_spec = importlib.util.spec_from_file_location("_common", _HERE / "_common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
mean, minilm_path, print_machine, timer = _common.mean, _common.minilm_path, _common.print_machine, _common.timer

BATCH, LR, HEAD_LR, DECAY, WARMUP, MAX_LENGTH = 32, 5e-5, 1e-3, 0.01, 0.1, 128


def load(n_train: int, n_test: int, seed: int):
    """A seeded sample of ``n_train`` training sentences and the first ``n_test`` dev sentences (sorted sample)."""
    from unfreeze.data.tagged_builtin import load_tagged_builtin

    train, dev = load_tagged_builtin("conll2003", "train"), load_tagged_builtin("conll2003", "dev")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(train), size=min(n_train, len(train)), replace=False))
    test_rows = np.sort(np.random.default_rng(0).choice(len(dev), size=min(n_test, len(dev)), replace=False))
    pick = lambda ds, idx: ([list(ds.sentences[i]) for i in idx], [list(ds.tags[i]) for i in idx])  # noqa: E731
    return pick(train, rows), pick(dev, test_rows)


def entity_f1(truth: list[list[str]], predicted: list[list[str]]) -> float:
    from unfreeze.metrics import token_metrics

    return token_metrics(truth, predicted, "IOB2")["entity_f1"]


def finetune_unfreeze(
    train, test, k: int, epochs: int, seed: int, precision: str = "auto", grouped: bool | None = None
) -> float:
    from unfreeze import Classifier, Freeze, Training

    training = Training(
        epochs=epochs,
        learning_rate=LR,
        head_learning_rate=HEAD_LR,
        weight_decay=DECAY,
        warmup_ratio=WARMUP,
        validation_fraction=0,
        group_by_length=grouped,
    )
    clf = Classifier(
        "minilm-l6",
        task="tokens",
        strategy=Freeze(k=k),
        training=training,
        seed=seed,
        batch_size=BATCH,
        max_length=MAX_LENGTH,
        progress=False,
        device="cpu",
        precision=precision,
    )
    clf.fit(*train)
    return entity_f1(test[1], clf.predict(test[0]))


def finetune_peer(train, test, k: int, epochs: int, seed: int, workdir: str) -> float:
    """``AutoModelForTokenClassification`` through transformers' ``Trainer``, the same settings."""
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        set_seed,
    )

    classes = sorted({tag for row in train[1] for tag in row})
    index = {tag: i for i, tag in enumerate(classes)}
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the new head's "newly initialized" report
    set_seed(seed)
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(classes))
    _common.freeze_bottom(model, k, model.base_model)

    def encoded(sentences, tags):
        enc = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=MAX_LENGTH)
        firsts, labels = [], []
        for i in range(len(sentences)):
            words = enc.word_ids(i)
            first = [j for j, w in enumerate(words) if w is not None and (j == 0 or words[j - 1] != w)]
            firsts.append(first)
            row = [-100] * len(words)
            if tags is not None:
                for j in first:
                    row[j] = index.get(tags[i][words[j]], index["O"])
            labels.append(row)
        columns = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if "token_type_ids" in enc:
            columns["token_type_ids"] = enc["token_type_ids"]
        if tags is not None:
            columns["labels"] = labels
        return Dataset.from_dict(columns), firsts

    train_ds, _ = encoded(*train)
    test_ds, firsts = encoded(test[0], None)
    logits = _common.trainer_logits(
        model,
        tokenizer,
        train_ds,
        test_ds,
        epochs,
        seed,
        workdir,
        LR,
        HEAD_LR,
        BATCH,
        DECAY,
        WARMUP,
        head=model.classifier,
        collator=DataCollatorForTokenClassification(tokenizer),
    )
    predicted = []
    for i, words in enumerate(test[0]):
        tags = [classes[int(logits[i, j].argmax())] for j in firsts[i]]
        predicted.append(tags + ["O"] * (len(words) - len(tags)))  # words cut by truncation
    return entity_f1(test[1], predicted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 96 training sentences, 50 dev, k=3, 1 epoch")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--ks", default="0,3,6", help="frozen blocks to sweep, comma-separated")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: 1 with --quick, else 3)")
    parser.add_argument("--seeds", default="0", help="seeds, comma-separated (each its own training sample)")
    parser.add_argument("--precision", default="auto", help="unfreeze's precision: auto (its default), fp32, bf16")
    parser.add_argument(
        "--shuffled", action="store_true", help="unfreeze draws plain shuffled batches, as the Trainer does"
    )
    args = parser.parse_args()
    n_train, n_test, ks = args.n_train, args.n_test, [int(k) for k in args.ks.split(",")]
    if args.quick:
        n_train, n_test, ks = 96, 50, [3]
    epochs = args.epochs or (1 if args.quick else 3)
    print_machine()
    print(f"threads: {torch.get_num_threads()}; unfreeze precision {args.precision}, shuffled {args.shuffled}")
    print(f"\nfreeze sweep, conll2003 ({n_train} train, {n_test} dev sentences, entity F1), {epochs} epoch(s)")
    peer_s: list[float] = []
    ours_s: list[float] = []
    peer_scores, our_scores = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in [int(s) for s in args.seeds.split(",")]:
            train, test = load(n_train, n_test, seed)
            for k in ks:
                with timer(peer_s):
                    peer_scores.append(finetune_peer(train, test, k, epochs, seed, workdir))
                with timer(ours_s):
                    our_scores.append(
                        finetune_unfreeze(
                            train, test, k, epochs, seed, args.precision, False if args.shuffled else None
                        )
                    )
                print(
                    f"  freeze k={k} seed={seed}: Trainer {peer_scores[-1]:.4f} in {peer_s[-1]:.1f} s, "
                    f"unfreeze {our_scores[-1]:.4f} in {ours_s[-1]:.1f} s ({peer_s[-1] / ours_s[-1]:.2f}x)",
                    flush=True,
                )
    print(f"  total: Trainer {sum(peer_s):.1f} s, unfreeze {sum(ours_s):.1f} s")
    print(f"ratio: {sum(peer_s) / sum(ours_s):.2f}")
    print(f"score-delta: {mean(our_scores) - mean(peer_scores):+.4f}")


if __name__ == "__main__":
    main()
