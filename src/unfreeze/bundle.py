"""Bundles: a folder of JSON + safetensors that reloads to the same predictions.

    unfreeze.json         config, backbone reference and fingerprint, labels, versions, fit record, metrics
    head.safetensors      the logistic head (features, setfit)
    trained.safetensors   the parameters training changed: top blocks, adapters, the linear head
                          (freeze, full, reinit, lora), or the tuned body (setfit)

The base model's weights are not copied: the bundle names the model and its
fingerprint, and loading refuses a model whose weights differ.

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
FORMAT_VERSION = 1  # single-head bundles; multi-head bundles (serve/multihead.py) are version 2
READABLE_VERSION = 2
CONFIG_FILE = "unfreeze.json"
TRAINED_FILE = "trained.safetensors"  # the parameters that training changed


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
    from safetensors.torch import save_file
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(clf, "classes_")
    params = clf.get_params()
    params["model"] = _reference(params["model"])
    kind = clf.strategy_config_.kind
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "strategy": clf.strategy,
        "kind": kind,
        "params": params,
        "backbone": {"reference": params["model"], "fingerprint": clf.base_fingerprint_,
                     "family": clf.backbone_.family, "num_blocks": clf.backbone_.num_blocks},
        "pooling": clf.pooling_,
        "layers": list(clf.layers_),
        "max_length": clf.max_length_,
        "labels": clf.classes_.tolist(),
        "versions": package_versions(),
        "fit_record": getattr(clf, "fit_record_", {}),
        "metrics": metrics or {},
    }
    with atomic_path(path) as tmp:
        tmp.mkdir()
        if kind == "loop":
            # only what training changed (top blocks, adapters, head); the rest is the base model
            save_file(_trained_tensors(clf.model_), str(tmp / TRAINED_FILE))
            config["head"] = {"type": "linear", "n_classes": len(clf.classes_)}
        else:
            if kind == "setfit":
                save_file(_trained_tensors(clf.backbone_.model), str(tmp / TRAINED_FILE))
            config["head"] = clf.head_.save(tmp)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
    return path


def _trained_tensors(module) -> dict:
    return {name: p.detach().cpu().contiguous() for name, p in module.named_parameters() if p.requires_grad}


def read_config(path: Path) -> dict:
    file = path / CONFIG_FILE
    if not file.exists():
        raise UnfreezeError(f"{path} is not an unfreeze bundle (no {CONFIG_FILE}). Create one with `unfreeze fit`.")
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise UnfreezeError(f"{file} is not valid JSON ({exc.msg}, line {exc.lineno}); the bundle is damaged.") from exc
    if config.get("format") != FORMAT or config.get("format_version", 0) > READABLE_VERSION:
        raise UnfreezeError(
            f"{path} has bundle format {config.get('format')!r} version {config.get('format_version')!r}; "
            f"this unfreeze {__version__} reads {FORMAT} up to version {READABLE_VERSION}. Upgrade unfreeze."
        )
    return config


def check_fingerprint(backbone, config: dict, path: Path) -> None:
    """Refuse a bundle whose base model's weights are not the loaded ones."""
    if backbone.fingerprint() != config["backbone"]["fingerprint"]:
        raise UnfreezeError(
            f"The weights of model {config['backbone']['reference']!r} differ from those {path} was fitted on "
            "(fingerprint mismatch). Install the same model version or refit the bundle."
        )


def load_bundle(path: Path, device: str | None = None, head: str | None = None):
    import numpy as np
    import torch

    from .classifier import Classifier, private_backbone, shared_backbone
    from .strategies import strategy_config

    config = read_config(path)
    if config.get("kind") == "multihead":
        from .serve.multihead import MultiHeadClassifier

        suite = MultiHeadClassifier.load(path, device=device)
        if head is None:
            if len(suite.heads) > 1:
                raise UnfreezeError(f"{path} holds {len(suite.heads)} heads ({', '.join(suite.heads)}): name one "
                                    "(Classifier.load(path, head=NAME), --head NAME) or use MultiHeadClassifier.")
            head = next(iter(suite.heads))
        return suite.as_classifier(head)
    if head is not None and head != "default":
        raise UnfreezeError(f"{path} is a single-head bundle; its one head is called 'default', not {head!r}.")
    params = dict(config["params"])
    if device is not None:
        params["device"] = device
    clf = Classifier(**params)
    kind = config.get("kind", "features")
    reference = config["backbone"]["reference"]
    base = shared_backbone(reference, params.get("device"))
    check_fingerprint(base, config, path)
    clf.strategy_config_ = strategy_config(config["strategy"], params)
    clf.base_fingerprint_ = config["backbone"]["fingerprint"]
    clf.pooling_ = config["pooling"]
    clf.layers_ = tuple(config["layers"])
    clf.max_length_ = config["max_length"]
    clf.classes_ = np.asarray(config["labels"])
    clf.fit_record_ = config.get("fit_record", {})
    clf.n_truncated_ = 0
    if kind == "features":
        clf.backbone_ = base
    else:
        backbone = private_backbone(reference, params.get("device"))
        torch.manual_seed(0)
        backbone.model = clf.strategy_config_.prepare(backbone)
        if kind == "loop":
            from .training import TextClassificationModel

            clf.model_ = TextClassificationModel(backbone, len(clf.classes_), clf.pooling_, clf.layers_)
            _load_trained(clf.model_, path)
            clf.model_.to(backbone.device).eval()
        else:
            _load_trained(backbone.model, path)
        backbone.model.eval()
        clf.backbone_ = backbone
    if kind != "loop":
        clf.head_ = LogisticHead.load(path, config["head"])
    return clf


def _load_trained(module, path: Path) -> None:
    """Copy the saved trained tensors into ``module``; every saved name must match a parameter."""
    import torch
    from safetensors.torch import load_file

    file = path / TRAINED_FILE
    if not file.exists():
        raise UnfreezeError(f"{path} lacks {TRAINED_FILE}; the bundle is damaged. Refit it.")
    saved = load_file(str(file))
    own = dict(module.named_parameters())
    unknown = sorted(set(saved) - set(own))
    if unknown:
        raise UnfreezeError(f"{file} holds tensors this model does not have (first: {unknown[0]}); "
                            "the bundle was made by another unfreeze or model version. Refit it.")
    with torch.no_grad():
        for name, tensor in saved.items():
            if own[name].shape != tensor.shape:
                raise UnfreezeError(f"{file}: {name} has shape {tuple(tensor.shape)}, the model expects "
                                    f"{tuple(own[name].shape)}. Refit the bundle.")
            own[name].copy_(tensor.to(own[name].device))
