"""Layer probes: one forward pass yields every hidden state; a head is fitted on each.

The table has the shape of BERT's Table 7 (feature-based approach): a score per
layer, and for the concatenation of the last four layers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import TextDataset
from ..metrics import METRICS, classification_metrics
from .logistic import LogisticHead


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
) -> list[dict]:
    """Fit and score a logistic head on every hidden state and on the last four concatenated.

    ``precision``: of the forward pass (``auto``: bf16 where the hardware runs it fast)."""
    from ..machine.hardware import run_precision
    from ..models.loaded import shared_backbone
    from ..models.pooling import resolve_pooling
    from .embed import embed

    base = shared_backbone(model, device)
    backbone = shared_backbone(model, device, run_precision(precision, base.device).inference_dtype)
    pooling = resolve_pooling(pooling, backbone.is_decoder, "probe")
    all_layers = list(range(backbone.num_blocks + 1))
    train_emb = embed(backbone, train.inputs, all_layers, pooling, max_length, batch_size, cache, progress)
    test_emb = (
        embed(backbone, test.inputs, all_layers, pooling, max_length, batch_size, cache, progress) if test else None
    )
    classes, y_train = np.unique(np.asarray(train.labels), return_inverse=True)

    last_four = tuple(all_layers[-4:])
    specs: list[tuple[str, tuple[int, ...]]] = [
        (str(i) + (" (embeddings)" if i == 0 else ""), (i,)) for i in all_layers
    ]
    specs.append((f"concat {','.join(str(i - len(all_layers)) for i in last_four)}", last_four))
    rows = []
    for name, layers in specs:
        head = LogisticHead(C=C, seed=seed).fit(train_emb.features(layers), y_train)
        row = {
            "layer": name,
            "layers": list(layers),
            "C": head.C_,
            "train": _score(head, train_emb.features(layers), classes, train.labels),
        }
        if test_emb is not None and test is not None:
            row["test"] = _score(head, test_emb.features(layers), classes, test.labels)
        rows.append(row)
    return rows


def _score(head: LogisticHead, features: np.ndarray, classes: np.ndarray, labels: list) -> dict[str, float]:
    predicted = classes[np.argmax(head.predict_proba(features), axis=1)]
    return classification_metrics(list(labels), predicted.tolist())


def format_probe_table(rows: list[dict], metric: str = "accuracy") -> str:
    has_test = "test" in rows[0]
    lines = [f"{'layer':<22}{'train ' + metric:>18}" + (f"{'test ' + metric:>18}" if has_test else "")]
    for row in rows:
        line = f"{row['layer']:<22}{row['train'][metric]:>18.4f}"
        if has_test:
            line += f"{row['test'][metric]:>18.4f}"
        lines.append(line)
    return "\n".join(lines)


def plot_probe(rows: list[dict], path: Path, metric: str = "accuracy", title: str = "") -> Path:
    """Score vs layer: test solid, train dashed; the last-four concatenation as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert metric in METRICS
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
    ax.set_title(title or "Logistic-regression probe per layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
