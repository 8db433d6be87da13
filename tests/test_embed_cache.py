"""The pooled-embedding cache: hits skip the forward pass, keys separate what differs."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FAMILIES
from unfreeze.features.embed import embed
from unfreeze.models.backbone import Backbone

TEXTS = ["the first text", "a second, somewhat longer text for the batch", "three", "the fourth and last"]


def _cache_files(cache):
    folder = cache / "embeddings"
    return sorted(folder.glob("*.safetensors")) if folder.exists() else []


class ForwardCounter:
    """Wraps a model's forward to count calls; ``forbid()`` makes any call fail the test."""

    def __init__(self, model, monkeypatch) -> None:
        self.calls = 0
        self.allowed = True
        original = model.forward

        def counted(*args, **kwargs):
            if not self.allowed:
                raise AssertionError("forward pass on a cache hit")
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(model, "forward", counted)

    def forbid(self) -> None:
        self.allowed = False


def test_second_call_is_served_from_cache_without_forward(tiny_backbone, fresh_cache, monkeypatch):
    backbone = tiny_backbone("bert")
    counter = ForwardCounter(backbone.model, monkeypatch)
    first = embed(backbone, TEXTS, [1, 2], "mean", max_length=64, progress=False)
    assert not first.from_cache
    assert counter.calls >= 1
    assert len(_cache_files(fresh_cache)) == 1

    counter.forbid()
    second = embed(backbone, TEXTS, [1, 2], "mean", max_length=64, progress=False)
    assert second.from_cache
    assert set(second.layers) == {1, 2}
    for layer in (1, 2):
        assert np.array_equal(first.layers[layer], second.layers[layer])
        assert second.layers[layer].shape == (len(TEXTS), backbone.hidden_size)
    assert np.array_equal(first.features([1, 2]), second.features([1, 2]))
    assert second.features([2, 1]).shape == (len(TEXTS), 2 * backbone.hidden_size)


def test_cache_keeps_the_truncation_count(tiny_backbone, fresh_cache, monkeypatch):
    backbone = tiny_backbone("bert")
    texts = ["short", "long " * 50, "also long " * 20]
    first = embed(backbone, texts, [2], "mean", max_length=8, progress=False)
    assert first.n_truncated == 2 and first.max_length == 8
    ForwardCounter(backbone.model, monkeypatch).forbid()
    second = embed(backbone, texts, [2], "mean", max_length=8, progress=False)
    assert second.from_cache
    assert (second.n_truncated, second.max_length) == (2, 8)


@pytest.mark.parametrize(
    "change",
    ["pooling", "max_length", "texts", "order", "pairs", "weights"],
)
def test_anything_that_changes_the_vectors_changes_the_key(
    change, tiny_backbone, tiny_model_dir, fresh_cache, monkeypatch
):
    backbone = tiny_backbone("bert")
    base = dict(inputs=TEXTS, pooling="mean", max_length=64)
    first = embed(backbone, base["inputs"], [2], base["pooling"], base["max_length"], progress=False)
    assert len(_cache_files(fresh_cache)) == 1

    other_backbone = backbone
    kwargs = dict(base)
    if change == "pooling":
        kwargs["pooling"] = "max"
    elif change == "max_length":
        kwargs["max_length"] = 4  # truncates every text: different vectors
    elif change == "texts":
        kwargs["inputs"] = [*TEXTS[:-1], "the fourth and final"]
    elif change == "order":
        kwargs["inputs"] = TEXTS[::-1]
    elif change == "pairs":
        kwargs["inputs"] = [(t, "x") for t in TEXTS]
    elif change == "weights":
        other_backbone = Backbone.load(tiny_model_dir("bert", seed=1), device="cpu")

    counter = ForwardCounter(other_backbone.model, monkeypatch)
    second = embed(other_backbone, kwargs["inputs"], [2], kwargs["pooling"], kwargs["max_length"], progress=False)
    assert not second.from_cache
    assert counter.calls >= 1
    assert len(_cache_files(fresh_cache)) == 2
    assert not np.array_equal(first.layers[2], second.layers[2])


def test_batch_size_and_progress_do_not_change_the_key(tiny_backbone, fresh_cache, monkeypatch):
    backbone = tiny_backbone("llama")
    first = embed(backbone, TEXTS, [2], "last", batch_size=1, progress=False)
    ForwardCounter(backbone.model, monkeypatch).forbid()
    second = embed(backbone, TEXTS, [2], "last", batch_size=3, progress=True)
    assert second.from_cache
    assert np.array_equal(first.layers[2], second.layers[2])


def test_all_layers_call_serves_later_single_layer_calls(tiny_backbone, fresh_cache, monkeypatch):
    backbone = tiny_backbone("gpt2")
    everything = embed(backbone, TEXTS, [0, 1, 2], "last", progress=False)
    counter = ForwardCounter(backbone.model, monkeypatch)
    counter.forbid()
    for layers in ([2], [0], [1, 2], [2, 0]):
        got = embed(backbone, TEXTS, layers, "last", progress=False)
        assert got.from_cache
        assert sorted(got.layers) == sorted(layers)
        for layer in layers:
            assert np.array_equal(got.layers[layer], everything.layers[layer])
    assert len(_cache_files(fresh_cache)) == 1


def test_missing_layers_are_computed_and_merged_into_the_same_file(tiny_backbone, fresh_cache, monkeypatch):
    backbone = tiny_backbone("bert")
    top_only = embed(backbone, TEXTS, [2], "mean", progress=False)
    counter = ForwardCounter(backbone.model, monkeypatch)
    both = embed(backbone, TEXTS, [0, 2], "mean", progress=False)
    assert not both.from_cache and counter.calls >= 1
    assert np.array_equal(both.layers[2], top_only.layers[2])
    assert len(_cache_files(fresh_cache)) == 1
    counter.forbid()
    for layers in ([0], [2], [0, 2]):
        assert embed(backbone, TEXTS, layers, "mean", progress=False).from_cache


def test_use_cache_false_never_writes_or_reads(tiny_backbone, fresh_cache, monkeypatch):
    backbone = tiny_backbone("bert")
    embed(backbone, TEXTS, [2], "mean", use_cache=False, progress=False)
    embed(backbone, TEXTS, [0, 1, 2], "cls", use_cache=False, progress=False)
    assert _cache_files(fresh_cache) == []
    assert [p for p in fresh_cache.rglob("*") if p.is_file()] == []

    # with a cached copy present, use_cache=False still runs the model
    cached = embed(backbone, TEXTS, [2], "mean", progress=False)
    assert len(_cache_files(fresh_cache)) == 1
    counter = ForwardCounter(backbone.model, monkeypatch)
    fresh = embed(backbone, TEXTS, [2], "mean", use_cache=False, progress=False)
    assert counter.calls >= 1 and not fresh.from_cache
    np.testing.assert_allclose(fresh.layers[2], cached.layers[2], atol=1e-6)


def test_cache_writes_leave_no_temporary_files(tiny_backbone, fresh_cache):
    backbone = tiny_backbone("bert")
    embed(backbone, TEXTS, [1], "mean", progress=False)
    embed(backbone, TEXTS, [0, 1], "mean", progress=False)  # rewrites the same file
    files = [p.name for p in (fresh_cache / "embeddings").iterdir()]
    assert len(files) == 1 and files[0].endswith(".safetensors") and not files[0].startswith(".")


@pytest.mark.parametrize("family", FAMILIES)
def test_last_layer_alone_equals_last_layer_among_all(family, tiny_backbone):
    # one code path reads last_hidden_state, the other hidden_states[-1]; the cache
    # serves one for the other, so they must agree (final norms included)
    backbone = tiny_backbone(family)
    top = backbone.num_blocks
    alone = embed(backbone, TEXTS, [top], "mean", use_cache=False, progress=False)
    among = embed(backbone, TEXTS, list(range(top + 1)), "mean", use_cache=False, progress=False)
    np.testing.assert_allclose(alone.layers[top], among.layers[top], atol=1e-6, rtol=0)
    # and the layers really are different hidden states
    assert not np.allclose(among.layers[0], among.layers[top])


def test_probe_then_fit_on_the_same_texts_needs_no_forward_pass(tiny_model_dir, fresh_cache, monkeypatch, tmp_path):
    # the workflow the shared cache exists for: probe every layer, then fit the chosen one
    from transformers import BertModel

    from unfreeze import Classifier, TextDataset
    from unfreeze.features.probe import format_probe_table, plot_probe, run_probe

    texts = [f"{w} text number {i}" for i, w in enumerate(["good", "bad"] * 12)]
    labels = ["pos" if t.startswith("good") else "neg" for t in texts]
    train = TextDataset(texts=texts, labels=labels, name="tiny")
    rows = run_probe(train, None, tiny_model_dir("bert"), pooling="mean", C=1.0, progress=False)
    assert [r["layer"] for r in rows] == ["0 (embeddings)", "1", "2", "concat -3,-2,-1"]
    assert [r["layers"] for r in rows] == [[0], [1], [2], [0, 1, 2]]
    assert all(0.0 <= r["train"]["accuracy"] <= 1.0 and "test" not in r for r in rows)
    table = format_probe_table(rows)
    assert len(table.splitlines()) == len(rows) + 1
    png = plot_probe(rows, tmp_path / "p" / "probe.png")
    assert png.read_bytes()[:4] == b"\x89PNG"

    def refuse(*args, **kwargs):
        raise AssertionError("forward pass although the probe cached every layer")

    monkeypatch.setattr(BertModel, "forward", refuse)
    for layers in ("-1", "0", "-2,-1"):
        clf = Classifier(model=tiny_model_dir("bert"), pooling="mean", layers=layers, C=1.0, progress=False)
        assert clf.fit(texts, labels).score(texts, labels) >= 0.9  # the same texts: served from cache too
    assert len(_cache_files(fresh_cache)) == 1
