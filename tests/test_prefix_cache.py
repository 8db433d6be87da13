"""The frozen-prefix cache: exact logits, exact training, one pass for every k, blocks always restored."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import DECODER_FAMILIES, FAMILIES, applicable
from unfreeze import Classifier
from unfreeze.models.backbone import Backbone
from unfreeze.training import TextClassificationModel, compute_prefix_states
from unfreeze.training.prefix import PrefixBatch, PrefixStates, SkippedBlock, skip_bottom_blocks

# lengths differ a lot, so batches carry real padding
TEXTS = [
    "a short one",
    "a much longer text with many more words than the first one has in it",
    "mid size text here",
    "x",
    "two words",
    "the final example is of a middling kind of length",
]
L = 2


def private(backbone: Backbone) -> Backbone:
    return Backbone(copy.deepcopy(backbone.model), backbone.tokenizer, backbone.reference)


def hooks(backbone: Backbone) -> list:
    """The hooks on every block (transformers installs some of its own: compare, do not expect none)."""
    return [(list(b._forward_hooks), list(b._forward_pre_hooks)) for b in backbone.blocks]


def layer_cases(k: int) -> list[tuple[int, ...]]:
    # hidden states below k do not exist when the bottom k blocks are skipped
    return [(L,), (1, L)] if k == 1 else [(L,)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_cached_prefix_gives_the_uncached_logits(family, k, pooling, tiny_backbone):
    backbone = tiny_backbone(family)
    encoded = backbone.encode(TEXTS, 64)
    states = compute_prefix_states(backbone, encoded, [k], batch_size=4)
    assert sorted(states) == [k] and states[k].k == k
    # an order other than the cache's own batches, and two batches
    for idx in ([5, 0, 3], [1, 4, 2]):
        batch = backbone.collate(encoded, idx)
        assert batch["attention_mask"].min() == 0, "the batch should be padded"
        for layers in layer_cases(k):
            torch.manual_seed(0)
            model = TextClassificationModel(backbone, 3, pooling, layers).eval()
            with torch.no_grad():
                plain = model(batch)
                cached = model(batch, states[k].batch(idx, backbone.device))
            assert cached.shape == (len(idx), 3)
            torch.testing.assert_close(cached, plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_cache_is_really_used(family, tiny_backbone):
    # changing the cached states changes the logits: the stand-in's output feeds block k
    backbone = tiny_backbone(family)
    encoded = backbone.encode(TEXTS, 64)
    states = compute_prefix_states(backbone, encoded, [1])
    idx = [0, 1, 2]
    batch = backbone.collate(encoded, idx)
    prefix = states[1].batch(idx, backbone.device)
    torch.manual_seed(0)
    model = TextClassificationModel(backbone, 2, "mean", (L,)).eval()
    with torch.no_grad():
        a = model(batch, prefix)
        b = model(batch, prefix._replace(states=prefix.states + 1.0))
    assert not torch.allclose(a, b)


def test_cached_states_are_unpadded_and_on_the_cpu(tiny_backbone):
    backbone = tiny_backbone("bert")
    encoded = backbone.encode(TEXTS, 64)
    states = compute_prefix_states(backbone, encoded, [1, 2], batch_size=4)
    for k in (1, 2):
        assert len(states[k]) == len(TEXTS)
        for i, state in enumerate(states[k].states):
            assert state.shape == (encoded.lengths[i], 32)
            assert state.device.type == "cpu" and state.dtype == torch.float32
            assert not state.requires_grad


def test_padded_states_follow_the_batch_layout():
    states = [torch.ones(2, 4), torch.full((5, 4), 2.0), torch.full((3, 4), 3.0)]
    prefix = PrefixStates(1, states, tuple_length=2).batch([2, 0, 1], torch.device("cpu"))
    assert isinstance(prefix, PrefixBatch) and (prefix.k, prefix.tuple_length) == (1, 2)
    out = prefix.states
    assert out.shape == (3, 5, 4)
    assert torch.equal(out[0, :3], states[2]) and torch.count_nonzero(out[0, 3:]) == 0
    assert torch.equal(out[1, :2], states[0]) and torch.count_nonzero(out[1, 2:]) == 0
    assert torch.equal(out[2], states[1])


# -- training with the cache is training without it ----------------------------------------------------

POS, NEG = ["good", "great", "fine"], ["bad", "poor", "awful"]
TRAIN_X = [f"the {w} movie number {i}" + " indeed" * (i % 3) for i, w in enumerate((POS + NEG) * 4)]
TRAIN_Y = [int(i % 6 < 3) for i in range(len(TRAIN_X))]


@pytest.mark.parametrize(
    ("family", "strategy", "params"),
    [
        ("bert", "freeze", dict(k=1)),
        ("llama", "freeze", dict(k=1)),
        ("bert", "lora", dict(top_blocks=1, r=2)),
        ("bert", "setfit", dict(k=1, num_iterations=2)),
    ],
    ids=["bert-freeze", "llama-freeze", "bert-lora-top1", "bert-setfit"],
)
def test_training_with_the_cache_matches_training_without_it(family, strategy, params, tiny_model_dir):
    fitted = {}
    for use_cache in (True, False):
        fitted[use_cache] = Classifier(
            model=tiny_model_dir(family),
            strategy=strategy,
            prefix_cache=use_cache,
            seed=3,
            epochs=2,
            batch_size=8,
            learning_rate=1e-3,
            progress=False,
            device="cpu",
            cache=False,
            **applicable(strategy, dict(validation_fraction=0.25, C=1.0)),
            **params,
        ).fit(TRAIN_X, TRAIN_Y)
    with_cache, without = fitted[True].fit_record_, fitted[False].fit_record_
    assert with_cache["prefix_seconds"] > 0 and without["prefix_seconds"] == 0  # the two paths really differ
    assert with_cache["steps"] == without["steps"] > 1
    np.testing.assert_allclose(
        [h["train_loss"] for h in with_cache["history"]], [h["train_loss"] for h in without["history"]], atol=1e-5
    )
    np.testing.assert_allclose(fitted[True].predict_proba(TRAIN_X), fitted[False].predict_proba(TRAIN_X), atol=1e-4)
    # and training did something: the probabilities moved away from the untrained model's
    untrained = Classifier(
        model=tiny_model_dir(family),
        strategy=strategy,
        prefix_cache=False,
        seed=3,
        max_steps=1,
        learning_rate=1e-12,
        batch_size=8,
        progress=False,
        device="cpu",
        cache=False,
        **applicable(strategy, dict(head_learning_rate=1e-12, validation_fraction=0, C=1.0)),
        **params,
    ).fit(TRAIN_X, TRAIN_Y)
    if strategy != "setfit":
        assert not np.allclose(untrained.predict_proba(TRAIN_X), fitted[True].predict_proba(TRAIN_X), atol=1e-3)


# -- one pass for every k --------------------------------------------------------------------------


def count_calls(module: torch.nn.Module, counter: dict, key: str):
    """Count completed forwards (a post hook: a forward stopped by a pre hook is not counted)."""

    def hook(_module, _args, _output):
        counter[key] = counter.get(key, 0) + 1

    return module.register_forward_hook(hook)


def test_several_ks_are_computed_in_one_forward_pass(tiny_backbone):
    backbone = private(tiny_backbone("bert"))
    encoded = backbone.encode(TEXTS, 64)
    calls: dict[str, int] = {}
    handles = [count_calls(backbone.model, calls, "model")]
    handles += [count_calls(block, calls, f"block{i}") for i, block in enumerate(backbone.blocks)]
    try:
        states = compute_prefix_states(backbone, encoded, [2, 1, 1], batch_size=4)
    finally:
        for h in handles:
            h.remove()
    n_batches = 2  # 6 examples, 4 per batch
    assert calls == {"model": n_batches, "block0": n_batches, "block1": n_batches}
    assert sorted(states) == [1, 2]
    assert all(len(states[k]) == len(TEXTS) and all(s is not None for s in states[k].states) for k in (1, 2))
    assert not torch.equal(states[1].states[0], states[2].states[0])


def test_forward_stops_after_the_last_needed_block(tiny_backbone):
    backbone = private(tiny_backbone("bert"))
    encoded = backbone.encode(TEXTS, 64)
    before = hooks(backbone)
    calls: dict[str, int] = {}
    handles = [count_calls(block, calls, f"block{i}") for i, block in enumerate(backbone.blocks)]
    handles.append(count_calls(backbone.model.pooler, calls, "pooler"))
    try:
        states = compute_prefix_states(backbone, encoded, [1], batch_size=4)
    finally:
        for h in handles:
            h.remove()
    assert calls == {"block0": 2}  # block 1 and the pooler never ran
    assert sorted(states) == [1]
    # the stopping hook is gone: a normal forward runs every block
    assert hooks(backbone) == before
    calls.clear()
    handles = [count_calls(block, calls, f"block{i}") for i, block in enumerate(backbone.blocks)]
    compute_prefix_states(backbone, encoded, [2], batch_size=4)
    for h in handles:
        h.remove()
    assert calls == {"block0": 2, "block1": 2}


def test_k_zero_is_ignored(tiny_backbone):
    backbone = tiny_backbone("bert")
    states = compute_prefix_states(backbone, backbone.encode(TEXTS[:2], 64), [0, 2])
    assert sorted(states) == [2]


@pytest.mark.parametrize("family", FAMILIES)
def test_states_equal_hugging_face_hidden_states(family, tiny_backbone):
    backbone = tiny_backbone(family)
    encoded = backbone.encode(TEXTS, 64)
    states = compute_prefix_states(backbone, encoded, [1, 2], batch_size=4)
    idx = list(range(len(TEXTS)))
    batch = backbone.collate(encoded, idx)
    with torch.no_grad():
        hidden = backbone.model(**batch, output_hidden_states=True).hidden_states
    assert len(hidden) == L + 1
    for k in (1, 2):
        for row, i in enumerate(idx):
            n = encoded.lengths[i]
            expected = hidden[k][row, :n]
            if family in DECODER_FAMILIES and k == L:
                # Hugging Face's last hidden state has the final norm applied; the cache holds block L's output
                norm = backbone.post_modules()["ln_f" if family == "gpt2" else "norm"]
                with torch.no_grad():
                    got = norm(states[k].states[i])
            else:
                got = states[k].states[i]
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_compute_prefix_states_restores_the_training_mode(tiny_backbone):
    backbone = private(tiny_backbone("bert"))
    backbone.model.train()
    compute_prefix_states(backbone, backbone.encode(TEXTS[:3], 64), [1])
    assert all(m.training for m in backbone.model.modules())
    backbone.model.eval()
    compute_prefix_states(backbone, backbone.encode(TEXTS[:3], 64), [1])
    assert not any(m.training for m in backbone.model.modules())


def test_compute_prefix_states_cleans_up_after_an_error(tiny_backbone, monkeypatch):
    backbone = private(tiny_backbone("bert"))
    backbone.model.train()
    before = hooks(backbone)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(backbone.blocks[0], "forward", broken)
    with pytest.raises(RuntimeError, match="boom"):
        compute_prefix_states(backbone, backbone.encode(TEXTS[:3], 64), [1, 2])
    assert hooks(backbone) == before
    assert backbone.model.training


# -- the stand-in blocks are always put back ---------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2])
def test_skip_bottom_blocks_restores_the_originals(k, tiny_backbone):
    backbone = private(tiny_backbone("bert"))
    originals = list(backbone.blocks)
    with skip_bottom_blocks(backbone.blocks, k, 0) as stand_in:
        assert isinstance(stand_in, SkippedBlock)
        assert all(isinstance(backbone.blocks[i], SkippedBlock) for i in range(k))
        assert all(backbone.blocks[i] is originals[i] for i in range(k, L))
        assert backbone.blocks[k - 1] is stand_in
    assert all(a is b for a, b in zip(backbone.blocks, originals, strict=True))

    with pytest.raises(ValueError, match="inside"), skip_bottom_blocks(backbone.blocks, k, 0) as stand_in:
        stand_in.replacement = torch.zeros(1)
        raise ValueError("inside")
    assert all(a is b for a, b in zip(backbone.blocks, originals, strict=True))
    assert stand_in.replacement is None  # the cached batch is not kept alive


def test_stand_ins_return_the_block_output_shape():
    hidden = torch.randn(2, 3, 4)
    replacement = torch.randn(2, 3, 4)
    assert SkippedBlock(0)(hidden) is hidden
    out = SkippedBlock(3)(hidden, attention_mask=None)
    assert isinstance(out, tuple) and len(out) == 3 and out[0] is hidden and out[1:] == (None, None)
    last = SkippedBlock(1)
    last.replacement = replacement
    assert last(hidden_states=hidden)[0] is replacement


@pytest.mark.parametrize("family", ["bert", "gpt2", "deberta-v2"])
def test_model_forward_restores_the_blocks_even_when_it_raises(family, tiny_backbone):
    backbone = private(tiny_backbone(family))
    originals = list(backbone.blocks)
    encoded = backbone.encode(TEXTS[:3], 64)
    batch = backbone.collate(encoded, [0, 1, 2])
    states = compute_prefix_states(backbone, encoded, [1])
    before = hooks(backbone)
    model = TextClassificationModel(backbone, 2, "mean", (1, L)).eval()
    wrong = torch.zeros(3, batch["input_ids"].shape[1], 7)  # hidden size 7, not 32: block 1 fails
    with pytest.raises(RuntimeError):
        model(batch, PrefixBatch(1, states[1].tuple_length, wrong))
    assert all(a is b for a, b in zip(backbone.blocks, originals, strict=True))
    assert hooks(backbone) == before
    # and the model still works, cached and uncached
    with torch.no_grad():
        torch.testing.assert_close(
            model(batch, states[1].batch([0, 1, 2], backbone.device)), model(batch), atol=1e-5, rtol=0
        )
    assert all(a is b for a, b in zip(backbone.blocks, originals, strict=True))
