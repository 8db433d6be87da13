"""Hostile and damaged bundles: nothing is ever unpickled, and every damage is one line naming the bundle.

A payload here is a pickle whose loading would create a marker file (``__reduce__`` calls
``open(marker, "w")``): if any code path unpickled it, the marker would exist afterwards.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import sentiment_task_fixed
from unfreeze import Classifier, MultiHeadClassifier, UnfreezeError
from unfreeze.cli import app
from unfreeze.models.loaded import forget_backbones

TEXTS, LABELS = sentiment_task_fixed(24, 0)


class WritesAFile:
    """Unpickling this opens (creates) ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def payload(marker: Path) -> bytes:
    return pickle.dumps({"weight": WritesAFile(marker)}, protocol=4)


def torch_zip(marker: Path) -> bytes:
    """A torch.save-style zip archive whose data.pkl is the payload."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", payload(marker))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bundles(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    model = tiny_model_dir("bert")
    Classifier(model, strategy="features", C=1.0, progress=False, cache=False).fit(TEXTS, LABELS).save(
        root / "features"
    )
    Classifier(model, strategy="freeze", k=1, max_steps=2, learning_rate=1e-3, progress=False).fit(TEXTS, LABELS).save(
        root / "freeze"
    )
    suite = MultiHeadClassifier(model, progress=False)
    suite.add_head("a", TEXTS, LABELS, C=1.0, cache=False)
    suite.add_head("b", TEXTS, [str(y) for y in LABELS], C=1.0, cache=False)
    suite.save(root / "multi")
    return {"features": root / "features", "freeze": root / "freeze", "multi": root / "multi"}


def copy_of(bundles, name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(bundles[name], target)
    return target


def edit_config(bundle: Path, change) -> None:
    config = json.loads((bundle / "unfreeze.json").read_text())
    change(config)
    (bundle / "unfreeze.json").write_text(json.dumps(config))


def assert_refused(bundle: Path, marker: Path, *words: str, multi: bool = False) -> None:
    """Refused in Python (UnfreezeError) and through the CLI (one line, exit 2); the payload never ran."""
    forget_backbones()
    with pytest.raises(UnfreezeError) as info:
        (MultiHeadClassifier if multi else Classifier).load(bundle)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    data = bundle.parent / "inputs.csv"
    data.write_text("text\na good film\n")
    result = CliRunner().invoke(app, ["predict", str(bundle), str(data), "-o", str(bundle.parent / "out.csv")])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (bundle.parent / "out.csv").exists()
    assert not marker.exists(), "a pickle payload was executed"


@pytest.mark.parametrize(
    ("bundle_name", "file", "kind"),
    [
        ("features", "head.safetensors", "pickle"),
        ("features", "head.safetensors", "torch-zip"),
        ("freeze", "trained.safetensors", "pickle"),
        ("freeze", "trained.safetensors", "torch-zip"),
    ],
)
def test_a_pickle_under_a_safetensors_name_is_damage_not_code(bundle_name, file, kind, bundles, tmp_path):
    bundle = copy_of(bundles, bundle_name, tmp_path)
    marker = tmp_path / "pwned"
    (bundle / file).write_bytes(payload(marker) if kind == "pickle" else torch_zip(marker))
    assert_refused(bundle, marker, f"The bundle at {bundle} is damaged", file)


def test_every_head_file_of_a_multi_head_bundle_is_read_as_safetensors_only(bundles, tmp_path):
    bundle = copy_of(bundles, "multi", tmp_path)
    marker = tmp_path / "pwned"
    for head_file in (bundle / "heads").iterdir():
        head_file.write_bytes(payload(marker))
    assert_refused(bundle, marker, "is damaged", multi=True)


@pytest.mark.parametrize("outside", ["../../evil.safetensors", "/etc/passwd", "heads/../../evil.safetensors"])
def test_a_head_entry_that_points_outside_the_bundle_is_refused(outside, bundles, tmp_path):
    bundle = copy_of(bundles, "multi", tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "evil.safetensors").write_bytes(payload(marker))
    edit_config(bundle, lambda c: c["heads"]["a"].__setitem__("file", outside))
    assert_refused(bundle, marker, "not inside the bundle", multi=True)


def test_a_predictor_file_list_that_points_outside_is_refused(bundles, tmp_path):
    bundle = copy_of(bundles, "freeze", tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "evil.safetensors").write_bytes(payload(marker))
    edit_config(bundle, lambda c: c["predictor"].__setitem__("files", ["../evil"]))
    assert_refused(bundle, marker, "not inside the bundle")


def test_a_backbone_with_pickle_weights_only_is_never_opened(bundles, tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir("bert"), model)
    marker = tmp_path / "pwned"
    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(torch_zip(marker))
    bundle = copy_of(bundles, "features", tmp_path)
    edit_config(
        bundle,
        lambda c: (
            c["backbone"].__setitem__("reference", str(model)),
            c["classifier"].__setitem__("model", str(model)),
        ),
    )
    assert_refused(bundle, marker, "only in pickle format (pytorch_model.bin)", "never opens")
    # and fitting on such a folder is refused the same way
    with pytest.raises(UnfreezeError, match="only in pickle format"):
        Classifier(str(model), progress=False).fit(TEXTS, LABELS)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "edit", "words"),
    [
        ("labels-added", lambda c: c["labels"].append(2), ("lists 3 labels", "scores 2 classes")),
        ("labels-one", lambda c: c.__setitem__("labels", [0]), ("lacks a valid",)),
        ("kind", lambda c: c.__setitem__("kind", "mystery"), ("unknown kind 'mystery'",)),
        ("strategy", lambda c: c["strategy"].__setitem__("name", "nope"), ("lacks a valid",)),
        ("params", lambda c: c["strategy"]["params"].__setitem__("wings", 2), ("lacks a valid",)),
        ("predictor", lambda c: c["predictor"].__setitem__("type", "nope"), ("unknown predictor type",)),
        ("no-predictor", lambda c: c.pop("predictor"), ("lacks a valid",)),
    ],
)
def test_an_edited_config_is_one_line_naming_the_damage(name, edit, words, bundles, tmp_path):
    bundle = copy_of(bundles, "freeze", tmp_path)
    edit_config(bundle, edit)
    assert_refused(bundle, tmp_path / "never", "is damaged", *words)


@pytest.mark.parametrize("damage", ["truncated", "missing", "empty"])
@pytest.mark.parametrize("bundle_name, file", [("features", "head.safetensors"), ("freeze", "trained.safetensors")])
def test_truncated_or_missing_weights_are_one_line(damage, bundle_name, file, bundles, tmp_path):
    bundle = copy_of(bundles, bundle_name, tmp_path)
    target = bundle / file
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    elif damage == "missing":
        target.unlink()
    else:
        target.write_bytes(b"")
    assert_refused(bundle, tmp_path / "never", "is damaged", file)


def test_a_multi_head_label_list_edited_is_refused(bundles, tmp_path):
    bundle = copy_of(bundles, "multi", tmp_path)
    edit_config(bundle, lambda c: c["heads"]["a"]["labels"].append(9))
    assert_refused(bundle, tmp_path / "never", "is damaged", "lists 3 labels", multi=True)


def test_single_and_multi_head_files_share_the_permissions_of_files_the_user_creates(bundles, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    expected_file, expected_dir = 0o666 & ~umask, 0o777 & ~umask
    for bundle in bundles.values():
        for item in [bundle, *bundle.rglob("*")]:
            mode = stat.S_IMODE(item.stat().st_mode)
            assert mode == (expected_dir if item.is_dir() else expected_file), (item, oct(mode))
    # and a bundle fixed up by `heads add` keeps them
    suite = MultiHeadClassifier.load(bundles["multi"])
    np.testing.assert_allclose(suite.predict_proba(TEXTS[:2])["a"].sum(axis=1), 1.0)
