"""An analytics app for metering tests: a route that sleeps a known time, and routes that query a
generated Parquet dataset of a few MB with ``ctx.sql``.

``METERING_DATA`` is the store URI holding ``trips.parquet`` (make it with :func:`make_trips`);
the home store is ``NUBES_STORAGE`` as usual. Loaded by spec, so emulator workers can load it too.
"""

from __future__ import annotations

import os
import time
from typing import Any

import nubes

DATA = os.environ.get("METERING_DATA", "mem://metering-example-data")

app = nubes.App("metering-example", openapi=False)
app.dataset("trips", f"{DATA.rstrip('/')}/trips.parquet", description="generated taxi-like trips")


@app.get("/sleep")
def sleep(ctx: nubes.Context, ms: int = 100) -> dict[str, Any]:
    """Sleep ``ms`` milliseconds: a handler with a known duration."""
    time.sleep(ms / 1000)
    return {"slept_ms": ms}


@app.get("/ping")
def ping(ctx: nubes.Context) -> dict[str, Any]:
    return {"ok": True}


@app.post("/echo")
def echo(ctx: nubes.Context, body: dict[str, Any]) -> dict[str, Any]:
    return body


@app.get("/summary")
def summary(ctx: nubes.Context, min_distance: float = 0.0) -> Any:
    """Fares by vendor over the trips at least ``min_distance`` long (a full scan of three columns)."""
    return ctx.sql(
        "SELECT vendor, count(*) AS trips, round(avg(fare), 4) AS avg_fare, round(sum(distance), 2) AS km "
        "FROM trips WHERE distance >= $min GROUP BY vendor ORDER BY vendor",
        min=min_distance,
    )


@app.get("/top")
def top(ctx: nubes.Context, n: int = 10) -> Any:
    """The ``n`` longest trips (every column of the matching rows)."""
    return ctx.sql("SELECT * FROM trips ORDER BY distance DESC LIMIT $n", n=n)


def make_trips(store_uri: str, rows: int = 120_000, seed: int = 7) -> int:
    """Write ``trips.parquet`` (a few MB) into the store at ``store_uri``; return its size in bytes."""
    import tempfile

    import duckdb

    from nubes.storage import open as open_store

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trips.parquet")
        con = duckdb.connect()
        con.execute(f"SELECT setseed({seed / 100})")
        con.execute(
            f"""COPY (
                SELECT i AS trip_id,
                       (i % 7)::INTEGER AS vendor,
                       TIMESTAMP '2026-01-01' + to_seconds(i * 13) AS pickup,
                       round(random() * 30, 3) AS distance,
                       round(3 + random() * 80, 2) AS fare,
                       round(random() * 15, 2) AS tip,
                       md5(i::VARCHAR) AS note
                FROM range({rows}) t(i)
            ) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 30000)"""
        )
        con.close()
        with open(path, "rb") as f:
            info = open_store(store_uri).put("trips.parquet", f)
    return info.size

