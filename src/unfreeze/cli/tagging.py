"""The command line for a task that reads token-tagged data (``Task.reads_tagged``: tokens).

``fit`` and ``evaluate`` read sentences and their tags through ``unfreeze.data.load_tagged`` (a built-in,
a CoNLL column file, JSON lines or Parquet with a list of words and a list of tags a row); ``predict`` tags
what it is given: a CoNLL file (words in the first column) comes back as CoNLL, a word and its predicted tag
a line; a table with a tokens column gets a ``tags`` column; a table of raw texts gets an ``entities``
column, each text's entity spans with character offsets (``unfreeze.inference.entities``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import UnfreezeError

if TYPE_CHECKING:
    from ..data import TaggedDataset
    from .arguments import DataArguments

# files read as tables (anything else is read as CoNLL columns), as the text readers read them
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".parquet", ".pq")


def load_tagged_train_test(data: str, split: DataArguments, seed: int) -> tuple[TaggedDataset, TaggedDataset | None]:
    """The training sentences and the test sentences by the rule of ``unfreeze.data.splits``: a built-in's
    train split and its test split, ``--test`` data, or ``--test-size`` carved out of the training data."""
    from ..data import TAGGED_BUILTIN, load_tagged, sample
    from ..data.sampling import train_test_split

    name, _, part = data.partition(":")
    builtin_whole = name in TAGGED_BUILTIN and not part
    train = _load(f"{name}:train" if builtin_whole else data, split)
    test: TaggedDataset | None = None
    if split.test is not None:
        test = load_tagged_test(split.test, split)
    elif split.test_size:
        train, test = train_test_split(train, split.test_size, seed)  # type: ignore[arg-type,assignment]
    elif builtin_whole:
        test = load_tagged(f"{name}:test")
    if split.n_train is not None or split.n_per_class is not None:
        train = sample(train, n_total=split.n_train, n_per_class=split.n_per_class, seed=seed)  # type: ignore[arg-type,assignment]
    return train, test


def load_tagged_test(test: str, split: DataArguments) -> TaggedDataset:
    """Labelled test sentences (a built-in's name alone: its test split)."""
    from ..data import TAGGED_BUILTIN

    return _load(f"{test}:test" if test in TAGGED_BUILTIN else test, split, require_tags=1)


def _load(source: str, split: DataArguments, require_tags: int = 2) -> TaggedDataset:
    from ..data import load_tagged

    tag_col = -1 if split.tag_col is None else split.tag_col  # None: not given, the last column
    return load_tagged(source, tag_col, split.tokens_col, split.tags_col, require_tags=require_tags)


def tagged_fit_task(train: TaggedDataset) -> Any:
    """The task to fit on ``train``, in the tagging scheme its tags were read in (IOB2 or BIOES)."""
    from ..tasks import make_task

    return make_task(train.task, scheme=train.scheme)


# -- predict ----------------------------------------------------------------------------------------------


def predict_tagged(
    bundle: Path,
    inputs: Path,
    output: Path,
    text_col: str,
    tokens_col: str,
    batch_size: int | None,
    device: str | None,
) -> None:
    """Tag every sentence or text of ``inputs`` with the tagger of ``bundle`` and write ``output`` (atomically;
    nothing is written when the input is refused)."""
    from ..storage.cache import atomic_path

    if inputs.is_dir() or inputs.suffix.lower() in TABLE_SUFFIXES:
        frame, sentences, texts = _read_table_input(inputs, text_col, tokens_col)
        conll = None
    else:
        conll = _read_conll_words(inputs)
        sentences, texts, frame = conll, None, None
    offsets: list[list[tuple[int, int]]] = []
    if texts is not None:
        from ..inference.entities import split_words

        words = [split_words(text) for text in texts]
        sentences = [[w for w, _, _ in row] for row in words]
        offsets = [[(start, end) for _, start, end in row] for row in words]

    from ..inference.classifier_bundle import load_estimator

    clf = load_estimator(bundle, device=device)
    if batch_size is not None:
        clf.predictor_.batch_size = batch_size
    proba = clf.predict_proba(sentences)
    tags = clf.task_.decide(proba)
    chosen = [row.max(axis=-1).tolist() for row in proba]
    fmt = _output_format(output, conll is not None)
    with atomic_path(output) as tmp:
        if conll is not None:
            _write_conll(tmp, conll, tags)
        elif texts is not None:
            from ..inference.entities import entity_spans

            spans = [entity_spans(t, o, g, s) for t, o, g, s in zip(texts, offsets, tags, chosen)]
            _write_column(frame, "entities", spans, tmp, fmt)
        else:
            _write_column(frame, "tags", tags, tmp, fmt)
    assert sentences is not None
    what = "sentence(s)" if texts is None else "text(s)"
    typer.echo(f"tagged {len(sentences)} {what} -> {output}")


def _output_format(output: Path, conll: bool) -> str:
    from .predictions import output_format

    if conll:
        if output.suffix.lower() in TABLE_SUFFIXES:
            raise UnfreezeError(
                f"The input is a CoNLL file, whose words come back as CoNLL (a word and its tag a line): write it to "
                f"a file that is not {output.suffix} (e.g. -o {output.with_suffix('.conll')})."
            )
        return "conll"
    return output_format(output)


def _read_table_input(path: Path, text_col: str, tokens_col: str) -> tuple[Any, list | None, list[str] | None]:
    """(the table, its sentences or None, its texts or None): a tokens column is read as lists of words, else
    the text column as raw texts; one line when it holds neither."""
    from ..data.dataset import check_texts
    from ..data.file_checks import check_exists
    from ..data.readers import _read
    from ..data.tagged_readers import _strings

    check_exists(path, "Give a table with a column of texts (--text-col) or of lists of words (--tokens-col).")
    table = _read(path, None, [], all_columns=True)
    source = str(path)
    if tokens_col in table.columns:
        sentences = [_strings(v, i, source, tokens_col, "tokens", None) for i, v in enumerate(table.column(tokens_col))]
        for i, row in enumerate(sentences):
            if not row:
                raise UnfreezeError(
                    f"Row {i + 1} of column {tokens_col!r} of {source} is an empty sentence (no word). Remove the "
                    "row, or give its words."
                )
        return table.frame(), sentences, None
    if text_col in table.columns:
        return table.frame(), None, check_texts(table.column(text_col), source, "text", text_col)
    shown = ", ".join(map(repr, table.columns[:8])) + (" ..." if len(table.columns) > 8 else "")
    raise UnfreezeError(
        f"{source} has neither a text column ({text_col!r}, --text-col) nor a column of words ({tokens_col!r}, "
        f"--tokens-col), which a tagger reads; its columns are {shown}. Name one with --text-col or --tokens-col."
    )


def _read_conll_words(path: Path) -> list[list[str]]:
    """The words of a CoNLL file (its first column; any tags after them are not read), a sentence per block of
    lines; ``-DOCSTART-`` lines are skipped."""
    from ..data.conll import DOCSTART
    from ..data.file_checks import check_exists, check_is_text, check_regular, decode_utf8
    from ..data.tagged_readers import TAGGED_FORMAT_HELP

    check_exists(path, "Give " + TAGGED_FORMAT_HELP + ", or a table of texts.")
    check_regular(path)
    raw = path.read_bytes()
    check_is_text(path, raw)
    lines = decode_utf8(path, raw).split("\n")
    first = next((line for line in lines if line.strip()), "")
    tabs = "\t" in first  # a word may then hold spaces
    sentences: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        fields = [f.strip() for f in line.rstrip("\r").split("\t")] if tabs and line.strip() else line.split()
        if not fields:
            if current:
                sentences.append(current)
                current = []
            continue
        if fields[0] != DOCSTART:
            current.append(fields[0])
    if current:
        sentences.append(current)
    if not sentences:
        raise UnfreezeError(
            f"{path} holds no word. Give a CoNLL file: a word a line, a blank line after each sentence."
        )
    return sentences


def _write_conll(path: Path, sentences: list[list[str]], tags: list[list[str]]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for words, row in zip(sentences, tags):
            out.writelines(f"{word}\t{tag}\n" for word, tag in zip(words, row))
            out.write("\n")


def _write_column(frame: Any, name: str, values: list, path: Path, fmt: str) -> None:
    """``frame`` with ``name`` holding ``values`` (JSON lines: lists; CSV and TSV: JSON text) written as ``fmt``."""
    from .predictions import write_table

    frame = frame.copy()
    if name in frame.columns:
        typer.echo(f"warning: the input's column {name!r} is replaced by the predicted {name}", err=True)
    frame[name] = values if fmt == "jsonl" else [json.dumps(v, ensure_ascii=False) for v in values]
    write_table(frame, path, fmt)


__all__ = ["load_tagged_test", "load_tagged_train_test", "predict_tagged", "tagged_fit_task"]
