"""``nubes catalog | check | lineage``: the app's datasets, their quality and their lineage."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nubes.cli.common import AppArg, fail, load


def catalog(
    app: AppArg,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    checks: Annotated[bool, typer.Option("--checks/--no-checks", help="run each dataset's quality checks")] = True,
) -> None:
    """List the app's datasets: location, schema, size, rows (where cheap), owner and check status."""
    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    from nubes.data.catalog_report import describe_catalog

    application = load(app)
    entries = describe_catalog(application, run_checks=checks)
    if format == "json":
        print(json.dumps(entries, indent=2, default=str))
        return
    table = Table(title=f"{application.name}: {len(entries)} datasets")
    for col in ("dataset", "uri", "format", "columns", "objects", "bytes", "rows", "owner", "status"):
        table.add_column(col, overflow="fold")
    for e in entries:
        columns = ", ".join(f"{k} {v}" for k, v in (e.get("schema") or {}).items())
        size = f"{e.get('bytes', 0):,}" if "bytes" in e else ""
        rows = "" if e.get("rows") is None else f"{e['rows']:,}"
        status = e.get("status", "") + (f": {e['error']}" if e.get("error") else "")
        table.add_row(e["name"], e["uri"], e["format"], columns, str(e.get("objects", "")), size, rows, e["owner"], status)
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def check(
    app: AppArg,
    dataset: Annotated[str | None, typer.Argument(help="one dataset (default: all)")] = None,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Run the datasets' quality checks; exit 1 if an error-severity check fails."""
    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    from nubes.data.catalog_report import describe_catalog

    application = load(app)
    if dataset is not None and dataset not in application.catalog:
        fail(f"no dataset {dataset!r} in {application.name}; known: {', '.join(d.name for d in application.catalog) or 'none'}")
    entries = describe_catalog(application, [dataset] if dataset else None)
    failed = [e for e in entries if e.get("status") in ("failing", "unavailable")]
    if format == "json":
        print(json.dumps([{"dataset": e["name"], "status": e.get("status"), "error": e.get("error"), "checks": e["checks"]}
                          for e in entries], indent=2, default=str))
    else:
        table = Table(title=f"{application.name}: data quality")
        for col in ("dataset", "check", "severity", "result", "failing", "detail"):
            table.add_column(col, overflow="fold")
        from rich.markup import escape

        for e in entries:
            if e.get("error"):
                table.add_row(escape(e["name"]), "(read)", "error", "[red]UNAVAILABLE[/]", "", escape(e["error"]))
            for c in e["checks"]:
                if "passed" not in c:
                    continue
                mark = "[green]PASS[/]" if c["passed"] else ("[yellow]WARN[/]" if c["severity"] == "warn" else "[red]FAIL[/]")
                table.add_row(escape(e["name"]), escape(c["check"]), c["severity"], mark,
                              "" if c.get("failing") is None else str(c["failing"]), escape(c["detail"]))
        Console(width=None if sys.stdout.isatty() else 200).print(table)
    if failed:
        raise typer.Exit(1)


def lineage(
    app: AppArg,
    dataset: Annotated[str | None, typer.Argument(help="only invocations that read or wrote this dataset")] = None,
    limit: Annotated[int, typer.Option(help="newest N entries")] = 50,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Show what invocations read and wrote (dataset, objects, etags, bytes), newest first."""
    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    from nubes.data import lineage as lineage_store

    application = load(app)
    entries = list(lineage_store.history(application.storage, dataset, limit=limit))
    if format == "json":
        print(json.dumps(entries, indent=2, default=str))
        return
    table = Table(title=f"{application.name}: lineage" + (f" of {dataset}" if dataset else ""))
    for col in ("time", "request id", "route", "read", "wrote"):
        table.add_column(col, overflow="fold")
    for e in entries:
        reads = "\n".join(f"{r['dataset']} ({len(r['objects'])} objects, {r['bytes_read']:,} B)" for r in e.get("reads", []))
        writes = "\n".join(f"{w['dataset']} ({len(w['objects'])} objects, {w['mode']})" for w in e.get("writes", []))
        table.add_row(e["time"], e["request_id"], str(e.get("route")), reads, writes)
    Console(width=None if sys.stdout.isatty() else 200).print(table)
