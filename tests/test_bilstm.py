"""``bilstm``: a BiLSTM on token states of the frozen model, computed once and kept in fp16.

Cached token states equal a fresh forward pass within fp16's rounding bound; the memory
limit spills to disk (and the file goes away) with the same result; padding is masked;
only the BiLSTM and the head train; epochs run no forward pass; bundles round trip and
serve as head 'default'; same seed, same numbers; bad settings are one line, exit 2.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import sentiment_task_varied
from test_cli_errors import assert_user_error
from test_sweep import write_toy_csv
from unfreeze import BiLSTM, Classifier, Training
from unfreeze.cli import app
from unfreeze.errors import UnfreezeError
from unfreeze.features.token_states import (
    FP16_ABSOLUTE_ERROR,
    FP16_RELATIVE_ERROR,
    SPILL_FOLDER,
    TokenStates,
    batch_token_states,
    compute_token_states,
)

TRAINING = Training(epochs=3, validation_fraction=0.0)
SMALL = dict(token_layers="last2", hidden_size=8)


@pytest.fixture(scope="module")
def task():
    return sentiment_task_varied(40, 0), sentiment_task_varied(12, 1)


def _fit(model, texts, labels, **params):
    training = params.pop("training", TRAINING)
    seed = params.pop("seed", 0)
    return Classifier(
        model,
        strategy=BiLSTM(**{**SMALL, **params}),
        training=training,
        batch_size=8,
        seed=seed,
        progress=False,
        device="cpu",
    ).fit(texts, labels)


@pytest.fixture(scope="module")
def fitted(tiny_model_dir, task):
    (texts, labels), _ = task
    return _fit(tiny_model_dir("bert"), texts, labels)


# -- the cached token states ---------------------------------------------------------------------


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_cached_token_states_equal_a_fresh_forward_pass_within_fp16_rounding(tiny_backbone, family):
    backbone = tiny_backbone(family)
    texts, _ = sentiment_task_varied(10, 3)
    encoded = backbone.encode(texts, 64)
    layers = (0, 2)
    with compute_token_states(backbone, encoded, layers, batch_size=4, progress=False) as store:
        assert store.width == 2 * backbone.hidden_size and len(store) == len(texts)
        rounded_somewhere = False
        for i in range(len(texts)):
            with torch.inference_mode():  # each text alone: no padding, its own batch
                hidden = backbone.model(**backbone.collate(encoded, [i]), output_hidden_states=True).hidden_states
            fresh = torch.cat([hidden[j] for j in layers], dim=-1)[0].numpy()
            cached = store.row(i).astype(np.float32)
            assert cached.shape == (len(encoded.input_ids[i]), store.width)
            # fp16 rounding, plus float noise from computing in a padded batch (1e-5)
            bound = FP16_RELATIVE_ERROR * np.abs(fresh) + FP16_ABSOLUTE_ERROR + 1e-5 * (1 + np.abs(fresh))
            assert (np.abs(cached - fresh) <= bound).all()
            rounded_somewhere |= bool((cached != fresh).any())
        assert rounded_somewhere  # they are fp16, not the float32 states


def test_the_memory_limit_splits_examples_between_memory_and_disk(tiny_backbone, fresh_cache):
    backbone = tiny_backbone("bert")
    texts, _ = sentiment_task_varied(12, 4)
    encoded = backbone.encode(texts, 64)
    per_token = 2 * backbone.hidden_size * 2
    limit = sum(encoded.lengths[:5]) * per_token + per_token  # the first five fit, not the sixth
    everything = compute_token_states(backbone, encoded, (1, 2), 4, memory_bytes=2**30, progress=False)
    split = compute_token_states(backbone, encoded, (1, 2), 4, memory_bytes=limit, progress=False)
    on_disk = compute_token_states(backbone, encoded, (1, 2), 4, memory_bytes=0, progress=False)
    try:
        assert everything.bytes_on_disk == 0 and everything.path is None
        assert split.split == 5 and split.bytes_in_memory == sum(encoded.lengths[:5]) * per_token
        assert split.bytes_in_memory + split.bytes_on_disk == everything.bytes_in_memory
        assert on_disk.bytes_in_memory == 0 and on_disk.bytes_on_disk == everything.bytes_in_memory
        files = sorted((fresh_cache / SPILL_FOLDER).iterdir())
        assert files == sorted([split.path, on_disk.path])
        for i in range(len(texts)):
            np.testing.assert_array_equal(split.row(i), everything.row(i))
            np.testing.assert_array_equal(on_disk.row(i), everything.row(i))
        rows = [7, 0, 4, 5]
        for store in (split, on_disk):
            states, lengths = store.batch(rows, torch.device("cpu"))
            expected, expected_lengths = everything.batch(rows, torch.device("cpu"))
            assert torch.equal(states, expected) and torch.equal(lengths, expected_lengths)
    finally:
        for store in (everything, split, on_disk):
            store.close()
    assert list((fresh_cache / SPILL_FOLDER).iterdir()) == []


def test_a_spilled_fit_gives_the_same_result_and_removes_its_file(tiny_model_dir, task, fresh_cache, monkeypatch):
    (texts, labels), (test_texts, _) = task
    seen = []
    original = TokenStates.batch

    def watching(self, rows, device):
        seen.append((self.bytes_on_disk, self.path is not None and self.path.exists()))
        return original(self, rows, device)

    monkeypatch.setattr(TokenStates, "batch", watching)
    in_memory = _fit(tiny_model_dir("bert"), texts, labels)
    assert {on_disk for on_disk, _ in seen} == {0}
    seen.clear()
    half = in_memory.fit_record_["token_states"]["bytes_in_memory"] / 2 / 2**30
    for gib in (0.0, half):
        spilled = _fit(tiny_model_dir("bert"), texts, labels, memory_gib=gib)
        assert all(on_disk > 0 and exists for on_disk, exists in seen)  # trained from the file while it was there
        seen.clear()
        kept = spilled.fit_record_["token_states"]
        assert kept["bytes_on_disk"] > 0 and (kept["bytes_in_memory"] > 0) == (gib > 0)
        assert spilled.fit_record_["history"] == in_memory.fit_record_["history"]
        np.testing.assert_array_equal(spilled.predict_proba(test_texts), in_memory.predict_proba(test_texts))
        assert list((fresh_cache / SPILL_FOLDER).iterdir()) == []  # cleaned up after the fit


def test_a_failed_fit_removes_its_spill_file(tiny_model_dir, task, fresh_cache, monkeypatch):
    from unfreeze.training import cached

    (texts, labels), _ = task

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(cached, "train_cached", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        _fit(tiny_model_dir("bert"), texts, labels, memory_gib=0.0)
    assert list((fresh_cache / SPILL_FOLDER).iterdir()) == []


def test_spill_files_of_dead_processes_are_removed(tiny_backbone, fresh_cache):
    folder = fresh_cache / SPILL_FOLDER
    folder.mkdir()
    orphan = folder / "999999999-abc.f16"  # no such process
    orphan.write_bytes(b"\0" * 16)
    backbone = tiny_backbone("bert")
    with compute_token_states(backbone, backbone.encode(["a b c"], 16), (2,), memory_bytes=0, progress=False) as store:
        assert not orphan.exists() and store.path.exists()
        mine = store.path
    assert not mine.exists() and store.path is None


def test_states_beyond_fp16_range_are_refused(tiny_backbone, monkeypatch):
    backbone = tiny_backbone("bert")
    batch = backbone.collate(backbone.encode(["a b c"], 16), [0])
    original = backbone.model.forward

    def huge(*args, **kwargs):
        out = original(*args, **kwargs)
        out.hidden_states = tuple(h * 1e6 for h in out.hidden_states)
        return out

    monkeypatch.setattr(backbone.model, "forward", huge)
    with pytest.raises(UnfreezeError, match="exceed float16's range") as error, torch.inference_mode():
        batch_token_states(backbone, batch, (2,))
    assert "\n" not in str(error.value)


# -- what trains, masking ------------------------------------------------------------------------


def test_only_the_bilstm_and_head_train_never_the_backbone(tiny_model_dir, task):
    from unfreeze.models.loaded import shared_backbone
    from unfreeze.training.state_networks import BiLSTMHead

    (texts, labels), _ = task
    backbone = shared_backbone(tiny_model_dir("bert"), "cpu")
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    clf = _fit(tiny_model_dir("bert"), texts, labels)
    assert clf.backbone_ is backbone
    assert all(torch.equal(before[k], v) for k, v in backbone.model.state_dict().items())
    assert all(p.grad is None for p in backbone.model.parameters())  # no gradient ever reached it
    module = clf.predictor_.module
    n_module = sum(p.numel() for p in module.parameters())
    assert clf.fit_record_["trainable_parameters"] == n_module
    assert clf.fit_record_["total_parameters"] == backbone.n_parameters() + n_module
    torch.manual_seed(0)  # the fit's initial weights
    start = BiLSTMHead(2 * backbone.hidden_size, 8, 2, 2, 0.1, backbone.hidden_size)
    moved = {
        name
        for name, p in module.named_parameters()
        if not torch.equal(p.detach(), dict(start.named_parameters())[name].detach())
    }
    assert moved == {name for name, _ in module.named_parameters()}  # every LSTM weight and the head trained
    assert module.lstm.num_layers == 2 and module.lstm.bidirectional and module.lstm.hidden_size == 8
    assert clf.fit_record_["token_layers"] == [1, 2]
    assert clf.fit_record_["tokens_seen"] > 0


def test_epochs_never_run_the_backbone(tiny_model_dir, task, monkeypatch):
    from unfreeze.models.loaded import shared_backbone

    (texts, labels), _ = task
    backbone = shared_backbone(tiny_model_dir("bert"), "cpu")
    calls = {"n": 0}
    original = backbone.model.forward

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(backbone.model, "forward", counting)
    for epochs in (1, 5):
        calls["n"] = 0
        # one rate: a rate search ("auto") fits once per rate, each with its own pass over the texts
        clf = _fit(
            tiny_model_dir("bert"),
            texts,
            labels,
            training=Training(epochs=epochs, patience=None, learning_rate="fixed"),
        )
        assert clf.fit_record_["epochs_run"] == epochs
        # the model check's one-word pass, and one pass over the training texts
        assert calls["n"] == 1 + -(-len(texts) // 8)


def test_padding_is_masked_by_packing(fitted, task):
    from unfreeze.training.state_networks import BiLSTMHead

    torch.manual_seed(0)
    head = BiLSTMHead(6, 5, 2, 3, 0.0, 3).eval()
    states = torch.randn(1, 7, 6)
    garbage = torch.cat([states, 1e3 * torch.randn(1, 4, 6)], dim=1)  # four pad positions, any values
    with torch.no_grad():
        alone = head(states, torch.tensor([7]))
        padded = head(garbage, torch.tensor([7]))
        unmasked = head(garbage, torch.tensor([11]))
    assert torch.equal(alone, padded)
    assert not torch.allclose(alone, unmasked)  # the padding would change it, were it not masked
    # through the predictor: a short text scored alone, and in a batch where it is padded to a long one
    _, (test_texts, _) = task
    short, long = "good", " ".join(["the movie was really quite a story"] * 4)
    alone = fitted.predictor_.logits([short])
    batched = fitted.predictor_.logits([short, long, *test_texts])
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-5)


# -- bundles, determinism ------------------------------------------------------------------------


def test_bundle_round_trips_identically_and_serves_as_default(fitted, task, tmp_path):
    from safetensors.numpy import load_file

    from unfreeze.inference.bundle_predictor import BundlePredictor

    _, (test_texts, _) = task
    path = fitted.save(tmp_path / "bundle")
    assert sorted(p.name for p in path.iterdir()) == ["bilstm.safetensors", "unfreeze.json"]
    tensors = load_file(str(path / "bilstm.safetensors"))
    assert all(name.startswith(("lstm.", "head.")) for name in tensors)
    assert sum(t.size for t in tensors.values()) == fitted.fit_record_["trainable_parameters"]
    config = json.loads((path / "unfreeze.json").read_text())
    assert config["predictor"]["type"] == "bilstm" and config["predictor"]["layers"] == [1, 2]
    loaded = Classifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(test_texts), fitted.predict_proba(test_texts))
    served = BundlePredictor(path)
    assert list(served.heads) == ["default"] and served.heads["default"]["strategy"] == "bilstm"
    np.testing.assert_array_equal(served.predict_proba(test_texts)["default"], fitted.predict_proba(test_texts))


def test_same_seed_same_numbers(tiny_model_dir, task, fitted):
    (texts, labels), (test_texts, _) = task
    again = _fit(tiny_model_dir("bert"), texts, labels)
    assert again.fit_record_["history"] == fitted.fit_record_["history"]
    np.testing.assert_array_equal(again.predict_proba(test_texts), fitted.predict_proba(test_texts))
    other = _fit(tiny_model_dir("bert"), texts, labels, seed=1)
    assert not np.array_equal(other.predict_proba(test_texts), fitted.predict_proba(test_texts))


@pytest.mark.parametrize("family", ["distilbert", "gpt2"])
def test_other_families_train_and_round_trip(tiny_model_dir, task, family, tmp_path):
    (texts, labels), (test_texts, _) = task
    clf = _fit(tiny_model_dir(family), texts, labels, token_layers="all")
    assert clf.fit_record_["token_layers"] == [0, 1, 2]
    loaded = Classifier.load(clf.save(tmp_path / family))
    np.testing.assert_array_equal(loaded.predict_proba(test_texts), clf.predict_proba(test_texts))


# -- bad settings ---------------------------------------------------------------------------------


def test_a_model_without_token_states_is_refused_with_what_is_needed(tiny_backbone, monkeypatch):
    backbone = tiny_backbone("bert")
    original = backbone.model.forward

    def pooled_only(*args, **kwargs):
        out = original(*args, **kwargs)
        return SimpleNamespace(last_hidden_state=out.last_hidden_state[:, 0])  # one vector per text

    monkeypatch.setattr(backbone.model, "forward", pooled_only)
    with pytest.raises(UnfreezeError) as error:
        BiLSTM(**SMALL).check_model(backbone, (2,))
    message = str(error.value)
    assert "bilstm needs per-token hidden states" in message and "gives none" in message
    assert "features, mix" in message and "\n" not in message


def test_the_cli_refuses_a_model_without_token_states(runner, tiny_model_dir, tmp_path, monkeypatch):
    from unfreeze.models.loaded import shared_backbone

    backbone = shared_backbone(tiny_model_dir("bert"), None)
    original = backbone.model.forward
    monkeypatch.setattr(
        backbone.model,
        "forward",
        lambda *a, **k: SimpleNamespace(last_hidden_state=original(*a, **k).last_hidden_state),
    )
    train = write_toy_csv(tmp_path / "train.csv", 16, 0)
    result = runner.invoke(
        app,
        [
            "fit",
            str(train),
            "--model",
            tiny_model_dir("bert"),
            "--strategy",
            "bilstm",
            "--token-layers",
            "last2",
            "-o",
            str(tmp_path / "bundle"),
        ],
    )
    assert_user_error(result, "bilstm needs per-token hidden states")
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--hidden-size", "0"], ["'hidden_size' parameter of bilstm must be an int >= 1", "Got 0"]),
        (["--num-layers", "0"], ["'num_layers' parameter of bilstm must be an int >= 1"]),
        (["--dropout", "1"], ["'dropout' parameter of bilstm must be a float in [0.0, 1.0)"]),
        (["--memory-gib", "-1"], ["'memory_gib' parameter of bilstm must be a float >= 0.0"]),
        (["--token-layers", "last4"], ["'token_layers' parameter of bilstm", "within this model's 3 hidden states"]),
        ([], ["'token_layers' parameter of bilstm", "Got 'last4'"]),  # the default needs 4 states; this model has 3
        (["--token-layers", "x"], ["'token_layers' parameter of bilstm must be 'all', 'lastN'"]),
        (["--token-layers", "last2", "--no-prefix-cache"], ["'prefix_cache' is not used by strategy 'bilstm'"]),
    ],
)
def test_cli_bad_settings_are_one_line_and_exit_2(runner, tiny_model_dir, tmp_path, args, words):
    train = write_toy_csv(tmp_path / "train.csv", 16, 0)
    out = tmp_path / "bundle"
    result = runner.invoke(
        app, ["fit", str(train), "--model", tiny_model_dir("bert"), "--strategy", "bilstm", *args, "-o", str(out)]
    )
    assert_user_error(result, *words)
    assert not out.exists()


def test_cli_fit_says_where_the_token_states_lived_and_predict_uses_the_bundle(runner, tiny_model_dir, tmp_path):
    train = write_toy_csv(tmp_path / "train.csv", 24, 0)
    out = tmp_path / "bundle"
    result = runner.invoke(
        app,
        [
            "fit",
            str(train),
            "--model",
            tiny_model_dir("bert"),
            "--strategy",
            "bilstm",
            "--token-layers",
            "last2",
            "--hidden-size",
            "8",
            "--memory-gib",
            "0",
            "--epochs",
            "2",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "trained bilstm token_layers=last2 hidden_size=8 memory_gib=0.0 on 24 examples" in result.stdout
    line = next(x for x in result.stdout.splitlines() if x.startswith("token states:"))
    assert "0.0 MiB in memory" in line and "on disk (removed)" in line
    predicted = runner.invoke(app, ["predict", str(out), str(train), "-o", str(tmp_path / "pred.csv")])
    assert predicted.exit_code == 0, predicted.output
    import pandas as pd

    frame = pd.read_csv(tmp_path / "pred.csv")
    expected = Classifier.load(out).predict_proba(frame["text"].tolist())
    np.testing.assert_allclose(frame[["proba_neg", "proba_pos"]].to_numpy(), expected, atol=1e-6)


# -- sweeps, serving -----------------------------------------------------------------------------


def test_bilstm_cells_in_a_sweep_with_features_need_no_extra_embedding(tiny_model_dir, tmp_path, monkeypatch):
    from unfreeze.sweep import ResultsStore, SweepSpec
    from unfreeze.sweep.plan import frozen_layers
    from unfreeze.sweep.runner import run_sweep

    spec = SweepSpec(
        data=str(write_toy_csv(tmp_path / "train.csv", 40, 0)),
        test=str(write_toy_csv(tmp_path / "test.csv", 12, 1)),
        model=tiny_model_dir("bert"),
        strategies=["features", "bilstm"],
        grid={"bilstm": {"token_layers": ["last2"], "hidden_size": [4, 8]}},
        n_train=[16],
        seeds=[0],
        epochs=2,
        batch_size=8,
    )
    assert frozen_layers(spec, 2) == {2}  # features' last layer; bilstm reads token states
    assert frozen_layers(SweepSpec(strategies=["bilstm"]), 6) == set()
    counts = run_sweep(spec, tmp_path / "run", progress=False)
    assert counts["done"] == 3
    rows = {r["cell"]["label"]: r for r in ResultsStore(tmp_path / "run").records()}
    assert set(rows) == {
        "features",
        "bilstm token_layers=last2 hidden_size=4",
        "bilstm token_layers=last2 hidden_size=8",
    }
    small, large = rows["bilstm token_layers=last2 hidden_size=4"], rows["bilstm token_layers=last2 hidden_size=8"]
    assert small["fit"]["trainable_parameters"] < large["fit"]["trainable_parameters"]


@pytest.mark.slow
def test_unfreeze_serve_answers_for_a_bilstm_bundle(fitted, task, tmp_path):
    import httpx

    from test_serve import Server

    _, (test_texts, _) = task
    fitted.save(tmp_path / "bundle")
    expected = Classifier.load(tmp_path / "bundle").predict_proba(test_texts)
    server = Server(tmp_path / "bundle")
    try:
        heads = httpx.get(f"{server.url}/heads").json()["heads"]
        assert [(h["name"], h["strategy"]) for h in heads] == [("default", "bilstm")]
        body = server.post({"texts": test_texts}).json()
        np.testing.assert_allclose(body["results"]["default"]["probabilities"], expected, atol=1e-6)
    finally:
        assert server.stop() == 0
