"""The cache directory and atomic file writes.

Everything expensive (materialised models, dataset files, embeddings) lives under one
directory: ``$UNFREEZE_CACHE`` or the user cache directory. Writes go to a temporary
name in the same directory and are renamed into place, so a crash never leaves a
half-written file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import platformdirs


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the unfreeze cache."""
    root = os.environ.get("UNFREEZE_CACHE") or platformdirs.user_cache_dir("unfreeze")
    path = Path(root).expanduser().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: object) -> str:
    """Hash of a JSON-serialisable value, stable across runs (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    Works for a file or a directory. On any exception the temporary is removed and
    ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()  # the caller decides whether it becomes a file or a directory
    try:
        yield tmp
        _replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _replace(tmp: Path, target: Path) -> None:
    if tmp.is_dir() and target.exists():
        # A directory cannot be renamed over a non-empty one: move the old one
        # aside first, so that target always names a complete bundle.
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        _remove(old)
        os.replace(target, old)
        os.replace(tmp, target)
        _remove(old)
    else:
        os.replace(tmp, target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json_atomic(path: Path, value: object) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
