"""Bundles: a folder of JSON + safetensors that reloads to the same predictions.

    unfreeze.json       config, backbone reference and fingerprint, labels, versions, metrics
    head.safetensors    the head's arrays

Written to a temporary folder and renamed into place: a failed save leaves no bundle.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from . import __version__
from .cache import atomic_path
from .errors import UnfreezeError
from .heads import LogisticHead

FORMAT = "unfreeze-bundle"
FORMAT_VERSION = 1
CONFIG_FILE = "unfreeze.json"


def package_versions() -> dict[str, str]:
    import sklearn
    import torch
    import transformers

    return {"unfreeze": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def _reference(model: str) -> str:
    # a local folder is stored as an absolute path so the bundle works from any directory
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def save_bundle(clf, path: Path, metrics: dict | None = None) -> Path:
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(clf, "head_")
    params = clf.get_params()
    params["model"] = _reference(params["model"])
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "strategy": clf.strategy,
        "params": params,
        "backbone": {"reference": params["model"], "fingerprint": clf.backbone_.fingerprint(),
                     "family": clf.backbone_.family, "num_blocks": clf.backbone_.num_blocks},
        "pooling": clf.pooling_,
        "layers": list(clf.layers_),
        "max_length": clf.max_length_,
        "labels": clf.classes_.tolist(),
        "versions": package_versions(),
        "metrics": metrics or {},
    }
    with atomic_path(path) as tmp:
        tmp.mkdir()
        config["head"] = clf.head_.save(tmp)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
    return path


def read_config(path: Path) -> dict:
    file = path / CONFIG_FILE
    if not file.exists():
        raise UnfreezeError(f"{path} is not an unfreeze bundle (no {CONFIG_FILE}). Create one with `unfreeze fit`.")
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise UnfreezeError(f"{file} is not valid JSON ({exc.msg}, line {exc.lineno}); the bundle is damaged.") from exc
    if config.get("format") != FORMAT or config.get("format_version", 0) > FORMAT_VERSION:
        raise UnfreezeError(
            f"{path} has bundle format {config.get('format')!r} version {config.get('format_version')!r}; "
            f"this unfreeze {__version__} reads {FORMAT} up to version {FORMAT_VERSION}. Upgrade unfreeze."
        )
    return config


def load_bundle(path: Path, device: str | None = None):
    import numpy as np

    from .classifier import Classifier, shared_backbone

    config = read_config(path)
    params = dict(config["params"])
    if device is not None:
        params["device"] = device
    clf = Classifier(**params)
    backbone = shared_backbone(config["backbone"]["reference"], params.get("device"))
    if backbone.fingerprint() != config["backbone"]["fingerprint"]:
        raise UnfreezeError(
            f"The weights of model {config['backbone']['reference']!r} differ from those {path} was fitted on "
            "(fingerprint mismatch). Install the same model version or refit the bundle."
        )
    clf.backbone_ = backbone
    clf.pooling_ = config["pooling"]
    clf.layers_ = tuple(config["layers"])
    clf.max_length_ = config["max_length"]
    clf.classes_ = np.asarray(config["labels"])
    clf.head_ = LogisticHead.load(path, config["head"])
    clf.n_truncated_ = 0
    return clf
