"""The manual: the site builds strictly, its links and references resolve, and its examples run.

Every fenced ``bash``/``console``/``sh`` and ``python`` block of README.md and docs/**/*.md is
collected. Each ``unfreeze ...`` command runs in this process through the CLI (typer's
CliRunner), and each Python block runs with ``exec``, in a tiny world: the catalog's
``minilm-l6`` and ``mpnet-base`` are random models as deep as the real ones (6 and 12 blocks)
but 32 wide, the built-in datasets are small constructed ones in a private cache, and the
sizes and budgets in the commands shrink by the substitutions below. The blocks run in one
work folder in the site's order, README.md last, so a page may use what an earlier page wrote
(``runs/features``); a command that already ran there is not run again. A block that cannot
run here says so on the line before it, with the reason: ``<!-- skip: needs a GPU: ... -->``
(the kinds are SKIP_KINDS).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import FILLER, minilm_path, tiny_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHELL = ("bash", "console", "sh", "shell")
SKIP_KINDS = ("needs a GPU", "needs the network", "needs a cluster", "starts a server", "long run")


# -- how the docs' commands shrink to the tiny world -----------------------------------------------
# Every command: sizes above 32 shrink (32 + the rest / 16: 128 -> 38, 500 -> 61, 2000 -> 155, still
# increasing), test sets to 40 texts. The tiny datasets below are large enough for what remains.
def _shrink(values: str) -> str:
    sizes = [int(v) if int(v) <= 32 else 32 + (int(v) - 32) // 16 for v in values.split(",")]
    return ",".join(str(v) for v in dict.fromkeys(sizes))


GLOBAL_SUBSTITUTIONS: list[tuple[str, object]] = [
    (r"--(n-train|sizes) (\d+(?:,\d+)*)", lambda m: f"--{m.group(1)} {_shrink(m.group(2))}"),
    (r"--n-test \d+", "--n-test 40"),
]
# One command (matched by a regular expression): what changes, and why.
SUBSTITUTIONS: list[tuple[str, list[tuple[str, str]], str]] = [
    (
        r"^unfreeze advise ",
        [(r"--budget 15m", "--budget 15s"), (r"--budget 1h", "--budget 25s")],
        "the advisor spends up to its budget: seconds suffice for the tiny model (more with setfit and --fit)",
    ),
    (
        r"^unfreeze sweep ",
        [(r"--seeds 0,1 ", "--seeds 0 ")],
        "one seed halves the cells; tests/test_sweep.py runs several",
    ),
    (
        r"^unfreeze fit .*--strategy setfit",
        [(r" -o ", " --num-iterations 2 -o ")],
        "20 pair rounds per example is the slowest fit of the tour; 2 run the same code",
    ),
    (r"^unfreeze intrinsic-dim ", [(r"--d \S+", "--d 10,1000")], "two points of the grid are enough to run it"),
    (
        r"^unfreeze export ",
        [(r"$", " --exporter torchscript")],
        "torch's default exporter spends ~10 s tracing even a tiny model; tests/test_export_onnx.py runs it",
    ),
    (
        r"^unfreeze export runs/mpnet ",
        [("runs/mpnet", "runs/freeze4")],
        "no page fits an MPNet-base bundle; the option runs on the tuned MiniLM bundle instead",
    ),
    (
        r"^unfreeze study studies/(?!.*--quick)",
        [(r" -o ", " --quick -o ")],
        "a whole study is hours of cells; --quick runs each arm at toy sizes (it still checks the data and model)",
    ),
]
# The same for Python blocks (a plain text replacement in one block's code).
PYTHON_SUBSTITUTIONS: list[tuple[str, str, str, str]] = [  # block's page, old, new, why
    (
        "docs/export.md",
        "int8=True, overwrite=True)",
        'int8=True, overwrite=True, exporter="torchscript")',
        "as for `unfreeze export` above",
    ),
]
# Commands that cannot run here although their block can, and commands that must never run in a
# test (they do not end by themselves): each says why, starting with its kind (SKIP_KINDS).
SKIPPED_COMMANDS: dict[str, str] = {
    "unfreeze models install mpnet-base": "needs the network: pip-installs the model's packages",
    "unfreeze serve runs/suite --runtime onnx --precision int8": "starts a server: it answers until stopped; "
    "tests/test_serve.py runs the service on ONNX Runtime",
}
NEVER_RUN = {"unfreeze serve ": "starts a server", "unfreeze demo": "long run"}
# Lines of a runnable block that are not ``unfreeze`` commands: why each needs no run.
OTHER_LINES: dict[str, str] = {
    "pip install 'unfreeze[onnx]'": "the onnx extra is part of .[dev], installed here",
    "make docs": "test_site_builds runs the same build",
}

# -- the tiny world -------------------------------------------------------------------------------
WORDS = {
    "positive": ["good", "great", "excellent", "wonderful", "lovely"],
    "negative": ["bad", "awful", "terrible", "horrible", "poor"],
    "neutral": ["today", "weather", "bus", "monday", "coffee"],
    "business": ["shares", "market", "profit", "bank", "economy"],
    "entertainment": ["film", "music", "actor", "award", "show"],
    "politics": ["minister", "election", "party", "vote", "government"],
    "sports": ["match", "team", "goal", "cup", "player"],
    "tech": ["software", "phone", "internet", "computer", "digital"],
}
DATASETS = {  # name -> (classes, rows); 20% of each is its fixed test split
    "movie-snippets": (["negative", "positive"], 800),
    "bbc-news": (["business", "entertainment", "politics", "sports", "tech"], 500),
    "tweets": (["negative", "neutral", "positive"], 300),
}
MODELS = {"minilm-l6": ("bert", 6), "mpnet-base": ("mpnet", 12)}  # catalog name -> (family, blocks)


def rows(classes: list[str], n: int, seed: int) -> list[tuple[str, str]]:
    """Filler words and one word of the class, at a random place: a task a tiny model learns."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = classes[i % len(classes)]
        words = list(rng.choice(FILLER, size=int(rng.integers(3, 9))))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(WORDS[label])))
        out.append((" ".join(words), label))
    return out


def write_csv(path: Path, classes: list[str], n: int, seed: int) -> None:
    import pandas as pd

    pd.DataFrame(rows(classes, n, seed), columns=["text", "label"]).to_csv(path, index=False)


def build_model(family: str, blocks: int, folder: Path) -> Path:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    config = tiny_config(family, tokenizer.vocab_size)
    config.num_hidden_layers = blocks
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def materialise_dataset(cache: Path, name: str, classes: list[str], n: int) -> None:
    """Write the folder ``load_builtin`` reads (data.jsonl, split.json), so no source package is read."""
    from unfreeze.data import builtin
    from unfreeze.data.dataset import build_dataset
    from unfreeze.storage.cache import sha256_file

    folder = cache / "datasets" / name
    folder.mkdir(parents=True)
    data = rows(classes, n, seed=len(name))
    with open(folder / "data.jsonl", "w", encoding="utf-8") as handle:
        for text, label in data:
            handle.write(json.dumps({"text": text, "label": label}) + "\n")
    test = builtin._test_indices(build_dataset([t for t, _ in data], [y for _, y in data], source=name), 0.2, 0)
    split = {"sha256": sha256_file(folder / "data.jsonl"), "seed": 0, "test_fraction": 0.2, "test_indices": test}
    (folder / "split.json").write_text(json.dumps(split))


def new_workspace(root: Path) -> Path:
    """A work folder with what the examples read: examples/, studies/, and the files they name."""
    folder = root
    folder.mkdir(parents=True)
    (folder / "examples").symlink_to(ROOT / "examples")
    (folder / "studies").symlink_to(ROOT / "studies")
    write_csv(folder / "my.csv", ["negative", "positive"], 300, seed=11)
    write_csv(folder / "reviews.csv", ["negative", "positive"], 300, seed=12)
    return folder


# -- collecting the blocks ------------------------------------------------------------------------
@dataclass
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence
    lang: str
    text: str
    skip: str | None  # the reason in <!-- skip: ... --> on the line before

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)")
SKIP = re.compile(r"^\s*<!--\s*skip:\s*(.+?)\s*-->\s*$")


def collect(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == fence)
        body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end])
        before = lines[i - 1] if i else ""
        skip = SKIP.match(before)
        blocks.append(Block(str(path.relative_to(ROOT)), i + 1, lang.lower(), body, skip.group(1) if skip else None))
        i = end + 1
    return blocks


def nav_pages() -> list[Path]:
    """The pages of mkdocs.yml's nav, in its order."""
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def walk(entries):
        for entry in entries:
            value = entry if isinstance(entry, str) else next(iter(entry.values()))
            yield from ([value] if isinstance(value, str) else walk(value))

    return [DOCS / name for name in walk(config["nav"])]


def site_pages() -> list[Path]:
    """The docs' pages in the site's order, then the pages outside the nav (the findings' runs)."""
    ordered = nav_pages()
    return ordered + sorted(set(DOCS.rglob("*.md")) - set(ordered))


README_BLOCKS = collect(ROOT / "README.md")
DOCS_BLOCKS = [block for page in site_pages() for block in collect(page)]
ALL_BLOCKS = README_BLOCKS + DOCS_BLOCKS


def commands(block: Block) -> list[str]:
    """The block's command lines: continuations joined, comments and prompts dropped."""
    joined = re.sub(r"\\\n\s*", " ", block.text)
    out = []
    for line in joined.split("\n"):
        line = re.sub(r"^\$ ", "", line.strip())
        if line and not line.startswith("#"):
            out.append(shlex.join(shlex.split(line, comments=True)))
    return [line for line in out if line]


def prepared(command: str) -> str:
    for pattern, replacement in GLOBAL_SUBSTITUTIONS:
        command = re.sub(pattern, replacement, command)
    for match, changes, _why in SUBSTITUTIONS:
        if re.search(match, command):
            for pattern, replacement in changes:
                command = re.sub(pattern, replacement, command)
    return command


# -- running them ---------------------------------------------------------------------------------
@dataclass
class Session:
    """One work folder; runs blocks in order, each once, and remembers what failed."""

    folder: Path
    blocks: list[Block]
    done: dict[str, str | None] = field(default_factory=dict)  # block id -> failure or None
    ran: dict[str, str | None] = field(default_factory=dict)  # command as run -> failure or None
    namespaces: dict[str, dict] = field(default_factory=dict)  # page -> the Python blocks' globals

    def run_through(self, target: Block) -> str | None:
        for block in self.blocks:
            if block.id not in self.done:
                self.done[block.id] = self._run(block)
            if block is target:
                return self.done[block.id]
        raise AssertionError(f"{target.id} is not in this session")

    def _run(self, block: Block) -> str | None:
        if block.skip:
            return None
        with contextlib.chdir(self.folder):
            if block.lang == "python":
                return self._python(block)
            if block.lang in SHELL:
                for command in commands(block):
                    failure = self._shell(command)
                    if failure:
                        return failure
        return None

    def _shell(self, command: str) -> str | None:
        if command in SKIPPED_COMMANDS or command in OTHER_LINES:
            return None
        if not command.startswith("unfreeze "):
            return f"{command!r} is not an unfreeze command: mark the block <!-- skip: ... --> or add to OTHER_LINES"
        for prefix, kind in NEVER_RUN.items():
            if command.startswith(prefix):
                return f"{command!r} does not end by itself: list it in SKIPPED_COMMANDS ({kind}: why)"
        run = prepared(command)
        if run not in self.ran:  # the README repeats commands of the pages: once is enough
            self.ran[run] = self._invoke(run)
        return self.ran[run]

    @staticmethod
    def _invoke(run: str) -> str | None:
        from typer.testing import CliRunner

        from unfreeze.cli import app

        result = CliRunner().invoke(app, shlex.split(run)[1:])
        output = result.output
        if result.exit_code != 0:
            return f"{run!r} exited {result.exit_code}:\n{output[-3000:]}\n{result.exception!r}"
        if re.search(r"old spelling|deprecat", output, re.IGNORECASE):
            return f"{run!r} uses a deprecated spelling:\n{output[-1500:]}"
        return None

    def _python(self, block: Block) -> str | None:
        namespace = self.namespaces.setdefault(block.page, {"__name__": "__docs__"})
        code = block.text
        for page, old, new, _why in PYTHON_SUBSTITUTIONS:
            if page == block.page:
                code = code.replace(old, new)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, block.id, "exec"), namespace)
        except Exception as error:  # noqa: BLE001 - reported with the block's place
            return f"{block.id}: {type(error).__name__}: {error}"
        return None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny models behind the catalog names, the tiny datasets, a private cache; undone at the end."""
    from unfreeze.models import catalog

    root = tmp_path_factory.mktemp("docs-world")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNFREEZE_CACHE", str(root / "cache"))
        patch.delenv("UNFREEZE_DEBUG", raising=False)
        for name, (family, blocks) in MODELS.items():
            folder = build_model(family, blocks, root / "models" / name)
            patch.setitem(
                catalog.CATALOG,
                name,
                dataclasses.replace(
                    catalog.CATALOG[name], find_source=lambda f=folder: f, materialise=lambda source: source
                ),
            )
        for name, (classes, n) in DATASETS.items():
            materialise_dataset(root / "cache", name, classes, n)
        yield Session(new_workspace(root / "work"), DOCS_BLOCKS + README_BLOCKS)


RUNNABLE = [b for b in DOCS_BLOCKS + README_BLOCKS if b.lang in (*SHELL, "python") and not b.skip]


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_example_runs(world, block):
    failure = world.run_through(block)
    assert failure is None, failure


# -- checks that run nothing ----------------------------------------------------------------------
def test_every_block_runs_or_says_why():
    kinds = ", ".join(SKIP_KINDS)
    for block in ALL_BLOCKS:
        if block.skip:
            assert block.skip.startswith(SKIP_KINDS) and ":" in block.skip, (
                f"{block.id}: a skip says its kind ({kinds}) and, after a colon, why: got {block.skip!r}"
            )
            continue
        if block.lang not in SHELL:
            continue
        for command in commands(block):
            assert command.startswith("unfreeze ") or command in OTHER_LINES, (
                f"{block.id}: {command!r} is not an unfreeze command: run it, or mark the block "
                f"<!-- skip: KIND: why --> (KIND: {kinds})"
            )


def test_substitutions_are_used():
    """A substitution or skip whose command left the docs is stale."""
    everything = [c for b in ALL_BLOCKS if b.lang in SHELL and not b.skip for c in commands(b)]
    for match, _changes, why in SUBSTITUTIONS:
        assert any(re.search(match, c) for c in everything), f"no command matches {match!r} ({why})"
    for command in [*SKIPPED_COMMANDS, *OTHER_LINES]:
        assert command in everything, f"{command!r} is no longer in the docs"
    for command, reason in SKIPPED_COMMANDS.items():
        assert reason.startswith(SKIP_KINDS) and ":" in reason, f"{command}: say the kind, then why: {reason!r}"
    for page, old, _new, why in PYTHON_SUBSTITUTIONS:
        assert any(b.page == page and old in b.text for b in ALL_BLOCKS if b.lang == "python"), f"{old!r} ({why})"


def test_every_page_is_in_the_nav():
    """mkdocs only notes a page the nav leaves out; the findings' per-run pages are reached from FINDINGS.md."""
    missing = sorted(page.name for page in set(DOCS.glob("*.md")) - set(nav_pages()))
    assert not missing, f"pages missing from mkdocs.yml's nav: {missing}"


def test_toml_examples_parse():
    import tomllib

    for block in ALL_BLOCKS:
        if block.lang == "toml":
            tomllib.loads(block.text)


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_readme_links_resolve():
    """mkdocs --strict checks docs/; the README's relative links are checked here (GitHub renders them)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path = target.split("#")[0]
        assert (ROOT / path).exists(), f"README.md links to {target}, which does not exist"


REFERENCE = re.compile(r"`(?:python -m )?(unfreeze(?:\.\w+)+)")
NOT_PYTHON = {"unfreeze.json"}  # a bundle's manifest file


def _resolve(dotted: str):
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def test_named_modules_and_objects_exist():
    """Every `unfreeze.x.y` the manual names imports, by its own path: a module that moved makes this fail."""
    import unfreeze

    moved = getattr(unfreeze, "_MOVED", {})  # old module paths kept importable for one release
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for dotted in set(REFERENCE.findall(page.read_text(encoding="utf-8"))) - NOT_PYTHON:
            old = next((m for m in moved if dotted == m or dotted.startswith(m + ".")), None)
            assert old is None, f"{page.relative_to(ROOT)} names {dotted}: {old} is now {moved.get(old)}"
            try:
                _resolve(dotted)
            except (ImportError, AttributeError) as error:
                pytest.fail(f"{page.relative_to(ROOT)} names {dotted}, which does not resolve: {error}")


def test_api_reference_covers_the_public_api():
    import unfreeze

    documented = re.findall(r"^::: (\S+)", (DOCS / "reference.md").read_text(encoding="utf-8"), re.MULTILINE)
    objects = {id(_resolve(target)) for target in documented}
    missing = [
        name for name in unfreeze.__all__ if name != "__version__" and id(getattr(unfreeze, name)) not in objects
    ]
    assert not missing, f"docs/reference.md documents no ::: entry for {missing}"


@pytest.mark.slow
def test_site_builds(tmp_path):
    """mkdocs --strict: a broken link or anchor, a page missing from the nav, an API entry that moved."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reference" / "index.html").exists()
    shutil.rmtree(tmp_path / "site")
