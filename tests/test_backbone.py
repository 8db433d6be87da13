"""Backbone: blocks, sizes, decoder detection, pad tokens, length limits, tokenisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import DECODER_FAMILIES, FAMILIES, TINY
from unfreeze.errors import UnfreezeError
from unfreeze.models.backbone import Backbone, find_blocks, split_inputs


@pytest.mark.parametrize("family", FAMILIES)
def test_load_finds_blocks_size_and_decoder_flag(family, tiny_backbone):
    backbone = tiny_backbone(family)
    assert backbone.num_blocks == TINY["blocks"]
    assert backbone.hidden_size == TINY["hidden"]
    assert backbone.is_decoder is (family in DECODER_FAMILIES)
    # the blocks found are the model's own attention blocks, in order
    assert isinstance(backbone.blocks, nn.ModuleList)
    assert all(any(block is m for m in backbone.model.modules()) for block in backbone.blocks)
    assert backbone.device == torch.device("cpu")
    assert not backbone.model.training  # loaded for inference


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_a_pad_token(family, tiny_model_dir, tiny_backbone):
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(tiny_model_dir(family))
    backbone = tiny_backbone(family)
    assert backbone.tokenizer.pad_token_id is not None
    if family in DECODER_FAMILIES:
        # the saved decoder tokenizers have no pad token: the backbone uses the end token
        assert raw.pad_token_id is None
        assert backbone.tokenizer.pad_token == raw.eos_token == "[SEP]"
    else:
        assert backbone.tokenizer.pad_token_id == raw.pad_token_id == 0


def test_fingerprint_depends_on_weights_only(tiny_model_dir, tiny_backbone):
    a = tiny_backbone("bert")
    again = Backbone.load(tiny_model_dir("bert"), device="cpu")
    other = Backbone.load(tiny_model_dir("bert", seed=1), device="cpu")
    assert a.fingerprint() == again.fingerprint()
    assert a.fingerprint() != other.fingerprint()


def test_a_bf16_checkpoint_loads_as_an_fp32_base(tiny_model_dir, tmp_path):
    """transformers >= 5 keeps a checkpoint's stored dtype; the base must be fp32 (training keeps fp32 weights)."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "bf16"
    shutil.copytree(tiny_model_dir("bert"), folder)
    weights = load_file(folder / "model.safetensors")
    save_file(
        {name: t.to(torch.bfloat16) for name, t in weights.items()},
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    loaded = Backbone.load(str(folder), device="cpu")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    # the values are the stored bf16 ones, widened
    name, stored = next((n, t) for n, t in load_file(folder / "model.safetensors").items() if t.dim() == 2)
    assert torch.equal(loaded.model.state_dict()[name], stored.float())


class _NoBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stuff = nn.ModuleList([nn.Linear(2, 2)])
        self.layers = nn.ModuleList()  # an empty list is not a list of blocks


def test_find_blocks_without_known_block_list_names_the_class():
    with pytest.raises(UnfreezeError, match=r"Cannot find the attention blocks of _NoBlocks"):
        find_blocks(_NoBlocks())
    with pytest.raises(UnfreezeError, match="Sequential"):
        find_blocks(nn.Sequential(nn.Linear(2, 2)))


def test_find_blocks_follows_nested_paths():
    class Inner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Inner()

    outer = Outer()
    assert find_blocks(outer) is outer.encoder.layer


def test_load_rejects_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnfreezeError, match="not a Hugging Face model folder"):
        Backbone.load(str(tmp_path))


def test_load_unknown_hub_id_offline_is_a_user_error():
    with pytest.raises(UnfreezeError, match="Could not load model 'nobody/no-such-model-xyz'"):
        Backbone.load("nobody/no-such-model-xyz")


@pytest.mark.parametrize("family", FAMILIES)
def test_length_limit_is_capped_by_the_model(family, tiny_backbone):
    backbone = tiny_backbone(family)
    # the tiny models have 128 usable positions (RoBERTa/MPNet: 130 minus their offset of 2);
    # the tokenizer allows 512, so the model is the cap
    assert backbone.tokenizer.model_max_length == 512
    assert backbone.length_limit(10_000) == TINY["positions"]
    assert backbone.length_limit(16) == 16
    assert backbone.length_limit(0) == 1


def test_length_limit_is_capped_by_the_tokenizer(tiny_backbone, monkeypatch):
    backbone = tiny_backbone("bert")
    monkeypatch.setattr(backbone.tokenizer, "model_max_length", 50)
    assert backbone.length_limit(10_000) == 50
    # a sentinel "no limit" value (as transformers writes 1e30) is ignored
    monkeypatch.setattr(backbone.tokenizer, "model_max_length", int(1e30))
    assert backbone.length_limit(10_000) == TINY["positions"]


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_encode_counts_and_truncates_long_texts(family, tiny_backbone):
    backbone = tiny_backbone(family)
    short = "a short text"
    texts = [short, "word " * 300, "another " * 40, "tiny"]
    encoded = backbone.encode(texts, max_length=20)
    assert encoded.n_truncated == 2
    assert encoded.max_length == 20
    assert len(encoded) == 4
    assert max(encoded.lengths) == 20
    # untruncated texts keep exactly their own ids
    alone = backbone.encode([short, "tiny"], max_length=20)
    assert alone.n_truncated == 0
    assert encoded.input_ids[0] == alone.input_ids[0]
    assert encoded.input_ids[3] == alone.input_ids[1]
    assert encoded.n_tokens() == sum(encoded.lengths)
    # a request above the model's positions is capped by it
    capped = backbone.encode(texts, max_length=10_000)
    assert capped.max_length == TINY["positions"]
    assert capped.n_truncated == 1
    assert max(capped.lengths) == TINY["positions"]


def test_text_pairs_produce_token_type_ids_for_bert(tiny_backbone):
    backbone = tiny_backbone("bert")
    encoded = backbone.encode([("first text", "the second one here"), ("a", "b")], max_length=64)
    assert encoded.token_type_ids is not None
    for ids, types in zip(encoded.input_ids, encoded.token_type_ids):
        assert len(types) == len(ids)
        assert types[0] == 0 and types[-1] == 1 and set(types) == {0, 1}
    # the pair is one sequence: [CLS] a [SEP] b [SEP]
    assert encoded.input_ids[1].count(102) == 2
    ((_, batch),) = list(backbone.batches(encoded, batch_size=8))
    assert "token_type_ids" in batch
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    assert int(batch["token_type_ids"].sum()) == sum(sum(t) for t in encoded.token_type_ids)


def test_models_without_token_types_get_none(tiny_backbone):
    backbone = tiny_backbone("gpt2")
    encoded = backbone.encode([("first", "second")], max_length=64)
    assert encoded.token_type_ids is None
    ((_, batch),) = list(backbone.batches(encoded, batch_size=8))
    assert set(batch) == {"input_ids", "attention_mask"}


def test_batches_right_pad_and_cover_every_example(tiny_backbone):
    backbone = tiny_backbone("llama")
    texts = ["one", "two words here and more", "three words", "a much longer text than the others by far", "x"]
    encoded = backbone.encode(texts, max_length=64)
    seen = []
    for idx, batch in backbone.batches(encoded, batch_size=2):
        seen.extend(idx)
        mask = batch["attention_mask"]
        for row, i in enumerate(idx):
            n = len(encoded.input_ids[i])
            assert mask[row].tolist() == [1] * n + [0] * (mask.shape[1] - n)
            assert batch["input_ids"][row, :n].tolist() == encoded.input_ids[i]
            assert set(batch["input_ids"][row, n:].tolist()) <= {backbone.tokenizer.pad_token_id}
    assert sorted(seen) == list(range(len(texts)))
    # longest first, so batches waste little padding
    assert [len(encoded.input_ids[i]) for i in seen] == sorted(encoded.lengths, reverse=True)


def test_split_inputs():
    assert split_inputs(["a", "b"]) == (["a", "b"], None)
    assert split_inputs([("a", "x"), ["b", "y"]]) == (["a", "b"], ["x", "y"])
    assert split_inputs([]) == ([], None)
