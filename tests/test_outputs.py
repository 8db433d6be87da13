"""Output paths: ``check_output`` refuses what would replace the user's files, and
``atomic_path`` never destroys a folder unfreeze did not write. Every refusal is checked
against checksums of every file and folder present before and after.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import snapshot
from unfreeze.errors import UnfreezeError
from unfreeze.storage.cache import atomic_path
from unfreeze.storage.outputs import check_output, foreign_entries, is_bundle, replaceable_folder

BUNDLE_CONFIG = {"format": "unfreeze-bundle", "format_version": 1, "kind": "features"}


def make_bundle(path: Path, extra: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "unfreeze.json").write_text(json.dumps(BUNDLE_CONFIG))
    (path / "head.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    for name, text in (extra or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def refused(path, kind, *words, **kwargs) -> str:
    with pytest.raises(UnfreezeError) as info:
        check_output(path, kind, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


@pytest.fixture
def user_files(tmp_path, monkeypatch) -> Path:
    """A working folder full of the user's things; the current folder is a folder inside it."""
    root = tmp_path / "home"
    work = root / "project" / "work"
    work.mkdir(parents=True)
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("buy milk")
    (root / "notes" / ".hidden").write_text("secret")
    (root / "f.txt").write_text("my file")
    (root / "data.csv").write_text("text,label\na,1\nb,0\n")
    (work / "thesis.tex").write_text("\\documentclass{article}")
    make_bundle(root / "old-bundle")
    make_bundle(root / "mixed-bundle", {"my-notes.md": "keep me"})
    (root / "run").mkdir()
    (root / "run" / "results.jsonl").write_text('{"key": "a", "status": "done"}\n')
    (root / "empty").mkdir()
    (root / "datadir").mkdir()
    (root / "datadir" / "train.csv").write_text("text,label\nc,1\nd,0\n")
    (root / "link").symlink_to(root / "empty", target_is_directory=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(root))
    return root


@pytest.fixture
def unchanged(user_files):
    before = snapshot(user_files.parent)
    yield user_files
    assert snapshot(user_files.parent) == before


# -- check_output: refusals, nothing changed -------------------------------------------------


@pytest.mark.parametrize("kind", ["bundle", "heads", "run", "file"])
@pytest.mark.parametrize(
    ("given", "what"),
    [
        (".", "the current folder"),
        ("./", "the current folder"),
        ("..", "a parent of the current folder"),
        ("../..", "a parent of the current folder"),
        ("CWD", "the current folder"),
        ("/", "the root folder"),
    ],
)
def test_current_parent_and_root_folders_are_refused(unchanged, kind, given, what):
    path = str(Path.cwd()) if given == "CWD" else given
    refused(path, kind, what, "Choose another -o", overwrite=True)


@pytest.mark.parametrize("given", ["~", "HOME"])
def test_home_is_refused(unchanged, given, monkeypatch):
    monkeypatch.chdir("/")  # so that home is not refused as a parent of the current folder
    path = str(unchanged) if given == "HOME" else given
    refused(path, "bundle", "your home folder", overwrite=True)


@pytest.mark.parametrize("kind", ["bundle", "heads", "run"])
def test_a_file_where_a_folder_is_wanted(unchanged, kind):
    refused(unchanged / "f.txt", kind, "is a file", "left as it is", "Choose another -o", overwrite=True)


def test_a_folder_where_a_file_is_wanted(unchanged):
    refused(unchanged / "notes", "file", "is a folder", "Choose another -o", overwrite=True)


@pytest.mark.parametrize("kind", ["bundle", "heads"])
def test_a_non_empty_folder_unfreeze_did_not_write(unchanged, kind):
    message = refused(unchanged / "notes", kind, "did not write", "left as it is", overwrite=True)
    assert ".hidden" in message and "todo.txt" in message  # says what is there


def test_an_existing_bundle_needs_overwrite(unchanged):
    refused(unchanged / "old-bundle", "bundle", "already holds a bundle", "--overwrite", "another -o")


def test_a_bundle_holding_foreign_files_is_refused_even_with_overwrite(unchanged):
    refused(unchanged / "mixed-bundle", "bundle", "my-notes.md", "did not write", overwrite=True)


def test_a_run_folder_must_be_a_sweep(unchanged):
    refused(unchanged / "notes", "run", "holds no sweep", "sweep.json", "todo.txt")
    refused(unchanged / "old-bundle", "run", "is a bundle, not a sweep")


def test_an_existing_file_needs_overwrite(unchanged):
    refused(unchanged / "f.txt", "file", "already exists", "--overwrite")


def test_an_input_is_never_an_output(unchanged):
    refused(unchanged / "data.csv", "file", "is also an input", inputs=[unchanged / "data.csv"], overwrite=True)
    refused(unchanged / "datadir", "run", "holds an input", inputs=[unchanged / "datadir" / "train.csv"])
    # the same file named another way
    link = Path.cwd() / ".." / ".." / "data.csv"
    refused(link, "file", "is also an input", inputs=["../../data.csv"], overwrite=True)


def test_a_path_inside_a_file(unchanged):
    refused(unchanged / "f.txt" / "bundle", "bundle", "f.txt is a file, not a folder")
    refused(unchanged / "f.txt" / "sub" / "p.csv", "file", "is a file, not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_folder_without_write_permission(unchanged, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refused(locked / "bundle", "bundle", "no permission")
    finally:
        locked.chmod(0o700)


def test_a_symbolic_link_as_a_folder(unchanged):
    refused(unchanged / "link", "bundle", "symbolic link")


def test_the_option_name_is_the_one_the_user_gave(unchanged):
    refused(unchanged / "notes", "file", "Choose another --plot", option="--plot")


# -- check_output: what is allowed ------------------------------------------------------------


def test_allowed_outputs(unchanged):
    root = unchanged
    assert check_output(root / "new" / "bundle", "bundle") == root / "new" / "bundle"
    assert check_output(root / "empty", "bundle") == root / "empty"
    assert check_output(root / "old-bundle", "bundle", overwrite=True) == root / "old-bundle"
    assert check_output(root / "old-bundle", "heads") == root / "old-bundle"  # heads add updates in place
    assert check_output(root / "run", "run") == root / "run"  # resumed
    assert check_output(root / "empty", "run") == root / "empty"
    assert check_output(root / "f.txt", "file", overwrite=True) == root / "f.txt"
    assert check_output("predictions.csv", "file") == Path("predictions.csv")
    assert check_output("sub/dir/bundle", "bundle") == Path("sub/dir/bundle")
    assert not (root / "new").exists() and not Path("sub").exists()  # checking creates nothing


def test_unknown_kind_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        check_output(tmp_path / "x", "folder")


def test_is_bundle_and_foreign_entries(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    (bundle / "heads").mkdir()
    (bundle / "heads" / "a.123.safetensors").write_bytes(b"x")
    (bundle / ".unfreeze.json.abc.tmp").write_text("left by a kill")
    assert is_bundle(bundle) and foreign_entries(bundle) == []
    (bundle / "heads" / "notes.txt").write_text("mine")
    assert foreign_entries(bundle) == ["heads/notes.txt"]
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "unfreeze.json").write_text('{"format": "something-else"}')
    assert not is_bundle(fake)
    (fake / "unfreeze.json").write_text("[1, 2]")
    assert not is_bundle(fake)
    assert replaceable_folder(fake) is not None
    assert not is_bundle(tmp_path / "missing")


# -- atomic_path: the last line of defence ----------------------------------------------------


def test_atomic_path_never_replaces_a_foreign_folder(unchanged):
    for target in (unchanged / "notes", unchanged / "mixed-bundle"):
        with pytest.raises(UnfreezeError, match="did not write") as info, atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "unfreeze.json").write_text(json.dumps(BUNDLE_CONFIG))
        assert "\n" not in str(info.value) and "left as it is" in str(info.value)
    # the checksums in `unchanged` also prove no temporary was left beside them


def test_atomic_path_never_puts_a_folder_over_a_file_or_a_file_over_a_folder(unchanged):
    with pytest.raises(UnfreezeError, match="is a file"), atomic_path(unchanged / "f.txt") as tmp:
        tmp.mkdir()
        (tmp / "unfreeze.json").write_text("{}")
    for folder in (unchanged / "notes", unchanged / "empty", unchanged / "old-bundle"):
        with pytest.raises(UnfreezeError, match="is a folder"), atomic_path(folder) as tmp:
            tmp.write_text("a,b\n")


def test_atomic_path_replaces_a_complete_bundle_and_an_empty_folder(user_files):
    for target in (user_files / "old-bundle", user_files / "empty"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "unfreeze.json").write_text('{"format": "unfreeze-bundle", "new": true}')
        assert json.loads((target / "unfreeze.json").read_text())["new"] is True
        assert sorted(p.name for p in target.iterdir()) == ["unfreeze.json"]
    leftovers = [p.name for p in user_files.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_atomic_path_leaves_a_file_named_like_its_old_copy_alone(user_files):
    # the old copy used to go to the fixed name ".NAME.old.PID", deleting whatever was there
    mine = user_files / f".old-bundle.old.{os.getpid()}"
    mine.write_text("the user's file")
    with atomic_path(user_files / "old-bundle") as tmp:
        tmp.mkdir()
        (tmp / "unfreeze.json").write_text(json.dumps(BUNDLE_CONFIG))
    assert mine.read_text() == "the user's file"


def test_atomic_path_in_the_cache_replaces_its_own_folders(fresh_cache):
    target = fresh_cache / "models" / "some-model"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text('{"v": 2}')
    assert json.loads((target / "config.json").read_text()) == {"v": 2}


def test_atomic_path_with_a_file_as_parent(unchanged):
    with (
        pytest.raises(UnfreezeError, match=r"f\.txt is a file, not a folder") as info,
        atomic_path(unchanged / "f.txt" / "out.csv") as tmp,
    ):
        tmp.write_text("x")
    assert "\n" not in str(info.value)


def test_atomic_path_refuses_the_current_folder(unchanged):
    with pytest.raises(UnfreezeError, match="current folder"), atomic_path(Path.cwd()) as tmp:
        tmp.mkdir()


def test_atomic_path_files_still_replace_files(user_files):
    with atomic_path(user_files / "f.txt") as tmp:
        tmp.write_text("new")
    assert (user_files / "f.txt").read_text() == "new"


def test_a_failed_write_leaves_the_old_bundle_whole(unchanged):
    with pytest.raises(RuntimeError), atomic_path(unchanged / "old-bundle") as tmp:
        tmp.mkdir()
        (tmp / "unfreeze.json").write_text("half")
        raise RuntimeError("crash while writing")


def test_atomic_path_does_not_replace_a_symbolic_link_with_a_folder(unchanged):
    with pytest.raises(UnfreezeError, match="symbolic link"), atomic_path(unchanged / "link") as tmp:
        tmp.mkdir()


def test_a_bundle_with_its_onnx_export_inside_is_still_ours(tmp_path):
    from unfreeze.storage.outputs import replaceable_folder

    bundle = tmp_path / "bundle"
    (bundle / "onnx" / "tokenizer").mkdir(parents=True)
    (bundle / "unfreeze.json").write_text('{"format": "unfreeze-bundle"}')
    (bundle / "trained.safetensors").write_bytes(b"x")
    (bundle / "onnx" / "export.json").write_text('{"format": "unfreeze-onnx-export"}')
    (bundle / "onnx" / "model.onnx").write_bytes(b"x")
    (bundle / "onnx" / "tokenizer" / "tokenizer.json").write_text("{}")
    assert replaceable_folder(bundle) is None
    assert replaceable_folder(bundle / "onnx") is None
    (bundle / "onnx" / "notes.txt").write_text("mine")
    assert "onnx/notes.txt" in replaceable_folder(bundle)
    assert "notes.txt" in replaceable_folder(bundle / "onnx")
    (bundle / "onnx" / "notes.txt").unlink()
    (bundle / "onnx" / "export.json").write_text('{"format": "something else"}')
    assert "onnx" in replaceable_folder(bundle)  # not an export: a folder of the user's
