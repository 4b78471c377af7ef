"""``nubes invoke | serve | routes``: run an app locally."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nubes.cli.common import METHODS, AppArg, cli, err, fail, load, request_parts
from nubes.cli.emulate import AwsEventOpt, EmulateOpt, JobRetryOpt, JobTimeoutOpt, MemoryOpt, TimeoutOpt, WorkersOpt


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
    emulate: EmulateOpt = None,
    aws_event: AwsEventOpt = None,
    timeout: TimeoutOpt = None,
    memory: MemoryOpt = None,
) -> None:
    """Call one route in-process and print the response. Exits 1 when the status is 4xx or 5xx.

    With --emulate aws|gcp|azure the request goes through that provider's payload and adapter in a
    fresh worker process, and the provider's answer is printed (its limits and errors included).
    """
    from nubes.cli.emulate import _check
    from nubes.core.request import Request

    _check(emulate, aws_event, timeout, memory, None)

    verb, pairs, headers, body = request_parts(method, path, query, header, data)
    headers.append(("Content-Length", str(len(body))))
    request = Request(verb, path, query=pairs or None, headers=headers, body=body)
    if emulate is not None:
        from nubes.cli.emulate import invoke_emulated

        response = invoke_emulated(app, request, emulate, aws_event, timeout, memory)
    else:
        response = load(app).handle(request)
    out = sys.stdout.buffer
    if include:
        out.write(f"HTTP/1.1 {response.status} {response.reason}\n".encode())
        for name, value in response.headers.multi_items():
            out.write(f"{name}: {value}\n".encode())
        out.write(b"\n")
    if output is not None:
        output.write_bytes(response.body)
        err.print(f"wrote {len(response.body):,} bytes to {escape(str(output))}")
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
    emulate: EmulateOpt = None,
    aws_event: AwsEventOpt = None,
    timeout: TimeoutOpt = None,
    memory: MemoryOpt = None,
    workers: WorkersOpt = 2,
    request_limit: Annotated[int | None, typer.Option("--request-limit", metavar="BYTES", hidden=True,
                                                      help="with --emulate: override the front end's request limit (testing)")] = None,
    job_timeout: JobTimeoutOpt = None,
    job_retry_delay: JobRetryOpt = None,
) -> None:
    """Serve the app over HTTP for development (Ctrl+C stops).

    With --emulate aws|gcp|azure every request is answered as that provider would: its payload
    built and handed to the deployed adapter in a worker process (a pool of --workers; each new
    worker is a cold start), its request/response limits, --timeout and --memory enforced.
    """
    from nubes.adapters.local import make_server
    from nubes.cli.emulate import _check

    if not 0 <= port <= 65535:
        fail(f"--port {port} is not a TCP port (0-65535)")
    _check(emulate, aws_event, timeout, memory, workers)
    if emulate is None and (request_limit, job_timeout, job_retry_delay) != (None, None, None):
        fail("--request-limit, --job-timeout and --job-retry-delay need --emulate")
    if emulate is not None:
        from nubes.cli.emulate import serve_emulated

        serve_emulated(app, host, port, emulate, aws_event, timeout, memory, workers, request_limit, job_timeout, job_retry_delay)
        return
    application = load(app)
    try:
        server = make_server(application, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another with --port")
    name = escape(repr(application.name))
    err.print(f"nubes: serving {name} ({len(application.routes)} routes) on [bold]{server.url}[/]  (Ctrl+C to stop)")
    err.print(f"       OpenAPI: {server.url}/_nubes/openapi.json")
    try:
        server.serve_forever()  # returns on SIGINT / SIGTERM, once the requests in flight are answered
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    err.print("nubes: stopped")


@cli.command()
def routes(
    app: AppArg,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """List everything the app answers: its routes (jobs marked), the built-in /_nubes/ routes that are
    enabled, and its event handlers with what each cloud binds them to (nubes.toml [deploy.CLOUD.*])."""
    from nubes.core.triggers import listing

    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    application = load(app)
    ordered = sorted(application.router.routes, key=lambda r: r.internal)
    rows: list[dict[str, Any]] = [
        {
            "methods": sorted(r.methods),
            "path": r.path,
            "handler": r.name,
            "parameters": [f"{p.name} ({p.source}{', required' if p.required else ''})" for p in r.params],
            "summary": r.summary or "",
            "kind": "built-in" if r.internal else "job" if r.options.get("job") else "route",
        }
        for r in ordered
    ]
    events = listing(application)
    if format == "json":
        print(json.dumps({"routes": rows, "events": events}, indent=2))
        return
    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"{application.name}: {len(rows)} routes", caption="* required; job: answers 202 and runs in the background")
    for col in ("methods", "path", "kind", "handler", "parameters", "summary"):
        table.add_column(col, overflow="fold")
    for r, row in zip(ordered, rows, strict=True):
        params = ", ".join(f"{p.name}{'*' if p.required else ''} ({p.source})" for p in r.params)
        table.add_row(", ".join(row["methods"]), row["path"], row["kind"], row["handler"], params, row["summary"])
    console.print(table)
    if events:
        clouds = sorted({c for e in events for c in e.get("bindings", {})})
        second = Table(title=f"{application.name}: {len(events)} event handlers",
                       caption="bindings from nubes.toml [deploy.CLOUD.sources|queues]")
        for col in ("event", "listens to", "handler", *clouds):
            second.add_column(col, overflow="fold")
        for e in events:
            if e["kind"] == "object_created":
                what = f"store {e['store']}" if e.get("store") else f"source {e['source']}"
                what += f", prefix {e['prefix']!r}" if e.get("prefix") else ""
            elif e["kind"] == "message":
                what = f"queue {e['queue']}" if e.get("queue") else "any queue"
            else:
                what = f"schedule {e['schedule']}" + (f" ({e['cron']})" if e.get("cron") else "")
            bound = e.get("bindings", {})
            second.add_row(e["kind"], what, e["handler"], *[str(bound.get(c) or "-") for c in clouds])
        console.print(second)
