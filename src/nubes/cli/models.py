"""``nubes models APP list | show NAME | promote NAME VERSION``: the app's model registry."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from nubes.cli.common import AppArg, fail, load

app = models_cli = typer.Typer(
    help="The app's registered models (nubes.ml): list them, show one's versions, promote a version.",
    no_args_is_help=True,
)

FormatOpt = Annotated[str, typer.Option("--format", help="table or json")]


@models_cli.callback()
def models(ctx: typer.Context, app: AppArg) -> None:
    """The app's registered models, in its home store (NUBES_STORAGE or the App's storage=)."""
    ctx.obj = app


def _registry(ctx: typer.Context) -> Any:
    application = load(ctx.obj)
    return application, application.models


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 200)


def _metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (metrics or {}).items())


def _check_format(format: str) -> None:
    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")


@models_cli.command("list")
def list_models(ctx: typer.Context, format: FormatOpt = "table") -> None:
    """Every registered model: versions, latest, aliases and the latest version's metrics."""
    _check_format(format)
    application, registry = _registry(ctx)
    rows = []
    for name, entry in sorted(registry.catalog().items()):
        latest = entry["versions"][-1]
        rows.append({"name": name, "versions": len(entry["versions"]), "latest": latest.version,
                     "aliases": entry["aliases"], "estimator": latest.estimator,
                     "created": latest.created, "metrics": latest.metrics})
    if format == "json":
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{application.name}: {len(rows)} models in {registry.store.uri}")
    for col in ("model", "versions", "latest", "aliases", "estimator", "metrics (latest)", "created"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], str(r["versions"]), str(r["latest"]),
                      ", ".join(f"{a}→{v}" for a, v in sorted(r["aliases"].items())),
                      (r["estimator"] or "").rsplit(".", 1)[-1], _metrics(r["metrics"]), r["created"])
    _console().print(table)


@models_cli.command()
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the model's name")],
    version: Annotated[int | None, typer.Option("--version", help="one version in full (default: all, summarized)")] = None,
    format: FormatOpt = "table",
) -> None:
    """A model's versions (metrics, parameters, aliases), or one version's full metadata."""
    from nubes.errors import NubesError

    _check_format(format)
    _, registry = _registry(ctx)
    integrity = registry.integrity()
    try:
        if version is not None:
            mv = registry.get(name, version)
            mv = type(mv).from_dict({**mv.to_dict(), "signed": mv.signed},
                                    [a for a, v in registry.aliases(name).items() if v == mv.version])
            print(json.dumps(mv.to_dict(), indent=2, default=str))
            print(integrity, file=sys.stderr)
            return
        versions = registry.versions(name)
    except NubesError as exc:
        fail(str(exc).splitlines()[0])
    if not versions:
        fail(f"no model {name!r}; registered: {', '.join(registry.names()) or 'none'}")
    if format == "json":
        print(json.dumps([v.to_dict() for v in versions], indent=2, default=str))
        print(integrity, file=sys.stderr)
        return
    table = Table(title=f"model {name}", caption=integrity)
    for col in ("version", "aliases", "created", "estimator", "metrics", "params", "inputs", "signed"):
        table.add_column(col, overflow="fold")
    for v in versions:
        inputs = ", ".join(i.get("dataset") or i.get("uri") or "?" for i in v.inputs)
        table.add_row(str(v.version), ", ".join(v.aliases), v.created, (v.estimator or "").rsplit(".", 1)[-1],
                      _metrics(v.metrics), json.dumps(v.params, default=str), inputs, "yes" if v.signed else "no")
    _console().print(table)


@models_cli.command()
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the model's name")],
    version: Annotated[int, typer.Argument(help="the version to promote")],
    alias: Annotated[str, typer.Option("--alias", help="the alias to point at it")] = "production",
) -> None:
    """Point an alias (default: production) at a version; served from the next request on."""
    from nubes.errors import NubesError

    _, registry = _registry(ctx)
    try:
        mv = registry.promote(name, version, alias)
    except NubesError as exc:
        fail(str(exc).splitlines()[0])
    print(f"{name}: {alias} → version {mv.version}")
