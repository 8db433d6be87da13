"""The one guard every command that writes calls before it writes: nothing of the user's is replaced.

``check_output(path, kind, overwrite=False, inputs=(), option="-o")`` refuses, in one line
that says what, where and how to fix it, every output path that would replace or bury
something this tool did not write. Call it before any slow work (loading a model,
training), so a bad path answers at once. It imports nothing heavy.

Kinds and their rules (on top of the rules for every kind below):

``"bundle"``  a bundle folder (``unfreeze.json`` + safetensors), written whole by
              ``fit``/``export``. New or empty: written. An existing bundle: replaced
              only with ``overwrite=True`` (``--overwrite``), and only when it holds
              nothing but bundle files.
``"heads"``   a multi-head bundle that ``heads add`` creates or updates in place: new,
              empty, or an existing bundle (updated head by head, no overwrite needed).
``"run"``     a run folder of one kind (``run_kind``: sweep, advise, study, intrinsic-dim):
              new or empty (started), or an earlier run's folder (resumed). Each kind
              records itself in the file it writes first (``run_kind`` in sweep.json,
              advise.json, intrinsic.json; study.json's format); folders of earlier
              releases are known by which of these files they hold (``run_kind_of``). A
              folder of another kind is refused: one command's rows and reports would
              bury the other's.
``"file"``    a file the tool writes whole (predictions CSV, a plot, an exported model):
              new, or an existing file only with ``overwrite=True``. A file cannot tell
              whether this tool wrote it (a predictions CSV may have been edited since),
              so every existing file needs ``--overwrite``; it is then replaced
              atomically. An input of the same command is never an output, even with
              ``--overwrite`` (predictions never replace the texts they come from).

Every kind: never ``.``, the current folder or a parent of it, the home folder or
``/``; never a file where a folder is wanted or a folder where a file is wanted; never
a path inside a file; never a folder holding an input of the command; and the nearest
existing folder on the way must be writable.

``cache.atomic_path`` enforces the part that protects data when it replaces a folder
(``replaceable_folder``): whatever a caller checked or forgot, a folder that is not
empty and not a complete unfreeze output is never moved aside or deleted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import UnfreezeError

KINDS = ("bundle", "heads", "run", "file")
BUNDLE_CONFIG = "unfreeze.json"
BUNDLE_FORMAT = "unfreeze-bundle"
HEADS_FOLDER = "heads"
EXPORT_MANIFEST = "export.json"
EXPORT_FORMAT = "unfreeze-onnx-export"  # unfreeze.export.manifest.FORMAT (kept here: this module imports nothing heavy)
EXPORT_FOLDER = "onnx"  # where `unfreeze export` puts a bundle's export
RESULTS_FILE = "results.jsonl"
RUN_KIND_KEY = "run_kind"  # the key each run folder's first file records its kind under
# the file each kind writes first, in the order a folder is recognised: intrinsic-dim and advise folders
# also hold sweep.json or results.jsonl (their cells are sweep cells), so their own file decides
RUN_FILES = {"intrinsic-dim": "intrinsic.json", "advise": "advise.json", "study": "study.json", "sweep": "sweep.json"}
RUN_KINDS = tuple(RUN_FILES)
STUDY_FORMAT = "unfreeze-study"  # unfreeze.studies.results.STUDY_FORMAT (kept here: this module imports nothing heavy)
_RUN_WHAT = {
    "sweep": "a sweep's",
    "advise": "an advise run's",
    "study": "a study's",
    "intrinsic-dim": "an intrinsic-dim run's",
}
WHAT = {"bundle": "bundle", "heads": "bundle", "run": "run folder", "file": "file"}


def check_output(
    path: str | Path,
    kind: str,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    option: str = "-o",
    run_kind: str | None = None,
    ours: Callable[[Path], bool] | None = None,
) -> Path:
    """Refuse an output path that would replace or bury what this tool did not write; return it.

    ``inputs`` are the files or folders the same command reads (data, a bundle): an
    output may neither be one nor contain one. ``option`` is the flag the user gave the
    path with, for the message. ``run_kind`` (kind ``"run"``): the kind of run folder the
    command writes; an existing run folder of another kind is refused. ``ours`` (kind ``"file"``):
    whether an existing file is one this tool wrote (e.g. ``is_advise_plan``); when given, a file
    it does not recognise is refused even with ``overwrite``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if run_kind is not None and run_kind not in RUN_KINDS:
        raise ValueError(f"run_kind must be one of {RUN_KINDS}, not {run_kind!r}")
    path = Path(path).expanduser()
    what = WHAT[kind]
    another = f"Choose another {option}"
    protected = protected_reason(path)
    if protected:
        raise UnfreezeError(
            f"Refusing to write the {what} to {path}: it is {protected}. {another}, e.g. {option} {_example(kind)}."
        )
    _check_inputs(path, inputs, what, another)
    _check_parents(path, what, another)
    if kind == "file":
        if path.is_dir():
            raise UnfreezeError(f"{path} is a folder; the {what} to write is a file. {another} naming a file.")
        exists = path.exists() or path.is_symlink()
        if exists and ours is not None and (path.is_symlink() or not ours(path)):
            raise UnfreezeError(
                f"{path} already exists and is not a file this tool wrote there; it is left as it "
                f"is, even with --overwrite. {another}."
            )
        if exists and not overwrite:
            raise UnfreezeError(
                f"{path} already exists. Pass --overwrite to replace it, or {another[0].lower()}{another[1:]}."
            )
        return path
    if path.exists() and not path.is_dir():
        raise UnfreezeError(f"{path} is a file, and a {what} is a folder; the file is left as it is. {another}.")
    if path.is_symlink():
        raise UnfreezeError(f"{path} is a symbolic link; a {what} is written as a folder of its own. {another}.")
    if not path.exists() or not any(path.iterdir()):
        return path
    if kind == "run":
        found = run_kind_of(path)
        if found is not None:
            if run_kind is not None and found != run_kind:
                raise UnfreezeError(
                    f"{path} is {_RUN_WHAT[found]} run folder, not {_RUN_WHAT[run_kind]} ({RUN_FILES[found]}); it "
                    f"is left as it is. {another}: a new or empty folder, or {_RUN_WHAT[run_kind]} run folder to "
                    "resume it."
                )
            return path  # an earlier run of this kind: resumed
        if is_bundle(path):
            raise UnfreezeError(f"{path} is a bundle, not a sweep's run folder. {another}.")
        wanted = _RUN_WHAT[run_kind or "sweep"]
        raise UnfreezeError(
            f"{path} is a folder that holds no sweep or other run (no {', '.join(RUN_FILES.values())} or "
            f"{RESULTS_FILE}) but other files ({_listing(path)}); it is left as it is. {another}: a new or empty "
            f"folder, or {wanted} run folder to resume it."
        )
    if not is_bundle(path):
        raise UnfreezeError(
            f"{path} is a folder that unfreeze did not write ({_listing(path)}); it is left as it is. "
            f"{another}: a new or empty folder."
        )
    if kind == "heads":
        return path  # heads are added to an existing bundle in place
    foreign = foreign_entries(path)
    if foreign:
        raise UnfreezeError(
            f"{path} is a bundle that also holds files unfreeze did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); it is left as it is. Move them out, or {another[0].lower()}"
            f"{another[1:]}."
        )
    if not overwrite:
        raise UnfreezeError(
            f"{path} already holds a bundle. Pass --overwrite to replace it, or {another[0].lower()}{another[1:]}."
        )
    return path


def run_kind_of(path: str | Path) -> str | None:
    """The kind of run folder ``path`` is (one of ``RUN_KINDS``), or None when it is none.

    The kind a folder recorded (``run_kind`` in its first file) decides; a folder of an earlier
    release, which recorded none, is known by its files: intrinsic.json, advise.json, study.json
    (its format), sweep.json, in that order, or else a results.jsonl (advise rows: an advise run).
    A file of one of these names that is not such a record (not a JSON object) marks nothing.
    """
    path = Path(path)
    for kind, name in RUN_FILES.items():
        record = _json_object(path / name)
        if record is None or (kind == "study" and record.get("format") != STUDY_FORMAT):
            continue
        recorded = record.get(RUN_KIND_KEY)
        return recorded if recorded in RUN_KINDS else kind
    results = path / RESULTS_FILE
    if not (results.is_file() and not results.is_symlink()):
        return None
    try:
        with results.open(encoding="utf-8", errors="replace") as lines:
            # the advisor's own rows: advise-start, advise-rung... (a sweep's rows have no kind)
            advised = any('"kind": "advise' in line for line in lines)
    except OSError:
        return None
    return "advise" if advised else "sweep"


def is_advise_plan(file: Path) -> bool:
    """Whether ``file`` is a plan ``advise --json-out`` wrote (a JSON object with the plan's own keys)."""
    record = _json_object(file)
    return record is not None and {"recommendation", "plan", "rungs", "budget_seconds"} <= record.keys()


def check_run_kind(path: str | Path, accepted: Iterable[str], command: str, option: str = "RUN_DIR") -> str:
    """The kind of the run folder ``path`` that ``command`` reads; one line when it is none of ``accepted``."""
    accepted = tuple(accepted)
    path = Path(path)
    found = run_kind_of(path) if path.is_dir() else None
    if found is None:
        return ""  # no run here: the reader says what is missing
    if found not in accepted:
        hint = " (run `unfreeze study` on its study file to rebuild its findings)" if found == "study" else ""
        raise UnfreezeError(
            f"{path} is {_RUN_WHAT[found]} run folder ({RUN_FILES[found]}); {command} reads "
            f"{' or '.join(_RUN_WHAT[k] for k in accepted)} run folders only{hint}. Give another {option}."
        )
    return found


def _json_object(file: Path) -> dict | None:
    if not file.is_file() or file.is_symlink():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def protected_reason(path: Path) -> str | None:
    """Why ``path`` may never be written over: the current folder, a parent of it, home, the root."""
    try:
        resolved = path.expanduser().resolve()
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError):
        return None
    if resolved == Path(resolved.anchor):
        return "the root folder"
    if resolved == cwd:
        return "the current folder"
    if resolved in cwd.parents:
        return "a parent of the current folder"
    try:
        home = Path.home().resolve()
    except (OSError, RuntimeError):
        home = None
    if home is not None and resolved == home:
        return "your home folder"
    return None


def _names_format(file: Path, expected: str) -> bool:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == expected


def is_bundle(path: Path) -> bool:
    """Whether ``path`` is a folder with an ``unfreeze.json`` that names the bundle format."""
    return _names_format(path / BUNDLE_CONFIG, BUNDLE_FORMAT)


def is_export(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``unfreeze export`` (its manifest names the export format)."""
    return _names_format(path / EXPORT_MANIFEST, EXPORT_FORMAT)


def _plain_file(entry: Path) -> bool:
    return entry.is_file() and not entry.is_symlink()


def _plain_dir(entry: Path) -> bool:
    return entry.is_dir() and not entry.is_symlink()


def export_foreign_entries(path: Path) -> list[str]:
    """Entries of an export folder that ``unfreeze export`` does not write (sorted names)."""
    out: list[str] = []
    for entry in sorted(path.iterdir()):
        name = entry.name
        if _is_own_temporary(name) or (name == EXPORT_MANIFEST and _plain_file(entry)):
            continue
        if ".onnx" in name and _plain_file(entry):  # model.onnx, model.int8.onnx, their .data files
            continue
        if name == "tokenizer" and _plain_dir(entry) and all(_plain_file(e) for e in entry.iterdir()):
            continue
        if name == HEADS_FOLDER and _plain_dir(entry):
            out.extend(
                f"{HEADS_FOLDER}/{e.name}"
                for e in sorted(entry.iterdir())
                if not (e.name.endswith(".safetensors") and _plain_file(e))
            )
            continue
        out.append(name)
    return out


def foreign_entries(path: Path) -> list[str]:
    """Entries of a bundle folder that the bundle format does not write (sorted names)."""
    out = []
    for entry in sorted(path.iterdir()):
        name = entry.name
        if _is_own_temporary(name):
            continue
        if name == BUNDLE_CONFIG and entry.is_file() and not entry.is_symlink():
            continue
        if name.endswith(".safetensors") and entry.is_file() and not entry.is_symlink():
            continue
        if name == HEADS_FOLDER and entry.is_dir() and not entry.is_symlink():
            inner = [
                f"{HEADS_FOLDER}/{e.name}"
                for e in sorted(entry.iterdir())
                if not (e.name.endswith(".safetensors") and e.is_file() and not e.is_symlink())
                and not _is_own_temporary(e.name)
            ]
            out.extend(inner)
            continue
        if name == EXPORT_FOLDER and _plain_dir(entry) and is_export(entry):
            out.extend(f"{EXPORT_FOLDER}/{e}" for e in export_foreign_entries(entry))
            continue
        out.append(name)
    return out


def replaceable_folder(path: Path) -> str | None:
    """Why the folder ``path`` may not be replaced by ``atomic_path``; None when it may.

    It may when it is empty or a complete unfreeze bundle with nothing foreign inside;
    never when it is the current folder, a parent of it, home or the root.
    """
    protected = protected_reason(path)
    if protected:
        return f"it is {protected}"
    if path.is_symlink():
        return "it is a symbolic link"
    entries = list(path.iterdir())
    if not entries:
        return None
    if is_export(path):
        foreign = export_foreign_entries(path)
        return f"it also holds files unfreeze did not write ({', '.join(foreign[:3])})" if foreign else None
    if not is_bundle(path):
        return f"it is a folder that unfreeze did not write ({_listing(path)})"
    foreign = foreign_entries(path)
    if foreign:
        return f"it also holds files unfreeze did not write ({', '.join(foreign[:3])})"
    return None


def _is_own_temporary(name: str) -> bool:
    # atomic_path's temporaries: ".NAME.XXXXXXXX.tmp", left behind only by a killed process
    return name.startswith(".") and name.endswith(".tmp")


def _check_inputs(path: Path, inputs: Iterable[str | Path], what: str, another: str) -> None:
    try:
        target = path.resolve()
    except (OSError, RuntimeError):
        return
    for item in inputs:
        if item is None:
            continue
        source = Path(item).expanduser()
        if not source.exists():
            continue
        source = source.resolve()
        if source == target:
            raise UnfreezeError(
                f"{path} is also an input of this command ({item}); writing the {what} there would "
                f"replace it. {another}."
            )
        if target in source.parents:
            raise UnfreezeError(
                f"{path} holds an input of this command ({item}); the {what} must not replace it. {another}."
            )


def _check_parents(path: Path, what: str, another: str) -> None:
    """The nearest existing ancestor must be a folder that can be written in."""
    for parent in path.absolute().parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UnfreezeError(f"Cannot write the {what} {path}: {parent} is a file, not a folder. {another}.")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UnfreezeError(f"Cannot write the {what} {path}: no permission to write in {parent}. {another}.")
            return


def _listing(path: Path, limit: int = 3) -> str:
    names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in path.iterdir())
    shown = ", ".join(names[:limit])
    return f"{len(names)} entries: {shown}, ..." if len(names) > limit else shown


def _example(kind: str) -> str:
    return {"bundle": "runs/my-bundle", "heads": "runs/my-heads", "run": "runs/my-sweep", "file": "predictions.csv"}[
        kind
    ]
