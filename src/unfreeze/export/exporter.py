"""Bundles and their ONNX exports: export any bundle, find its export, trust it only if it is its own.

``export_bundle(BUNDLE)`` writes ``BUNDLE/onnx`` (:data:`DEFAULT_EXPORT_DIR`), where
``unfreeze predict/serve --runtime onnx`` and ``Classifier.load(path, runtime="onnx")`` look
first. What is exported depends on the bundle's fitted predictor, not on the strategy's name
(its ``Predictor.export_onnx`` writes it):

* a head on pooled states (``EmbeddingHead``: features, setfit; and every head of a
  multi-head bundle): one graph from token ids to the pooled layers, the logistic heads
  applied after it in numpy (``write_heads_export``);
* a tuned network (``NetworkPredictor``: freeze, full, reinit, lora; LoRA merged on a
  copy): one graph to the logits (``write_network_export``). The loaded network is
  exported as it is, so a strategy that changes its structure (e.g. removes blocks)
  exports without code of its own, as long as its predictor is a ``NetworkPredictor``.

A predictor class without ``export_onnx`` (``Predictor.exports_onnx``; a strategy that
brings its own predictor) is refused in one line that names the strategy and the predictor
classes that export. Heads and networks of every task export: the graph gives raw scores,
and the manifest records each head's task, which turns them into outputs when the export
predicts (probabilities, label sets with their thresholds, values).

The export checks itself against PyTorch before it is moved into place: on the inputs
given, else on the sample of training inputs the bundle stores (``check_texts`` in
``unfreeze.json``), else, for a bundle saved before samples were stored, on a few
built-in sentences (with a note).

An export records where it came from in its manifest's ``source``: the bundle's folder
and the sha256 of its ``unfreeze.json`` (which changes with every fit and every head
added or removed). :func:`open_export` refuses an export whose digest is not the
bundle's: one made from another bundle, or from an earlier state of this one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UnfreezeError
from ..inference.bundle import MULTIHEAD_KIND, read_check_sample, read_config
from ..inference.head_tasks import task_of
from . import DEFAULT_EXPORT_DIR
from .locate import bundle_digest

if TYPE_CHECKING:
    from ..tasks import Task
    from .onnx import ExportResult
from .manifest import DEFAULT_HEAD

# at most this many inputs of --check DATA (a seeded sample of a larger file): three passes over each
MAX_CHECK_INPUTS = 1000
# a multi-head bundle's check takes this many stored inputs in all, shared out between its heads
MULTIHEAD_CHECK_INPUTS = 256


def exporting_predictors() -> str:
    """The registered predictor classes that have an ONNX export, each with what it is (its docstring's first
    clause), for the message that refuses one that has not."""
    from ..inference.predictors import PREDICTORS
    from ..strategies import registered

    registered()  # importing the strategies (and plug-ins) registers the predictor classes they bring
    described = []
    for cls in PREDICTORS.values():
        if cls.exports_onnx():
            what = re.split(r"[;:.,]", (cls.__doc__ or "").strip(), maxsplit=1)[0].strip()
            described.append(f"{cls.__name__} ({what[:1].lower() + what[1:]})" if what else cls.__name__)
    return ", ".join(described)


def bundle_source(bundle: str | Path, config: dict) -> dict:
    """What an export records of the bundle it was made from (the manifest's ``source``)."""
    multi = config.get("kind") == MULTIHEAD_KIND
    return {
        "bundle": str(Path(bundle).resolve()),
        "config_sha256": bundle_digest(bundle),
        "kind": config.get("kind"),
        "strategy": "features" if multi else config["strategy"]["name"],
        "model": config["backbone"]["reference"],
        "fingerprint": config["backbone"].get("fingerprint"),
        "heads": list(config["heads"]) if multi else [DEFAULT_HEAD],
    }


# -- exporting ------------------------------------------------------------------------------------


@dataclass
class CheckSet:
    """What an export is checked on: inputs, labels per head (None where unknown), and where they came from."""

    inputs: list
    labels: dict[str, list] = field(default_factory=dict)
    origin: str = ""
    note: str | None = None


@dataclass
class BundleExport:
    """A bundle's export: the written folder (``result``), what it was checked on, and how long it took."""

    bundle: Path
    result: ExportResult
    kind: str  # "heads" or "network"
    strategy: str
    check: CheckSet
    seconds: float

    @property
    def path(self) -> Path:
        return self.result.path

    def lines(self) -> list[str]:
        """What ``unfreeze export`` prints."""
        from .manifest import GRAPH_FILES

        graphs = ", ".join(
            f"{GRAPH_FILES[p]} ({(self.path / GRAPH_FILES[p]).stat().st_size / 1e6:.1f} MB)"
            for p in self.result.manifest["graphs"]
        )
        heads = self.result.manifest["heads"]
        what = (
            f"{self.strategy}, {len(heads)} head{'s' if len(heads) > 1 else ''} on pooled states"
            if self.kind == "heads"
            else f"{self.strategy}, a tuned network"
        )
        lines = [f"exported {self.bundle} ({what}) -> {self.path} in {self.seconds:.1f} s: {graphs}"]
        if self.check.note:
            lines.append(f"note: {self.check.note}")
        lines.append(f"checked against PyTorch on {self.check.origin}:")
        lines += [f"  {line}" for line in self.result.check.lines()]
        return lines


def export_bundle(
    bundle: str | Path,
    folder: str | Path | None = None,
    *,
    int8: bool = False,
    check_inputs: Sequence | None = None,
    check_labels: Sequence | None = None,
    check_origin: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    exporter: str = "dynamo",
    overwrite: bool = False,
    keep_ffn_output: bool = False,
    reduce_range: bool = True,
    min_int8_agreement: float | None = None,
) -> BundleExport:
    """Export the bundle at ``bundle`` to ONNX (``bundle/onnx`` by default), checked before it appears.

    Parameters
    ----------
    bundle : str or Path
        A bundle folder (``unfreeze fit``, ``unfreeze heads add``, ``Classifier.save``...).
    folder : str or Path, optional
        The export folder to write; default ``bundle / "onnx"``, where prediction looks.
    int8 : bool
        Also write an int8 graph (ONNX Runtime's dynamic quantiser).
    check_inputs : sequence, optional
        Texts (or text pairs) to check on; default: the sample stored with the bundle.
    check_labels : sequence, optional
        Their labels (values the bundle's heads know; others count as unknown): int8's
        accuracy change is reported.
    check_origin : str, optional
        How to name ``check_inputs`` in the report (e.g. the data file).
    device : str, optional
        Where PyTorch traces and computes the reference probabilities.
    batch_size : int, optional
        Inputs per forward pass while checking (default: the bundle's).
    exporter : {'dynamo', 'torchscript'}
        Which of torch's ONNX exporters to use.
    overwrite : bool
        Replace an export already at ``folder``.
    keep_ffn_output : bool
        Keep the feed-forward output projections in fp32 in the int8 graph.
    reduce_range : bool
        7-bit int8 weights (ONNX Runtime's ``reduce_range``; the default: fewer labels change).
    min_int8_agreement : float, optional
        Fail when int8 labels agree with PyTorch's on a smaller share of the check inputs.

    Returns
    -------
    BundleExport
    """
    from .onnx import check_target, require_exporter

    start = time.perf_counter()
    require_exporter(exporter)  # a missing package is the first thing to say
    bundle = Path(bundle)
    config = read_config(bundle)
    folder = Path(folder) if folder is not None else bundle / DEFAULT_EXPORT_DIR
    check_target(folder, overwrite)
    multi = config.get("kind") == MULTIHEAD_KIND
    strategy = "features" if multi else str(config.get("strategy", {}).get("name"))
    if not multi:
        _check_exportable(bundle, config)
    source = bundle_source(bundle, config)
    options = dict(
        int8=int8,
        exporter=exporter,
        overwrite=overwrite,
        keep_ffn_output=keep_ffn_output,
        reduce_range=reduce_range,
        min_int8_agreement=min_int8_agreement,
        source=source,
    )

    loaded = _loaded_same(bundle, source)
    if multi:
        from ..inference.multihead import MultiHeadClassifier

        suite = MultiHeadClassifier.load(bundle, device=device, precision="fp32")  # the graph is fp32
        suite.progress = False
        heads = suite.heads
        tasks = {name: task_of(head) for name, head in heads.items()}
        check = _check_set(config, tasks, check_inputs, check_labels, check_origin)
        loaded()
        result = _write_heads(
            suite.backbone, heads, folder, suite.max_length, batch_size or suite.batch_size, check, options
        )
        kind = "heads"
    else:
        from ..estimators import TextEstimator

        # the estimator of the bundle's task (a Classifier, a Regressor); the graph is fp32
        clf = TextEstimator.load(bundle, device=device, precision="fp32")
        predictor = clf.predictor_
        predictor.progress = False
        task = clf.task_
        check = _check_set(config, {DEFAULT_HEAD: task}, check_inputs, check_labels, check_origin)
        loaded()
        if not predictor.exports_onnx():  # _check_exportable refused it from the config already; it may still surprise
            raise _unsupported(bundle, strategy, type(predictor).__name__)
        kind, result = predictor.export_onnx(
            np.asarray(task.classes_ if task.classes_ is not None else []),
            folder,
            check.inputs,
            check.labels.get(DEFAULT_HEAD),
            batch_size or predictor.batch_size,
            task=task,  # the manifest records it: the export's outputs are the task's
            **options,
        )
    return BundleExport(bundle, result, kind, strategy, check, time.perf_counter() - start)


def _loaded_same(bundle: Path, source: dict):
    """A check that the bundle did not change while it loaded (heads added meanwhile would not be the digest's)."""

    def check() -> None:
        if bundle_digest(bundle) != source["config_sha256"]:
            raise UnfreezeError(f"{bundle} changed while it was being exported; run `unfreeze export {bundle}` again.")

    return check


def _write_heads(backbone, heads: dict, folder: Path, max_length: int, batch_size: int, check: CheckSet, options: dict):
    from .onnx import write_heads_export

    return write_heads_export(
        backbone,
        heads,
        folder,
        max_length=max_length,
        check_inputs=check.inputs,
        check_labels=check.labels or None,
        batch_size=batch_size,
        **options,
    )


def _check_exportable(bundle: Path, config: dict) -> None:
    """Refuse, from the config alone (before any model loads), a predictor class export does not know, or a
    task whose outputs no graph gives yet."""
    from ..inference.predictors import predictor_class
    from ..tasks import TASKS

    task_name = (config.get("task") or {}).get("name")
    kind = TASKS.get(task_name) if isinstance(task_name, str) else None
    if kind is not None and not kind.exports_onnx:
        raise UnfreezeError(
            f"Cannot export {bundle}: a {kind.name} model has no ONNX export yet; predict with the bundle itself."
        )

    type_name = config.get("predictor", {}).get("type")
    try:
        predictor_type = predictor_class(type_name)
    except UnfreezeError:
        predictor_type = None
    if predictor_type is None or not predictor_type.exports_onnx():
        name = getattr(predictor_type, "__name__", type_name)
        raise _unsupported(bundle, str(config.get("strategy", {}).get("name")), str(name))


def _unsupported(bundle: Path, strategy: str, predictor: str) -> UnfreezeError:
    return UnfreezeError(
        f"Cannot export {bundle}: strategy {strategy!r} (predictor {predictor}) has no ONNX export; "
        f"export supports the predictors that have one: {exporting_predictors()}."
    )


def _check_set(
    config: dict, tasks: dict[str, Task], inputs: Sequence | None, labels: Sequence | None, origin: str | None
) -> CheckSet:
    """The inputs to check on and their labels per head (None where a head does not know the label)."""
    from .onnx import DEFAULT_CHECK_TEXTS

    if inputs is not None:
        inputs = list(inputs)
        if not inputs:
            raise UnfreezeError("The check data holds no inputs: give at least one text.")
        if labels is not None and len(labels) != len(inputs):
            raise UnfreezeError(f"{len(labels)} check labels for {len(inputs)} check inputs; they must match.")
        per_head = {}
        if labels is not None:
            for name, task in tasks.items():
                mapped = _as_labels(labels, task)
                # a head scores only data whose labels are all its own (a multi-head bundle's heads differ)
                if all(y is not None for y in mapped):
                    per_head[name] = mapped
        note = None
        if labels is not None and not per_head:
            note = "the check data's labels are not this bundle's labels: int8's accuracy change is not reported"
        return CheckSet(inputs, per_head, origin or f"{len(inputs)} given inputs", note)

    stored: dict[str, tuple[list, list]] = {}
    if config.get("kind") == MULTIHEAD_KIND:
        share = max(16, MULTIHEAD_CHECK_INPUTS // max(len(tasks), 1))
        for name in tasks:
            sample = read_check_sample(config["heads"].get(name))
            if sample is not None:
                stored[name] = (sample[0][:share], sample[1][:share])
    else:
        sample = read_check_sample(config)
        if sample is not None:
            stored[DEFAULT_HEAD] = sample
    if not stored:
        return CheckSet(
            list(DEFAULT_CHECK_TEXTS),
            {},
            f"{len(DEFAULT_CHECK_TEXTS)} built-in sentences",
            "this bundle stores no training inputs to check on (it was saved before unfreeze kept a "
            "sample); give --check DATA to check on your own data",
        )
    rows: dict = {}  # input -> row: heads fitted on the same texts share rows
    for texts, _ in stored.values():
        for text in texts:
            rows.setdefault(text, len(rows))
    per_head = {}
    for name, (texts, values) in stored.items():
        column = [None] * len(rows)
        for text, value in zip(texts, _as_labels(values, tasks[name]), strict=True):
            column[rows[text]] = value
        per_head[name] = column
    missing = [n for n in tasks if n not in stored]
    note = (
        (
            f"head{'s' if len(missing) > 1 else ''} {', '.join(missing)} store{'s' if len(missing) == 1 else ''} no "
            "training inputs; checked on the other heads' inputs"
        )
        if missing
        else None
    )
    return CheckSet(list(rows), per_head, f"{len(rows)} training inputs stored with the bundle", note)


def _as_labels(values: Sequence, task: Task) -> list:
    """Labels as the head's task has them: its own class values (a CSV's '1' is the class 1), a tuple of them
    per text (a label set), or a number (regression); None for a label it does not have."""
    if task.classes_ is None:  # values, not classes
        return [
            v if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) else None for v in values
        ]
    lookup = {str(c): c for c in np.asarray(task.classes_).tolist()}

    def one(value):
        if isinstance(value, (list, tuple)):
            mapped = [lookup.get(str(v)) for v in value]
            return None if any(m is None for m in mapped) else tuple(mapped)
        return None if value is None else lookup.get(str(value))

    return [one(v) for v in values]


def read_check_data(
    source: str,
    text_col: str = "text",
    label_col: str = "label",
    text_pair_col: str | None = None,
    limit: int = MAX_CHECK_INPUTS,
    seed: int = 0,
) -> tuple[list, list | None, str]:
    """Inputs (and labels, when the data has them) to check an export on: a built-in dataset (its test
    split) or a file; at most ``limit`` rows, a seeded sample of a larger file. Returns (inputs, labels, origin)."""
    from ..data import BUILTIN, load_data
    from ..data.readers import read_inputs

    name = str(source).partition(":")[0]
    if name in BUILTIN:
        data = load_data(source if ":" in str(source) else f"{source}:test", text_col, label_col, text_pair_col)
        inputs: list = list(data.inputs)
        labels: list | None = list(data.labels)
    else:
        frame, inputs = read_inputs(source, text_col, text_pair_col)
        inputs = list(inputs)
        labels = frame[label_col].tolist() if label_col in frame.columns else None
    total = len(inputs)
    if total > limit:
        rows = np.sort(np.random.default_rng(seed).choice(total, size=limit, replace=False))
        inputs = [inputs[i] for i in rows]
        labels = None if labels is None else [labels[i] for i in rows]
    origin = f"{len(inputs):,} {'of ' + format(total, ',') + ' ' if total > limit else ''}inputs of {source}"
    return inputs, labels, origin


__all__ = [
    "DEFAULT_EXPORT_DIR",
    "MAX_CHECK_INPUTS",
    "BundleExport",
    "CheckSet",
    "bundle_source",
    "export_bundle",
    "read_check_data",
]
