"""Logging runs to MLflow: a parent run per run folder, a nested run per cell, idempotently.

MLflow is an optional extra and is imported only here, only when tracking: ``unfreeze`` and its
``--help`` never load it. An export finds what it logged before by tags (the folder's key on the
parent, the cell key and a digest of the row on each child), so exporting a folder again logs
only the cells that are new or were rewritten since (a failed cell retried replaces its run).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import UnfreezeError
from .folders import FolderRuns
from .runs import ARM_TAG, CELL_KEY_TAG, PARENT_KEY_TAG, RECORD_TAG, RUN_DIR_TAG, RunContent

INSTALL = "pip install 'unfreeze[mlflow]'"
DEFAULT_STORE = "mlruns"  # MLflow's own default: a file store in ./mlruns
EXPERIMENT = "unfreeze"  # the experiment runs go to, unless MLFLOW_EXPERIMENT_NAME names another
BATCH = 900  # MLflow takes at most 1,000 metrics per log_batch call


def require_mlflow() -> Any:
    """The ``mlflow`` module; one line saying how to install it when it is missing."""
    try:
        import mlflow
    except ImportError:
        raise UnfreezeError(f"--track mlflow needs MLflow: {INSTALL}") from None
    return mlflow


def tracking_uri(uri: str | None) -> str:
    """The store to log to: ``uri``, else ``MLFLOW_TRACKING_URI``, else ./mlruns; a plain path as a file URI."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE
    if urlparse(uri).scheme in ("", "file"):
        path = Path(uri.removeprefix("file://") if uri.startswith("file://") else uri.removeprefix("file:"))
        if path.exists() and not path.is_dir():
            raise UnfreezeError(f"--tracking-uri {uri} is a file; give a folder for MLflow's file store, or a URI.")
        # MLflow 3 keeps its file store in maintenance mode and refuses it unless told: ./mlruns is the
        # default the issue asks for, and needs no database server
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return path.expanduser().resolve().as_uri()
    return uri


def client(uri: str | None) -> Any:
    """An ``MlflowClient`` of the store ``uri`` names (see ``tracking_uri``)."""
    mlflow = require_mlflow()
    return mlflow.MlflowClient(tracking_uri=tracking_uri(uri))


def experiment_id(mlflow_client: Any) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    found = mlflow_client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else mlflow_client.create_experiment(name)


@contextlib.contextmanager
def store_errors(uri: str | None, run_dir: Path) -> Iterator[None]:
    """A store that cannot be reached or refuses a run: one line."""
    mlflow = require_mlflow()
    try:
        yield
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnfreezeError(f"MLflow could not log {run_dir} to {tracking_uri(uri)}: {reason[:300]}") from None


def export_folder(folder: FolderRuns, uri: str | None, run_dir: Path) -> dict[str, int]:
    """Log ``folder`` (read from ``run_dir``): its parent run and a child per cell, to the store ``uri``; counts
    of runs ``logged``, ``replaced`` (a rewritten row) and ``unchanged`` (logged before: nothing new)."""
    with store_errors(uri, run_dir):
        return _export(folder, uri)


def _export(folder: FolderRuns, uri: str | None) -> dict[str, int]:
    mlflow_client = client(uri)
    experiment = experiment_id(mlflow_client)
    parents = _search(mlflow_client, experiment, f"tags.`{PARENT_KEY_TAG}` = '{folder.key}'")
    counts = {"logged": 0, "replaced": 0, "unchanged": 0}
    if parents:
        parent_id = parents[0].info.run_id
        existing = {
            (run.data.tags.get(ARM_TAG, ""), run.data.tags.get(CELL_KEY_TAG, "")): run
            for run in _search(mlflow_client, experiment, f"tags.`mlflow.parentRunId` = '{parent_id}'")
        }
    else:
        parent_id = _create(mlflow_client, experiment, RunContent(folder.name, tags=folder.tags), None)
        mlflow_client.log_batch(parent_id, params=_params(folder.params))
        existing = {}
    for child in folder.children():
        ident = (child.tags.get(ARM_TAG, ""), child.tags[CELL_KEY_TAG])
        before = existing.get(ident)
        if before is not None and before.data.tags.get(RECORD_TAG) == child.tags[RECORD_TAG]:
            counts["unchanged"] += 1
            continue
        if before is not None:
            mlflow_client.delete_run(before.info.run_id)
        _log(mlflow_client, experiment, child, parent_id)
        counts["replaced" if before is not None else "logged"] += 1
    if not parents or counts["logged"] or counts["replaced"]:
        # the parent's counts and files follow its cells: rewritten when a cell was logged
        _log_metrics(mlflow_client, parent_id, folder.metrics, {})
        for artifact in folder.artifacts:
            mlflow_client.log_artifact(parent_id, str(artifact))
        mlflow_client.set_terminated(parent_id, "FINISHED")
    return counts


def log_run(content: RunContent, uri: str | None, artifacts: list[Path] | None = None) -> str:
    """Log one run with no parent (``fit``); its id."""
    with store_errors(uri, Path(content.tags.get(RUN_DIR_TAG, "."))):
        mlflow_client = client(uri)
        run_id = _log(mlflow_client, experiment_id(mlflow_client), content, None)
        for artifact in artifacts or []:
            mlflow_client.log_artifact(run_id, str(artifact))
    return run_id


def _search(mlflow_client: Any, experiment: str, where: str) -> list:
    runs: list = []
    token = None
    while True:
        page = mlflow_client.search_runs([experiment], filter_string=where, max_results=1000, page_token=token)
        runs += list(page)
        token = getattr(page, "token", None)
        if not token:
            return runs


def _create(mlflow_client: Any, experiment: str, content: RunContent, parent_id: str | None) -> str:
    tags = {**content.tags, "mlflow.runName": content.name}
    if parent_id is not None:
        tags["mlflow.parentRunId"] = parent_id
    return mlflow_client.create_run(experiment, tags=tags, run_name=content.name).info.run_id


def _log(mlflow_client: Any, experiment: str, content: RunContent, parent_id: str | None) -> str:
    run_id = _create(mlflow_client, experiment, content, parent_id)
    mlflow_client.log_batch(run_id, params=_params(content.params))
    _log_metrics(mlflow_client, run_id, content.metrics, content.steps)
    mlflow_client.set_terminated(run_id, "FAILED" if content.failed else "FINISHED")
    return run_id


def _params(params: dict[str, str]) -> list:
    from mlflow.entities import Param

    return [Param(key, value) for key, value in params.items()]


def _log_metrics(
    mlflow_client: Any, run_id: str, metrics: dict[str, float], steps: dict[str, list[tuple[int, float]]]
) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    entries = [Metric(key, value, now, 0) for key, value in metrics.items()]
    entries += [Metric(key, value, now, step) for key, points in steps.items() for step, value in points]
    for start in range(0, len(entries), BATCH):
        mlflow_client.log_batch(run_id, metrics=entries[start : start + BATCH])
