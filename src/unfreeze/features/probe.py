"""Layer probes: one forward pass yields every hidden state; a head is fitted on each.

The table has the shape of BERT's Table 7 (feature-based approach): a score per
layer, and for the concatenation of the last four layers. The head is the ``features``
strategy's for the data's task (logistic, one-vs-rest logistic, ridge), scored with every
metric of the task; tables and plots show the task's default score unless told another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import TextDataset
from ..tasks import DEFAULT_TASK, Task, make_task


def run_probe(
    train: TextDataset,
    test: TextDataset | None,
    model: str,
    pooling: str = "auto",
    max_length: int = 256,
    batch_size: int = 32,
    C: float | None = None,
    seed: int = 0,
    cache: bool = True,
    progress: bool = True,
    device: str | None = None,
    precision: str = "auto",
    task: Task | None = None,
) -> list[dict]:
    """Fit and score the task's head on every hidden state and on the last four concatenated.

    ``precision``: of the forward pass (``auto``: bf16 where the hardware runs it fast). ``task``: the
    labels' task with its settings (None: ``train.task``'s)."""
    from ..machine.hardware import run_precision
    from ..models.loaded import shared_backbone
    from ..models.pooling import resolve_pooling
    from .embed import embed
    from .heads import make_head

    base = shared_backbone(model, device)
    backbone = shared_backbone(model, device, run_precision(precision, base.device).inference_dtype)
    pooling = resolve_pooling(pooling, backbone.is_decoder, "probe")
    all_layers = list(range(backbone.num_blocks + 1))
    train_emb = embed(backbone, train.inputs, all_layers, pooling, max_length, batch_size, cache, progress)
    test_emb = (
        embed(backbone, test.inputs, all_layers, pooling, max_length, batch_size, cache, progress) if test else None
    )
    task = make_task(getattr(train, "task", DEFAULT_TASK)) if task is None else task.fresh()
    y_train = task.fit_labels(train.labels, "the training set")
    y_test = task.encode(test.labels, "the test set", unseen=True) if test is not None else None

    last_four = tuple(all_layers[-4:])
    specs: list[tuple[str, tuple[int, ...]]] = [
        (str(i) + (" (embeddings)" if i == 0 else ""), (i,)) for i in all_layers
    ]
    specs.append((f"concat {','.join(str(i - len(all_layers)) for i in last_four)}", last_four))
    rows = []
    for name, layers in specs:
        head: Any = make_head(task.name, "probe", C=C, seed=seed)  # unfitted: FittedHead says what it gives
        head.fit(train_emb.features(layers), y_train)
        row = {
            "layer": name,
            "layers": list(layers),
            **head.record(),
            "train": task.scores(y_train, head.logits(train_emb.features(layers))),
        }
        if test_emb is not None and y_test is not None:
            row["test"] = task.scores(y_test, head.logits(test_emb.features(layers)))
        if task.name != DEFAULT_TASK:  # a single-label probe's rows are as before tasks existed
            row["task"] = task.name
        rows.append(row)
    return rows


def probe_metric(rows: list[dict], metric: str | None = None) -> str:
    """``metric`` if the rows' task reports it (one line otherwise); None: the task's default score."""
    task = make_task(rows[0].get("task") or DEFAULT_TASK) if rows else make_task()
    return task.default_metric if metric is None else task.check_metric(metric)


def format_probe_table(rows: list[dict], metric: str | None = None) -> str:
    """The probe's rows as aligned text: ``metric`` (None: the task's default score) per layer."""
    metric = probe_metric(rows, metric)
    has_test = "test" in rows[0]
    lines = [f"{'layer':<22}{'train ' + metric:>18}" + (f"{'test ' + metric:>18}" if has_test else "")]
    for row in rows:
        line = f"{row['layer']:<22}{row['train'][metric]:>18.4f}"
        if has_test:
            line += f"{row['test'][metric]:>18.4f}"
        lines.append(line)
    return "\n".join(lines)


def plot_probe(rows: list[dict], path: Path, metric: str | None = None, title: str = "") -> Path:
    """Score vs layer: test solid, train dashed; the last-four concatenation as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = probe_metric(rows, metric)
    per_layer = [r for r in rows if len(r["layers"]) == 1]
    concat = [r for r in rows if len(r["layers"]) > 1]
    x = [r["layers"][0] for r in per_layer]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if "test" in per_layer[0]:
        ax.plot(x, [r["test"][metric] for r in per_layer], "o-", color="C0", label="test")
    ax.plot(x, [r["train"][metric] for r in per_layer], "o--", color="C0", alpha=0.6, label="train")
    for r in concat:
        if "test" in r:
            ax.axhline(r["test"][metric], color="C1", label=f"{r['layer']} (test)")
        ax.axhline(r["train"][metric], color="C1", ls="--", alpha=0.6, label=f"{r['layer']} (train)")
    ax.set_xticks(x, [str(i) if i else "emb" for i in x])
    ax.set_xlabel("hidden state (0 = embeddings, i = output of block i)")
    ax.set_ylabel(metric.replace("_", "-"))
    ax.set_title(title or f"Probe per layer: {metric.replace('_', '-')}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
