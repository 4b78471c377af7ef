"""Bills: the ledger read with DuckDB (through the storage bridge), grouped, and re-priced on another cloud.

``bill(app, by="route")`` returns ``{"app", "by", "since", "until", "what_if", "rows": [...], "total": {...}}``.
``by``: ``request`` (one row per invocation record), ``route``, ``tenant``, ``day`` or ``provider``.
``what_if="gcp"`` re-prices every record on that provider (same duration, memory, architecture and
storage operations; the provider's default plan, or ``azure_plan``) with the same arithmetic the
meter uses (a DuckDB function over :func:`nubes.metering.compute.price`); each row keeps the
cost that was metered as ``metered_usd`` beside the re-priced ``cost_usd``.
``free_tier=True`` adds the monthly free grants as a credit in the total (list prices in the rows).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nubes.data.sqltext import literal
from nubes.errors import ConfigError
from nubes.metering import ledger as ledger_mod
from nubes.metering.compute import PLANS, STORAGE_OPS, Usage, price

if TYPE_CHECKING:
    import duckdb

    from nubes.core.app import App
    from nubes.metering.prices import PriceBook
    from nubes.storage.base import ObjectStore

GROUPS = ("request", "route", "tenant", "day", "provider")

COLUMNS: dict[str, str] = {
    "request_id": "VARCHAR", "app": "VARCHAR", "kind": "VARCHAR", "method": "VARCHAR", "path": "VARCHAR",
    "route": "VARCHAR", "status": "INTEGER", "provider": "VARCHAR", "plan": "VARCHAR", "gateway": "VARCHAR",
    "platform": "VARCHAR", "emulated": "BOOLEAN", "function_name": "VARCHAR", "region": "VARCHAR",
    "memory_mb": "DOUBLE", "architecture": "VARCHAR", "start_time": "VARCHAR", "day": "VARCHAR",
    "duration_ms": "DOUBLE", "billed_duration_ms": "BIGINT", "billed_memory_mb": "BIGINT", "peak_rss_mb": "DOUBLE",
    "cold_start": "BOOLEAN", **{f"ops_{op}": "BIGINT" for op in STORAGE_OPS}, "bytes_read": "BIGINT",
    "bytes_written": "BIGINT", "tenant": "VARCHAR", "gb_seconds": "DOUBLE", "vcpu_seconds": "DOUBLE",
    "cost_compute_usd": "DOUBLE", "cost_request_usd": "DOUBLE", "cost_gateway_usd": "DOUBLE",
    "cost_storage_usd": "DOUBLE", "cost_usd": "DOUBLE",
}

_KEYS = {"route": ["route"], "tenant": ["tenant"], "day": ["day"], "provider": ["provider", "plan"]}
_REQUEST_COLUMNS = ["request_id", "start_time", "kind", "method", "path", "route", "status", "tenant", "provider",
                    "plan", "platform", "memory_mb", "billed_memory_mb", "duration_ms", "billed_duration_ms",
                    "peak_rss_mb", "cold_start", *(f"ops_{op}" for op in STORAGE_OPS), "bytes_read", "bytes_written"]
_COSTS = ["compute_usd", "request_usd", "gateway_usd", "storage_usd", "cost_usd"]


@contextmanager
def ledger_view(store: ObjectStore, since: str | None = None, until: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with a view ``ledger`` over the ledger objects of ``[since, until]``.

    The objects are found with one LIST (day partitions outside the range are skipped by key) and
    read by DuckDB through the storage bridge (``read_json('nubes://home/_nubes/ledger/...')``).
    """
    from nubes.data.engine.bridge import Bridge

    keys = ledger_mod.keys(store, since, until)
    bridge = Bridge({"home": store})
    try:
        con = bridge.duckdb()
        cols = "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in COLUMNS.items()) + "}"
        if keys:
            files = ", ".join(literal(bridge.path(k)) for k in keys)
            source = f"read_json([{files}], format = 'newline_delimited', hive_partitioning = false, columns = {cols})"
        else:
            source = "(SELECT " + ", ".join(f"NULL::{t} AS {k}" for k, t in COLUMNS.items()) + " WHERE false)"
        where = []
        for bound, op in ((since, ">="), (until, "<=")):
            if not bound:
                continue
            if len(bound) == 10:
                where.append(f"day {op} {literal(bound)}")
            else:
                strict = "<" if op == "<=" else ">="
                where.append(f"CAST(start_time AS TIMESTAMPTZ) {strict} CAST({literal(bound)} AS TIMESTAMPTZ)")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with bridge.translate_errors():
            con.execute(f"CREATE OR REPLACE TEMP VIEW ledger AS SELECT * FROM {source}{clause}")
        yield con
    finally:
        bridge.close()


def _register_pricing(con: duckdb.DuckDBPyConnection, book: PriceBook, gateway: str, azure_memory: str) -> None:
    import duckdb as _duckdb
    from duckdb.sqltypes import BIGINT, BOOLEAN, DOUBLE, VARCHAR

    out = _duckdb.struct_type({"billed_duration_ms": BIGINT, "billed_memory_mb": BIGINT, "gb_seconds": DOUBLE,
                               "compute": DOUBLE, "request": DOUBLE, "gateway": DOUBLE, "storage": DOUBLE,
                               "total": DOUBLE})

    def reprice(provider: str, plan: str, duration: float | None, memory: float | None, peak: float | None,
                arch: str | None, kind: str | None, put: int | None, get: int | None, head: int | None,
                lst: int | None, emulated: bool | None) -> dict[str, Any]:
        ops = {"put": put or 0, "get": get or 0, "head": head or 0, "list": lst or 0}
        usage = Usage(duration or 0.0, memory, peak, arch, kind != "event", ops, bool(emulated) if emulated is not None else True)
        c = price(usage, provider, plan, book=book, gateway=gateway, azure_memory_mode=azure_memory)
        return {"billed_duration_ms": c.billed_duration_ms, "billed_memory_mb": c.billed_memory_mb,
                "gb_seconds": c.gb_seconds, "compute": c.compute_usd, "request": c.request_usd,
                "gateway": c.gateway_usd, "storage": c.storage_usd, "total": c.total_usd}

    con.create_function("nubes_price", reprice,
                        [VARCHAR, VARCHAR, DOUBLE, DOUBLE, DOUBLE, VARCHAR, VARCHAR, BIGINT, BIGINT, BIGINT, BIGINT, BOOLEAN],
                        out, type="native", null_handling="special", side_effects=False)


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
    from nubes.metering import meter_of

    if by not in GROUPS:
        raise ConfigError(f"--by must be one of {', '.join(GROUPS)}, not {by!r}")
    meter = meter_of(app)
    settings = meter.settings
    if what_if is not None and what_if not in PLANS:
        raise ConfigError(f"--what-if must be one of {', '.join(PLANS)}, not {what_if!r}")
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
            plan = settings.plan(what_if)
            _register_pricing(con, meter.book, settings.aws_gateway, settings.azure_memory)
            base = f"""
                SELECT * EXCLUDE (provider, plan, billed_duration_ms, billed_memory_mb, gb_seconds, cost_compute_usd,
                                  cost_request_usd, cost_gateway_usd, cost_storage_usd, cost_usd, p),
                       {literal(what_if)} AS provider, {literal(plan)} AS plan,
                       p.billed_duration_ms, p.billed_memory_mb, p.gb_seconds,
                       p.compute AS cost_compute_usd, p.request AS cost_request_usd, p.gateway AS cost_gateway_usd,
                       p.storage AS cost_storage_usd, p.total AS cost_usd, cost_usd AS metered_usd
                FROM (SELECT *, nubes_price({literal(what_if)}, {literal(plan)}, duration_ms, memory_mb, peak_rss_mb,
                                            architecture, kind, ops_put, ops_get, ops_head, ops_list, emulated) AS p
                      FROM ledger{where})"""
        else:
            base = f"SELECT *, cost_usd AS metered_usd FROM ledger{where}"
        con.execute(f"CREATE OR REPLACE TEMP VIEW billed AS {base}")
        rows = _rows(con, by)
        total = _one(con, """
            SELECT count(*) AS invocations, coalesce(sum(duration_ms), 0) AS duration_ms,
                   coalesce(sum(billed_duration_ms), 0) AS billed_duration_ms, coalesce(sum(gb_seconds), 0) AS gb_seconds,
                   coalesce(sum(cost_compute_usd), 0) AS compute_usd, coalesce(sum(cost_request_usd), 0) AS request_usd,
                   coalesce(sum(cost_gateway_usd), 0) AS gateway_usd, coalesce(sum(cost_storage_usd), 0) AS storage_usd,
                   coalesce(sum(cost_usd), 0) AS cost_usd, coalesce(sum(metered_usd), 0) AS metered_usd
            FROM billed""")
        if free:
            credit = _free_tier_credit(con, meter.book)
            total["free_tier_credit_usd"] = credit
            total["cost_after_free_tier_usd"] = max(total["cost_usd"] - credit, 0.0)
    return {"app": app.name, "by": by, "since": since, "until": until, "what_if": what_if, "rows": rows, "total": total}


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return dict(zip(names, cur.fetchone()))


def _all(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _rows(con: duckdb.DuckDBPyConnection, by: str) -> list[dict[str, Any]]:
    if by == "request":
        cols = ", ".join(_REQUEST_COLUMNS)
        return _all(con, f"""SELECT {cols}, cost_compute_usd AS compute_usd, cost_request_usd AS request_usd,
                                    cost_gateway_usd AS gateway_usd, cost_storage_usd AS storage_usd, cost_usd, metered_usd
                             FROM billed ORDER BY start_time, request_id""")
    keys = _KEYS[by]
    key_sql = ", ".join(keys)
    return _all(con, f"""
        SELECT {key_sql}, count(*) AS invocations, round(avg(duration_ms), 3) AS avg_duration_ms,
               sum(billed_duration_ms) AS billed_duration_ms, sum(gb_seconds) AS gb_seconds,
               {", ".join(f"sum(ops_{op}) AS ops_{op}" for op in STORAGE_OPS)},
               sum(bytes_read) AS bytes_read, sum(bytes_written) AS bytes_written,
               sum(cost_compute_usd) AS compute_usd, sum(cost_request_usd) AS request_usd,
               sum(cost_gateway_usd) AS gateway_usd, sum(cost_storage_usd) AS storage_usd,
               sum(cost_usd) AS cost_usd, sum(metered_usd) AS metered_usd
        FROM billed GROUP BY {key_sql} ORDER BY cost_usd DESC, {key_sql}""")


def _free_tier_credit(con: duckdb.DuckDBPyConnection, book: PriceBook) -> float:
    """The monthly free grants, per provider/plan and month, valued at the list prices."""
    groups = _all(con, """
        SELECT provider, plan, substr(day, 1, 7) AS month, count(*) AS n,
               sum(gb_seconds) AS gb_s, sum(cost_compute_usd) AS compute, sum(cost_gateway_usd) AS gateway,
               sum(ops_get + ops_head) AS reads, sum(ops_put + ops_list) AS writes
        FROM billed GROUP BY ALL""")
    v = book.values
    credit = 0.0
    for g in groups:
        n, gb_s = g["n"] or 0, g["gb_s"] or 0.0
        per_gbs = (g["compute"] / gb_s) if gb_s else 0.0
        if g["provider"] == "aws":
            credit += min(n, v["free.aws.lambda.requests"]) * v["aws.lambda.request"]
            credit += min(gb_s, v["free.aws.lambda.gb_seconds"]) * per_gbs
            credit += min(n, v["free.aws.gateway.requests"]) * ((g["gateway"] or 0.0) / n if n else 0.0)
            credit += min(g["reads"] or 0, v["free.aws.storage.get"]) * v["aws.storage.get"]
            credit += min(g["writes"] or 0, v["free.aws.storage.put"]) * v["aws.storage.put"]
        elif g["provider"] == "gcp":
            credit += min(n, v["free.gcp.gen2.requests"]) * v["gcp.gen2.invocation"]
            # the compute credit, split by the free vCPU-s and GiB-s grants, is bounded by what was billed
            credit += min(g["compute"] or 0.0, v["free.gcp.gen2.vcpu_seconds"] * v["gcp.gen2.vcpu_second"]
                          + v["free.gcp.gen2.gib_seconds"] * v["gcp.gen2.gib_second"])
            credit += min(g["reads"] or 0, v["free.gcp.storage.class_b"]) * v["gcp.storage.get"]
            credit += min(g["writes"] or 0, v["free.gcp.storage.class_a"]) * v["gcp.storage.put"]
        elif g["provider"] == "azure":
            plan = g["plan"]
            credit += min(n, v[f"free.azure.{plan}.executions"]) * v[f"azure.{plan}.execution"]
            credit += min(gb_s, v[f"free.azure.{plan}.gb_seconds"]) * per_gbs
    return credit
