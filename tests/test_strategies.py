"""Strategies: exactly what each one trains, every bad parameter refused, reinit's exact reach."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from conftest import FAMILIES, applicable
from unfreeze import Classifier, UnfreezeError
from unfreeze.errors import InvalidParameterError
from unfreeze.models.backbone import Backbone
from unfreeze.strategies import Freeze, Lora, Reinit, SetFit

# Three classes so that the head's size (hidden * 3 + 3) is not a coincidence of two.
TEXTS = [
    f"sample {i} says {w} things" + " more" * (i % 4)
    for i, w in enumerate(["good", "bad", "odd", "nice", "awful", "weird", "fine", "poor", "strange"])
]
LABELS = [i % 3 for i in range(len(TEXTS))]
N_CLASSES = 3
HIDDEN = 32
L = 2

# The model structure, written out independently of unfreeze.models.backbone: where each
# family keeps its blocks, its final norm (run after the last block) and its pooler.
BLOCK_PREFIX = {
    "bert": "encoder.layer",
    "roberta": "encoder.layer",
    "distilbert": "transformer.layer",
    "mpnet": "encoder.layer",
    "deberta-v2": "encoder.layer",
    "gpt2": "h",
    "llama": "layers",
}
FINAL_NORM = {"gpt2": "ln_f", "llama": "norm"}
HAS_POOLER = {"bert", "roberta", "mpnet"}
ATTENTION = {
    "bert": ("query", "key", "value"),
    "roberta": ("query", "key", "value"),
    "mpnet": ("q", "k", "v"),
    "distilbert": ("q_lin", "k_lin", "v_lin"),
    "deberta-v2": ("query_proj", "key_proj", "value_proj"),
    "gpt2": ("c_attn",),
    "llama": ("q_proj", "k_proj", "v_proj"),
}


class Structure:
    """Parameter names of a fresh copy of the tiny model, grouped by where they sit."""

    def __init__(self, model: torch.nn.Module, family: str) -> None:
        self.model = model
        self.family = family
        self.params = dict(model.named_parameters())
        prefix = BLOCK_PREFIX[family]
        self.blocks = [{n for n in self.params if n.startswith(f"{prefix}.{i}.")} for i in range(L)]
        norm = FINAL_NORM.get(family)
        self.final = {n for n in self.params if norm and n.startswith(f"{norm}.")}
        self.pooler = {n for n in self.params if n.startswith("pooler.")}
        in_blocks = set().union(*self.blocks)
        self.embedding_side = set(self.params) - in_blocks - self.final - self.pooler

    def numel(self, names) -> int:
        return sum(self.params[n].numel() for n in names)

    def trained_names(self, k: int) -> set[str]:
        """What freeze(k) trains: blocks k.., the final norm unless k = L, the embedding side when k = 0."""
        names = set().union(*self.blocks[k:]) if k < L else set()
        if k < L:
            names |= self.final
        if k == 0:
            names |= self.embedding_side
        return names

    def lora_modules(self, first_block: int) -> list[tuple[str, torch.nn.Module]]:
        prefix = BLOCK_PREFIX[self.family]
        return [
            (name, module)
            for name, module in self.model.named_modules()
            if name.rsplit(".", 1)[-1] in ATTENTION[self.family]
            and any(name.startswith(f"{prefix}.{i}.") for i in range(first_block, L))
        ]


@pytest.fixture(scope="module")
def structure(tiny_model_dir):
    from transformers import AutoModel

    built = {}

    def get(family: str) -> Structure:
        if family not in built:
            built[family] = Structure(AutoModel.from_pretrained(tiny_model_dir(family)), family)
        return built[family]

    return get


def fit_one_step(model_dir: str, strategy: str, **params) -> Classifier:
    defaults = dict(
        model=model_dir,
        strategy=strategy,
        progress=False,
        device="cpu",
        cache=False,
        batch_size=16,
        **applicable(strategy, dict(max_steps=1, validation_fraction=0, C=1.0)),
    )
    return Classifier(**{**defaults, **params}).fit(TEXTS, LABELS)


HEAD = HIDDEN * N_CLASSES + N_CLASSES


@pytest.mark.parametrize("family", FAMILIES)
def test_structure_table_matches_the_models(family, structure):
    s = structure(family)
    assert all(s.blocks), "every block has parameters"
    assert s.numel(s.blocks[0]) == s.numel(s.blocks[1]) > 0
    assert bool(s.pooler) == (family in HAS_POOLER)
    assert bool(s.final) == (family in FINAL_NORM)
    assert s.numel(s.embedding_side) > 0
    assert len(s.lora_modules(0)) == L * len(ATTENTION[family])


# -- exact trainable-parameter counts ------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", [0, 1, 2])
def test_freeze_trains_exactly_the_blocks_above_k(family, k, structure, tiny_model_dir):
    s = structure(family)
    clf = fit_one_step(tiny_model_dir(family), "freeze", k=k)
    expected = s.trained_names(k)
    assert clf.fit_record_["trainable_parameters"] == s.numel(expected) + HEAD
    assert clf.fit_record_["total_parameters"] == s.numel(s.params) + HEAD
    # the flags themselves, name by name
    body = clf.backbone_.model
    trained = {n for n, p in body.named_parameters() if p.requires_grad}
    assert trained == expected
    for i in range(k):
        assert not any(p.requires_grad for p in clf.backbone_.blocks[i].parameters())
    if k >= 1:
        assert not any(body.get_parameter(n).requires_grad for n in s.embedding_side)
    assert not any(body.get_parameter(n).requires_grad for n in s.pooler)  # pooler never trains
    assert all(p.requires_grad for p in clf.predictor_.network.head.parameters())
    assert clf.fit_record_["steps"] == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_full_trains_everything_but_the_pooler(family, structure, tiny_model_dir):
    s = structure(family)
    clf = fit_one_step(tiny_model_dir(family), "full")
    assert clf.fit_record_["trainable_parameters"] == s.numel(s.params) - s.numel(s.pooler) + HEAD
    trained = {n for n, p in clf.backbone_.model.named_parameters() if p.requires_grad}
    assert trained == set(s.params) - s.pooler


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", [None, 1])
def test_reinit_trains_everything_above_k(family, k, structure, tiny_model_dir):
    s = structure(family)
    clf = fit_one_step(tiny_model_dir(family), "reinit", m=1, k=k)
    expected = s.trained_names(k or 0)
    assert clf.fit_record_["trainable_parameters"] == s.numel(expected) + HEAD
    assert {n for n, p in clf.backbone_.model.named_parameters() if p.requires_grad} == expected


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("r", "top_blocks"), [(2, None), (4, 1), (3, 2)])
def test_lora_trains_adapters_and_head_only(family, r, top_blocks, structure, tiny_model_dir):
    s = structure(family)
    first = L - top_blocks if top_blocks else 0
    adapted = s.lora_modules(first)
    # A is r x in, B is out x r: r * (in + out) for a Linear and for GPT-2's Conv1D alike
    expected_adapters = sum(r * sum(module.weight.shape) for _, module in adapted)
    clf = fit_one_step(tiny_model_dir(family), "lora", r=r, top_blocks=top_blocks, learning_rate=1e-3)
    assert clf.fit_record_["trainable_parameters"] == expected_adapters + HEAD
    trained = [n for n, p in clf.backbone_.model.named_parameters() if p.requires_grad]
    assert len(trained) == 2 * len(adapted)
    assert all(re.search(r"\.lora_[AB]\.", n) for n in trained), trained
    adapted_names = {name for name, _ in adapted}
    assert {re.sub(r"^base_model\.model\.|\.lora_[AB]\..*$", "", n) for n in trained} == adapted_names
    # the base weights stay frozen, pooler included
    assert not any(p.requires_grad for n, p in clf.backbone_.model.named_parameters() if "lora_" not in n)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", [0, 1])
def test_setfit_tunes_the_body_above_k(family, k, structure, tiny_model_dir):
    s = structure(family)
    clf = fit_one_step(tiny_model_dir(family), "setfit", k=k, num_iterations=1)
    expected = s.trained_names(k)
    # the logistic head is fitted afterwards, outside the count of the body's tuning
    assert clf.fit_record_["trainable_parameters"] == s.numel(expected)
    assert clf.fit_record_["total_parameters"] == s.numel(s.params)
    assert {n for n, p in clf.backbone_.model.named_parameters() if p.requires_grad} == expected


def test_features_trains_nothing(tiny_model_dir, structure):
    clf = fit_one_step(tiny_model_dir("bert"), "features")
    assert clf.fit_record_["trainable_parameters"] == 0
    assert clf.fit_record_["total_parameters"] == structure("bert").numel(structure("bert").params)


def test_head_over_several_layers_is_counted(tiny_model_dir, structure):
    s = structure("bert")
    clf = fit_one_step(tiny_model_dir("bert"), "freeze", k=1, layers="1,-1")
    assert clf.fit_record_["trainable_parameters"] == s.numel(s.blocks[1]) + 2 * HIDDEN * N_CLASSES + N_CLASSES


def test_training_never_touches_the_shared_backbone(tiny_model_dir):
    from unfreeze.models.loaded import shared_backbone

    clf = fit_one_step(tiny_model_dir("bert"), "full", max_steps=2, learning_rate=1e-2)
    shared = shared_backbone(tiny_model_dir("bert"), "cpu")
    assert shared.model is not clf.backbone_.model
    changed = [
        n
        for (n, a), (_, b) in zip(shared.model.named_parameters(), clf.backbone_.model.named_parameters())
        if not torch.equal(a, b)
    ]
    assert changed, "training changed the private copy"
    assert shared.fingerprint() == clf.base_fingerprint_


# -- bad parameters: one message shape --------------------------------------------------------------

CASES = [
    ("freeze", dict(k=9), "The 'k' parameter of freeze must be an int in [0, 2] for this model. Got 9."),
    ("freeze", dict(k=3), "The 'k' parameter of freeze must be an int in [0, 2] for this model. Got 3."),
    ("freeze", dict(k=-1), "The 'k' parameter of freeze must be an int >= 0. Got -1."),
    ("freeze", dict(k=1.5), "The 'k' parameter of freeze must be an int >= 0. Got 1.5."),
    ("freeze", dict(k="1"), "The 'k' parameter of freeze must be an int >= 0. Got '1'."),
    ("freeze", dict(k=True), "The 'k' parameter of freeze must be an int >= 0. Got True."),
    ("reinit", dict(m=0), "The 'm' parameter of reinit must be an int >= 1. Got 0."),
    ("reinit", dict(m=3), "The 'm' parameter of reinit must be an int in [1, 2] for this model. Got 3."),
    ("reinit", dict(m=1, k=2), "The 'k' parameter of reinit must be an int in [0, 1] for this model with m=1. Got 2."),
    ("reinit", dict(m=2, k=1), "The 'k' parameter of reinit must be an int in [0, 0] for this model with m=2. Got 1."),
    ("reinit", dict(k=-2), "The 'k' parameter of reinit must be an int >= 0. Got -2."),
    ("lora", dict(r=0), "The 'r' parameter of lora must be an int >= 1. Got 0."),
    ("lora", dict(r=2.0), "The 'r' parameter of lora must be an int >= 1. Got 2.0."),
    ("lora", dict(lora_dropout=1.5), "The 'lora_dropout' parameter of lora must be a float in [0.0, 1.0]. Got 1.5."),
    ("lora", dict(lora_dropout=-0.1), "The 'lora_dropout' parameter of lora must be a float in [0.0, 1.0]. Got -0.1."),
    ("lora", dict(lora_alpha=0), "The 'lora_alpha' parameter of lora must be a float > 0.0. Got 0."),
    ("lora", dict(top_blocks=3), "The 'top_blocks' parameter of lora must be an int in [1, 2] for this model. Got 3."),
    ("lora", dict(top_blocks=0), "The 'top_blocks' parameter of lora must be an int >= 1. Got 0."),
    (
        "lora",
        dict(target_modules=[]),
        "The 'target_modules' parameter of lora must be None, a comma-separated "
        "string or a list of module names. Got [].",
    ),
    ("setfit", dict(num_iterations=0), "The 'num_iterations' parameter of setfit must be an int >= 1. Got 0."),
    (
        "setfit",
        dict(k=2),
        "The 'k' parameter of setfit must be an int in [0, 1] for this model (k = L tunes nothing). Got 2.",
    ),
    ("setfit", dict(C=0), "The 'C' parameter of setfit must be a float > 0.0. Got 0."),
    ("features", dict(cv=1), "The 'cv' parameter of features must be an int >= 2. Got 1."),
    (
        "freeze",
        dict(k=1, layers="0"),
        "The 'layers' parameter of Classifier must be hidden states at or above the "
        "frozen blocks (>= 1) for freeze with k=1. Got '0'.",
    ),
    (
        "freeze",
        dict(k=2, layers="1,-1"),
        "The 'layers' parameter of Classifier must be hidden states at or above the "
        "frozen blocks (>= 2) for freeze with k=2. Got '1,-1'.",
    ),
    (
        "lora",
        dict(top_blocks=1, layers="0,-1"),
        "The 'layers' parameter of Classifier must be hidden states at or "
        "above the frozen blocks (>= 1) for lora with k=1. Got '0,-1'.",
    ),
    (
        "setfit",
        dict(k=1, layers="0,-1"),
        "The 'layers' parameter of Classifier must be hidden states at or above the "
        "frozen blocks (>= 1) for setfit with k=1. Got '0,-1'.",
    ),
    ("freeze", dict(epochs=0), "The 'epochs' parameter of Training must be an int >= 1. Got 0."),
    ("freeze", dict(max_steps=0), "The 'max_steps' parameter of Training must be an int >= 1. Got 0."),
    ("freeze", dict(patience=0), "The 'patience' parameter of Training must be an int >= 1. Got 0."),
    ("freeze", dict(learning_rate=0), "The 'learning_rate' parameter of Training must be a float > 0.0. Got 0."),
    (
        "freeze",
        dict(learning_rate=-1e-5),
        "The 'learning_rate' parameter of Training must be a float > 0.0. Got -1e-05.",
    ),
    (
        "freeze",
        dict(head_learning_rate=0.0),
        "The 'head_learning_rate' parameter of Training must be a float > 0.0. Got 0.0.",
    ),
    (
        "freeze",
        dict(validation_fraction=1),
        "The 'validation_fraction' parameter of Training must be a float in [0.0, 1.0). Got 1.",
    ),
    (
        "freeze",
        dict(warmup_ratio=1.5),
        "The 'warmup_ratio' parameter of Training must be a float in [0.0, 1.0]. Got 1.5.",
    ),
    (
        "freeze",
        dict(class_weight="x"),
        "The 'class_weight' parameter of Training must be one of None, 'balanced'. Got 'x'.",
    ),
    ("freeze", dict(prefix_cache="yes"), "The 'prefix_cache' parameter of Training must be True or False. Got 'yes'."),
    (
        "freeze",
        dict(group_by_length="yes"),
        "The 'group_by_length' parameter of Training must be True, False or None. Got 'yes'.",
    ),
]


@pytest.mark.parametrize(
    ("strategy", "params", "message"),
    CASES,
    ids=[f"{s}-{'-'.join(f'{k}={v}' for k, v in p.items())}" for s, p, _ in CASES],
)
def test_bad_parameters_are_refused_with_one_message_shape(strategy, params, message, tiny_model_dir):
    defaults = applicable(strategy, {"max_steps": 1, "validation_fraction": 0})
    clf = Classifier(
        model=tiny_model_dir("bert"), strategy=strategy, progress=False, device="cpu", **{**defaults, **params}
    )
    with pytest.raises(InvalidParameterError) as info:
        clf.fit(TEXTS, LABELS)
    assert str(info.value) == message
    assert re.match(r"^The '\w+' parameter of \w+ must be .+\. Got .+\.$", str(info.value))
    assert isinstance(info.value, ValueError)  # scikit-learn's parameter errors are ValueErrors
    assert not hasattr(clf, "fit_record_") and not hasattr(clf, "predictor_")


def test_an_unknown_strategy_name_lists_the_registered_ones(tiny_model_dir):
    clf = Classifier(model=tiny_model_dir("bert"), strategy="nope")
    with pytest.raises(InvalidParameterError) as info:
        clf.fit(TEXTS, LABELS)
    assert str(info.value) == (
        "The 'strategy' parameter of Classifier must be one of 'features', 'freeze', 'full', "
        "'reinit', 'lora', 'setfit', 'truncate', 'gradual', 'mix', 'bilstm', 'subspace' or a "
        "Strategy object. Got 'nope'."
    )


@pytest.mark.parametrize(
    ("strategy", "params", "named"),
    [
        ("freeze", dict(r=16), "'r' setting does not apply to strategy 'freeze': it is a parameter of lora"),
        (
            "freeze",
            dict(C=0.1),
            "'C' setting does not apply to strategy 'freeze': it is a parameter of features, setfit",
        ),
        (
            "full",
            dict(k=1),
            "'k' setting does not apply to strategy 'full': it is a parameter of freeze, reinit, setfit",
        ),
        ("features", dict(num_iterations=3), "it is a parameter of setfit"),
        ("lora", dict(banana=1), "'banana' setting does not apply to strategy 'lora': no strategy has it"),
    ],
)
def test_a_setting_of_another_strategy_is_refused_by_name(strategy, params, named):
    with pytest.raises(UnfreezeError, match=re.escape(named)):
        Classifier(strategy=strategy, **params)


@pytest.mark.parametrize(
    ("strategy", "training", "named"),
    [
        (
            "features",
            dict(epochs=3),
            "'epochs' is not used by strategy 'features' (the settings it reads: class_weight); "
            "strategies that use it: freeze, full, reinit, lora, setfit, truncate, gradual, mix, bilstm, "
            "subspace.",
        ),
        ("setfit", dict(patience=5), "'patience' is not used by strategy 'setfit'"),
        (
            "setfit",
            dict(validation_fraction=0.2),
            "strategies that use it: freeze, full, reinit, lora, truncate, gradual, mix, bilstm, subspace.",
        ),
        ("setfit", dict(head_learning_rate=0.1), "'head_learning_rate' is not used by strategy 'setfit'"),
        (
            "mix",
            dict(group_by_length=False),
            "'group_by_length' is not used by strategy 'mix' (the settings it reads: class_weight, epochs, "
            "grad_clip, learning_rate, max_steps, patience, validation_fraction, warmup_ratio, weight_decay); "
            "strategies that use it: freeze, full, reinit, lora, truncate, gradual, bilstm, subspace.",
        ),
    ],
)
def test_a_training_setting_the_strategy_does_not_read_is_refused_at_fit(strategy, training, named, tiny_model_dir):
    from unfreeze import Training

    clf = Classifier(model=tiny_model_dir("bert"), strategy=strategy, training=Training(**training), progress=False)
    with pytest.raises(UnfreezeError, match=re.escape(named)):
        clf.fit(TEXTS, LABELS)
    assert not hasattr(clf, "predictor_")


@pytest.mark.parametrize("target_modules", ["nope", ["missing"], "dense_typo,other"])
def test_lora_target_modules_that_match_nothing_are_user_errors(target_modules, tiny_model_dir):
    clf = Classifier(
        model=tiny_model_dir("bert"),
        strategy="lora",
        target_modules=target_modules,
        progress=False,
        device="cpu",
        max_steps=1,
        validation_fraction=0,
    )
    with pytest.raises(
        UnfreezeError,
        match=r"^LoRA target modules .+ match no linear layer in the blocks of "
        r"BertModel\. Check target_modules \(--target-modules\)\.$",
    ):
        clf.fit(TEXTS, LABELS)
    assert not hasattr(clf, "predictor_")


def test_lora_named_targets_are_used(tiny_model_dir, structure):
    # 'dense' matches attention.output.dense, intermediate.dense and output.dense in each block
    clf = fit_one_step(tiny_model_dir("bert"), "lora", r=2, target_modules="dense", top_blocks=1)
    trained = {n for n, p in clf.backbone_.model.named_parameters() if p.requires_grad}
    assert len(trained) == 2 * 3
    assert all(".encoder.layer.1." in n and ".dense.lora_" in n for n in trained)
    expected = 2 * (32 + 32) + 2 * (32 + 64) + 2 * (64 + 32)
    assert clf.fit_record_["trainable_parameters"] == expected + HEAD


@pytest.mark.parametrize(
    ("cls", "args"),
    [
        (Freeze, dict(k=-1)),
        (Reinit, dict(m=0)),
        (Lora, dict(r=0)),
        (Lora, dict(lora_dropout=1.5)),
        (SetFit, dict(num_iterations=0)),
    ],
)
def test_strategies_store_at_construction_and_validate_in_check(cls, args):
    strategy = cls(**args)  # scikit-learn's rule: the constructor only stores
    assert strategy.get_params()[next(iter(args))] == next(iter(args.values()))
    with pytest.raises(InvalidParameterError, match=rf"^The '{next(iter(args))}' parameter of {cls.name} must be"):
        strategy.check()


def test_frozen_blocks_of_each_strategy():
    assert Freeze().frozen_blocks(6) == 3
    assert Freeze().frozen_blocks(2) == 1
    assert Freeze(k=0).frozen_blocks(2) == 0
    assert Lora(top_blocks=1).frozen_blocks(6) == 5
    assert Lora().frozen_blocks(6) == 0
    assert Reinit(m=2).frozen_blocks(6) == 0 and Reinit(m=2, k=3).frozen_blocks(6) == 3


# -- reinit: exactly the top m blocks and the pooler -------------------------------------------------


def perturbed_copy(backbone: Backbone) -> Backbone:
    """A private copy whose every weight is moved away from any initialiser's values (ones, zeros, N(0, 0.02))."""
    copy_ = Backbone(copy.deepcopy(backbone.model), backbone.tokenizer, backbone.reference)
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in copy_.model.parameters():
            p.add_(0.5 + torch.rand(p.shape, generator=generator))
    return copy_


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("m", [1, 2])
def test_reinit_changes_exactly_the_top_m_blocks_and_the_pooler(family, m, tiny_backbone, structure):
    s = structure(family)
    backbone = perturbed_copy(tiny_backbone(family))
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    torch.manual_seed(0)
    body = Reinit(m=m).prepare(backbone)
    assert body is backbone.model
    reinitialised = set().union(*s.blocks[L - m :]) | s.pooler
    after = dict(backbone.model.named_parameters())
    assert set(after) == set(before)
    for name, value in after.items():
        if name in reinitialised:
            assert not torch.equal(value, before[name]), f"{name} was not re-initialised"
            # every element moved: no tensor is half re-initialised
            assert bool((value != before[name]).all()), name
        else:
            assert torch.equal(value, before[name]), f"{name} changed but is below the top {m} blocks"
    # the re-initialised values look like the model's own initialiser
    std = backbone.model.config.initializer_range
    for name in reinitialised:
        value = after[name]
        if name.endswith("weight") and value.ndim == 2:
            assert abs(value.mean().item()) < 0.2 * std, name
            assert 0.85 * std < value.std().item() < 1.15 * std, (name, value.std().item())
        elif name.endswith("bias"):
            assert torch.count_nonzero(value) == 0, name
        else:  # norm weights (LayerNorm, RMSNorm)
            assert torch.equal(value, torch.ones_like(value)), name
    # reinit trains everything above k, pooler excepted
    assert {n for n, p in after.items() if p.requires_grad} == s.trained_names(0)


def test_reinit_is_seeded(tiny_backbone):
    results = []
    for seed in (0, 0, 1):
        backbone = perturbed_copy(tiny_backbone("bert"))
        torch.manual_seed(seed)
        Reinit(m=1).prepare(backbone)
        results.append(backbone.blocks[1].attention.self.query.weight.detach().clone())
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])


def test_reinit_fit_starts_from_re_initialised_top_block(tiny_model_dir, tiny_backbone, monkeypatch):
    """Within a fit, the top block is re-initialised before the first step; the bottom one is the pretrained one."""
    import unfreeze.training.loop as loop

    seen = {}
    original = loop.train

    def spy(model, backbone, *args, **kwargs):
        seen["top"] = backbone.blocks[1].attention.self.query.weight.detach().clone()
        seen["bottom"] = backbone.blocks[0].attention.self.query.weight.detach().clone()
        return original(model, backbone, *args, **kwargs)

    monkeypatch.setattr("unfreeze.training.train", spy)
    fit_one_step(tiny_model_dir("bert"), "reinit", m=1, seed=4)
    pretrained = tiny_backbone("bert")
    assert torch.equal(seen["bottom"], pretrained.blocks[0].attention.self.query.weight)
    assert not torch.equal(seen["top"], pretrained.blocks[1].attention.self.query.weight)
    assert np.isclose(seen["top"].std().item(), 0.02, rtol=0.15)


@pytest.mark.parametrize(
    ("strategy", "params"),
    [
        ("freeze", dict(k=1)),
        ("mix", {}),
        ("bilstm", dict(hidden_size=8, token_layers="all")),
        ("subspace", dict(d=50, projection="dense")),
    ],
)
def test_the_rate_search_trains_each_rate_on_every_text_it_does_not_score_on(strategy, params, tiny_model_dir):
    # the search holds out its validation texts and passes them to the strategy: a strategy that
    # split its own validation set again would train on fewer texts (and stop early on other ones)
    from unfreeze import Training

    texts, labels = TEXTS * 4, LABELS * 4
    clf = Classifier(
        tiny_model_dir("bert"),
        strategy=strategy,
        progress=False,
        device="cpu",
        cache=False,
        batch_size=8,
        training=Training(epochs=1, learning_rate=[1e-3, 1e-2], validation_fraction=0.25),
        **params,
    ).fit(texts, labels)
    n_val = clf.fit_record_["validation"]["n"]
    assert 0 < n_val < len(texts)
    assert clf.fit_record_["examples_seen"] == len(texts) - n_val
