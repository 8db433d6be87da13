"""The bundle format: a folder of JSON + safetensors that reloads to the same predictions.

    unfreeze.json         the classifier's and strategy's parameters, training settings,
                          backbone reference and fingerprint, labels, versions, fit record, metrics
    head.safetensors      a logistic head (features, setfit)
    trained.safetensors   the parameters training changed: top blocks, adapters, the linear
                          head (freeze, full, reinit, lora), or the tuned body (setfit)

A multi-head bundle (``unfreeze.inference.multihead``) keeps ``heads/NAME.DIGEST.safetensors`` instead.

``unfreeze.json`` also keeps a small seeded sample of the training inputs and their labels
(``check_texts``; per head in a multi-head bundle): ``unfreeze export`` checks its ONNX
graphs against PyTorch on them. Bundles written before it lack the key; it is optional.

The base model's weights are not copied: the bundle names the model and its fingerprint,
and loading refuses a model whose weights differ. Writes go to a temporary folder that is
renamed into place: a failed save leaves no bundle. Nothing is ever unpickled.

This module is a leaf: it reads and writes files and knows the versions of the format; it
imports neither classifier class (they import it).

Versions: 1 (release 0.1.0, single-head: flat ``params``, ``kind``), 2 (multi-head),
3 (single-head: ``classifier``, ``strategy``, ``training``, ``predictor``). Every version
this release knows is read; version 1 is converted on reading.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

from .. import __version__
from ..errors import UnfreezeError
from ..storage import strict_json
from ..storage.cache import atomic_path

FORMAT = "unfreeze-bundle"
FORMAT_VERSION = 3  # single-head bundles written by this release
MULTIHEAD_FORMAT_VERSION = 2
READABLE_VERSION = 3
CONFIG_FILE = "unfreeze.json"
SINGLE_KIND = "classifier"
MULTIHEAD_KIND = "multihead"


def package_versions() -> dict[str, str]:
    import sklearn
    import torch
    import transformers

    return {
        "unfreeze": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


def model_reference(model: str) -> str:
    """How a bundle names its base model: a local folder as an absolute path (the bundle works from any directory)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


_HEAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_head_name(name: str) -> str:
    """Head names appear in file names, URLs and CSV columns: keep them plain."""
    if not isinstance(name, str) or not _HEAD_NAME.match(name) or name.endswith("."):
        raise UnfreezeError(
            f"Head name {name!r} is not allowed: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit."
        )
    return name


def damaged(path: Path, what: str) -> UnfreezeError:
    return UnfreezeError(f"The bundle at {path} is damaged: {what}. Refit it, or restore it from a copy.")


# -- writing --------------------------------------------------------------------------------------


def write_bundle(path: Path, config: dict, files: dict[str, dict]) -> Path:
    """Write ``config`` as unfreeze.json and each ``files[stem]`` as ``stem.safetensors``, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.mkdir()
        for stem, tensors in files.items():
            _write_tensors(tmp / f"{stem}.safetensors", tensors)
        (tmp / CONFIG_FILE).write_text(strict_json.dumps(config, indent=2, default=str) + "\n")
        make_shareable(tmp)
    return path


def _write_tensors(file: Path, tensors: dict) -> None:
    import numpy as np

    if tensors and all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save_file as save_numpy

        save_numpy({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(file))
    else:
        from safetensors.torch import save_file as save_torch

        save_torch({k: v.contiguous() for k, v in tensors.items()}, str(file))


def make_shareable(folder: Path) -> None:
    """Give a new bundle the permissions of any file the user creates (a temporary folder starts 0700):
    a bundle handed to another user loads whether it holds one head or many."""
    umask = os.umask(0)
    os.umask(umask)
    for item in [folder, *folder.rglob("*")]:
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~umask)


# -- reading --------------------------------------------------------------------------------------


def read_config(path: Path) -> dict:
    """The bundle's unfreeze.json, checked for format and version (version 1 is converted)."""
    path = Path(path)
    file = path / CONFIG_FILE
    if not file.is_file():
        if not path.exists():
            raise UnfreezeError(f"No bundle at {path}: the folder does not exist. Create one with `unfreeze fit`.")
        raise UnfreezeError(f"{path} is not an unfreeze bundle (no {CONFIG_FILE}). Create one with `unfreeze fit`.")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise damaged(path, f"{CONFIG_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise damaged(path, f"{CONFIG_FILE} does not describe an unfreeze bundle")
    version = config.get("format_version")
    if not isinstance(version, int) or version > READABLE_VERSION:
        raise UnfreezeError(
            f"{path} is in bundle format {version!r}; this unfreeze (package version {__version__}) reads bundle "
            f"formats 1 to {READABLE_VERSION}. Upgrade unfreeze."
        )
    kinds = {1: ("features", "loop", "setfit", None), 2: (MULTIHEAD_KIND,), 3: (SINGLE_KIND, MULTIHEAD_KIND)}
    if config.get("kind") not in kinds.get(version, ()):
        raise damaged(path, f"{CONFIG_FILE} has an unknown kind {config.get('kind')!r} for bundle format {version}")
    if config.get("kind") != MULTIHEAD_KIND and version < 3:
        try:
            config = upgrade_v1(config)
        except (KeyError, TypeError, ValueError, UnfreezeError) as exc:
            raise damaged(
                path, f"{CONFIG_FILE} (bundle format 1) lacks a valid strategy, params or head ({exc})"
            ) from exc
    needed = REQUIRED[config["kind"]]
    missing = [k for k, kind in needed.items() if not isinstance(config.get(k), kind)]
    if (
        missing
        or not isinstance(config["backbone"].get("reference"), str)
        or not isinstance(config["backbone"].get("fingerprint"), str)
    ):
        raise damaged(path, f"{CONFIG_FILE} lacks a valid {missing[0] if missing else 'backbone'} entry")
    return config


# what every bundle's config holds, by kind (read_config refuses a config without them)
REQUIRED = {
    SINGLE_KIND: {
        "classifier": dict,
        "strategy": dict,
        "predictor": dict,
        "backbone": dict,
        "labels": list,
        "pooling": str,
        "layers": list,
        "max_length": int,
    },
    MULTIHEAD_KIND: {"heads": dict, "backbone": dict, "max_length": int},
}


def bundle_file(path: Path, name: str) -> Path:
    """``path / name``, refusing a name that leaves the bundle folder (an edited config must not read elsewhere)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise damaged(Path(path), f"it names the file {name!r}, which is not inside the bundle")
    return Path(path) / name


def read_tensors(path: Path, stem: str, framework: str = "pt") -> dict:
    """The tensors of ``stem.safetensors`` (``framework``: "pt" for torch, "np" for numpy); never unpickles."""
    file = bundle_file(path, stem if stem.endswith(".safetensors") else f"{stem}.safetensors")
    if not file.is_file():
        raise damaged(Path(path), f"{file.name} is missing")
    try:
        if framework == "np":
            from safetensors.numpy import load_file as load_arrays

            return load_arrays(str(file))
        from safetensors.torch import load_file as load_tensors

        return load_tensors(str(file))
    except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
        raise damaged(
            Path(path), f"{file.name} is not a readable safetensors file ({str(exc).splitlines()[0]})"
        ) from exc


def read_heads(path: Path, config: dict) -> dict:
    """The heads of a multi-head bundle by name (``unfreeze.features.logistic.Head``), their files checked.

    Each head records its task (``"task"``: ``Task.state()``); a head of an earlier release has none: single."""
    import numpy as np

    from ..features.logistic import Head
    from ..tasks import task_from_state
    from .head_tasks import head_from_state, head_width

    heads = {}
    try:
        entries = dict(config["heads"])
        for name, entry in entries.items():
            if not isinstance(name, str) or not _HEAD_NAME.match(name):
                raise ValueError(f"head name {name!r} is not allowed")
            tensors = read_tensors(path, entry["file"], "np")  # a damaged file says so itself
            info = {k: v for k, v in entry.items() if k not in ("file", "head", "pooling", "layers", "labels", "task")}
            labels = entry["labels"]
            if not isinstance(labels, list):
                raise TypeError(f"head {name!r} lists labels {labels!r}, not a list")
            task = task_from_state(entry.get("task"), labels if labels else None)
            if task.is_classification and len(labels) < task.min_classes:
                raise ValueError(f"head {name!r} lists {len(labels)} labels; a {task.name} head needs a list of them")
            head = head_from_state(tensors, entry["head"])
            width = head_width(head)
            coef = getattr(getattr(head, "model_", None), "coef_", None)
            if (width is not None and width != task.n_outputs) or (coef is not None and np.ndim(coef) != 2):
                raise ValueError(f"head {name!r} lists {len(labels)} labels for a head of {width} outputs")
            heads[name] = Head(
                name, entry["pooling"], tuple(entry["layers"]), np.asarray(labels), head, info, task=task
            )
    except (KeyError, TypeError, ValueError, UnfreezeError) as exc:
        raise damaged(Path(path), f"{CONFIG_FILE} has an invalid head entry ({type(exc).__name__}: {exc})") from exc
    if not heads:
        raise damaged(Path(path), f"{CONFIG_FILE} lists no heads")
    return heads


# -- the check sample (what a later `unfreeze export` checks itself on) ------------------------------

CHECK_TEXTS_KEY = "check_texts"
CHECK_TEXTS_N = 64  # inputs kept per classifier or head
CHECK_TEXT_CHARS = 2000  # a longer text is cut here: past any max_length in tokens, so truncation is still checked


def check_sample(inputs: list, labels, seed: int, n: int = CHECK_TEXTS_N) -> dict:
    """A seeded sample of ``n`` training inputs and their labels, as JSON (``{"texts": [...], "labels": [...]}``).

    A text pair is stored as a two-item list; labels as the values ``fit`` was given.
    """
    import numpy as np

    rng = np.random.default_rng(seed)  # its own generator: drawing here changes no other random stream
    rows: list[int] = (
        np.sort(rng.choice(len(inputs), size=min(n, len(inputs)), replace=False)).tolist() if len(inputs) else []
    )
    labels = list(labels.tolist() if hasattr(labels, "tolist") else labels)

    def cut(item):
        if isinstance(item, (tuple, list)):
            return [str(x)[:CHECK_TEXT_CHARS] for x in item]
        return str(item)[:CHECK_TEXT_CHARS]

    return {"texts": [cut(inputs[i]) for i in rows], "labels": [labels[i] for i in rows]}


def read_check_sample(entry: dict | None) -> tuple[list, list] | None:
    """The (inputs, labels) of a stored check sample (text pairs as tuples), or None when absent or unusable."""
    sample = (entry or {}).get(CHECK_TEXTS_KEY)
    if not isinstance(sample, dict) or not isinstance(sample.get("texts"), list) or not sample["texts"]:
        return None
    texts = [tuple(map(str, t)) if isinstance(t, list) else str(t) for t in sample["texts"]]
    labels = sample.get("labels")
    if not isinstance(labels, list) or len(labels) != len(texts):
        labels = [None] * len(texts)
    return texts, labels


def check_fingerprint(fingerprint: str, config: dict, path: Path) -> None:
    """Refuse a bundle whose base model's weights are not the loaded ones."""
    if fingerprint != config["backbone"]["fingerprint"]:
        raise UnfreezeError(
            f"The weights of model {config['backbone']['reference']!r} differ from those {path} was fitted on "
            "(fingerprint mismatch). Install the same model version or refit the bundle."
        )


# -- version 1 (release 0.1.0) ---------------------------------------------------------------------

# the Classifier's own parameters in version 1 (the rest of its flat params were the strategy's or training's)
_V1_CLASSIFIER_PARAMS = (
    "model",
    "pooling",
    "layers",
    "max_length",
    "batch_size",
    "seed",
    "cache",
    "device",
    "progress",
)


def upgrade_v1(config: dict) -> dict:
    """Convert a version-1 single-head config (flat parameters, ``kind``) to the version-3 layout."""
    from ..strategies import strategy_class
    from ..training.settings import TRAINING_SETTINGS

    flat = dict(config["params"])
    name = config["strategy"]
    cls = strategy_class(name)
    kind = config.get("kind", "features")
    strategy_params = {k: flat[k] for k in cls.setting_names() if k in flat and flat[k] is not None}
    training = {k: flat[k] for k in TRAINING_SETTINGS if k in flat and k in cls.training_settings}
    if kind == "loop":
        predictor = {"type": "network", "n_classes": config.get("head", {}).get("n_classes", len(config["labels"]))}
    else:
        predictor = {"type": "embedding_head", "head": config["head"], "tuned": kind == "setfit"}
    upgraded = {k: v for k, v in config.items() if k not in ("params", "kind", "head", "strategy")}
    upgraded.update(
        {
            "format_version": FORMAT_VERSION,
            "kind": SINGLE_KIND,
            "upgraded_from": 1,
            "classifier": {k: flat[k] for k in _V1_CLASSIFIER_PARAMS if k in flat},
            "strategy": {"name": name, "params": strategy_params},
            "training": training,
            "predictor": predictor,
        }
    )
    return upgraded
