"""``nubes invoke | serve | routes``: run an app locally. Errors in what the user typed exit 2 with a fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from nubes.core.app import App
from nubes.core.errors import NubesError

cli = typer.Typer(
    name="nubes",
    help="Run one analytics app locally and on AWS Lambda, Google Cloud Functions and Azure Functions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)

AppArg = Annotated[str, typer.Argument(metavar="APP", help="path/to/file.py:attr or package.module:attr (attr defaults to 'app')")]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _load(spec: str) -> App:
    from nubes.core.loader import load_app

    try:
        return load_app(spec)
    except NubesError as exc:
        fail(str(exc))


@cli.command()
def invoke(
    app: AppArg,
    method: Annotated[str, typer.Argument(help="HTTP method: " + ", ".join(METHODS))],
    path: Annotated[str, typer.Argument(help="request path, may include ?query")],
    data: Annotated[str | None, typer.Option("-d", "--data", help="request body: JSON text, or @file to send a file's bytes")] = None,
    query: Annotated[list[str] | None, typer.Option("-q", "--query", help="query parameter key=value (repeatable)")] = None,
    header: Annotated[list[str] | None, typer.Option("-H", "--header", help="request header 'Name: value' (repeatable)")] = None,
    include: Annotated[bool, typer.Option("-i", "--include", help="print the status line and headers")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write the body to this file")] = None,
) -> None:
    """Call one route in-process and print the response. Exits 1 when the status is 4xx or 5xx."""
    from nubes.core.request import Request

    verb = method.upper()
    if verb not in METHODS:
        fail(f"unknown HTTP method {method!r}; use one of {', '.join(METHODS)}")
    if not path.startswith("/"):
        fail(f"path {path!r} must start with '/', e.g. /items/3")
    pairs = []
    for item in query or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"query parameter {item!r} is not key=value, e.g. -q limit=10")
        pairs.append((key, value))
    headers = []
    for item in header or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            fail(f"header {item!r} is not 'Name: value', e.g. -H 'Accept: text/csv'")
        headers.append((name.strip(), value.strip()))
    body = b""
    if data is not None:
        if data.startswith("@"):
            source = Path(data[1:])
            if not source.is_file():
                fail(f"no file {str(source)!r} to send as the body (from -d {data})")
            body = source.read_bytes()
        else:
            body = data.encode("utf-8")
        if not any(n.lower() == "content-type" for n, _ in headers):
            headers.append(("Content-Type", "application/json"))
    headers.append(("Content-Length", str(len(body))))
    application = _load(app)
    request = Request(verb, path, query=pairs or None, headers=headers, body=body)
    response = application.handle(request)
    out = sys.stdout.buffer
    if include:
        out.write(f"HTTP/1.1 {response.status} {response.reason}\n".encode())
        for name, value in response.headers.multi_items():
            out.write(f"{name}: {value}\n".encode())
        out.write(b"\n")
    if output is not None:
        output.write_bytes(response.body)
        err.print(f"wrote {len(response.body):,} bytes to {output}")
    elif response.body:
        media = response.media_type or ""
        textual = media.startswith("text/") or "json" in media or media.endswith("xml")
        if not textual and sys.stdout.isatty():
            err.print(f"({len(response.body):,} bytes of {media or 'binary data'}; use -o FILE to save them)")
        else:
            out.write(response.body)
            if textual and not response.body.endswith(b"\n"):
                out.write(b"\n")
    out.flush()
    if response.status >= 400:
        raise typer.Exit(1)


@cli.command()
def serve(
    app: AppArg,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one)")] = 8000,
) -> None:
    """Serve the app over HTTP for development (Ctrl+C stops)."""
    from nubes.adapters.local import make_server

    if not 0 <= port <= 65535:
        fail(f"--port {port} is not a TCP port (0-65535)")
    application = _load(app)
    try:
        server = make_server(application, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another with --port")
    err.print(f"nubes: serving {application.name!r} ({len(application.routes)} routes) on [bold]{server.url}[/]  (Ctrl+C to stop)")
    err.print(f"       OpenAPI: {server.url}/_nubes/openapi.json")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        err.print("nubes: stopped")
    finally:
        server.server_close()


@cli.command()
def routes(
    app: AppArg,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """List the app's routes: methods, path, handler, parameters."""
    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    application = _load(app)
    rows = [
        {
            "methods": sorted(r.methods),
            "path": r.path,
            "handler": r.name,
            "parameters": [f"{p.name} ({p.source}{', required' if p.required else ''})" for p in r.params],
            "summary": r.summary or "",
        }
        for r in application.routes
    ]
    if format == "json":
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{application.name}: {len(rows)} routes", caption="* required")
    for col in ("methods", "path", "handler", "parameters", "summary"):
        table.add_column(col, overflow="fold")
    for r, row in zip(application.routes, rows):
        params = ", ".join(f"{p.name}{'*' if p.required else ''} ({p.source})" for p in r.params)
        table.add_row(", ".join(row["methods"]), row["path"], row["handler"], params, row["summary"])
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@cli.command()
def catalog(
    app: AppArg,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    checks: Annotated[bool, typer.Option("--checks/--no-checks", help="run each dataset's quality checks")] = True,
) -> None:
    """List the app's datasets: location, schema, size, rows (where cheap), owner and check status."""
    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    from nubes.core.catalog_report import describe_catalog

    application = _load(app)
    entries = describe_catalog(application, run_checks=checks)
    if format == "json":
        print(json.dumps(entries, indent=2, default=str))
        return
    table = Table(title=f"{application.name}: {len(entries)} datasets")
    for col in ("dataset", "uri", "format", "columns", "objects", "bytes", "rows", "owner", "status"):
        table.add_column(col, overflow="fold")
    for e in entries:
        columns = ", ".join(f"{k} {v}" for k, v in (e.get("schema") or {}).items())
        table.add_row(e["name"], e["uri"], e["format"], columns, str(e.get("objects", "")), f"{e.get('bytes', 0):,}" if "bytes" in e else "",
                      "" if e.get("rows") is None else f"{e['rows']:,}", e["owner"], e.get("status", "") + (f": {e['error']}" if e.get("error") else ""))
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@cli.command()
def check(
    app: AppArg,
    dataset: Annotated[str | None, typer.Argument(help="one dataset (default: all)")] = None,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Run the datasets' quality checks; exit 1 if an error-severity check fails."""
    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    from nubes.core.catalog_report import describe_catalog

    application = _load(app)
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


@cli.command()
def lineage(
    app: AppArg,
    dataset: Annotated[str | None, typer.Argument(help="only invocations that read or wrote this dataset")] = None,
    limit: Annotated[int, typer.Option(help="newest N entries")] = 50,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Show what invocations read and wrote (dataset, objects, etags, bytes), newest first."""
    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    from nubes.core import lineage as lineage_store

    application = _load(app)
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


def main() -> None:
    cli()
