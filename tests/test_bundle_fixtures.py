"""Bundles written by earlier releases load and predict as they did when they were written.

Each folder under tests/fixtures/bundles/ holds one release's tiny model, its bundles and
the probabilities they gave (see make_fixtures.py there). The bundles name the model by
the absolute path it had when they were written: the test copies a release to a
temporary folder and points the copies at the model beside them, as a user who moved a
bundle together with its model folder would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from unfreeze import Classifier, MultiHeadClassifier
from unfreeze.inference.bundle import read_config
from unfreeze.inference.bundle_predictor import BundlePredictor
from unfreeze.models.loaded import forget_backbones

FIXTURES = Path(__file__).parent / "fixtures" / "bundles"
RELEASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").exists())


def moved_release(release: str, tmp_path: Path) -> tuple[Path, dict]:
    folder = tmp_path / release
    shutil.copytree(FIXTURES / release, folder)
    expected = json.loads((folder / "expected.json").read_text())
    model = str((folder / expected["model_folder"]).resolve())
    for config_file in folder.glob("*/unfreeze.json"):
        config = json.loads(config_file.read_text())
        config["backbone"]["reference"] = model
        for section in ("params", "classifier"):
            if section in config:
                config[section]["model"] = model
        config_file.write_text(json.dumps(config))
    forget_backbones()
    return folder, expected


@pytest.mark.parametrize("release", RELEASES)
def test_every_single_head_bundle_predicts_as_when_it_was_written(release, tmp_path):
    folder, expected = moved_release(release, tmp_path)
    single = {name: e for name, e in expected["bundles"].items() if "proba" in e}
    assert {"features", "freeze", "full", "reinit", "lora", "setfit"} <= set(single)
    for name, want in single.items():
        clf = Classifier.load(folder / name, device="cpu")
        assert clf.classes_.tolist() == want["labels"], name
        got = clf.predict_proba(expected["texts"])
        np.testing.assert_allclose(got, np.asarray(want["proba"]), atol=1e-6, err_msg=name)
        # and through the predictor that `unfreeze predict` and the service use
        served = BundlePredictor(folder / name, device="cpu").predict_proba(expected["texts"])["default"]
        np.testing.assert_allclose(served, got, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("release", RELEASES)
def test_the_multi_head_bundle_answers_every_head_as_when_it_was_written(release, tmp_path):
    folder, expected = moved_release(release, tmp_path)
    want = expected["bundles"]["multihead"]
    suite = MultiHeadClassifier.load(folder / "multihead", device="cpu")
    got = suite.predict_proba(expected["texts"])
    assert set(got) == set(want)
    for head, entry in want.items():
        assert suite.heads[head].classes.tolist() == entry["labels"]
        np.testing.assert_allclose(got[head], np.asarray(entry["proba"]), atol=1e-6, err_msg=head)
        one = Classifier.load(folder / "multihead", head=head, device="cpu")
        np.testing.assert_allclose(one.predict_proba(expected["texts"]), got[head], atol=1e-12)


@pytest.mark.parametrize("release", RELEASES)
def test_old_bundles_read_as_the_current_layout(release, tmp_path):
    folder, _ = moved_release(release, tmp_path)
    freeze = read_config(folder / "freeze")
    assert freeze["strategy"] == {"name": "freeze", "params": {"k": 1}}
    assert freeze["training"]["epochs"] == 2 and freeze["training"]["learning_rate"] == 1e-3
    assert freeze["predictor"]["type"] == "network"
    setfit = read_config(folder / "setfit")
    assert setfit["predictor"]["type"] == "embedding_head" and setfit["predictor"]["tuned"] is True
    assert setfit["strategy"]["params"]["num_iterations"] == 2
    # a loaded old bundle saves in today's format and still predicts the same
    clf = Classifier.load(folder / "lora", device="cpu")
    clf.save(tmp_path / "resaved")
    assert read_config(tmp_path / "resaved")["format_version"] == 3
    again = Classifier.load(tmp_path / "resaved", device="cpu")
    texts = ["a good film", "the plot was dull"]
    np.testing.assert_allclose(again.predict_proba(texts), clf.predict_proba(texts), atol=1e-7)
