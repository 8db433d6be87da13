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
    from . import advise, catalog, export, fit, heads, intrinsic, serve, study, sweep, track  # noqa: F401


_register_commands()


def main(args: list[str] | None = None) -> None:
    """Run the command line; a value the option parser refuses (a word for a number, a missing argument) is one
    line naming the option, exit code 2, as every other user error is."""
    try:  # typer 0.2x carries its own click; earlier releases use click's
        from typer._click import exceptions as clicks
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions as clicks  # type: ignore[no-redef]

    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="unfreeze", standalone_mode=False)
    except clicks.NoArgsIsHelpError as exc:  # `unfreeze` or `unfreeze heads` alone: the help, as click gives it
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else "")
        sys.exit(2)
    except clicks.UsageError as exc:
        message = exc.format_message().rstrip()
        where = f" See `{exc.ctx.command_path} --help`." if exc.ctx is not None else ""
        typer.echo(f"error: {message}{'' if message.endswith('.') else '.'}{where}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except clicks.ClickException as exc:  # a file argument that cannot be opened and the like
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
