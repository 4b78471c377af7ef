"""Shared by the analytics benches: the data, the query shapes, the nubes app and the raw baselines.

The data is what the performance issue measures: ``facts`` has 12 columns (ints, doubles, strings, a
timestamp, a date, a boolean; ``id`` sorted so a range filter skips row groups), generated
deterministically by DuckDB at any size; ``dims`` (1,000 rows) is the other side of the join.

The baselines are what a competent user would write by hand in a warm function, with the same
encoding work nubes does: raw DuckDB is ONE connection kept across calls, its rows turned into JSON
records with ``json.dumps``; raw Polars is ``pl.scan_parquet(path)`` + the same query + ``collect()``,
then ``write_json()``. nubes runs with its defaults: metering on, the JSON log line (formatted, to
/dev/null) and lineage in a ``file://`` home store (the default kind).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZES = {"1M": 1_000_000, "5M": 5_000_000, "10M": 10_000_000, "20M": 20_000_000}
FILTER_ROWS = 10_000

FACTS_COLUMNS = """
    range::BIGINT AS id,
    TIMESTAMP '2024-01-01' + to_seconds((range * 7) % 31536000) AS ts,
    (DATE '2024-01-01' + (range // {per_day})::INTEGER) AS day,
    'cat_' || lpad((hash(range, 1) % 20)::VARCHAR, 2, '0') AS category,
    ['north', 'south', 'east', 'west', 'central'][(hash(range, 2) % 5 + 1)::INTEGER] AS region,
    (hash(range, 3) % 1000)::INTEGER AS dim_id,
    (hash(range, 4) % 50 + 1)::INTEGER AS qty,
    round((hash(range, 5) % 1000000) / 100.0, 2)::DOUBLE AS amount,
    round((hash(range, 6) % 100000) / 100.0, 2)::DOUBLE AS price,
    ((hash(range, 7) % 30) / 100.0)::DOUBLE AS discount,
    (hash(range, 8) % 2 = 0) AS is_member,
    'sku-' || (hash(range, 9) % 50000)::VARCHAR AS sku
"""
DIMS_COLUMNS = """
    range::INTEGER AS dim_id,
    ['consumer', 'smb', 'enterprise', 'public', 'partner'][(range % 5 + 1)::INTEGER] AS segment,
    'dim-' || range::VARCHAR AS dim_name
"""


def generate(folder: Path, sizes: list[str]) -> dict[str, Path]:
    """``facts_<size>.parquet`` per size and ``dims.parquet`` in ``folder`` (kept if already there)."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    con = duckdb.connect()
    try:
        for size in sizes:
            rows = SIZES[size]
            path = folder / f"facts_{size.lower()}.parquet"
            if not path.exists():
                cols = FACTS_COLUMNS.format(per_day=max(1, rows // 1500))
                tmp = path.with_suffix(".tmp")
                con.execute(f"COPY (SELECT {cols} FROM range({rows})) TO '{tmp}' (FORMAT parquet)")
                tmp.rename(path)
            paths[f"facts_{size.lower()}"] = path
        path = folder / "dims.parquet"
        if not path.exists():
            con.execute(f"COPY (SELECT {DIMS_COLUMNS} FROM range(1000)) TO '{path}' (FORMAT parquet)")
        paths["dims"] = path
    finally:
        con.close()
    return paths


# -- query shapes ------------------------------------------------------------------------------------
SQL = {
    "group-by": "SELECT category, count(*) AS n, sum(amount) AS amount, avg(price) AS avg_price "
    "FROM {facts} GROUP BY category ORDER BY category",
    "filter": "SELECT count(*) AS n, sum(amount) AS amount, min(day) AS first_day FROM {facts} WHERE id BETWEEN $lo AND $hi",
    "one-col": "SELECT sum(amount) AS amount FROM {facts}",
    "join": "SELECT d.segment, count(*) AS n, sum(f.amount) AS amount "
    "FROM {facts} AS f JOIN {dims} AS d ON f.dim_id = d.dim_id GROUP BY d.segment ORDER BY d.segment",
}
SHAPES = list(SQL)


def polars_query(shape: str, facts: Any, dims: Callable[[], Any], lo: int, hi: int) -> Any:
    """The same shapes on LazyFrames (``dims`` is called only by the join)."""
    import polars as pl

    if shape == "group-by":
        return (facts.group_by("category")
                .agg(pl.len().alias("n"), pl.col("amount").sum().alias("amount"), pl.col("price").mean().alias("avg_price"))
                .sort("category"))
    if shape == "filter":
        return facts.filter(pl.col("id").is_between(lo, hi)).select(
            pl.len().alias("n"), pl.col("amount").sum().alias("amount"), pl.col("day").min().alias("first_day"))
    if shape == "one-col":
        return facts.select(pl.col("amount").sum().alias("amount"))
    if shape == "join":
        return (facts.join(dims(), on="dim_id").group_by("segment")
                .agg(pl.len().alias("n"), pl.col("amount").sum().alias("amount")).sort("segment"))
    raise ValueError(shape)


def filter_bounds(rows: int) -> tuple[int, int]:
    lo = rows // 2 + 12_345
    return lo, lo + FILTER_ROWS - 1


def quiet_log() -> None:
    """nubes' JSON log line stays on the path (formatted as usual), written to /dev/null."""
    from nubes.core.logs import JsonFormatter

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives for the run
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("nubes")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


# -- the nubes app -----------------------------------------------------------------------------------
def make_app(home: Path, base_uri: str, names: list[str], name: str = "bench") -> Any:
    """One warm instance: datasets declared once, one route per (API, shape); metering and lineage as by default."""
    import nubes

    app = nubes.App(name, storage=home.as_uri(), openapi=False)
    for dataset in names:
        app.dataset(dataset, f"{base_uri}/{dataset}.parquet", format="parquet")

    def sql_route(shape: str) -> None:
        @app.get(f"/sql/{shape}/{{size}}", name=f"sql-{shape}", max_rows=1_000_000)
        def handler(ctx: Any, size: str, lo: int = 0, hi: int = 0) -> Any:
            text = SQL[shape].format(facts=f"facts_{size}", dims="dims")
            return ctx.sql(text, lo=lo, hi=hi) if shape == "filter" else ctx.sql(text)

    def table_route(shape: str) -> None:
        @app.get(f"/table/{shape}/{{size}}", name=f"table-{shape}", max_rows=1_000_000)
        def handler(ctx: Any, size: str, lo: int = 0, hi: int = 0) -> Any:
            return polars_query(shape, ctx.table(f"facts_{size}"), lambda: ctx.table("dims"), lo, hi)

    for shape in SHAPES:
        sql_route(shape)
        table_route(shape)
    return app


# -- raw baselines -----------------------------------------------------------------------------------
class WarmDuckDB:
    """Raw DuckDB as a warm function without nubes keeps it: one connection, rows to JSON records."""

    def __init__(self) -> None:
        import duckdb

        self.con = duckdb.connect()

    def __call__(self, shape: str, facts: Path, dims: Path, lo: int, hi: int) -> bytes:
        text = SQL[shape].format(facts=f"read_parquet('{facts}')", dims=f"read_parquet('{dims}')")
        cur = self.con.execute(text, {"lo": lo, "hi": hi}) if shape == "filter" else self.con.execute(text)
        names = [d[0] for d in cur.description]
        return json.dumps([dict(zip(names, row, strict=False)) for row in cur.fetchall()], default=str).encode()


def raw_polars(shape: str, facts: Path, dims: Path, lo: int, hi: int) -> bytes:
    """Raw Polars: scan_parquet on the local file, collect, JSON records."""
    import polars as pl

    frame = polars_query(shape, pl.scan_parquet(facts), lambda: pl.scan_parquet(dims), lo, hi).collect()
    return frame.write_json().encode()


def same(a: Any, b: Any) -> bool:
    """Answers equal up to float rounding (and dates/datetimes compared by their ISO text)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, str) and isinstance(b, str):
        return a.replace(" ", "T") == b.replace(" ", "T")
    return bool(a == b)
