"""ONNX export: graphs of tiny models of every family match PyTorch within 1e-4, int8 keeps labels on an
easy task, one graph answers every head, LoRA is merged without touching the caller's model, and bad
exports fail with one line and leave nothing behind."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

from unfreeze.errors import UnfreezeError
from unfreeze.export import (
    ExportCheckError,
    ExportHead,
    OnnxClassifier,
    OnnxEncoder,
    OnnxGraph,
    OnnxNetwork,
    check_export,
    export_pooled,
    load_export,
    pooled_output_name,
    read_manifest,
    torch_heads_proba,
    write_heads_export,
    write_network_export,
)
from unfreeze.export.runtime import NumpyLogisticHead
from unfreeze.features.embed import forward_pooled
from unfreeze.features.logistic import LogisticHead
from unfreeze.models.backbone import Backbone
from unfreeze.models.pooling import pool

ATOL = 1e-4


def need_onnx_extra() -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'unfreeze[onnx]') is not installed")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript (the onnx extra)")


@pytest.fixture(autouse=True)
def onnx_extra(request):
    """Every test needs the onnx extra except the one that checks what happens without it."""
    if "without_onnxruntime" not in request.node.name:
        need_onnx_extra()


TEXTS = [
    f"{w} film number {i} with {'good' if i % 2 else 'bad'} acting" + " and more" * (i % 4)
    for i, w in enumerate(["a", "the", "one", "this", "that", "some", "my", "our"] * 2)
]
LABELS = [i % 2 for i in range(len(TEXTS))]
TOPICS = [("sport", "news", "art")[i % 3] for i in range(len(TEXTS))]
# unseen, of very different lengths: batches mix heavy and no padding
NEW = [
    "x",
    "a good film about sport and nothing else, told slowly over three long hours of screen time",
    "bad news",
    "good good good",
    "a much longer sentence than most, with commas, digits 1 2 3 and symbols &",
]
ALL_FAMILIES = ("bert", "roberta", "distilbert", "mpnet", "deberta-v2", "gpt2", "llama")
# make test-fast exports one encoder and one decoder family; make test exports them all
FAST_FAMILIES = ("bert", "gpt2")


def families(*names: str) -> list:
    """``names`` as parameters, those outside FAST_FAMILIES marked slow."""
    return [pytest.param(name, marks=() if name in FAST_FAMILIES else pytest.mark.slow) for name in names]


def fit_head(backbone: Backbone, layers: list[int], pooling: str, labels) -> LogisticHead:
    encoded = backbone.encode(TEXTS, 64)
    pooled = forward_pooled(backbone, encoded, [(layer, pooling) for layer in layers], 4, progress=False)
    features = np.concatenate([pooled[(layer, pooling)] for layer in layers], axis=1)
    classes = sorted(set(labels))
    return LogisticHead(C=1.0).fit(features, np.array([classes.index(y) for y in labels]))


def left_padded_torch(backbone: Backbone, inputs, wanted) -> dict:
    """PyTorch's pooled states on a left-padded batch (what the graph must give for the same batch)."""
    encoded = backbone.encode(inputs, 64)
    width = max(encoded.lengths)
    ids = torch.full((len(inputs), width), backbone.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(encoded.input_ids):
        ids[row, width - len(seq) :] = torch.tensor(seq)
        mask[row, width - len(seq) :] = 1
    with torch.inference_mode():
        out = backbone.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return {(layer, p): pool(out.hidden_states[layer].float(), mask, p).numpy() for layer, p in wanted}


# -- pooled graphs: every family, every pooling, right and left padding -----------------------------


@pytest.mark.parametrize("family", families(*ALL_FAMILIES))
def test_pooled_export_matches_forward_pooled(tiny_backbone, tmp_path, family):
    backbone = tiny_backbone(family)
    top = backbone.num_blocks
    pooling = "last" if backbone.is_decoder else "mean"
    heads = {
        "default": ExportHead(pooling, [top], ["bad", "good"], fit_head(backbone, [top], pooling, LABELS)),
        "lower": ExportHead("max", [0, 1], ["bad", "good"], fit_head(backbone, [0, 1], "max", LABELS)),
    }
    result = write_heads_export(backbone, heads, tmp_path / "onnx", check_inputs=TEXTS, batch_size=4)
    assert result.check.fp32_max_abs_diff <= ATOL

    wanted = [(top, pooling), (0, "max"), (1, "max")]
    reference = forward_pooled(backbone, backbone.encode(NEW, 64), wanted, 2, progress=False)
    encoder = OnnxEncoder(tmp_path / "onnx", batch_size=2)
    got = encoder.pooled(NEW)
    assert set(got) == set(wanted)
    for key in wanted:
        assert np.abs(got[key] - reference[key]).max() <= ATOL, key

    # left padding: the graph reads the mask, as PyTorch does (last-token pooling finds the last real token)
    left = OnnxEncoder(tmp_path / "onnx", batch_size=len(NEW), padding_side="left").pooled(NEW)
    expected = left_padded_torch(backbone, NEW, wanted)
    for key in wanted:
        assert np.abs(left[key] - expected[key]).max() <= ATOL, key

    # and the heads: probabilities within 1e-4 of the PyTorch path on unseen texts
    proba = load_export(tmp_path / "onnx").predict_proba_heads(NEW)
    torch_proba = torch_heads_proba(backbone, heads, NEW, 64)
    for name in heads:
        assert np.abs(proba[name] - torch_proba[name]).max() <= ATOL


@pytest.mark.parametrize("family", families("gpt2", "llama"))
def test_torchscript_graph_of_a_decoder_handles_both_padding_sides(tiny_backbone, tmp_path, family):
    """The raw graph, from the TorchScript exporter this time: right padding gives forward_pooled's
    numbers; a left-padded batch gives PyTorch's on that batch (the last real token found from the mask)."""
    backbone = tiny_backbone(family)
    top = backbone.num_blocks
    wanted = [(top, "last"), (1, "last"), (top, "mean")]
    graph = OnnxGraph(export_pooled(backbone, wanted, tmp_path / "pooled.onnx", exporter="torchscript"))
    encoded = backbone.encode(NEW, 64)
    right = graph.run({k: v.numpy() for k, v in backbone.collate(encoded, range(len(NEW))).items()})
    reference = forward_pooled(backbone, encoded, wanted, len(NEW), progress=False)
    left_batch = {
        "input_ids": np.full((len(NEW), max(encoded.lengths)), backbone.tokenizer.pad_token_id),
        "attention_mask": np.zeros((len(NEW), max(encoded.lengths)), dtype=np.int64),
    }
    for row, seq in enumerate(encoded.input_ids):
        left_batch["input_ids"][row, -len(seq) :] = seq
        left_batch["attention_mask"][row, -len(seq) :] = 1
    left = graph.run(left_batch)
    expected_left = left_padded_torch(backbone, NEW, wanted)
    for layer, pooling in wanted:
        name = pooled_output_name(layer, pooling)
        assert np.abs(right[name] - reference[(layer, pooling)]).max() <= ATOL
        assert np.abs(left[name] - expected_left[(layer, pooling)]).max() <= ATOL

    # one row of one token: neither dynamic axis was fixed at the traced sizes
    single = graph.run({"input_ids": np.array([[2023]]), "attention_mask": np.array([[1]])})
    with torch.inference_mode():
        out = backbone.model(input_ids=torch.tensor([[2023]]), attention_mask=torch.tensor([[1]]))
    assert np.abs(single[pooled_output_name(top, "last")] - out.last_hidden_state[:, -1].numpy()).max() <= ATOL


def test_text_pairs_and_token_types(tiny_backbone, tmp_path):
    backbone = tiny_backbone("bert")
    pairs = [(t, NEW[i % len(NEW)]) for i, t in enumerate(TEXTS)]
    encoded = backbone.encode(pairs, 64)
    top = backbone.num_blocks
    pooled = forward_pooled(backbone, encoded, [(top, "cls")], 4, progress=False)[(top, "cls")]
    head = LogisticHead(C=1.0).fit(pooled, np.array(LABELS))
    write_heads_export(
        backbone, {"default": ExportHead("cls", [top], [0, 1], head)}, tmp_path / "onnx", check_inputs=pairs
    )
    manifest = read_manifest(tmp_path / "onnx")
    assert manifest["token_type_ids"] is True
    got = OnnxEncoder(tmp_path / "onnx").pooled(pairs)[(top, "cls")]
    assert np.abs(got - pooled).max() <= ATOL


def test_numpy_head_matches_logistic_head():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 5))
    for y in (rng.integers(0, 2, 60), rng.integers(0, 3, 60)):
        head = LogisticHead(C=1.0).fit(features, y)
        tensors, _ = head.state()
        mine = NumpyLogisticHead(
            *(np.asarray(tensors[k], dtype=np.float64) for k in ("mean", "scale", "coef", "intercept"))
        )
        assert np.abs(mine.predict_proba(features) - head.predict_proba(features)).max() < 1e-12


def test_export_predicts_without_the_model_files(tiny_model_dir, tmp_path):
    """Everything prediction needs is in the export folder: the model it came from can be gone."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir("roberta"), model_dir)
    backbone = Backbone.load(str(model_dir), device="cpu")
    top = backbone.num_blocks
    head = fit_head(backbone, [top], "mean", TOPICS)
    write_heads_export(
        backbone,
        {"default": ExportHead("mean", [top], ["art", "news", "sport"], head)},
        tmp_path / "onnx",
        exporter="torchscript",
        max_length=8,
    )
    expected = torch_heads_proba(backbone, {"default": ExportHead("mean", [top], [], head)}, NEW, 8)["default"]
    del backbone
    shutil.rmtree(model_dir)
    clf = load_export(tmp_path / "onnx")
    assert clf.max_length == 8  # NEW has texts over 8 tokens: truncated as the bundle was
    assert np.abs(clf.predict_proba(NEW) - expected).max() <= ATOL


# -- fine-tuned networks, LoRA merged --------------------------------------------------------------


def network(backbone: Backbone, pooling: str, layers, n_classes: int = 3, seed: int = 0):
    from unfreeze.training import TextClassificationModel

    torch.manual_seed(seed)
    net = TextClassificationModel(backbone, n_classes, pooling, layers)
    torch.nn.init.normal_(net.head.weight, std=0.5)
    return net


@pytest.mark.parametrize("family,pooling", [("bert", "mean"), ("llama", "last")])
def test_network_export_matches_model_logits(tiny_model_dir, tmp_path, family, pooling):
    backbone = Backbone.load(tiny_model_dir(family), device="cpu")
    net = network(backbone, pooling, [1, backbone.num_blocks])
    net.train()  # the export must not depend on (or change) the caller's mode
    write_network_export(
        net,
        backbone,
        ["sport", "news", "art"],
        tmp_path / "onnx",
        max_length=64,
        check_inputs=TEXTS,
        check_labels=TOPICS,
        int8=True,
    )
    assert net.training
    manifest = read_manifest(tmp_path / "onnx")
    assert manifest["kind"] == "network" and set(manifest["graphs"]) == {"fp32", "int8"}
    assert manifest["check"]["fp32_max_abs_diff"] <= ATOL
    assert manifest["check"]["int8"]["default"]["accuracy_delta"] is not None

    net.eval()
    encoded = backbone.encode(NEW, 64)
    with torch.inference_mode():
        expected = torch.cat([net(backbone.collate(encoded, [i])) for i in range(len(NEW))]).numpy()
    got = OnnxNetwork(tmp_path / "onnx", batch_size=2).logits(NEW)
    assert np.abs(got - expected).max() <= ATOL
    clf = load_export(tmp_path / "onnx")
    assert list(clf.classes_) == ["sport", "news", "art"]
    assert list(clf.predict(NEW)) == [["sport", "news", "art"][i] for i in expected.argmax(1)]


def lora_backbone(model_dir: str, targets: list[str]) -> Backbone:
    """A backbone wrapped in PEFT LoRA adapters the way strategies/lora.py does, with non-zero B
    matrices (fresh adapters are zero, which would make merging a no-op)."""
    from peft import LoraConfig, get_peft_model

    backbone = Backbone.load(model_dir, device="cpu")
    names = [n for n, m in backbone.model.named_modules() if n.rsplit(".", 1)[-1] in targets]
    backbone.model = get_peft_model(
        backbone.model,
        LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.1, target_modules=names, bias="none", fan_in_fan_out="gpt2" in model_dir
        ),
    )
    torch.manual_seed(1)
    for name, param in backbone.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.3)
    return backbone


@pytest.mark.parametrize(
    "family,targets", [("bert", ["query", "value"]), pytest.param("gpt2", ["c_attn"], marks=pytest.mark.slow)]
)
def test_lora_network_is_merged_on_a_copy(tiny_model_dir, tmp_path, family, targets):
    backbone = lora_backbone(tiny_model_dir(family), targets)
    pooling = "last" if backbone.is_decoder else "mean"
    net = network(backbone, pooling, [backbone.num_blocks], n_classes=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    write_network_export(net, backbone, ["bad", "good"], tmp_path / "onnx", check_inputs=TEXTS)
    # the caller's model still has its adapters, unmerged, and the same weights
    assert any("lora_" in k for k in net.state_dict())
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    from unfreeze.export import torch_network_proba

    expected = torch_network_proba(net, backbone, NEW, 256)
    got = load_export(tmp_path / "onnx").predict_proba(NEW)
    assert np.abs(got - expected).max() <= ATOL


# -- int8 ------------------------------------------------------------------------------------------

POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "lovely", "brilliant", "fine"]
NEGATIVE = ["bad", "awful", "terrible", "horrible", "dreadful", "poor", "boring", "weak"]


def easy_task(n: int, seed: int):
    """Two clearly separated groups: texts made only of positive words, or only of negative ones."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        words = POSITIVE if i % 2 else NEGATIVE
        texts.append(" ".join(rng.choice(words, size=int(rng.integers(3, 9)))))
        labels.append("pos" if i % 2 else "neg")
    return texts, labels


def test_int8_labels_agree_on_an_easy_task(tiny_backbone, tmp_path):
    backbone = tiny_backbone("bert")
    top = backbone.num_blocks
    train_texts, train_labels = easy_task(60, seed=0)
    test_texts, test_labels = easy_task(40, seed=1)
    features = forward_pooled(backbone, backbone.encode(train_texts, 64), [(top, "mean")], 16, progress=False)[
        (top, "mean")
    ]
    head = LogisticHead(C=1.0).fit(features, np.array([["neg", "pos"].index(y) for y in train_labels]))
    result = write_heads_export(
        backbone,
        {"default": ExportHead("mean", [top], ["neg", "pos"], head)},
        tmp_path / "onnx",
        int8=True,
        check_inputs=test_texts,
        check_labels=test_labels,
        min_int8_agreement=0.95,
    )
    int8 = result.check.int8["default"]
    assert int8.agreement == 1.0
    assert int8.accuracy_torch >= 0.95 and abs(int8.accuracy_delta) <= 0.025
    fp32, quantised = load_export(tmp_path / "onnx"), load_export(tmp_path / "onnx", precision="int8")
    assert list(quantised.predict(test_texts)) == list(fp32.predict(test_texts))
    # ONNX Runtime's quantiser did the work: integer matrix products, activations quantised per batch
    import onnx

    ops = {node.op_type for node in onnx.load(str(tmp_path / "onnx" / "model.int8.onnx")).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops
    assert read_manifest(tmp_path / "onnx")["quantization"]["per_channel"] is True
    assert read_manifest(tmp_path / "onnx")["quantization"]["reduce_range"] is True


def test_int8_can_keep_the_feed_forward_outputs_in_fp32(multihead_export, tmp_path):
    import onnx

    from unfreeze.export import ffn_output_nodes, quantize_int8

    _, _, folder = multihead_export
    kept = ffn_output_nodes(folder / "model.onnx")
    assert len(kept) == 2  # one feed-forward output projection per block of the 2-block model
    quantize_int8(folder / "model.onnx", tmp_path / "int8.onnx", keep_ffn_output=True)
    nodes = {node.name: node.op_type for node in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    assert all(nodes[name] == "MatMul" for name in kept)
    assert "MatMulInteger" in nodes.values()


def test_int8_weights_are_7_bit_by_default_and_8_bit_with_full_range(multihead_export, tmp_path):
    import onnx
    from onnx import numpy_helper

    from unfreeze.export import quantize_int8

    _, _, folder = multihead_export

    def largest_weight(path) -> int:
        model = onnx.load(str(path))
        weights = [
            numpy_helper.to_array(init) for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8
        ]
        return max(int(np.abs(w.astype(np.int32)).max()) for w in weights)

    quantize_int8(folder / "model.onnx", tmp_path / "reduced.onnx")
    quantize_int8(folder / "model.onnx", tmp_path / "full.onnx", reduce_range=False)
    # ONNX Runtime's reduce_range: weights in 7 bits, so u8 x s8 products cannot saturate without VNNI
    assert largest_weight(tmp_path / "reduced.onnx") <= 64 < largest_weight(tmp_path / "full.onnx") <= 127


# -- multi-head: one graph, every head ----------------------------------------------------------------


@pytest.fixture(scope="module")
def multihead_export(tiny_backbone, tmp_path_factory):
    need_onnx_extra()  # module-scoped: set up before the autouse check runs
    backbone = tiny_backbone("bert")
    top = backbone.num_blocks
    heads = {
        "sentiment": ExportHead("mean", [top], ["bad", "good"], fit_head(backbone, [top], "mean", LABELS)),
        "topic": ExportHead(
            "cls", [top - 1, top], ["art", "news", "sport"], fit_head(backbone, [top - 1, top], "cls", TOPICS)
        ),
        "embeddings": ExportHead("max", [0], [0, 1], fit_head(backbone, [0], "max", LABELS)),
        "again": ExportHead("mean", [top], [0, 1], fit_head(backbone, [top], "mean", LABELS)),
    }
    folder = tmp_path_factory.mktemp("multihead") / "onnx"
    write_heads_export(backbone, heads, folder, check_inputs=TEXTS, int8=True)
    return backbone, heads, folder


def test_multihead_export_answers_every_head_from_one_pass(multihead_export, monkeypatch):
    backbone, heads, folder = multihead_export
    manifest = read_manifest(folder)
    # four heads, four distinct (layer, pooling) pairs: "again" shares "sentiment"'s output
    assert len(manifest["outputs"]) == 4
    runs = []
    original = OnnxGraph.run
    monkeypatch.setattr(OnnxGraph, "run", lambda self, *a, **k: runs.append(1) or original(self, *a, **k))
    clf = load_export(folder, batch_size=len(NEW))
    proba = clf.predict_proba_heads(NEW)
    assert len(runs) == 1
    assert list(proba) == list(heads)
    expected = torch_heads_proba(backbone, heads, NEW, 256)
    for name in heads:
        assert np.abs(proba[name] - expected[name]).max() <= ATOL
    assert list(clf.predict_heads(NEW, ["topic"])) == ["topic"]
    assert list(clf.classes("topic")) == ["art", "news", "sport"]
    assert clf.predict(NEW, head="topic").tolist() == [["art", "news", "sport"][i] for i in expected["topic"].argmax(1)]
    with pytest.raises(UnfreezeError, match="Unknown head 'nope'"):
        clf.predict(NEW, head="nope")
    assert clf.predict_proba([], head="sentiment").shape == (0, 2)


def test_failed_check_leaves_nothing_behind(multihead_export, tmp_path, monkeypatch):
    backbone, heads, _ = multihead_export
    import unfreeze.export.onnx as onnx_module

    def off_by_a_bit(*args, **kwargs):
        return {name: p * 0.999 + 0.0005 for name, p in torch_heads_proba(*args, **kwargs).items()}

    monkeypatch.setattr(onnx_module, "torch_heads_proba", off_by_a_bit)
    # the folder mechanics do not depend on the exporter: the TorchScript one is ten times quicker
    with pytest.raises(ExportCheckError, match=r"do(es)? not match PyTorch.*nothing was exported"):
        write_heads_export(backbone, heads, tmp_path / "onnx", exporter="torchscript")
    assert list(tmp_path.iterdir()) == []  # no export, no temporary folder

    # an export already there survives a failed re-export unchanged
    monkeypatch.undo()
    write_heads_export(backbone, {"sentiment": heads["sentiment"]}, tmp_path / "onnx", exporter="torchscript")
    before = (tmp_path / "onnx" / "export.json").read_text()
    monkeypatch.setattr(onnx_module, "torch_heads_proba", off_by_a_bit)
    with pytest.raises(ExportCheckError):
        write_heads_export(backbone, heads, tmp_path / "onnx", exporter="torchscript")
    assert (tmp_path / "onnx" / "export.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["onnx"]


def test_check_export_reports_int8_and_refuses_wrong_references(multihead_export):
    _, heads, folder = multihead_export
    clf = load_export(folder)
    reference = clf.predict_proba_heads(TEXTS)
    check = check_export(folder, TEXTS, reference, {"sentiment": [["bad", "good"][y] for y in LABELS]})
    assert check.fp32_max_abs_diff == 0.0
    assert set(check.int8) == set(heads)
    assert check.int8["sentiment"].accuracy_delta is not None and check.int8["topic"].accuracy_delta is None
    assert any(line.startswith("int8 [sentiment]") for line in check.lines())
    flipped = {**reference, "topic": reference["topic"][:, ::-1]}
    with pytest.raises(ExportCheckError):
        check_export(folder, TEXTS, flipped)


# -- errors ----------------------------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_damaged_graph_is_named_in_one_line(multihead_export, tmp_path):
    _, _, folder = multihead_export
    copy = tmp_path / "onnx"
    shutil.copytree(folder, copy)
    graph = copy / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # flipped bytes: still parses, wrong weights
    graph.write_bytes(bytes(data))
    with pytest.raises(UnfreezeError) as exc:
        load_export(copy)
    assert one_line(exc).startswith(f"the export at {graph} is damaged: ")

    graph.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(UnfreezeError) as exc:
        load_export(copy, verify=False)  # ONNX Runtime's own error, in one line
    assert one_line(exc).startswith(f"the export at {graph} is damaged: ")

    graph.unlink()
    with pytest.raises(UnfreezeError, match=r"is damaged: model\.onnx is missing"):
        load_export(copy)
    (copy / "export.json").write_text("{ not json")
    with pytest.raises(UnfreezeError, match=r"is damaged: export\.json is not valid JSON"):
        load_export(copy)
    with pytest.raises(UnfreezeError, match="is not an ONNX export"):
        load_export(tmp_path)


def test_int8_missing_and_manifest_escape(multihead_export, tmp_path):
    backbone, heads, _ = multihead_export
    write_heads_export(backbone, {"sentiment": heads["sentiment"]}, tmp_path / "onnx", exporter="torchscript")
    with pytest.raises(UnfreezeError, match="has no int8 graph"):
        load_export(tmp_path / "onnx", precision="int8")
    manifest = json.loads((tmp_path / "onnx" / "export.json").read_text())
    manifest["heads"]["sentiment"]["file"] = "../../secret.safetensors"
    (tmp_path / "onnx" / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(UnfreezeError, match="outside the export folder"):
        load_export(tmp_path / "onnx")
    del manifest["max_length"]
    (tmp_path / "onnx" / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(UnfreezeError, match=r"is damaged: export\.json lacks 'max_length'"):
        load_export(tmp_path / "onnx")


def test_target_that_is_not_an_export_is_refused(multihead_export, tmp_path):
    backbone, heads, _ = multihead_export
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UnfreezeError, match="exists and is not an ONNX export"):
        write_heads_export(backbone, heads, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_without_onnxruntime_says_how_to_install(tiny_backbone, tmp_path, monkeypatch):
    backbone = tiny_backbone("bert")
    top = backbone.num_blocks
    heads = {"default": ExportHead("mean", [top], ["bad", "good"], fit_head(backbone, [top], "mean", LABELS))}
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(UnfreezeError) as exc:
        load_export(tmp_path)
    assert one_line(exc) == "ONNX Runtime is not installed; install it with: pip install 'unfreeze[onnx]'"
    with pytest.raises(UnfreezeError, match=r"pip install 'unfreeze\[onnx\]'"):
        write_heads_export(backbone, heads, tmp_path / "onnx")
    assert list(tmp_path.iterdir()) == []


def test_unsupported_architecture_is_named(tiny_model_dir, tmp_path):
    backbone = Backbone.load(tiny_model_dir("bert"), device="cpu")
    forward = backbone.model.forward

    def with_an_op_onnx_lacks(*args, **kwargs):
        out = forward(*args, **kwargs)
        h = out.last_hidden_state
        # eigenvalues have no ONNX translation; adding zero of them keeps the op in the graph
        out.last_hidden_state = h + torch.linalg.eigvalsh(h @ h.transpose(-1, -2)).sum(-1)[..., None, None] * 0
        return out

    backbone.model.forward = with_an_op_onnx_lacks
    with pytest.raises(UnfreezeError) as exc:
        export_pooled(backbone, [(backbone.num_blocks, "mean")], tmp_path / "g.onnx")
    message = one_line(exc)
    assert message.startswith("Cannot export BertModel (model type 'bert') to ONNX with torch's dynamo exporter: ")
    assert "eigh" in message  # the innermost reason, not torch's generic "step 3/3"
    assert "\x1b" not in message


def test_bad_parameters(multihead_export, tmp_path):
    backbone, heads, folder = multihead_export
    with pytest.raises(UnfreezeError, match="'exporter' parameter"):
        write_heads_export(backbone, heads, tmp_path / "a", exporter="magic")
    with pytest.raises(UnfreezeError, match="'pooling' parameter"):
        export_pooled(backbone, [(1, "median")], tmp_path / "b.onnx")
    with pytest.raises(UnfreezeError, match="Layer 9 does not exist"):
        export_pooled(backbone, [(9, "mean")], tmp_path / "c.onnx")
    with pytest.raises(UnfreezeError, match="'precision' parameter"):
        OnnxClassifier(folder, precision="fp16")
    with pytest.raises(UnfreezeError, match="a 'heads' export"):
        OnnxNetwork(folder)
    assert not (tmp_path / "a").exists()
