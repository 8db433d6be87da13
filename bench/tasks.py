"""Tasks beyond one label: regression on STS-B and multi-label on CoNLL-2003's entity types, against peers.

MiniLM-L6, one process, the same data for both sides. Three comparisons per task:

- features: unfreeze's ``features`` (regression: ridge with its strength by cross-validation;
  multi-label: one-vs-rest logistic regression with C by cross-validation, thresholds chosen
  out of fold) against sentence-transformers embeddings + scikit-learn (``RidgeCV``;
  ``OneVsRestClassifier(LogisticRegressionCV)`` deciding at 0.5), end to end from texts;
- fine-tuning: a sweep of k in {0, 3, 6} frozen blocks, unfreeze's ``freeze`` against a
  Hugging Face ``Trainer`` on the same architecture (mean pooling, a linear head with one
  output and MSE, as ``num_labels=1``; or one output per label and BCE, as
  ``problem_type="multi_label_classification"``), the same frozen parameters, AdamW groups,
  schedule, epochs and batch size; neither validates (unfreeze decides at 0.5 then);
- setfit (multi-label only): unfreeze's ``setfit`` against the setfit library's
  ``multi_target_strategy="one-vs-rest"``, the same samples and iterations.

Prints the CPU, per-row scores (Spearman for STS-B, micro-F1 for the entity types) and
seconds, and for each comparison ``ratio:`` (peer seconds / unfreeze seconds) and
``score-delta:`` (unfreeze minus peer).

    python bench/tasks.py [--quick] [--task regression|multilabel|both] [--part features,finetune,setfit]
                          [--epochs N] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # `import setfit` finds the library
_spec = importlib.util.spec_from_file_location("_common", _HERE / "_common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
mean, minilm_path, print_machine, timer = _common.mean, _common.minilm_path, _common.print_machine, _common.timer

BATCH, LR, HEAD_LR, DECAY, WARMUP, MAX_LENGTH = 32, 5e-5, 1e-3, 0.01, 0.1, 128
SETFIT_BATCH, SETFIT_LR = 16, 2e-5
DATA = {"regression": "sts-b", "multilabel": "conll-entities"}
METRIC = {"regression": "spearman", "multilabel": "micro_f1"}


def load(task: str, n_train: int | None, n_test: int | None, seed: int):
    from unfreeze.data import load_data, sample

    train, test = load_data(f"{DATA[task]}:train"), load_data(f"{DATA[task]}:test")
    if n_train and n_train < len(train):
        train = sample(train, n_total=n_train, seed=seed)
    if n_test and n_test < len(test):
        test = sample(test, n_total=n_test, seed=0)
    return train, test


def score(task: str, truth, predicted) -> float:
    """The task's default score of predictions in the labels' own form."""
    from unfreeze.tasks import make_task

    t = make_task(task)
    targets = t.fit_labels(list(truth))
    if task == "regression":
        return t.scores_of_outputs(targets, np.asarray(predicted, dtype=np.float64))[METRIC[task]]
    return t.scores_of_outputs(targets, t.encode(list(predicted)))[METRIC[task]]


def estimator(task: str, **params):
    from unfreeze import Classifier, Regressor

    common = {"batch_size": BATCH, "max_length": MAX_LENGTH, "progress": False, "device": "cpu"}
    if task == "regression":
        return Regressor("minilm-l6", **common, **params)
    return Classifier("minilm-l6", task="multilabel", **common, **params)


# -- features ----------------------------------------------------------------------------------


def features_unfreeze(task: str, train, test) -> float:
    clf = estimator(task, strategy="features", cache=False)
    clf.fit(train.inputs, train.labels)
    return score(task, test.labels, clf.predict(test.inputs))


def features_peer(task: str, train, test) -> float:
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler

    model = SentenceTransformer(minilm_path(), device="cpu")
    model.max_seq_length = MAX_LENGTH
    x_train = model.encode(train.inputs, batch_size=BATCH, show_progress_bar=False)
    x_test = model.encode(test.inputs, batch_size=BATCH, show_progress_bar=False)
    if task == "regression":
        head = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))
        head.fit(x_train, np.asarray(train.labels, dtype=np.float64))
        return score(task, test.labels, head.predict(x_test))
    binarizer = MultiLabelBinarizer().fit(train.labels)
    head = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegressionCV(Cs=10, max_iter=2000)))
    head.fit(x_train, binarizer.transform(train.labels))
    predicted = binarizer.inverse_transform(head.predict(x_test))
    return score(task, test.labels, [tuple(p) for p in predicted])


# -- fine-tuning ----------------------------------------------------------------------------------


def finetune_unfreeze(task: str, train, test, k: int, epochs: int, seed: int) -> float:
    from unfreeze import Freeze, Training

    training = Training(
        epochs=epochs,
        learning_rate=LR,
        head_learning_rate=HEAD_LR,
        weight_decay=DECAY,
        warmup_ratio=WARMUP,
        validation_fraction=0,
    )
    clf = estimator(task, strategy=Freeze(k=k), training=training, seed=seed)
    clf.fit(train.inputs, train.labels)
    return score(task, test.labels, clf.predict(test.inputs))


def finetune_peer(task: str, train, test, k: int, epochs: int, seed: int, workdir: str) -> float:
    """The same architecture and settings through transformers' ``Trainer``."""
    from datasets import Dataset

    classes = sorted({label for row in train.labels for label in row}) if task == "multilabel" else []

    def loss(logits, labels):  # what num_labels=1 (regression) and multi_label_classification compute
        if task == "regression":
            return torch.nn.functional.mse_loss(logits.squeeze(-1), labels.float())
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float())

    model, tokenizer, _ = _common.build_peer_model(seed, len(classes) or 1, loss)
    _common.freeze_bottom(model, k)

    def targets(labels):
        if task == "regression":
            return [float(v) for v in labels]
        return [[1.0 if c in row else 0.0 for c in classes] for row in labels]

    def encoded(ds, with_labels: bool):
        columns = {"a": ds.texts, "b": ds.text_pairs or [None] * len(ds.texts)}
        if with_labels:
            columns["labels"] = targets(ds.labels)
        pairs = ds.text_pairs is not None

        def tokenize(batch):
            return tokenizer(batch["a"], batch["b"] if pairs else None, truncation=True, max_length=MAX_LENGTH)

        return Dataset.from_dict(columns).map(tokenize, batched=True, remove_columns=["a", "b"])

    logits = _common.trainer_logits(
        model,
        tokenizer,
        encoded(train, True),
        encoded(test, False),
        epochs,
        seed,
        workdir,
        lr=LR,
        head_lr=HEAD_LR,
        batch=BATCH,
        decay=DECAY,
        warmup=WARMUP,
    )
    if task == "regression":
        return score(task, test.labels, logits.reshape(-1))
    chosen = 1.0 / (1.0 + np.exp(-logits)) >= 0.5
    return score(task, test.labels, [tuple(c for c, on in zip(classes, row) if on) for row in chosen])


# -- setfit ---------------------------------------------------------------------------------------


def setfit_unfreeze(train, test, iterations: int, seed: int) -> float:
    from unfreeze import SetFit, Training

    clf = estimator(
        "multilabel",
        strategy=SetFit(num_iterations=iterations),
        training=Training(epochs=1, learning_rate=SETFIT_LR),
        seed=seed,
    ).set_params(batch_size=SETFIT_BATCH)
    clf.fit(train.inputs, train.labels)
    return score("multilabel", test.labels, clf.predict(test.inputs))


def setfit_peer(train, test, iterations: int, seed: int) -> float:
    classes = sorted({label for row in train.labels for label in row})
    rows = [[1 if c in row else 0 for c in classes] for row in train.labels]
    model = _common.setfit_peer_model(
        train.texts, rows, iterations, seed, SETFIT_BATCH, SETFIT_LR, 1, multi_target_strategy="one-vs-rest"
    )
    chosen = np.asarray(model.predict(test.texts, show_progress_bar=False))
    return score("multilabel", test.labels, [tuple(c for c, on in zip(classes, row) if on) for row in chosen])


# -- the run ----------------------------------------------------------------------------------------


def compare(title: str, peer_name: str, runs: list[tuple[str, object, object]]) -> None:
    """Run each (label, peer thunk, unfreeze thunk) pair; print rows, then ratio and score-delta."""
    peer_s: list[float] = []
    ours_s: list[float] = []
    peer_scores, our_scores = [], []
    print(f"\n{title}", flush=True)
    for label, peer, ours in runs:
        with timer(peer_s):
            peer_scores.append(peer())
        with timer(ours_s):
            our_scores.append(ours())
        print(
            f"  {label}: {peer_name} {peer_scores[-1]:.4f} in {peer_s[-1]:.1f} s, "
            f"unfreeze {our_scores[-1]:.4f} in {ours_s[-1]:.1f} s ({peer_s[-1] / ours_s[-1]:.2f}x)",
            flush=True,
        )
    print(f"  total: {peer_name} {sum(peer_s):.1f} s, unfreeze {sum(ours_s):.1f} s")
    print(f"ratio: {sum(peer_s) / sum(ours_s):.2f}")
    print(f"score-delta: {mean(our_scores) - mean(peer_scores):+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 training texts, 500 test, 1 epoch")
    parser.add_argument("--task", default="both", choices=("regression", "multilabel", "both"))
    parser.add_argument("--part", default="features,finetune,setfit", help="which comparisons (comma-separated)")
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: 1 with --quick, else 3)")
    parser.add_argument("--seeds", default="0", help="fine-tuning seeds, comma-separated (each its own sample)")
    args = parser.parse_args()
    print_machine()
    print(f"threads: {torch.get_num_threads()}")
    parts = set(args.part.split(","))
    if args.quick:
        n_train, n_test, epochs, ks, per_label, iterations = 1000, 500, 1, [0, 3, 6], 8, 5
    else:
        n_train, n_test, epochs, ks, per_label, iterations = None, None, 3, [0, 3, 6], 16, 20
    epochs = args.epochs or epochs
    seeds = [int(s) for s in args.seeds.split(",")]
    workdir = tempfile.mkdtemp(prefix="bench-tasks-")
    tasks = ["regression", "multilabel"] if args.task == "both" else [args.task]
    for task in tasks:
        train, test = load(task, n_train, n_test, 0)
        name = f"{DATA[task]} ({len(train)} train, {len(test)} test, {METRIC[task]})"
        if "features" in parts:
            compare(
                f"features, {name}: sentence-transformers + scikit-learn vs unfreeze",
                "peer",
                [
                    (
                        "features",
                        partial(features_peer, task, train, test),
                        partial(features_unfreeze, task, train, test),
                    )
                ],
            )
        if "finetune" in parts:
            runs = []
            for k in ks:
                for seed in seeds:
                    tr, te = (train, test) if seed == 0 else load(task, n_train, n_test, seed)
                    runs.append(
                        (
                            f"freeze k={k} seed={seed}",
                            partial(finetune_peer, task, tr, te, k, epochs, seed, workdir),
                            partial(finetune_unfreeze, task, tr, te, k, epochs, seed),
                        )
                    )
            compare(f"fine-tuning, {name}, {epochs} epoch(s): Trainer vs unfreeze", "Trainer", runs)
        if "setfit" in parts and task == "multilabel":
            from unfreeze.data import sample

            small = sample(train, n_total=per_label * 8, seed=0)
            compare(
                f"setfit, {DATA[task]} ({len(small)} train, {len(test)} test, micro_f1, {iterations} iterations)",
                "setfit",
                [
                    (
                        "setfit one-vs-rest",
                        partial(setfit_peer, small, test, iterations, 0),
                        partial(setfit_unfreeze, small, test, iterations, 0),
                    )
                ],
            )


if __name__ == "__main__":
    main()
