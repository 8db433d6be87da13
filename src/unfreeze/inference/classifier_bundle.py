"""A ``Classifier``'s bundle: ``save`` writes it, ``load`` reads it back (never unpickling), ``from_head``
makes a fitted classifier of one head of a multi-head bundle.

The bundle format itself (files, digests, versions) is ``inference.bundle``; a bundle of any
earlier format version loads here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..errors import UnfreezeError, invalid_parameter
from ..machine.hardware import recorded_precision, run_precision
from ..tasks import task_from_state
from ..training.settings import Training
from .bundle import (
    CHECK_TEXTS_KEY,
    FORMAT,
    FORMAT_VERSION,
    MULTIHEAD_KIND,
    SINGLE_KIND,
    check_fingerprint,
    damaged,
    model_reference,
    package_versions,
    read_config,
    read_heads,
    read_tensors,
    write_bundle,
)

if TYPE_CHECKING:
    from ..estimators import Classifier, TextEstimator


def save_classifier(clf: Classifier, path: str | Path, metrics: dict | None = None) -> Path:
    """Write a bundle folder (JSON + safetensors); atomic: all or nothing."""

    check_is_fitted(clf, "predictor_")
    state = clf.predictor_.state()
    params = {k: v for k, v in clf.get_params(deep=False).items() if k not in ("strategy", "training")}
    params["model"] = model_reference(str(params["model"]))
    if "task" in params:
        # the parameter as a name (JSON); its settings and fitted state are the bundle's "task"
        params["task"] = clf.task_.name
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": SINGLE_KIND,
        "classifier": params,
        "strategy": {"name": clf.strategy_.name, "params": clf.strategy_.get_params(deep=False)},
        "training": clf.training_.get_params(deep=False),
        "predictor": {**state.meta, "files": sorted(state.files)},
        "backbone": {
            "reference": params["model"],
            "fingerprint": clf.base_fingerprint_,
            "family": clf.backbone_.family,
            "num_blocks": clf.backbone_.num_blocks,
        },
        "pooling": clf.pooling_,
        "layers": list(clf.layers_),
        "max_length": clf.max_length_,
        "labels": clf.classes_.tolist() if clf.task_.is_classification else [],
        "task": clf.task_.state(),
        "versions": package_versions(),
        "fit_record": clf.fit_record_,
        "metrics": metrics or {},
    }
    if getattr(clf, "check_texts_", None):
        config[CHECK_TEXTS_KEY] = clf.check_texts_
    return write_bundle(Path(path), config, state.files)


def load_estimator(
    path: str | Path,
    device: str | None = None,
    head: str | None = None,
    runtime: str = "torch",
    precision: str | None = None,
    onnx: str | Path | None = None,
) -> TextEstimator:
    """The fitted estimator a bundle holds: a ``Classifier`` (single- or multi-label) or a ``Regressor``, as its
    task says (a bundle of an earlier release: a single-label ``Classifier``). The arguments are ``load``'s."""
    from ..estimators import TextEstimator

    return load_classifier(TextEstimator, path, device, head, runtime, precision, onnx)


def bundle_estimator(config: dict) -> type[TextEstimator]:
    """The estimator class of a bundle's task (``Classifier`` where it names none, or none it knows: loading it
    then says what is wrong)."""
    from ..estimators import estimator_class
    from ..tasks import DEFAULT_TASK, TASKS

    meta = config.get("task")
    name = meta.get("name") if isinstance(meta, dict) else None
    return estimator_class(name if isinstance(name, str) and name in TASKS else DEFAULT_TASK)


def load_classifier(
    cls: type[TextEstimator],
    path: str | Path,
    device: str | None = None,
    head: str | None = None,
    runtime: str = "torch",
    precision: str | None = None,
    onnx: str | Path | None = None,
) -> Any:
    """``Classifier.load`` / ``Regressor.load``: a bundle written by ``save`` (any format version), or its ONNX
    export; ``TextEstimator.load``: whichever estimator the bundle's task needs."""
    from ..estimators import TextEstimator

    any_estimator = cls is TextEstimator
    if any_estimator:
        cls = bundle_estimator(read_config(Path(path)))
    if runtime != "torch" or onnx is not None or precision == "int8":
        from ..export.onnx_predictor import load_onnx_classifier

        return load_onnx_classifier(cls, path, head, runtime, precision or "fp32", onnx, device)
    from ..estimators import estimator_class
    from ..machine.hardware import PRECISIONS
    from ..models.loaded import private_backbone, shared_backbone
    from ..strategies import strategy_class
    from ..strategies.base import FitContext
    from .predictors import PredictorState, predictor_class

    if precision is not None and precision not in PRECISIONS:
        raise invalid_parameter(
            "precision",
            "Classifier.load",
            "None, " + ", ".join(map(repr, PRECISIONS)) + " (or 'int8' with runtime='onnx')",
            precision,
        )
    path = Path(path)
    config = read_config(path)
    if config.get("kind") == MULTIHEAD_KIND:
        return _load_one_head(cls, path, config, device, head, precision, any_estimator)
    if head is not None and head != "default":
        raise UnfreezeError(f"{path} is a single-head bundle; its one head is called 'default', not {head!r}.")
    try:
        params = dict(config["classifier"])
        strategy = strategy_class(config["strategy"]["name"])(**config["strategy"]["params"])
        training = Training(**config.get("training", {}))
        meta = config["predictor"]
        predictor_type = predictor_class(meta["type"])
        labels = config["labels"]
        task = task_from_state(config.get("task"), labels if labels else None)
        if not isinstance(labels, list) or (task.is_classification and len(labels) < task.min_classes):
            raise TypeError(f"labels must be a list of at least {task.min_classes} classes, not {labels!r}")
    except (AttributeError, KeyError, TypeError, ValueError, UnfreezeError) as exc:
        raise damaged(path, f"unfreeze.json lacks a valid classifier, strategy, predictor or task ({exc})") from exc
    estimator = estimator_class(task)
    if not issubclass(estimator, cls):
        raise UnfreezeError(
            f"{path} holds a {task.name} model, which {cls.__name__} does not load: use "
            f"{estimator.__name__}.load, or unfreeze.load_estimator for any bundle."
        )
    if device is not None:
        params["device"] = device
    if "task" in params:
        # the parameter as given: its name, or the task object where its settings are not the defaults
        params["task"] = task.name if task.params() == type(task)().params() else task.fresh()
    clf = estimator(**params, strategy=strategy, training=training)
    reference = config["backbone"]["reference"]
    base = shared_backbone(reference, clf.device)
    check_fingerprint(base.fingerprint(), config, path)
    recorded = (config.get("fit_record") or {}).get("precision") or {}
    ran = recorded_precision(precision, recorded, base.device)
    frozen = shared_backbone(reference, clf.device, ran.inference_dtype)
    backbone = private_backbone(reference, clf.device) if strategy.changes_weights else frozen
    # version-1 bundles do not list their files: a head file and/or a trained-tensors file
    stems = meta.get("files") or [s for s in ("head", "trained") if (path / f"{s}.safetensors").exists()]
    files = {stem: read_tensors(path, stem, "np" if stem in predictor_type.numpy_files else "pt") for stem in stems}
    context = FitContext(
        backbone,
        base.fingerprint(),
        config["pooling"],
        tuple(config["layers"]),
        config["max_length"],
        clf.batch_size,
        clf.seed,
        clf.cache,
        clf.progress,
        task.n_outputs,
        None,
        inference_backbone=frozen if strategy.changes_weights else None,
        inference_precision=ran.inference,
        task=task,  # the network a task trains is the task's (tokens: a head per token)
    )
    try:
        clf.predictor_ = predictor_type.from_state(context, strategy, PredictorState(files, meta))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise damaged(path, f"its weights do not fit its model ({exc})") from exc
    n_outputs = clf.predictor_.n_outputs()
    if n_outputs is not None and n_outputs != task.n_outputs:
        raise damaged(path, f"unfreeze.json lists {len(labels)} labels but the fitted head scores {n_outputs} classes")
    if task.is_classification:
        clf.classes_ = np.asarray(labels)
    clf.task_ = task
    clf.strategy_, clf.training_ = strategy, training
    clf.backbone_, clf.base_fingerprint_ = backbone, base.fingerprint()
    clf.pooling_, clf.layers_, clf.max_length_ = config["pooling"], tuple(config["layers"]), config["max_length"]
    clf.fit_record_ = config.get("fit_record", {})
    clf.n_truncated_ = 0
    clf.check_texts_ = config.get(CHECK_TEXTS_KEY)
    return clf


def _load_one_head(
    cls: type[TextEstimator],
    path: Path,
    config: dict,
    device: str | None,
    head: str | None,
    precision: str | None = None,
    any_estimator: bool = False,
) -> Any:
    """One head of a multi-head bundle as a fitted ``features`` estimator of its task (``any_estimator``: whichever
    it is; otherwise ``cls`` must be that estimator)."""
    from ..estimators import estimator_class
    from .head_tasks import task_of

    heads = read_heads(path, config)
    if head is None:
        if len(heads) > 1:
            raise UnfreezeError(
                f"{path} holds {len(heads)} heads ({', '.join(heads)}): name one "
                "(Classifier.load(path, head=NAME), --head NAME) or use MultiHeadClassifier."
            )
        head = next(iter(heads))
    if head not in heads:
        raise UnfreezeError(f"Unknown head {head!r}; this bundle has: {', '.join(heads)}.")
    task = task_of(heads[head])
    wanted = estimator_class(task)
    if any_estimator:
        cls = wanted
    elif not issubclass(cls, wanted):
        raise UnfreezeError(
            f"Head {head!r} of {path} is a {task.name} head: load it with {wanted.__name__}.load(path, head={head!r})."
        )
    precision = precision or (config.get("precision") or {}).get("inference")
    return classifier_from_head(
        cls,
        config["backbone"]["reference"],
        heads[head],
        config["max_length"],
        config.get("batch_size", 32),
        device,
        fingerprint=config["backbone"]["fingerprint"],
        path=path,
        precision=precision,
    )


def classifier_from_head(
    cls: type[TextEstimator],
    model: str,
    head,
    max_length: int,
    batch_size: int = 32,
    device: str | None = None,
    progress: bool = True,
    fingerprint: str | None = None,
    path: Path | None = None,
    precision: str | None = None,
) -> Classifier:
    """A fitted ``features`` classifier from one head of a multi-head bundle (``unfreeze.features.logistic.Head``),
    on the shared backbone (in ``precision``: a setting, the suite's; None: fp32). With
    ``fingerprint``, refuses a backbone whose weights differ."""
    from ..models.loaded import shared_backbone
    from ..strategies import Features
    from .predictors import EmbeddingHead

    params = head.info.get("params", {})
    strategy = Features(C=params.get("C"), cv=params.get("cv", 5), alpha=params.get("alpha"))
    clf = cls(
        model=str(model),
        strategy=strategy,
        pooling=head.pooling,
        layers=list(head.layers),
        max_length=max_length,
        batch_size=batch_size,
        seed=params.get("seed", 0),
        device=device,
        progress=progress,
        precision=precision or "fp32",
    )
    base = shared_backbone(str(model), device)
    if fingerprint is not None:
        check_fingerprint(
            base.fingerprint(), {"backbone": {"fingerprint": fingerprint, "reference": str(model)}}, path or Path(model)
        )
    ran = run_precision(precision or "fp32", base.device)
    backbone = shared_backbone(str(model), device, ran.inference_dtype)
    limit = backbone.length_limit(max_length)
    clf.predictor_ = EmbeddingHead(
        backbone,
        head.pooling,
        tuple(head.layers),
        limit,
        batch_size,
        head.head,
        progress=progress,
        precision=ran.inference,
    )
    from .head_tasks import task_of

    clf.task_ = task_of(head)  # the head's own task (a head of an earlier release: single)
    if clf.task_.is_classification:
        clf.classes_ = np.asarray(head.classes)
    clf.strategy_, clf.training_ = strategy, Training()
    clf.backbone_, clf.base_fingerprint_ = backbone, base.fingerprint()
    clf.pooling_, clf.layers_, clf.max_length_ = head.pooling, tuple(head.layers), limit
    clf.fit_record_, clf.n_truncated_ = head.info.get("fit_record", {}), 0
    clf.check_texts_ = head.info.get(CHECK_TEXTS_KEY)
    return clf
