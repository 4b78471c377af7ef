"""Bills: the ledger's rollups and new records read with DuckDB, grouped, and re-priced on another cloud.

``bill(app, by="route")`` returns ``{"app", "by", "since", "until", "what_if", "rows": [...], "total": {...}}``.
``by``: ``request`` (one row per invocation record), ``route``, ``tenant``, ``day`` or ``provider``.
The records come from :func:`nubes.metering.rollup.ledger_view` (Parquet rollups, the raw objects
not yet compacted and live spools; one per record id; its docstring counts the storage reads).
``what_if="gcp"`` re-prices every record on that cloud (same duration, memory, architecture,
storage operations and bookkeeping; the cloud's configured plan, else its default) with the same
price model the meter uses (a DuckDB function over :meth:`PriceModel.price`); each row keeps the
cost that was metered as ``metered_usd`` beside the re-priced ``cost_usd``.
``free_tier=True`` adds the monthly free grants as a credit in the total (list prices in the rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nubes.data.sqltext import literal
from nubes.errors import ConfigError
from nubes.metering.ledger import COLUMNS, STORAGE_OPS
from nubes.metering.pricing import Usage
from nubes.metering.rollup import ledger_view

if TYPE_CHECKING:
    import duckdb

    from nubes.core.app import App
    from nubes.metering.prices import PriceBook
    from nubes.storage.base import ObjectStore

GROUPS = ("request", "route", "tenant", "day", "provider")
__all__ = ["COLUMNS", "GROUPS", "bill", "ledger_view"]

_KEYS = {"route": ["route"], "tenant": ["tenant"], "day": ["day"], "provider": ["provider", "plan"]}
_REQUEST_COLUMNS = ["request_id", "start_time", "kind", "method", "path", "route", "status", "tenant", "provider",
                    "plan", "gateway", "platform", "memory_mb", "billed_memory_mb", "duration_ms", "billed_duration_ms",
                    "peak_rss_mb", "cold_start", *(f"ops_{op}" for op in STORAGE_OPS), "bytes_read", "bytes_written"]
_COSTS = ["compute_usd", "request_usd", "gateway_usd", "storage_usd", "bookkeeping_usd", "cost_usd"]


def _register_pricing(con: duckdb.DuckDBPyConnection, book: PriceBook, cloud: str, plan: str | None) -> None:
    """``nubes_price(...)``: a record's usage re-priced on ``cloud``/``plan`` with the meter's own models."""
    import duckdb as _duckdb
    from duckdb.sqltypes import BIGINT, BOOLEAN, DOUBLE, VARCHAR

    from nubes.metering.pricing import model

    target = model(cloud, plan)
    out = _duckdb.struct_type({"plan": VARCHAR, "gateway": VARCHAR, "billed_duration_ms": BIGINT, "billed_memory_mb": BIGINT,
                               "gb_seconds": DOUBLE, "compute": DOUBLE, "request": DOUBLE, "gateway_usd": DOUBLE,
                               "storage": DOUBLE, "bookkeeping": DOUBLE, "total": DOUBLE})
    fronts = set(target.fronts)

    def reprice(duration: float | None, memory: float | None, peak: float | None, arch: str | None, kind: str | None,
                put: int | None, get: int | None, head: int | None, lst: int | None, emulated: bool | None,
                front: str | None, http_bytes: int | None, k_puts: float | None, k_gets: float | None) -> dict[str, Any]:
        ops = {"put": put or 0, "get": get or 0, "head": head or 0, "list": lst or 0}
        usage = Usage(duration or 0.0, memory, peak, arch, kind != "event", ops, True if emulated is None else bool(emulated),
                      front if front in fronts else None, http_bytes or 0, k_puts or 0.0, k_gets or 0.0)
        c = target.price(usage, book)
        return {"plan": c.plan, "gateway": c.gateway, "billed_duration_ms": c.billed_duration_ms,
                "billed_memory_mb": c.billed_memory_mb, "gb_seconds": c.gb_seconds, "compute": c.compute_usd,
                "request": c.request_usd, "gateway_usd": c.gateway_usd, "storage": c.storage_usd,
                "bookkeeping": c.bookkeeping_usd, "total": c.total_usd}

    con.create_function("nubes_price", reprice,  # type: ignore[call-overload]
                        [DOUBLE, DOUBLE, DOUBLE, VARCHAR, VARCHAR, BIGINT, BIGINT, BIGINT, BIGINT, BOOLEAN, VARCHAR, BIGINT,
                         DOUBLE, DOUBLE], out, type="native", null_handling="special", side_effects=False)


def bill(
    app: App,
    *,
    by: str = "route",
    since: str | None = None,
    until: str | None = None,
    what_if: str | None = None,
    tenant: str | None = None,
    route: str | None = None,
    free_tier: bool | None = None,
    store: ObjectStore | None = None,
) -> dict[str, Any]:
    """The app's bill from its ledger (see the module docstring)."""
    from nubes.core import clouds
    from nubes.metering import meter_of

    if by not in GROUPS:
        raise ConfigError(f"--by must be one of {', '.join(GROUPS)}, not {by!r}")
    meter = meter_of(app)
    settings = meter.settings
    if what_if is not None and not clouds.is_cloud(what_if):
        raise ConfigError(f"--what-if must be one of {', '.join(clouds.names())}, not {what_if!r}")
    free = settings.free_tier if free_tier is None else free_tier
    store = store or app.storage
    with ledger_view(store, since, until) as con:
        filters = []  # literals, escaped: a view cannot take parameters
        if tenant is not None:
            filters.append(f"tenant = {literal(tenant)}")
        if route is not None:
            filters.append(f"route = {literal(route)}")
        where = (" WHERE " + " AND ".join(filters)) if filters else ""
        if what_if:
            _register_pricing(con, meter.book, what_if, settings.plan(what_if))
            base = f"""
                SELECT * EXCLUDE (provider, plan, gateway, billed_duration_ms, billed_memory_mb, gb_seconds,
                                  cost_compute_usd, cost_request_usd, cost_gateway_usd, cost_storage_usd,
                                  cost_bookkeeping_usd, cost_usd, p),
                       {literal(what_if)} AS provider, p.plan AS plan, p.gateway AS gateway,
                       p.billed_duration_ms, p.billed_memory_mb, p.gb_seconds,
                       p.compute AS cost_compute_usd, p.request AS cost_request_usd, p.gateway_usd AS cost_gateway_usd,
                       p.storage AS cost_storage_usd, p.bookkeeping AS cost_bookkeeping_usd, p.total AS cost_usd,
                       cost_usd AS metered_usd
                FROM (SELECT *, nubes_price(duration_ms, memory_mb, peak_rss_mb, architecture, kind, ops_put, ops_get,
                                            ops_head, ops_list, emulated, front, http_bytes, bookkeeping_puts,
                                            bookkeeping_gets) AS p
                      FROM ledger{where})"""
        else:
            base = f"SELECT *, cost_usd AS metered_usd FROM ledger{where}"
        # what-if re-pricing runs Python per record: do it once (a table), not once per query
        con.execute(f"CREATE OR REPLACE TEMP {'TABLE' if what_if else 'VIEW'} billed AS {base}")
        rows, total = _rows(con, by)
        if free:
            credit = _free_tier_credit(con, meter.book)
            total["free_tier_credit_usd"] = credit
            total["cost_after_free_tier_usd"] = max(total["cost_usd"] - credit, 0.0)
    return {"app": app.name, "by": by, "since": since, "until": until, "what_if": what_if, "rows": rows, "total": total}


def _all(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


_TOTALS = ("duration_ms", "billed_duration_ms", "gb_seconds", *_COSTS, "metered_usd")


def _rows(con: duckdb.DuckDBPyConnection, by: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The bill's rows and its total, from one pass over the records."""
    if by == "request":
        cols = ", ".join(_REQUEST_COLUMNS)
        rows = _all(con, f"""SELECT {cols}, cost_compute_usd AS compute_usd, cost_request_usd AS request_usd,
                                    cost_gateway_usd AS gateway_usd, cost_storage_usd AS storage_usd,
                                    coalesce(cost_bookkeeping_usd, 0) AS bookkeeping_usd, cost_usd, metered_usd,
                                    gb_seconds
                             FROM billed ORDER BY start_time, request_id""")
        total: dict[str, Any] = {"invocations": len(rows)}
        for name in _TOTALS:
            total[name] = sum((r.get(name) or 0) for r in rows)
        for r in rows:
            del r["gb_seconds"]
        return rows, total
    keys = _KEYS[by]
    key_sql = ", ".join(keys)
    found = _all(con, f"""
        SELECT {key_sql}, grouping({key_sql}) AS _level, count(*) AS invocations,
               round(avg(duration_ms), 3) AS avg_duration_ms, coalesce(sum(duration_ms), 0) AS duration_ms,
               coalesce(sum(billed_duration_ms), 0) AS billed_duration_ms, coalesce(sum(gb_seconds), 0) AS gb_seconds,
               {", ".join(f"coalesce(sum(ops_{op}), 0) AS ops_{op}" for op in STORAGE_OPS)},
               coalesce(sum(bytes_read), 0) AS bytes_read, coalesce(sum(bytes_written), 0) AS bytes_written,
               coalesce(sum(cost_compute_usd), 0) AS compute_usd, coalesce(sum(cost_request_usd), 0) AS request_usd,
               coalesce(sum(cost_gateway_usd), 0) AS gateway_usd, coalesce(sum(cost_storage_usd), 0) AS storage_usd,
               coalesce(sum(cost_bookkeeping_usd), 0) AS bookkeeping_usd, coalesce(sum(cost_usd), 0) AS cost_usd,
               coalesce(sum(metered_usd), 0) AS metered_usd
        FROM billed GROUP BY GROUPING SETS (({key_sql}), ()) ORDER BY _level, cost_usd DESC, {key_sql}""")
    rows = [r for r in found if not r["_level"]]
    top = next((r for r in found if r["_level"]), None)
    total = {"invocations": top["invocations"] if top else 0, **{n: (top[n] if top else 0) for n in _TOTALS}}
    for r in rows:
        del r["_level"]
    return rows, total


def _free_tier_credit(con: duckdb.DuckDBPyConnection, book: PriceBook) -> float:
    """The monthly free grants, per cloud/plan and month, valued at the list prices (each plan's model says how)."""
    from nubes.metering.pricing import model

    groups = _all(con, """
        SELECT provider, plan, substr(day, 1, 7) AS month, count(*) AS invocations,
               coalesce(sum(gb_seconds), 0) AS gb_seconds, coalesce(sum(cost_compute_usd), 0) AS compute_usd,
               coalesce(sum(cost_gateway_usd), 0) AS gateway_usd, coalesce(sum(ops_get + ops_head), 0) AS reads,
               coalesce(sum(ops_put + ops_list), 0) AS writes
        FROM billed GROUP BY ALL""")
    credit = 0.0
    for g in groups:
        try:
            plan_model = model(g["provider"], g["plan"])
        except ConfigError:  # a record of a cloud or plan no longer registered: no grant known
            continue
        credit += plan_model.free_tier_credit({k: float(g[k] or 0) for k in ("invocations", "gb_seconds", "compute_usd",
                                                                          "gateway_usd", "reads", "writes")}, book)
    return credit
