"""What a multi-head bundle holds, and reading one back into a suite.

A suite is saved as ``unfreeze.json`` (the backbone, max length, precision and one entry per
head) and one ``heads/NAME.DIGEST.safetensors`` file per head. ``multihead`` writes these
files atomically; this module says what they contain, and loads a bundle (multi-head, or a
single-head features bundle as one head named 'default').
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UnfreezeError
from ..estimators import TextEstimator
from ..storage import strict_json
from .bundle import (
    FORMAT,
    MULTIHEAD_FORMAT_VERSION,
    MULTIHEAD_KIND,
    SINGLE_KIND,
    check_fingerprint,
    model_reference,
    package_versions,
    read_config,
    read_heads,
)
from .head_tasks import task_of

if TYPE_CHECKING:
    from .multihead import MultiHeadClassifier

HEADS_DIR = "heads"
DEFAULT_HEAD = "default"  # the name a single-head bundle's head goes by


def bundle_files(suite: MultiHeadClassifier) -> tuple[str, dict[str, bytes]]:
    """The text of ``unfreeze.json`` for ``suite``, and its head files' bytes by path in the bundle."""
    from safetensors.numpy import save as save_bytes

    if not suite.heads:
        raise UnfreezeError("A bundle needs at least one head; add one before saving.")
    backbone = suite.backbone
    entries, blobs = {}, {}
    for name, head in suite.heads.items():
        tensors, meta = head.head.state()
        blob = save_bytes({k: np.ascontiguousarray(v) for k, v in tensors.items()})
        # the file name carries the content's digest: a new head never overwrites a file in use
        file = f"{HEADS_DIR}/{name}.{hashlib.sha256(blob).hexdigest()[:12]}.safetensors"
        blobs[file] = blob
        entries[name] = {
            "file": file,
            "pooling": head.pooling,
            "layers": list(head.layers),
            "labels": head.classes.tolist(),
            "head": meta,
            **head.info,
            "task": task_of(head).state(),  # how its scores become outputs (earlier releases: none, single)
        }
    config = {
        "format": FORMAT,
        "format_version": MULTIHEAD_FORMAT_VERSION,
        "kind": MULTIHEAD_KIND,
        "strategy": "features",
        "backbone": {
            "reference": model_reference(str(suite.model)),
            "fingerprint": suite.fingerprint,
            "family": backbone.family,
            "num_blocks": backbone.num_blocks,
        },
        "max_length": backbone.length_limit(suite.max_length),
        "batch_size": suite.batch_size,
        # what every head's embeddings were computed in: the bundle predicts in it
        "precision": {"inference": suite.inference_precision, "setting": suite.precision},
        "versions": package_versions(),
        "heads": entries,
    }
    return strict_json.dumps(config, indent=2, default=str) + "\n", blobs


def load_suite(
    cls: type[MultiHeadClassifier], path: Path, device: str | None, precision: str | None
) -> MultiHeadClassifier:
    """The suite of the bundle at ``path`` (torch runtime); see :meth:`MultiHeadClassifier.load`."""
    config = read_config(path)
    if config.get("kind") == SINGLE_KIND:
        return _from_single(cls, path, config, device, precision)
    recorded = (config.get("precision") or {}).get("inference", "fp32")
    suite = cls(
        model=config["backbone"]["reference"],
        max_length=config["max_length"],
        batch_size=config.get("batch_size", 32),
        device=device,
        precision=precision or recorded,
    )
    check_fingerprint(suite.fingerprint, config, path)
    suite.heads = read_heads(path, config)
    return suite


def _from_single(
    cls: type[MultiHeadClassifier], path: Path, config: dict, device: str | None, precision: str | None = None
) -> MultiHeadClassifier:
    if config["predictor"].get("type") != "embedding_head" or config["predictor"].get("tuned"):
        raise UnfreezeError(
            f"{path} was trained with strategy {config['strategy']['name']!r}: its backbone is tuned for its one "
            "head, so no other head can share it. Heads go into features bundles (`unfreeze fit --strategy "
            "features`, or `unfreeze heads add NEW_BUNDLE NAME DATA --model MODEL`)."
        )
    clf = TextEstimator.load(path, device=device, precision=precision)  # the estimator of the bundle's task
    suite = cls(
        model=clf.model,
        max_length=clf.max_length_,
        batch_size=clf.batch_size,
        device=device,
        precision=clf.predictor_.precision,
    )
    suite.add_classifier(DEFAULT_HEAD, clf)
    return suite


__all__ = ["DEFAULT_HEAD", "HEADS_DIR", "bundle_files", "load_suite"]
