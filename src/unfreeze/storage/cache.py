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

from ..errors import UnfreezeError
from . import strict_json


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
    ``target`` is left as it was. It never destroys what unfreeze did not write: a file
    does not replace a folder nor a folder a file, and a folder replaces an existing one
    only when that one is empty, a complete unfreeze bundle (nothing foreign inside), or
    lies in the unfreeze cache. Anything else raises ``UnfreezeError`` and is left as it is.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except (FileExistsError, NotADirectoryError) as exc:
        raise UnfreezeError(
            f"Cannot write {target}: {_first_file(target.parent)} is a file, not a folder. Choose another path."
        ) from exc
    except PermissionError as exc:
        raise UnfreezeError(
            f"Cannot write {target}: no permission to write in {target.parent}. Choose another path."
        ) from exc
    tmp.rmdir()  # the caller decides whether it becomes a file or a directory
    try:
        yield tmp
        _replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _replace(tmp: Path, target: Path) -> None:
    from .outputs import replaceable_folder

    exists = target.exists() or target.is_symlink()
    if tmp.is_dir() and exists:
        if target.is_symlink():
            raise UnfreezeError(
                f"Refusing to replace {target}: it is a symbolic link; it is left as it is. Choose another path."
            )
        if not target.is_dir():
            raise UnfreezeError(
                f"{target} is a file, and unfreeze writes a folder there; the file is left as it is. "
                "Choose another path."
            )
        reason = None if _in_cache(target) else replaceable_folder(target)
        if reason:
            raise UnfreezeError(f"Refusing to replace {target}: {reason}; it is left as it is. Choose another path.")
        # A directory cannot be renamed over a non-empty one: move the old one aside
        # first (under a fresh name, never one that may exist), so that target always
        # names a complete bundle.
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", suffix=".tmp", dir=target.parent))
        os.replace(target, old)  # replaces the empty folder mkdtemp made
        os.replace(tmp, target)
        _remove(old)
    elif exists and target.is_dir() and not target.is_symlink():
        raise UnfreezeError(
            f"{target} is a folder, and unfreeze writes a file there; the folder is left as it is. Choose another path."
        )
    else:
        os.replace(tmp, target)


def _in_cache(path: Path) -> bool:
    """Whether ``path`` lies inside the unfreeze cache (whose folders unfreeze alone writes)."""
    root = os.environ.get("UNFREEZE_CACHE") or platformdirs.user_cache_dir("unfreeze")
    try:
        root_path = Path(root).expanduser().resolve()
        return root_path in path.resolve().parents
    except (OSError, RuntimeError):
        return False


def _first_file(path: Path) -> Path:
    """The first component of ``path`` that exists and is not a folder (or ``path`` itself)."""
    for part in [*reversed(path.parents), path]:
        if part.exists() and not part.is_dir():
            return part
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json_atomic(path: Path, value: object) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(strict_json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
