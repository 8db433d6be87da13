"""bf16 on this CPU: MiniLM embedding and a freeze cell's training, fp32 vs bf16 options.

Embedding (no gradients) of movie-snippets texts through ``unfreeze.features.embed.forward_pooled``:

- fp32: the model as loaded;
- bf16 weights: the model converted with ``model.to(torch.bfloat16)``;
- autocast: the fp32 model under ``torch.autocast("cpu", dtype=torch.bfloat16)``.

Seconds, texts/s, the smallest cosine similarity of the pooled embeddings to fp32, the peak
resident memory above the start of the pass, and the test accuracy of a logistic head
fitted on each precision's embeddings.

Training a freeze cell (k=3 of MiniLM's 6 blocks frozen, 1 epoch, batch 32, AdamW: body
5e-5, head 1e-3, decay 0.01, warm-up 10% then linear decay, clipping 1.0). The frozen
prefix (embeddings + bottom k blocks) runs without gradients for every batch; the top
blocks, mean pooling and a linear head train:

- fp32: everything in fp32 (today);
- bf16 prefix: the prefix with bf16 weights, its output cast to fp32 at the boundary, the
  trained blocks in fp32;
- bf16 prefix + autocast: as above, the trained blocks under bf16 autocast (fp32 weights);
- bf16 prefix + bf16 weights: the trained blocks hold bf16 weights for forward and
  backward; AdamW updates an fp32 master copy, copied back to bf16 after each step.

Each option starts from the same weights and sees the same batches in the same order.
The script ends with ``ratio:`` (fp32 seconds over the fastest training option within 0.5
point of fp32 accuracy) and ``accuracy-delta:`` (that option minus fp32).

    python bench/bf16.py [--quick] [--n-embed 1000] [--n-train 500] [--n-test 1000] [--epochs 1] [--seeds 0]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakRSS, movie_snippets, print_machine

MB = 2**20
K, BATCH, LR, HEAD_LR, DECAY, WARMUP, CLIP = 3, 32, 5e-5, 1e-3, 0.01, 0.1, 1.0


# -- embedding ---------------------------------------------------------------------------------

EMBED_VARIANTS = ("fp32", "bf16 weights", "autocast bf16")


def embed_worker(variant: str, texts: list[str], out: Path) -> dict[str, float]:
    """In a fresh process: load MiniLM, convert it as ``variant`` says, embed ``texts``."""
    from unfreeze.features.embed import forward_pooled
    from unfreeze.models import Backbone

    backbone = Backbone.load("minilm-l6", device="cpu")
    if variant == "bf16 weights":
        backbone.model.to(torch.bfloat16)
    last = backbone.num_blocks
    encoded = backbone.encode(texts, 256)

    def run(data) -> np.ndarray:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if variant == "autocast bf16" else nullcontext()
        with context:
            return forward_pooled(backbone, data, [(last, "mean")], BATCH, progress=False)[(last, "mean")]

    run(encoded.subset(list(range(min(64, len(encoded))))))  # warm-up: first-call costs
    gc.collect()
    with PeakRSS() as memory:
        start = time.perf_counter()
        pooled = run(encoded)
        seconds = time.perf_counter() - start
    np.save(out, pooled)
    weights = sum(p.numel() * p.element_size() for p in backbone.model.parameters())
    return {
        "seconds": seconds,
        "peak_mb": memory.peak_bytes / MB,
        "start_mb": memory.start_bytes / MB,
        "weights_mb": weights / MB,
    }


def bench_embedding(
    args, texts: list[str], test_texts: list[str], train_y: np.ndarray, test_y: np.ndarray, workdir: Path
) -> None:
    from unfreeze.features.logistic import LogisticHead

    rows: dict[str, list[dict[str, float]]] = {name: [] for name in EMBED_VARIANTS}
    pooled: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name in EMBED_VARIANTS:  # alternating, so that a busy spell does not hit one variant only
            out = workdir / f"embed-{EMBED_VARIANTS.index(name)}.npy"
            rows[name].append(child(args, {"kind": "embed", "variant": name, "n": len(texts), "out": str(out)}))
            pooled[name] = np.load(out)

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    print(
        f"\nembedding: {len(texts)} texts, batch {BATCH}, threads {torch.get_num_threads()}, median of "
        f"{args.repeats}, each in a fresh process (peak: resident set size during the pass)"
    )
    print(
        f"{'variant':<16}{'seconds':>9}{'texts/s':>9}{'speed-up':>10}{'min cos':>10}{'weights MB':>12}"
        f"{'RSS before':>12}{'peak RSS':>10}"
    )
    base = statistics.median(r["seconds"] for r in rows["fp32"])
    for name in EMBED_VARIANTS:
        s = statistics.median(r["seconds"] for r in rows[name])
        cosine = float(np.min(np.sum(unit(pooled[name]) * unit(pooled["fp32"]), axis=1)))
        last = rows[name][-1]
        print(
            f"{name:<16}{s:>9.2f}{len(texts) / s:>9.1f}{base / s:>9.2f}x{cosine:>10.5f}{last['weights_mb']:>12.1f}"
            f"{last['start_mb']:>12.0f}{last['peak_mb']:>10.0f}"
        )

    # does a features head notice? fit on each precision's embeddings, score each on its own
    accuracy = {}
    for name in ("fp32", "bf16 weights"):
        out = workdir / f"test-{name.replace(' ', '-')}.npy"
        child(args, {"kind": "embed", "variant": name, "n": len(test_texts), "split": "test", "out": str(out)})
        head = LogisticHead().fit(pooled[name], train_y)
        accuracy[name] = float(np.mean(head.predict_proba(np.load(out)).argmax(1) == test_y))
    print(
        f"features head accuracy ({len(test_texts)} test texts): fp32 {accuracy['fp32']:.4f}, "
        f"bf16 weights {accuracy['bf16 weights']:.4f} ({accuracy['bf16 weights'] - accuracy['fp32']:+.4f})"
    )


def child(args, job: dict) -> dict[str, float]:
    """Run ``job`` in a fresh Python process (clean memory peak); its result comes back as JSON."""
    command = [sys.executable, __file__, "--worker", json.dumps(job), "--n-test", str(args.n_test)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker {job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- training a freeze cell ----------------------------------------------------------------------

MODES = ("fp32", "bf16 prefix", "bf16 prefix + autocast", "bf16 prefix + bf16 weights")


class Cell:
    """A freeze cell on MiniLM: a frozen prefix (embeddings + ``K`` blocks), trained top blocks, head."""

    def __init__(self, mode: str, seed: int) -> None:
        from unfreeze.models import Backbone

        self.mode = mode
        self.prefix_seconds = 0.0  # time in the frozen prefix's forward pass
        backbone = Backbone.load("minilm-l6", device="cpu")
        self.backbone = backbone
        model = backbone.model
        self.config = model.config
        # split the model in two without copying: the prefix keeps the embeddings and the bottom
        # K blocks (its last_hidden_state is block K's output), the top blocks train
        self.top = model.encoder.layer[K:]
        model.encoder.layer = model.encoder.layer[:K]
        self.prefix = model.eval().requires_grad_(False)
        if mode != "fp32":
            self.prefix.to(torch.bfloat16)
        torch.manual_seed(seed)
        self.head = nn.Linear(backbone.hidden_size, 2)
        self.dropout = nn.Dropout(0.1)
        self.bf16_weights = mode.endswith("bf16 weights")
        params = list(self.top.parameters())
        if self.bf16_weights:
            self.top.to(torch.bfloat16)
            # AdamW updates fp32 copies: bf16 alone would round away updates of lr 5e-5
            self.master = [p.detach().float().clone().requires_grad_(True) for p in self.top.parameters()]
            params = self.master
        self.trained = params + list(self.head.parameters())
        self.optimizer = torch.optim.AdamW(
            [{"params": params, "lr": LR}, {"params": list(self.head.parameters()), "lr": HEAD_LR}], weight_decay=DECAY
        )

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        start = time.perf_counter()
        with torch.no_grad():
            states = self.prefix(**batch).last_hidden_state
        self.prefix_seconds += time.perf_counter() - start
        # cast at the boundary: the trained blocks take their own dtype
        states = states.to(torch.bfloat16 if self.bf16_weights else torch.float32)
        autocast = self.mode.endswith("autocast")
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext():
            mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=states, attention_mask=batch["attention_mask"]
            )
            for block in self.top:
                out = block(states, attention_mask=mask)
                states = out[0] if isinstance(out, tuple) else out
        weights = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (states.float() * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled))

    def step(self, batch: dict[str, torch.Tensor], labels: torch.Tensor, scheduler) -> float:
        loss = nn.functional.cross_entropy(self.logits(batch), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.bf16_weights:
            for master, p in zip(self.master, self.top.parameters()):
                master.grad = p.grad.float()
                p.grad = None
        torch.nn.utils.clip_grad_norm_(self.trained, CLIP)
        self.optimizer.step()
        scheduler.step()
        if self.bf16_weights:
            with torch.no_grad():
                for master, p in zip(self.master, self.top.parameters()):
                    p.copy_(master)
        return float(loss.detach())

    def train_mode(self, on: bool) -> None:
        self.top.train(on)
        self.dropout.train(on)


def batches(backbone, encoded, seed: int) -> list[list[int]]:
    """Length-grouped batches in a seeded order (short padding, as unfreeze's loop does)."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.input_ids[i]))
    chunks = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
    np.random.default_rng(seed).shuffle(chunks)
    return chunks


def train_cell(mode: str, seed: int, train, test, epochs: int) -> dict[str, float]:
    """In a fresh process: train one freeze cell with the option ``mode`` and score it."""
    cell = Cell(mode, seed)
    backbone = cell.backbone
    encoded, encoded_test = backbone.encode(train.texts, 256), backbone.encode(test.texts, 256)
    classes = sorted(set(train.labels))
    y = torch.tensor([classes.index(label) for label in train.labels])
    y_test = np.array([classes.index(label) for label in test.labels])
    steps = epochs * len(batches(backbone, encoded, seed))
    warmup = max(1, int(WARMUP * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        cell.optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup))
    )
    torch.manual_seed(seed)  # dropout
    gc.collect()
    cell.train_mode(True)
    epoch_seconds = []
    with PeakRSS() as memory:
        for epoch in range(epochs):
            start = time.perf_counter()
            for idx in batches(backbone, encoded, seed + epoch):
                cell.step(backbone.collate(encoded, idx), y[idx], scheduler)
            epoch_seconds.append(time.perf_counter() - start)
    seconds, prefix_seconds = sum(epoch_seconds), cell.prefix_seconds
    cell.train_mode(False)
    start = time.perf_counter()
    predicted = np.empty(len(encoded_test), dtype=int)
    with torch.no_grad():
        for idx, batch in backbone.batches(encoded_test, 64):
            predicted[idx] = cell.logits(batch).argmax(1).numpy()
    return {
        "seconds": seconds,
        "prefix_seconds": prefix_seconds,
        "first_epoch_seconds": epoch_seconds[0],
        "later_epoch_seconds": statistics.fmean(epoch_seconds[1:]) if epochs > 1 else float("nan"),
        "predict_seconds": time.perf_counter() - start,
        "peak_mb": memory.peak_bytes / MB,
        "start_mb": memory.start_bytes / MB,
        "accuracy": float(np.mean(predicted == y_test)),
    }


def bench_training(args, seeds: list[int]) -> tuple[float, float]:
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for seed in seeds:
        for mode in MODES:
            results[mode].append(
                child(args, {"kind": "train", "mode": mode, "seed": seed, "n": args.n_train, "epochs": args.epochs})
            )
            r = results[mode][-1]
            print(f"  seed {seed} {mode}: {r['seconds']:.1f} s, accuracy {r['accuracy']:.4f}", flush=True)
    print(
        f"\nfreeze cell: k={K} of 6, {args.n_train} training texts, {args.epochs} epoch(s), {args.n_test} test "
        f"texts, seeds {seeds}, threads {torch.get_num_threads()}, each in a fresh process (mean over seeds)"
    )
    print(
        f"{'option':<28}{'train s':>9}{'prefix s':>10}{'epoch 1 s':>11}{'later s/ep':>12}{'speed-up':>10}"
        f"{'predict s':>11}{'RSS before':>12}{'peak RSS':>10}{'accuracy':>10}{'delta':>9}"
    )
    summary = {}
    for mode, rows in results.items():
        summary[mode] = {key: statistics.fmean(r[key] for r in rows) for key in rows[0]}
    base = summary["fp32"]
    for mode, s in summary.items():
        print(
            f"{mode:<28}{s['seconds']:>9.1f}{s['prefix_seconds']:>10.1f}{s['first_epoch_seconds']:>11.1f}"
            f"{s['later_epoch_seconds']:>12.1f}{base['seconds'] / s['seconds']:>9.2f}x{s['predict_seconds']:>11.1f}"
            f"{s['start_mb']:>12.0f}{s['peak_mb']:>10.0f}{s['accuracy']:>10.4f}"
            f"{s['accuracy'] - base['accuracy']:>+9.4f}"
        )
    eligible = [m for m in MODES if summary[m]["accuracy"] >= base["accuracy"] - 0.005]
    best = min(eligible, key=lambda m: summary[m]["seconds"])
    print(f"fastest option within 0.5 point of fp32: {best}")
    return base["seconds"] / summary[best]["seconds"], summary[best]["accuracy"] - base["accuracy"]


def worker(job: dict, n_test: int) -> None:
    if job["kind"] == "embed":
        train, test = movie_snippets(job["n"] if job.get("split") != "test" else 2, n_test, seed=0)
        texts = test.texts if job.get("split") == "test" else train.texts
        result = embed_worker(job["variant"], texts, Path(job["out"]))
    else:
        train, test = movie_snippets(job["n"], n_test, seed=job["seed"])
        result = train_cell(job["mode"], job["seed"], train, test, job["epochs"])
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 texts to embed, 200 to train, 300 to test")
    parser.add_argument("--n-embed", type=int, default=1000)
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=str, default="0", help="comma-separated training seeds")
    parser.add_argument("--repeats", type=int, default=2, help="embedding repeats")
    parser.add_argument("--skip-embedding", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args()
    if args.quick:
        args.n_embed, args.n_train, args.n_test, args.repeats = 300, 200, 300, 1
    if args.worker:
        worker(json.loads(args.worker), args.n_test)
        return
    print_machine()
    from unfreeze.machine.hardware import precision_name, resolve_precision

    print(
        f"auto resolves to: inference {precision_name(resolve_precision('auto', 'cpu', 'inference'))}, "
        f"training {precision_name(resolve_precision('auto', 'cpu', 'training'))}",
        flush=True,
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.skip_embedding:
        embed_train, test = movie_snippets(args.n_embed, args.n_test, seed=0)
        classes = sorted(set(embed_train.labels))
        with tempfile.TemporaryDirectory(prefix="bench-bf16-") as workdir:
            bench_embedding(
                args,
                embed_train.texts,
                test.texts,
                np.array([classes.index(y) for y in embed_train.labels]),
                np.array([classes.index(y) for y in test.labels]),
                Path(workdir),
            )
    ratio, delta = bench_training(args, seeds)
    print(f"ratio: {ratio:.2f}")
    print(f"accuracy-delta: {delta:+.4f}")


if __name__ == "__main__":
    main()
