"""``nubes costs | quote | prices``: bills from the cost ledger, quotes before a run, the price table."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nubes.cli.common import METHODS, AppArg, fail, load, request_parts
from nubes.errors import NubesError


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 220)


def _usd(value: Any) -> str:
    return "" if value is None else f"${value:.8f}"


def costs(
    app: AppArg,
    by: Annotated[str, typer.Option("--by", help="request, route, tenant, day or provider")] = "route",
    since: Annotated[str | None, typer.Option("--since", help="from this day (YYYY-MM-DD) or ISO time")] = None,
    until: Annotated[str | None, typer.Option("--until", help="to this day (inclusive) or ISO time (exclusive)")] = None,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    what_if: Annotated[str | None, typer.Option("--what-if", help="re-price the same invocations on aws, gcp or azure")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="only this tenant's invocations")] = None,
    free_tier: Annotated[bool, typer.Option("--free-tier", help="credit the providers' monthly free grants in the total")] = False,
    reconcile: Annotated[str | None, typer.Option("--reconcile", metavar="LOGFILE",
                                                  help="first restore ledger records missing but present in these "
                                                       "invocation log lines ('-' reads standard input)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="with --reconcile: count, write nothing")] = False,
    compact: Annotated[bool, typer.Option("--compact", help="compact the ledger into Parquet rollups first")] = False,
) -> None:
    """The app's bill from its cost ledger, grouped; --what-if compares the clouds on the same traffic."""
    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    if dry_run and reconcile is None:
        fail("--dry-run goes with --reconcile LOGFILE")
    from nubes.metering.bills import bill

    text = _read_log(reconcile) if reconcile is not None else None
    application = load(app)
    if text is not None:
        from nubes.metering.reconcile import reconcile as restore

        try:
            done = restore(application.storage, text, dry_run=dry_run)
        except NubesError as exc:
            fail(str(exc))
        verb = "would restore" if dry_run else "restored"
        print(f"reconcile: {done['found']:,} records in the log, {done['present']:,} already in the ledger, "
              f"{verb} {done['missing'] if dry_run else done['restored']:,}", file=sys.stderr)
    if compact:
        from nubes.metering import compact as compact_ledger

        try:
            compact_ledger(application)
        except NubesError as exc:
            fail(str(exc))
    try:
        result = bill(application, by=by, since=since, until=until, what_if=what_if, tenant=tenant,
                      free_tier=free_tier or None)
    except NubesError as exc:
        fail(str(exc))
    if format == "json":
        print(json.dumps(result, indent=2, default=str))
        return
    rows = result["rows"]
    title = f"{application.name}: costs by {by}" + (f", re-priced on {what_if}" if what_if else "")
    table = Table(title=title)
    keys = (["request_id", "start_time", "route", "tenant", "provider"] if by == "request"
            else {"route": ["route"], "tenant": ["tenant"], "day": ["day"], "provider": ["provider", "plan"]}[by])
    for key in keys:
        table.add_column(key, overflow="fold")
    if by == "request":
        table.add_column("billed ms", justify="right")
        table.add_column("memory MB", justify="right")
    else:
        table.add_column("invocations", justify="right")
        table.add_column("avg ms", justify="right")
    for col in ("compute", "request", "gateway", "storage", "bookkeeping", "total"):
        table.add_column(col, justify="right")
    if what_if:
        table.add_column("metered", justify="right")
    for r in rows:
        cells = [str(r.get(k)) if r.get(k) is not None else "-" for k in keys]
        if by == "request":
            cells += [str(r["billed_duration_ms"]), str(r["billed_memory_mb"])]
        else:
            cells += [f"{r['invocations']:,}", f"{r['avg_duration_ms']:.1f}"]
        cells += [_usd(r["compute_usd"]), _usd(r["request_usd"]), _usd(r["gateway_usd"]), _usd(r["storage_usd"]),
                  _usd(r["bookkeeping_usd"]), _usd(r["cost_usd"])]
        if what_if:
            cells.append(_usd(r["metered_usd"]))
        table.add_row(*cells)
    t = result["total"]
    pad = [""] * (len(keys) - 1)
    total = ["total", *pad, "" if by == "request" else f"{t['invocations']:,}", "",
             _usd(t["compute_usd"]), _usd(t["request_usd"]), _usd(t["gateway_usd"]), _usd(t["storage_usd"]),
             _usd(t["bookkeeping_usd"]), _usd(t["cost_usd"])]
    if what_if:
        total.append(_usd(t["metered_usd"]))
    table.add_section()
    table.add_row(*total, style="bold")
    console = _console()
    console.print(table)
    if "free_tier_credit_usd" in t:
        console.print(f"free tier credit {_usd(t['free_tier_credit_usd'])}; after it {_usd(t['cost_after_free_tier_usd'])}")


def _read_log(path: str) -> str:
    """The log text at ``path`` (``-``: standard input), or a CLI error naming the fix."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as exc:
        fail(f"--reconcile {path}: cannot read it ({exc.strerror or exc}); give a file of invocation log lines, or - for stdin")


def quote(
    app: AppArg,
    method: Annotated[str, typer.Argument(help="HTTP method: " + ", ".join(METHODS))],
    path: Annotated[str, typer.Argument(help="request path, may include ?query")],
    query: Annotated[list[str] | None, typer.Option("-q", "--query", help="query parameter key=value (repeatable)")] = None,
    data: Annotated[str | None, typer.Option("-d", "--data", help="request body: JSON text, or @file")] = None,
    header: Annotated[list[str] | None, typer.Option("-H", "--header", help="request header 'Name: value' (repeatable)")] = None,
    memory: Annotated[int | None, typer.Option("--memory", help="memory in MB on every provider")] = None,
    provider: Annotated[list[str] | None, typer.Option("--provider", help="only these providers (repeatable)")] = None,
    basis: Annotated[str | None, typer.Option("--method", help="force history, sample or sizes")] = None,
    budget: Annotated[float | None, typer.Option("--budget", metavar="SECONDS",
                                                 help="how long the sample runs may take in all (default 20)")] = None,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Estimate what one request will cost on each provider before it runs (low, expected, high)."""
    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    verb, pairs, headers, body = request_parts(method, path, query, header, data)
    from nubes.metering.quote import quote as make_quote

    application = load(app)
    try:
        result = make_quote(application, verb, path, query=pairs, body=body, headers=headers, memory_mb=memory,
                            providers=provider or None, method_hint=basis, budget_s=budget)
    except NubesError as exc:
        fail(str(exc))
    if format == "json":
        print(json.dumps(result, indent=2, default=str))
        return
    table = Table(title=f"{application.name}: {verb} {path} ({result['route']}), quoted from {result['basis']}")
    for col in ("provider", "plan", "memory MB", "billed ms", "low", "expected", "high", "fits"):
        table.add_column(col, justify="right" if col not in ("provider", "plan", "fits") else "left")
    for e in result["estimates"]:
        table.add_row(e["provider"], e["plan"], str(e["memory_mb"]), str(e["billed_duration_ms"]), _usd(e["low_usd"]),
                      _usd(e["expected_usd"]), _usd(e["high_usd"]), "yes" if e["fits"] else "NO")
    console = _console()
    console.print(table)
    if result.get("peak_rss_mb"):
        console.print(f"peak memory about {result['peak_rss_mb']:,.0f} MB; durations at this machine's speed")
    for note in result.get("warnings", []):
        console.print(f"note: {escape(str(note))}")
    if result.get("datasets"):
        sizes = ", ".join(f"{k} {v.get('bytes_now', 0):,} bytes" for k, v in result["datasets"].items())
        console.print(f"datasets: {sizes}")


def prices(
    app: Annotated[str | None, typer.Argument(metavar="[APP]", help="show this app's prices (with its overrides)")] = None,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """The price figures metering uses, each with its unit, source and date."""
    from nubes.metering.prices import PriceBook

    if format not in ("table", "json"):
        fail(f"--format {format!r} is not one of: table, json")
    if app is not None:
        from nubes.metering import meter_of

        book = meter_of(load(app)).book
    else:
        book = PriceBook()
    rows = book.table()
    if format == "json":
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="nubes metering prices (USD)")
    for col in ("key", "value", "unit", "source", "date", "note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["key"], f"{r['value']:.10g}", r["unit"], r["source"], r["date"], r["note"])
    _console().print(table)
