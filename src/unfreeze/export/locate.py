"""Finding a bundle's ONNX export and checking that it is the bundle's own (the read side of exports).

Used by ``Classifier.load(runtime="onnx")``, ``MultiHeadClassifier.load`` and the
``BundlePredictor`` of ``predict``/``serve``; imports neither classifier class.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import UnfreezeError
from ..inference.bundle import CONFIG_FILE, MULTIHEAD_KIND, read_config
from . import DEFAULT_EXPORT_DIR
from .manifest import DEFAULT_HEAD, MANIFEST_FILE, is_export, read_manifest

RUNTIMES = ("torch", "onnx")


def check_runtime(runtime: str, owner: str = "load") -> str:
    if runtime not in RUNTIMES:
        raise UnfreezeError(
            f"The 'runtime' parameter of {owner} must be one of {', '.join(map(repr, RUNTIMES))}. Got {runtime!r}."
        )
    return runtime


def bundle_digest(bundle: str | Path) -> str:
    """The sha256 of the bundle's ``unfreeze.json``: it changes with every fit, head added or head removed."""
    return hashlib.sha256((Path(bundle) / CONFIG_FILE).read_bytes()).hexdigest()


def _other_bundle(bundle: Path, source: dict) -> bool:
    """Whether an export's recorded source names a different model, strategy or kind than the bundle has."""
    try:
        config = read_config(bundle)
        multi = config.get("kind") == MULTIHEAD_KIND
        mine = {
            "kind": config.get("kind"),
            "strategy": "features" if multi else config["strategy"]["name"],
            "model": config["backbone"]["reference"],
            "fingerprint": config["backbone"].get("fingerprint"),
        }
    except (UnfreezeError, OSError, KeyError, TypeError):
        return False
    return any(name in source and source[name] != value for name, value in mine.items())


def find_export(bundle: str | Path, onnx: str | Path | None = None, config: dict | None = None) -> Path:
    """The export folder of the bundle at ``bundle`` (``onnx``, or ``bundle/onnx``), checked to be its own.

    Raises a one-line ``UnfreezeError`` when there is none, or when it was made from another
    bundle or from an earlier state of this one.
    """
    from .runtime import require_onnxruntime

    require_onnxruntime()  # first: without it nothing else matters
    bundle = Path(bundle)
    config = config if config is not None else read_config(bundle)
    folder = Path(onnx) if onnx is not None else bundle / DEFAULT_EXPORT_DIR
    if onnx is None and not is_export(folder):
        raise UnfreezeError(
            f"{bundle} has no ONNX export (no {folder / MANIFEST_FILE}); run `unfreeze export {bundle}` first."
        )
    check_belongs(bundle, folder, read_manifest(folder))
    return folder


def check_belongs(bundle: Path, folder: Path, manifest: dict) -> None:
    """Refuse an export whose recorded source is not this bundle as it is now."""
    source = manifest.get("source") or {}
    recorded = source.get("config_sha256")
    if recorded == bundle_digest(bundle):
        return
    if not recorded:
        raise UnfreezeError(
            f"The export at {folder} does not record the bundle it was made from (it was not "
            f"written by `unfreeze export`); export {bundle} with `unfreeze export {bundle}`."
        )
    made_from = source.get("bundle", "another bundle")
    when = manifest.get("created", "an unknown time")
    same_path = Path(made_from) == bundle.resolve()
    # an export inside the bundle folder came with it (made here, or copied along with the bundle): the bundle
    # changed since; unless what it records of its bundle (model, strategy, kind) is not this one's: then it
    # was copied in from another bundle
    if same_path or (folder.resolve().is_relative_to(bundle.resolve()) and not _other_bundle(bundle, source)):
        copied = "" if same_path else f", or the export was copied here from another bundle ({made_from})"
        raise UnfreezeError(
            f"The export at {folder} is out of date: {bundle} changed after it was exported "
            f"({when}){copied}. Export it again with `unfreeze export {bundle} --overwrite`."
        )
    raise UnfreezeError(
        f"The export at {folder} belongs to another bundle ({made_from}, exported {when}), not to "
        f"{bundle}. Export this one with `unfreeze export {bundle}`, or give its own --onnx folder."
    )


def open_export(
    bundle: str | Path,
    onnx: str | Path | None = None,
    precision: str = "fp32",
    batch_size: int | None = None,
    threads: int | None = None,
):
    """The bundle's config and its export loaded for ONNX Runtime: ``(config, OnnxClassifier)``."""
    from .runtime import load_export, require_onnxruntime

    require_onnxruntime()  # first: without it nothing else matters
    bundle = Path(bundle)
    config = read_config(bundle)
    folder = find_export(bundle, onnx, config)
    batch = batch_size or config.get("batch_size") or config.get("classifier", {}).get("batch_size") or 32
    return config, load_export(folder, precision, batch_size=int(batch), threads=threads)


def heads_of(config: dict) -> dict[str, dict]:
    """The heads of a bundle as ``BundlePredictor.heads`` gives them (name, labels, pooling, layers, strategy)."""
    if config.get("kind") == MULTIHEAD_KIND:
        return {
            name: {
                "name": name,
                "labels": list(entry["labels"]),
                "pooling": entry["pooling"],
                "layers": list(entry["layers"]),
                "strategy": "features",
            }
            for name, entry in config["heads"].items()
        }
    return {
        DEFAULT_HEAD: {
            "name": DEFAULT_HEAD,
            "labels": list(config["labels"]),
            "pooling": config["pooling"],
            "layers": list(config["layers"]),
            "strategy": config["strategy"]["name"],
        }
    }


__all__ = ["RUNTIMES", "bundle_digest", "check_belongs", "check_runtime", "find_export", "heads_of", "open_export"]
