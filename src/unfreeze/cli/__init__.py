"""The ``unfreeze`` command line: parses, calls the Python API, prints.

One module per command group (``fit``: fit, predict, evaluate, probe; ``sweep``: sweep,
report, demo; ``heads``; ``serve``; ``export``; ``catalog``: models, datasets, strategies). Errors a user
can cause print one line and exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys

import typer

from .common import app


def _register_commands() -> None:
    # importing a group's module adds its commands to ``app``
    from . import advise, catalog, export, fit, heads, intrinsic, serve, study, sweep  # noqa: F401


_register_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


__all__ = ["app", "main"]
