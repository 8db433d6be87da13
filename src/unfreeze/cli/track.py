"""``track``: export a finished run folder to an experiment tracker; and ``--track`` of the other commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .arguments import TrackingArguments, arguments
from .common import app, user_errors
from .options import with_parameters


@app.command()
@user_errors
@with_parameters(arguments(TrackingArguments, ("tracking_uri",)))
def track(
    run_dir: Annotated[Path, typer.Argument(help="A run folder of unfreeze sweep, advise or study.")],
    **options,
) -> None:
    """Log a run folder to MLflow: a run for the folder, a nested run per cell (parameters, scores, per-epoch
    curves, seconds, memory, trainable parameters; the report as an artifact). Idempotent: cells logged
    before are found by their cell key and not logged again; a cell rewritten since replaces its run."""
    from ..tracking import check_tracking
    from ..tracking.folders import read_folder

    uri = options.pop("tracking_uri")
    check_tracking("mlflow", uri)
    folder = read_folder(run_dir)  # a folder that is no run: one line before the store is touched
    from ..tracking import summary_line
    from ..tracking.mlflow_store import export_folder

    typer.echo(summary_line(export_folder(folder, uri, run_dir), uri))


def track_run(tracking: TrackingArguments, run_dir: Path) -> None:
    """After a command's run: export ``run_dir`` when --track asked for it."""
    if tracking.track is None:
        return
    from ..errors import UnfreezeError
    from ..tracking import summary_line, track_folder

    try:
        counts = track_folder(run_dir, tracking.tracking_uri)
    except UnfreezeError as exc:  # the run itself finished: say how to log it once the store answers
        raise UnfreezeError(f"{exc}. The run is complete: log it later with unfreeze track {run_dir}.") from None
    typer.echo(summary_line(counts, tracking.tracking_uri))
