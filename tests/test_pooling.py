"""Pooling (mask-aware, padding-side independent) and layer / pooling parameter parsing."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from unfreeze.errors import InvalidParameterError, UnfreezeError
from unfreeze.features.embed import embed
from unfreeze.models.pooling import POOLINGS, check_pooling, parse_layers, pool, resolve_pooling

LENGTHS = [5, 3, 1, 4]
WIDTH = 5


def _masks(side: str) -> torch.Tensor:
    mask = torch.zeros(len(LENGTHS), WIDTH, dtype=torch.long)
    for row, n in enumerate(LENGTHS):
        if side == "right":
            mask[row, :n] = 1
        else:
            mask[row, WIDTH - n :] = 1
    return mask


def _real_positions(side: str, row: int) -> list[int]:
    n = LENGTHS[row]
    return list(range(n)) if side == "right" else list(range(WIDTH - n, WIDTH))


@pytest.fixture
def hidden() -> torch.Tensor:
    torch.manual_seed(0)
    h = torch.randn(len(LENGTHS), WIDTH, 3)
    return h


def _with_loud_padding(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # padded positions hold huge values: any pooling that reads them is visibly wrong
    return hidden.masked_fill(mask.unsqueeze(-1) == 0, 1e6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_mean_ignores_padding(hidden, side):
    mask = _masks(side)
    got = pool(_with_loud_padding(hidden, mask), mask, "mean")
    for row in range(len(LENGTHS)):
        real = hidden[row, _real_positions(side, row)]
        expected = real.sum(dim=0) / len(real)
        torch.testing.assert_close(got[row], expected)


@pytest.mark.parametrize("side", ["right", "left"])
def test_cls_is_the_first_real_token(hidden, side):
    mask = _masks(side)
    got = pool(_with_loud_padding(hidden, mask), mask, "cls")
    for row in range(len(LENGTHS)):
        torch.testing.assert_close(got[row], hidden[row, _real_positions(side, row)[0]])


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_is_the_last_real_token(hidden, side):
    mask = _masks(side)
    got = pool(_with_loud_padding(hidden, mask), mask, "last")
    for row in range(len(LENGTHS)):
        torch.testing.assert_close(got[row], hidden[row, _real_positions(side, row)[-1]])
    if side == "right":
        # right padding: the position before the pads, not the final position
        assert not torch.equal(got[1], hidden[1, -1])
    else:
        torch.testing.assert_close(got, hidden[:, -1])


@pytest.mark.parametrize("side", ["right", "left"])
def test_max_ignores_padding_even_when_pads_are_large(hidden, side):
    mask = _masks(side)
    got = pool(_with_loud_padding(hidden, mask), mask, "max")
    assert got.max() < 100
    for row in range(len(LENGTHS)):
        torch.testing.assert_close(got[row], hidden[row, _real_positions(side, row)].max(dim=0).values)


def test_max_ignores_padding_when_all_real_values_are_negative():
    hidden = -torch.rand(1, 4, 2) - 1.0  # real values in [-2, -1]
    mask = torch.tensor([[1, 1, 0, 0]])
    hidden[0, 2:] = 0.0  # zero-valued pads would win a max that does not mask
    got = pool(hidden, mask, "max")
    torch.testing.assert_close(got[0], hidden[0, :2].max(dim=0).values)
    assert (got < 0).all()


def test_pool_keeps_dtype_and_shape(hidden):
    mask = _masks("right")
    for pooling in POOLINGS:
        out = pool(hidden, mask, pooling)
        assert out.shape == (len(LENGTHS), hidden.shape[-1])
        assert out.dtype == hidden.dtype


def test_pool_rejects_unknown_mode(hidden):
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        pool(hidden, _masks("right"), "sum")


# -- model level: a text pooled alone equals the same text inside a padded batch -----------

SHORT = "the cat sat"
LONG = "a considerably longer sentence that keeps going so that the short one gets many pad tokens " * 2


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooled_embedding_does_not_depend_on_padding(family, pooling, tiny_backbone):
    backbone = tiny_backbone(family)
    layers = list(range(backbone.num_blocks + 1))
    alone = embed(backbone, [SHORT], layers, pooling, use_cache=False, progress=False)
    batched = embed(backbone, [LONG, SHORT], layers, pooling, batch_size=8, use_cache=False, progress=False)
    enc = backbone.encode([LONG, SHORT], 256)
    assert enc.lengths[0] > 3 * enc.lengths[1]  # the short text really is padded a lot
    for layer in layers:
        np.testing.assert_allclose(batched.layers[layer][1], alone.layers[layer][0], atol=1e-5, rtol=0)
    # and the long text is not the same vector (pooling really looks at the tokens)
    assert not np.allclose(batched.layers[backbone.num_blocks][0], alone.layers[backbone.num_blocks][0])


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_last_pooling_differs_from_mean_and_cls_picks_the_first_token(family, tiny_backbone):
    backbone = tiny_backbone(family)
    top = backbone.num_blocks
    texts = [SHORT, LONG]
    by = {p: embed(backbone, texts, [top], p, use_cache=False, progress=False).layers[top] for p in POOLINGS}
    assert not np.allclose(by["mean"], by["last"])
    assert not np.allclose(by["mean"], by["cls"])
    # [CLS] is the same token at position 0 in every text: at the embedding layer, cls
    # pooling gives one vector for all (token embedding + position 0 embedding)
    emb_cls = embed(backbone, texts, [0], "cls", use_cache=False, progress=False).layers[0]
    np.testing.assert_allclose(emb_cls[0], emb_cls[1], atol=1e-6)


# -- layer specs ----------------------------------------------------------------------------

LAYER_MESSAGE = re.compile(r"^The 'layers' parameter of Classifier must be .+\. Got .+\.$")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("-1", (6,)),
        ("0", (0,)),
        ("6", (6,)),
        ("-7", (0,)),
        ("-4,-3,-2,-1", (3, 4, 5, 6)),
        (" -2 , 0 ", (5, 0)),
        ("-1,", (6,)),
        (-1, (6,)),
        (0, (0,)),
        (3, (3,)),
        (np.int64(-2), (5,)),
        ([-2, -1], (5, 6)),
        ((0, 6), (0, 6)),
        (["-1", "1"], (6, 1)),
    ],
)
def test_parse_layers_accepts(spec, expected):
    assert parse_layers(spec, 6) == expected


@pytest.mark.parametrize(
    "spec",
    ["7", "-8", 7, -8, [0, 7], "", ",", "last", "1.5", "-1;-2", 1.5, [1.5], ["a"], [], None, [True], "-1,6", [0, -7]],
)
def test_parse_layers_rejects_with_sklearn_message(spec):
    with pytest.raises(InvalidParameterError) as info:
        parse_layers(spec, 6)
    message = str(info.value)
    assert LAYER_MESSAGE.match(message), message
    assert message.endswith(f"Got {spec!r}.")


def test_parse_layers_message_states_the_valid_range_for_the_model():
    with pytest.raises(InvalidParameterError, match=re.escape("must be an int in [-3, 2]")):
        parse_layers(3, 2, owner="Classifier")
    with pytest.raises(InvalidParameterError, match=r"^The 'layers' parameter of probe must"):
        parse_layers("9", 2, owner="probe")


def test_parse_layers_rejects_repeats():
    # -1 and 6 name the same hidden state
    with pytest.raises(InvalidParameterError, match="without repeated layers"):
        parse_layers("-1,6", 6)


def test_invalid_parameter_errors_are_user_errors_and_value_errors():
    with pytest.raises(UnfreezeError):
        parse_layers("x", 6)
    with pytest.raises(ValueError):
        parse_layers("x", 6)


# -- pooling names ----------------------------------------------------------------------------


def test_check_pooling_lists_the_valid_modes():
    for p in POOLINGS:
        assert check_pooling(p) == p
    with pytest.raises(InvalidParameterError) as info:
        check_pooling("avg")
    message = str(info.value)
    assert message.startswith("The 'pooling' parameter of Classifier must be one of ")
    assert message.endswith("Got 'avg'.")
    for p in POOLINGS:
        assert repr(p) in message
    # every mode the message offers is accepted
    for offered in re.findall(r"'(\w+)'", message.split(" must be ")[1].split(". Got")[0]):
        assert check_pooling(offered) == offered


def test_resolve_pooling_auto_depends_on_decoder_and_lists_auto_when_invalid():
    assert resolve_pooling("auto", is_decoder=True) == "last"
    assert resolve_pooling("auto", is_decoder=False) == "mean"
    assert resolve_pooling("cls", is_decoder=True) == "cls"
    with pytest.raises(InvalidParameterError) as info:
        resolve_pooling("CLS", is_decoder=False, owner="probe")
    message = str(info.value)
    assert message.startswith("The 'pooling' parameter of probe must be one of ")
    for p in ("auto", *POOLINGS):
        assert repr(p) in message
