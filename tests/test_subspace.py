"""``subspace``: theta in a random subspace of the weights (Fastfood or dense projection, SAID); ``intrinsic-dim``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import sentiment_task_fixed
from unfreeze import Classifier
from unfreeze.cli import app
from unfreeze.errors import UnfreezeError
from unfreeze.models.backbone import Backbone
from unfreeze.strategies import Subspace
from unfreeze.strategies.subspace import projected_parameters
from unfreeze.training.projection import (
    DENSE_LIMIT,
    DenseProjection,
    FastfoodProjection,
    attach_subspace,
    fwht,
    hadamard,
    subspace_of,
)

FAMILIES = ("bert", "gpt2", "llama")


def fit_subspace(model_dir: str, seed: int = 0, n: int = 48, **params) -> Classifier:
    texts, labels = sentiment_task_fixed(n, seed=0)
    training = {
        k: params.pop(k) for k in ("epochs", "max_steps", "learning_rate", "validation_fraction") if k in params
    }
    training.setdefault("max_steps", 3)
    training.setdefault("learning_rate", "fixed")  # one fit: these tests are about the subspace, not the rate search
    clf = Classifier(
        model=model_dir, strategy=Subspace(**params), batch_size=16, seed=seed, progress=False, device="cpu", **training
    )
    return clf.fit(texts, labels)


def private_copy(backbone: Backbone) -> Backbone:
    return Backbone(copy.deepcopy(backbone.model), backbone.tokenizer, backbone.reference)


# -- the transform and the projection ------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 16, 64, 2048])
def test_fwht_is_the_walsh_hadamard_matrix_in_sylvester_order(n):
    from scipy.linalg import hadamard as scipy_hadamard

    assert np.array_equal(hadamard(n).numpy(), scipy_hadamard(n))
    x = torch.randn(3, n, dtype=torch.float64)
    torch.testing.assert_close(fwht(x), x @ torch.from_numpy(scipy_hadamard(n)).double())


@pytest.mark.parametrize("sizes, d", [([300, 77, 1000], 20), ([50], 1), ([40, 24], 64), ([10, 6], 100)])
def test_fastfood_equals_its_definition_built_from_dense_matrices(sizes, d):
    """P theta computed fast equals R [S H G Pi H B per block] theta with explicit Hadamard, permutation and
    diagonal matrices; theta's gradient equals P^T g."""
    projection = FastfoodProjection(sizes, d, seed=3)
    reference = torch.cat(projection.dense_blocks(), 0)[: projection.D, :d]
    dense = projection.matrix().double()
    torch.testing.assert_close(dense, reference, rtol=1e-5, atol=1e-6)
    theta = torch.randn(d, requires_grad=True)
    out = projection(theta)
    torch.testing.assert_close(out.double(), reference @ theta.detach().double(), rtol=1e-4, atol=1e-5)
    g = torch.randn(projection.D)
    out.backward(g)
    torch.testing.assert_close(theta.grad.double(), reference.T @ g.double(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["fastfood", "dense"])
def test_projection_columns_have_unit_norm_per_tensor_and_are_nearly_orthogonal(kind):
    """Each projected tensor's block of P has columns of norm ~1 (entries ~ N(0, 1/D_i)), nearly orthogonal."""
    sizes = [120_000, 30_000] if kind == "fastfood" else [100_000, 20_000]
    d = 48
    projection = (FastfoodProjection if kind == "fastfood" else DenseProjection)(sizes, d, seed=0)
    matrix = projection.matrix().double()
    start = 0
    for size in sizes:
        block = matrix[start : start + size]
        start += size
        norms = block.norm(dim=0)
        assert abs(norms.mean().item() - 1) < 0.02, norms
        assert (norms - 1).abs().max().item() < 0.05
        gram = block.T @ block
        off_diagonal = gram - torch.diag(torch.diag(gram))
        # independent directions in `size` dimensions: |cos| ~ 1/sqrt(size)
        assert off_diagonal.abs().max().item() < 6 / size**0.5
        entries = block * size**0.5
        assert abs(entries.mean().item()) < 0.02 and abs(entries.std().item() - 1) < 0.02
        # Gaussian-shaped entries: about 68% within one standard deviation
        assert abs((entries.abs() < 1).double().mean().item() - 0.6827) < 0.02


@pytest.mark.parametrize("d", [1, 2, 3])
def test_fastfood_is_finite_for_the_smallest_d_even_where_a_normal_is_exactly_zero(d):
    """n = 1 blocks hold one float32 normal each: over millions of blocks some are exactly 0 (seed 0 has one),
    and S = s / ||G_b|| must not turn that row into 0 x inf."""
    projection = FastfoodProjection([3_000_000], d, seed=0)
    if d == 1:
        assert (projection.gauss == 0).any()  # the case this test is about occurs with this seed
    assert torch.isfinite(projection.scale).all()
    theta = torch.randn(d, requires_grad=True)
    out = projection(theta)
    out.backward(torch.ones_like(out))
    assert torch.isfinite(out).all() and torch.isfinite(theta.grad).all()
    assert abs(out.square().sum().item() / theta.detach().square().sum().item() - 1) < 0.05  # unit-norm columns


@pytest.mark.parametrize("kind", ["fastfood", "dense"])
def test_the_same_seed_gives_the_same_projection_and_another_seed_another(kind):
    cls = FastfoodProjection if kind == "fastfood" else DenseProjection
    first, again, other = cls([500, 300], 40, seed=7), cls([500, 300], 40, seed=7), cls([500, 300], 40, seed=8)
    assert torch.equal(first.matrix(), again.matrix()) and first.digest() == again.digest()
    assert not torch.allclose(first.matrix(), other.matrix()) and first.digest() != other.digest()


def test_a_large_subspace_never_allocates_a_d_by_D_matrix():
    """D ~ 2.1 million projected weights and d = 65,536 (D x d = 1.4e11 numbers, 550 GB): every tensor that the
    forward and backward pass create holds at most a few D numbers, and the projection's buffers 3 D."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class TwoLayers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second = torch.nn.Linear(1024, 1024), torch.nn.Linear(1024, 1024)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.second(torch.nn.functional.gelu(self.first(x)))

    model = TwoLayers()
    targets = list(model.named_parameters())
    D = sum(p.numel() for _, p in targets)
    d = 65_536
    subspace = attach_subspace(model, targets, d, "fastfood", seed=0, said=True)
    buffers = sum(b.numel() for b in subspace.buffers())
    assert buffers <= 3.2 * D + d  # signs (d), permutation and gauss (D, padded to whole blocks), scale (D)

    largest = []

    class Largest(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    largest.append(t.numel())
            return out

    with torch.no_grad():
        subspace.theta.normal_()
    with Largest():
        model(torch.randn(4, 1024)).square().sum().backward()
    assert subspace.theta.grad is not None and subspace.theta.grad.abs().sum() > 0
    padded = subspace.projection.blocks * subspace.projection.n
    assert max(largest) <= max(padded, D) < 2 * D
    assert max(largest) < D * d / 1000


def test_dense_projection_is_for_tiny_sizes_only(tiny_backbone):
    with pytest.raises(ValueError, match="exceeds"):
        DenseProjection([DENSE_LIMIT], 2, seed=0)
    backbone = tiny_backbone("bert")
    total = sum(p.numel() for _, p in projected_parameters(backbone, "blocks"))
    d = DENSE_LIMIT // total + 1
    with pytest.raises(UnfreezeError, match="'projection' parameter of subspace must be 'fastfood'"):
        Subspace(d=d, projection="dense").check_model(backbone, [backbone.num_blocks])
    Subspace(d=d, projection="fastfood").check_model(backbone, [backbone.num_blocks])


# -- the strategy on a model ---------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("said", [True, False])
@pytest.mark.parametrize("projected", ["blocks", "body"])
def test_theta_zero_is_exactly_the_pretrained_model(family, said, projected, tiny_backbone):
    backbone = tiny_backbone(family)
    moved = private_copy(backbone)
    Subspace(d=32, said=said, projected=projected).prepare(moved, seed=0)
    subspace = subspace_of(moved.model)
    if said:
        with torch.no_grad():
            subspace.said.uniform_(0.5, 2.0)  # any scale times P 0 is still 0
    texts, _ = sentiment_task_fixed(6, seed=1)
    batch = backbone.collate(backbone.encode(texts, 32), list(range(6)))
    with torch.no_grad():
        expected = backbone.model(**batch).last_hidden_state
        assert torch.equal(moved.model(**batch).last_hidden_state, expected)
        subspace.theta.normal_()
        assert not torch.allclose(moved.model(**batch).last_hidden_state, expected)
        subspace.theta.zero_()
        assert torch.equal(moved.model(**batch).last_hidden_state, expected)
    # with gradients on, too (the training path)
    assert torch.equal(moved.model(**batch).last_hidden_state, expected)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("said", [True, False])
def test_only_theta_said_and_the_head_train(family, said, tiny_model_dir):
    clf = fit_subspace(tiny_model_dir(family), d=24, said=said, learning_rate=0.5)
    network = clf.predictor_.network
    trained = {name for name, p in network.named_parameters() if p.requires_grad}
    expected = {"body.unfreeze_subspace.theta", "head.weight", "head.bias"}
    if said:
        expected.add("body.unfreeze_subspace.said")
    assert trained == expected
    subspace = subspace_of(clf.backbone_.model)
    m = len(subspace.shapes)
    head = network.head.weight.numel() + network.head.bias.numel()
    assert clf.fit_record_["trainable_parameters"] == 24 + (m if said else 0) + head
    assert subspace.theta.detach().abs().sum() > 0  # theta moved
    # the pretrained weights themselves never change: only W0 + P theta does
    base = Backbone.load(tiny_model_dir(family), device="cpu")
    originals = {
        name.replace(".parametrizations.", ".").replace(".original", ""): p
        for name, p in clf.backbone_.model.named_parameters()
        if not name.startswith("unfreeze_subspace")
    }
    for name, p in base.model.named_parameters():
        assert torch.equal(originals[name], p), name
    projected = {name for name, _ in projected_parameters(base, "blocks")}
    moved = {
        n.replace(".parametrizations.", ".").removesuffix(".original")
        for n, _ in clf.backbone_.model.named_parameters()
        if n.endswith(".original")
    }
    assert moved == projected and m == len(projected)


def test_projected_blocks_or_the_whole_body(tiny_backbone):
    backbone = tiny_backbone("bert")
    blocks = {name for name, _ in projected_parameters(backbone, "blocks")}
    body = {name for name, _ in projected_parameters(backbone, "body")}
    assert blocks and all(name.startswith("encoder.layer.") for name in blocks)
    assert blocks < body and "embeddings.word_embeddings.weight" in body
    assert not any(name.startswith("pooler") for name in body)


def test_the_projection_seed_follows_the_classifier_seed_unless_given(tiny_model_dir):
    model = tiny_model_dir("bert")

    def digest(clf: Classifier) -> str:
        return subspace_of(clf.backbone_.model).projection.digest()

    a, b, c = (fit_subspace(model, seed=s, d=16, max_steps=1) for s in (0, 0, 1))
    assert digest(a) == digest(b) != digest(c)
    assert a.fit_record_["projection_seed"] == 0 and c.fit_record_["projection_seed"] == 1
    fixed = [fit_subspace(model, seed=s, d=16, max_steps=1, projection_seed=5) for s in (0, 1)]
    assert digest(fixed[0]) == digest(fixed[1]) != digest(a)
    # same seed: same numbers after training too
    assert torch.equal(subspace_of(a.backbone_.model).theta, subspace_of(b.backbone_.model).theta)


@pytest.mark.parametrize("projection", ["fastfood", "dense"])
def test_a_bundle_round_trip_predicts_identically(projection, tiny_model_dir, tmp_path):
    clf = fit_subspace(tiny_model_dir("bert"), seed=2, d=40, projection=projection, learning_rate=0.5)
    texts, _ = sentiment_task_fixed(20, seed=5)
    before = clf.predict_proba(texts)
    clf.save(tmp_path / "bundle")
    config = json.loads((tmp_path / "bundle" / "unfreeze.json").read_text())
    assert config["predictor"]["projection"]["kind"] == projection
    assert config["predictor"]["projection"]["seed"] == 2
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "bundle" / "trained.safetensors"))
    assert set(saved) == {"theta", "said", "head.weight", "head.bias"}  # P is regenerated, never stored
    loaded = Classifier.load(tmp_path / "bundle")
    assert np.array_equal(loaded.predict_proba(texts), before)
    # a bundle whose projection cannot be regenerated is refused in one line
    config["predictor"]["projection"]["seed"] = 3
    (tmp_path / "bundle" / "unfreeze.json").write_text(json.dumps(config))
    with pytest.raises(UnfreezeError, match="differs from the saved one's digest"):
        Classifier.load(tmp_path / "bundle")


def test_prediction_reuses_the_projected_weights_until_theta_changes(tiny_model_dir):
    clf = fit_subspace(tiny_model_dir("bert"), d=16)
    subspace = subspace_of(clf.backbone_.model)
    calls = []
    original = subspace.projection.forward
    subspace.projection.forward = lambda theta: calls.append(1) or original(theta)
    texts, _ = sentiment_task_fixed(40, seed=3)
    first = clf.predict_proba(texts)
    computed = len(calls)
    assert computed <= 1  # one P theta for every batch and every projected tensor (none if validation left it)
    assert np.array_equal(clf.predict_proba(texts), first) and len(calls) == computed
    with torch.no_grad():
        subspace.theta.add_(1.0)
    assert not np.array_equal(clf.predict_proba(texts), first) and len(calls) == computed + 1


def test_bad_values_and_d_above_D_are_refused(tiny_backbone):
    with pytest.raises(UnfreezeError, match=r"The 'd' parameter of subspace must be an int >= 1\. Got 0\."):
        Subspace(d=0).check()
    with pytest.raises(UnfreezeError, match="'projection' parameter of subspace must be one of"):
        Subspace(projection="gaussian").check()
    with pytest.raises(UnfreezeError, match="'projected' parameter of subspace must be one of"):
        Subspace(projected="heads").check()
    backbone = tiny_backbone("bert")
    total = sum(p.numel() for _, p in projected_parameters(backbone, "blocks"))
    with pytest.raises(UnfreezeError, match=rf"must be an int in \[1, {total}\] for this model"):
        Subspace(d=total + 1).check_model(backbone, [backbone.num_blocks])


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def sentiment_csv(tmp_path) -> Path:
    texts, labels = sentiment_task_fixed(120, seed=0)
    path = tmp_path / "sentiment.csv"
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(texts, labels)), encoding="utf-8")
    return path


def one_error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--d", "0"], ["'d' parameter of subspace", "int >= 1", "Got 0"]),
        (["--d", "-3"], ["'d' parameter of subspace", "Got -3"]),
        (["--projection", "gaussian"], ["'projection' parameter of subspace", "'fastfood', 'dense'"]),
        (["--d", "100000000"], ["'d' parameter of subspace", "for this model (D = "]),
        (["--d", "2000", "--projection", "dense"], ["must be 'fastfood' for this model"]),
    ],
)
def test_fit_with_bad_subspace_settings_is_one_line_and_exit_2(
    args, words, runner, tmp_path, sentiment_csv, tiny_model_dir
):
    out = tmp_path / "bundle"
    result = runner.invoke(
        app,
        ["fit", str(sentiment_csv), "--model", tiny_model_dir("bert"), "--strategy", "subspace", *args, "-o", str(out)],
    )
    line = one_error_line(result)
    for word in words:
        assert word in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--d", "0,10"], ["--d values must be ints >= 1", "Got 0"]),
        (["--d", "ten"], ["--d must be a comma-separated list of ints"]),
        (["--d", ","], ["--d must name at least one value"]),
        (["--d", "10,100000000"], ["'d' parameter of subspace", "for this model"]),
        (["--n-train", "0"], ["--n-train (the training-set size) must be an int >= 1"]),
        (["--seeds", "x"], ["--seeds must be a comma-separated list of ints"]),
        (["--projection", "gaussian"], ["'projection' parameter of subspace"]),
        (["--learning-rate", "0"], ["'learning_rate' parameter of Training must be a float > 0.0"]),
        (["--metric", "auc"], ["Unknown metric 'auc'"]),
        (["--fraction", "1.5"], ["--fraction must be a float in (0, 1]"]),
        (["--n-train", "100000"], ["--n-train 100000 is more than the"]),
    ],
)
def test_intrinsic_dim_with_bad_settings_is_one_line_and_exit_2(
    args, words, runner, tmp_path, sentiment_csv, tiny_model_dir
):
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "intrinsic-dim",
            str(sentiment_csv),
            "--model",
            tiny_model_dir("bert"),
            "--n-train",
            "40",
            *args,
            "-o",
            str(out),
        ],
    )
    line = one_error_line(result)
    for word in words:
        assert word in line, line
    assert not out.exists()


@pytest.mark.slow
def test_intrinsic_dim_on_a_tiny_model_writes_the_plot_and_a_d90_line_and_resumes(
    runner, tmp_path, sentiment_csv, tiny_model_dir
):
    out = tmp_path / "run"
    args = [
        "intrinsic-dim",
        str(sentiment_csv),
        "--model",
        tiny_model_dir("bert"),
        "--d",
        "4,64,1024",
        "--n-train",
        "60",
        "--seeds",
        "0,1",
        "--max-steps",
        "4",
        "-o",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert (out / "intrinsic.png").stat().st_size > 10_000
    lines = result.stdout.splitlines()
    d90 = [line for line in lines if line.startswith("d90")]
    assert len(d90) == 1 and "full fine-tuning" in d90[0], result.stdout
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    cells = sorted((r["cell"]["strategy"], r["cell"].get("d"), r["cell"]["seed"]) for r in rows)
    assert cells == sorted(
        [("full", None, s) for s in (0, 1)] + [("subspace", d, s) for d in (4, 64, 1024) for s in (0, 1)]
    )
    assert all(r["status"] == "done" for r in rows)
    assert json.loads((out / "sweep.json").read_text())["spec"]["strategies"] == ["full", "subspace"]
    report = runner.invoke(app, ["report", str(out)])  # the sweep report reads the same folder
    assert report.exit_code == 0 and "subspace d=64" in report.stdout and "full" in report.stdout
    # the d90 line is what the results say
    from unfreeze.report.intrinsic import intrinsic_result

    summary = intrinsic_result(out)
    full = np.mean([r["test"]["accuracy"] for r in rows if r["cell"]["strategy"] == "full"])
    assert summary.full.mean == pytest.approx(full)
    means = {d: np.mean([r["test"]["accuracy"] for r in rows if r["cell"].get("d") == d]) for d in (4, 64, 1024)}
    reaching = [d for d in (4, 64, 1024) if means[d] >= 0.9 * full]
    assert summary.d90_grid == (reaching[0] if reaching else None)
    assert summary.sentence() == d90[0]
    # a rerun resumes: nothing runs again, the same line comes out
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "8 already done" in again.stdout and summary.sentence() in again.stdout
    assert len((out / "results.jsonl").read_text().splitlines()) == len(rows)


def test_d90_is_the_first_grid_point_reaching_90_percent_and_its_interpolation(tmp_path):
    """From results alone: the first d whose mean reaches 0.9 x full's mean, and log-linear interpolation below it."""
    from unfreeze.report.intrinsic import INTRINSIC_FILE, intrinsic_result, plot_intrinsic
    from unfreeze.sweep.store import ResultsStore

    rng = np.random.default_rng(0)
    scores = {10: [0.50, 0.54], 100: [0.70, 0.74], 1000: [0.84, 0.86], 10000: [0.90, 0.88]}
    full = [0.92, 0.94]
    store = ResultsStore(tmp_path)
    keys = {"full": [], **{str(d): [] for d in scores}}

    def add(group: str, score: float) -> None:
        key = f"{group}-{len(keys[group])}-{rng.integers(10**9)}"
        keys[group].append(key)
        store.append(
            {
                "key": key,
                "status": "done",
                "test": {"accuracy": score},
                "fit": {"trainable_parameters": 5, "seconds": 1.0},
            }
        )

    for score in full:
        add("full", score)
    for d, values in scores.items():
        for score in values:
            add(str(d), score)
    (tmp_path / INTRINSIC_FILE).write_text(
        json.dumps(
            {
                "metric": "accuracy",
                "full": {"keys": keys["full"]},
                "subspace": {"keys": {g: k for g, k in keys.items() if g != "full"}},
            }
        )
    )
    result = intrinsic_result(tmp_path)
    target = 0.9 * np.mean(full)
    assert result.target == pytest.approx(target)
    means = {d: np.mean(v) for d, v in scores.items()}
    first = min(d for d in scores if means[d] >= target)
    assert result.d90_grid == first == 1000
    below = max(d for d in scores if d < first)
    share = (target - means[below]) / (means[first] - means[below])
    assert result.d90_interpolated == pytest.approx(np.exp(np.log(below) + share * np.log(first / below)))
    assert below < result.d90_interpolated < first
    assert "d90 = 1000" in result.sentence() and f"{result.d90_interpolated:.0f}" in result.sentence()
    assert plot_intrinsic(result, tmp_path / "plot.png").stat().st_size > 10_000
    # a failed cell does not count; a grid point with none finished is listed as missing
    store.append({"key": keys["1000"][0], "status": "failed", "error": "boom"})
    store.append({"key": keys["1000"][1], "status": "failed", "error": "boom"})
    result = intrinsic_result(tmp_path)
    assert result.missing == [1000] and result.failed == 2 and result.d90_grid == 10000
    # another share of full fine-tuning's score, from the same files
    strict = intrinsic_result(tmp_path, fraction=0.99)
    assert strict.d90_grid is None and strict.sentence().startswith("d99 > 10000")


def test_fit_predict_and_serve_a_subspace_bundle_from_the_command_line(runner, tmp_path, sentiment_csv, tiny_model_dir):
    """`fit --strategy subspace` writes a bundle; `predict` and the HTTP service give the library's probabilities."""
    import pandas as pd
    from fastapi.testclient import TestClient

    from unfreeze.inference.bundle_predictor import BundlePredictor
    from unfreeze.serve.app import create_app

    bundle = tmp_path / "bundle"
    result = runner.invoke(
        app,
        [
            "fit",
            str(sentiment_csv),
            "--model",
            tiny_model_dir("bert"),
            "--strategy",
            "subspace",
            "--d",
            "50",
            "--no-said",
            "--projection-seed",
            "4",
            "--max-steps",
            "3",
            "--lr",
            "0.2",
            "-o",
            str(bundle),
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    config = json.loads((bundle / "unfreeze.json").read_text())
    assert config["strategy"] == {
        "name": "subspace",
        "params": {"d": 50, "projection": "fastfood", "said": False, "projected": "blocks", "projection_seed": 4},
    }
    assert config["predictor"]["projection"]["seed"] == 4 and config["fit_record"]["steps"] == 3
    texts, _ = sentiment_task_fixed(12, seed=9)
    expected = Classifier.load(bundle).predict_proba(texts)
    inputs = tmp_path / "new.csv"
    inputs.write_text("text\n" + "".join(f"{t}\n" for t in texts), encoding="utf-8")
    out = tmp_path / "predictions.csv"
    result = runner.invoke(app, ["predict", str(bundle), str(inputs), "-o", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    frame = pd.read_csv(out)
    np.testing.assert_allclose(frame[["proba_0", "proba_1"]].to_numpy(), expected, atol=1e-6)
    with TestClient(create_app(BundlePredictor(bundle))) as client:
        heads = client.get("/heads").json()["heads"]
        assert [(h["name"], h["strategy"]) for h in heads] == [("default", "subspace")]
        body = client.post("/predict", json={"texts": texts}).json()
    np.testing.assert_allclose(body["results"]["default"]["probabilities"], expected, atol=1e-6)
