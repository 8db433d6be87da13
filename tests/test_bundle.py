"""Bundles: JSON + safetensors only, exact round trips, atomic saves, refused mismatches."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest

import unfreeze.inference.bundle as bundle_module
import unfreeze.models.loaded as loaded_module
from unfreeze import Classifier, UnfreezeError

TEXTS = [
    f"{w} film number {i} with {'good' if i % 2 else 'bad'} acting"
    for i, w in enumerate(["a", "the", "one", "this", "that", "some", "my", "our", "your", "his", "her", "its"] * 2)
]
INT_LABELS = [10 if i % 2 else -3 for i in range(len(TEXTS))]
STR_LABELS = ["pos" if i % 3 == 0 else ("neg" if i % 3 == 1 else "mixed") for i in range(len(TEXTS))]
NEW_TEXTS = ["a good film", "a bad film", "something else entirely", "good good good"]
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def fitted(model_dir: str, labels, **params) -> Classifier:
    defaults = dict(model=model_dir, C=1.0, progress=False, cache=False, device="cpu", layers="0,-1")
    return Classifier(**{**defaults, **params}).fit(TEXTS, labels)


def files_in(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in files_in(folder)}


@pytest.fixture
def forget_backbones(monkeypatch):
    """Call it so that the next Classifier.load reads the model from disk, not from this process's registry."""

    def forget() -> None:
        monkeypatch.setattr(loaded_module, "_BACKBONES", {})

    return forget


@pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "cache"])
@pytest.mark.parametrize("labels", [INT_LABELS, STR_LABELS], ids=["int", "str"])
def test_round_trip_gives_identical_probabilities(labels, cache, tiny_model_dir, tmp_path, forget_backbones):
    clf = fitted(tiny_model_dir("bert"), labels, pooling="max", cache=cache)
    expected = clf.predict_proba(NEW_TEXTS + TEXTS)
    path = clf.save(tmp_path / "bundle", metrics={"note": "test"})
    assert path == tmp_path / "bundle"

    forget_backbones()
    loaded = Classifier.load(path, device="cpu")
    assert loaded.backbone_ is not clf.backbone_  # really reloaded from disk
    got = loaded.predict_proba(NEW_TEXTS + TEXTS)
    assert np.array_equal(got, expected)
    assert np.array_equal(loaded.predict(NEW_TEXTS), clf.predict(NEW_TEXTS))
    assert loaded.classes_.tolist() == clf.classes_.tolist()
    assert type(loaded.predict(NEW_TEXTS)[0].item()) is type(labels[0])
    assert loaded.get_params()["pooling"] == "max"
    assert loaded.pooling_ == clf.pooling_ and loaded.layers_ == clf.layers_


def test_round_trip_decoder_with_auto_pooling(tiny_model_dir, tmp_path, forget_backbones):
    clf = fitted(tiny_model_dir("llama"), INT_LABELS, pooling="auto", layers="-1")
    path = clf.save(tmp_path / "b")
    forget_backbones()
    loaded = Classifier.load(path, device="cpu")
    assert loaded.pooling_ == "last"
    assert np.array_equal(loaded.predict_proba(NEW_TEXTS), clf.predict_proba(NEW_TEXTS))


def test_bundle_holds_only_json_and_safetensors(tiny_model_dir, tmp_path):
    clf = fitted(tiny_model_dir("bert"), STR_LABELS)
    path = clf.save(tmp_path / "bundle", metrics={"test": {"accuracy": 0.5}})
    names = files_in(path)
    assert "unfreeze.json" in names
    assert any(n.endswith(".safetensors") for n in names)
    for name in names:
        assert name.endswith((".json", ".safetensors")), name
        head = (path / name).read_bytes()[:2]
        assert head not in PICKLE_MAGIC, f"{name} looks like a pickle"
        if name.endswith(".json"):
            json.loads((path / name).read_text())  # valid JSON
    config = json.loads((path / "unfreeze.json").read_text())
    assert config["labels"] == ["mixed", "neg", "pos"]
    assert config["metrics"] == {"test": {"accuracy": 0.5}}
    assert config["backbone"]["fingerprint"] == clf.backbone_.fingerprint()
    assert config["backbone"]["num_blocks"] == 2


def test_loading_never_unpickles(tiny_model_dir, tmp_path, monkeypatch, forget_backbones):
    import torch

    clf = fitted(tiny_model_dir("bert"), INT_LABELS)
    expected = clf.predict_proba(NEW_TEXTS)
    path = clf.save(tmp_path / "bundle")

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    forget_backbones()
    loaded = Classifier.load(path, device="cpu")
    assert np.array_equal(loaded.predict_proba(NEW_TEXTS), expected)


def test_model_folder_given_as_relative_path_is_stored_absolute(tiny_model_dir, tmp_path, monkeypatch):
    model_dir = tiny_model_dir("distilbert")
    parent, name = os.path.split(model_dir)
    monkeypatch.chdir(parent)
    clf = fitted(name, INT_LABELS)
    path = clf.save(tmp_path / "bundle")
    config = json.loads((path / "unfreeze.json").read_text())
    assert config["backbone"]["reference"] == model_dir
    monkeypatch.chdir(tmp_path)  # somewhere the relative name does not exist
    loaded = Classifier.load(path)
    assert np.array_equal(loaded.predict_proba(NEW_TEXTS), clf.predict_proba(NEW_TEXTS))


def test_saving_over_an_existing_bundle_replaces_it(tiny_model_dir, tmp_path):
    first = fitted(tiny_model_dir("bert"), INT_LABELS)
    second = fitted(tiny_model_dir("bert"), STR_LABELS)
    path = tmp_path / "bundle"
    first.save(path)
    second.save(path)
    assert Classifier.load(path).classes_.tolist() == ["mixed", "neg", "pos"]
    assert os.listdir(tmp_path) == ["bundle"]  # no temporary or moved-aside folders left


def _failing_head_save(monkeypatch):
    def fail_after_the_files(folder):
        assert any(folder.glob("*.safetensors")) and (folder / "unfreeze.json").exists()  # all written by now
        raise RuntimeError("disk full")

    monkeypatch.setattr(bundle_module, "make_shareable", fail_after_the_files)


def test_failed_save_leaves_nothing_behind(tiny_model_dir, tmp_path, monkeypatch):
    clf = fitted(tiny_model_dir("bert"), INT_LABELS)
    out = tmp_path / "out"
    out.mkdir()
    _failing_head_save(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        clf.save(out / "bundle")
    assert os.listdir(out) == []


def test_failed_save_keeps_the_existing_bundle_intact(tiny_model_dir, tmp_path, monkeypatch):
    old = fitted(tiny_model_dir("bert"), STR_LABELS)
    new = fitted(tiny_model_dir("bert"), INT_LABELS)
    path = tmp_path / "bundle"
    old.save(path)
    before = snapshot(path)
    _failing_head_save(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        new.save(path)
    assert os.listdir(tmp_path) == ["bundle"]
    assert snapshot(path) == before
    monkeypatch.undo()
    loaded = Classifier.load(path)
    assert np.array_equal(loaded.predict_proba(NEW_TEXTS), old.predict_proba(NEW_TEXTS))


def test_save_before_fit_is_refused(tiny_model_dir, tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        Classifier(model=tiny_model_dir("bert")).save(tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_loading_a_folder_without_config_is_a_user_error(tmp_path):
    (tmp_path / "head.safetensors").write_bytes(b"")
    with pytest.raises(UnfreezeError, match=r"not an unfreeze bundle \(no unfreeze.json\)"):
        Classifier.load(tmp_path)
    with pytest.raises(UnfreezeError, match=r"No bundle at .+: the folder does not exist"):
        Classifier.load(tmp_path / "missing")


def test_damaged_or_newer_bundles_are_user_errors(tiny_model_dir, tmp_path):
    path = fitted(tiny_model_dir("bert"), INT_LABELS).save(tmp_path / "bundle")
    config_file = path / "unfreeze.json"
    good = config_file.read_text()

    config_file.write_text(good[: len(good) // 2])
    with pytest.raises(UnfreezeError, match="not valid JSON"):
        Classifier.load(path)

    config = json.loads(good)
    config["format_version"] = 99
    config_file.write_text(json.dumps(config))
    # the bundle's format, not the package's version, is what the message names as too new
    with pytest.raises(UnfreezeError, match=r"is in bundle format 99; .* reads bundle formats 1 to 3\. Upgrade"):
        Classifier.load(path)

    config = json.loads(good)
    config["format"] = "something-else"
    config_file.write_text(json.dumps(config))
    with pytest.raises(UnfreezeError, match=r"^The bundle at .+ is damaged: unfreeze.json does not describe"):
        Classifier.load(path)


def test_bundle_with_different_backbone_weights_is_refused(tiny_model_dir, tmp_path):
    clf = fitted(tiny_model_dir("bert"), INT_LABELS)
    path = clf.save(tmp_path / "bundle")
    # the folder the bundle names now holds other weights (same architecture, other seed)
    moved = tmp_path / "model"
    shutil.copytree(tiny_model_dir("bert", seed=1), moved)
    config = json.loads((path / "unfreeze.json").read_text())
    config["classifier"]["model"] = config["backbone"]["reference"] = str(moved)
    (path / "unfreeze.json").write_text(json.dumps(config))
    with pytest.raises(UnfreezeError, match="fingerprint mismatch"):
        Classifier.load(path)

    # pointing it at the same weights in another folder is fine
    same = tmp_path / "same-model"
    shutil.copytree(tiny_model_dir("bert"), same)
    config["classifier"]["model"] = config["backbone"]["reference"] = str(same)
    (path / "unfreeze.json").write_text(json.dumps(config))
    loaded = Classifier.load(path)
    assert np.array_equal(loaded.predict_proba(NEW_TEXTS), clf.predict_proba(NEW_TEXTS))
