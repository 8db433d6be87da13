"""Experiment tracking: a run folder's cells as runs of an experiment tracker (MLflow).

``--track mlflow`` on fit, sweep, advise and study exports the command's run folder when the
command ends, by the same code as ``unfreeze track RUN_DIR`` (after the fact, idempotently):
one parent run per folder, one nested run per cell. ``runs`` maps a result row to a run's
content, ``folders`` reads a run folder, ``mlflow_store`` logs; MLflow is imported only there.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UnfreezeError

TRACKERS = ("mlflow",)


def check_tracking(track: str | None, uri: str | None) -> None:
    """``--track`` and ``--tracking-uri`` before anything runs: a known tracker, installed; one line otherwise."""
    if track is None:
        if uri is not None:
            raise UnfreezeError("--tracking-uri goes with --track mlflow: add --track mlflow, or drop --tracking-uri.")
        return
    if track not in TRACKERS:
        raise UnfreezeError(f"Unknown tracker {track!r} (--track). Trackers: {', '.join(TRACKERS)}.")
    from .mlflow_store import require_mlflow, tracking_uri

    require_mlflow()
    tracking_uri(uri)  # a file where the store's folder should be: one line now


def track_folder(run_dir: str | Path, uri: str | None) -> dict[str, int]:
    """Export the sweep, advise or study folder ``run_dir`` to the store ``uri``; counts of runs logged,
    replaced and unchanged."""
    from .folders import read_folder
    from .mlflow_store import export_folder

    return export_folder(read_folder(run_dir), uri, Path(run_dir))


def fit_row(clf, metrics: dict, data: str, model: str, n_train: int, n_test: int, data_fingerprint: str) -> dict:
    """The row of one ``fit`` in the shape of a sweep's cell row (``results.jsonl``), for ``runs.cell_run``."""
    strategy = clf.strategy_
    own = {k: v for k, v in strategy.get_params(deep=False).items() if v is not None}
    fitted = {k: v for k, v in clf.get_params(deep=False).items() if isinstance(v, (str, int, float))}
    training = clf.training.get_params(deep=False) if clf.training is not None else {}
    settings = {**{k: v for k, v in fitted.items() if k not in ("model", "device", "seed", "progress")}, **training}
    return {
        "key": f"fit:{data_fingerprint[:24]}",
        "cell": {"strategy": strategy.name, **own, "n_train": n_train, "seed": clf.seed, "label": strategy.describe()},
        "settings": settings,
        "model": model,
        "data": data,
        "task": clf.task_.name,
        "n_test": n_test,
        "status": "done",
        **metrics,
        "fit": dict(clf.fit_record_),
    }


def track_fit(row: dict, bundle: Path, uri: str | None, data_fingerprint: str) -> str:
    """Log one ``fit`` (``row``: ``fit_row``) as a run of its own, the bundle's config as its artifact; the line
    saying where."""
    from .mlflow_store import log_run, tracking_uri
    from .runs import DATA_TAG, KIND_TAG, RUN_DIR_TAG, cell_run

    content = cell_run(row, {KIND_TAG: "fit", DATA_TAG: data_fingerprint, RUN_DIR_TAG: str(bundle.resolve())})
    config = bundle / "unfreeze.json"
    run_id = log_run(content, uri, [config] if config.is_file() else [])
    return f"mlflow: run {run_id} logged ({tracking_uri(uri)})"


def summary_line(counts: dict[str, int], uri: str | None) -> str:
    """One line saying what an export logged and where."""
    from .mlflow_store import tracking_uri

    return (
        f"mlflow: {counts['logged']} cell runs logged, {counts['replaced']} replaced, "
        f"{counts['unchanged']} already there ({tracking_uri(uri)})"
    )


__all__ = ["TRACKERS", "check_tracking", "fit_row", "summary_line", "track_fit", "track_folder"]
