"""A heavy route for quote tests: POST /train reads every row of a dataset, holds ``bytes_per_row`` bytes per row
in memory and spends ``ms_per_row`` ms per row and epoch — the shape of a training run, set by its body."""

from __future__ import annotations

import os
import time
from typing import Any

import nubes

DATA = os.environ.get("METERING_DATA", "mem://metering-example-data")

app = nubes.App("heavy", openapi=False)
app.dataset("trips", f"{DATA.rstrip('/')}/trips.parquet")
app.dataset("events", f"{DATA.rstrip('/')}/events.parquet")  # 600,000 rows in one row group (make_events)


@app.post("/train")
def train(ctx: nubes.Context, body: dict[str, Any]) -> dict[str, Any]:
    rows = ctx.sql("SELECT trip_id, distance, fare FROM trips").fetchall()
    n = len(rows)
    held = b"x" * (n * int(body.get("bytes_per_row", 0)))  # resident: bytes are written, not just reserved
    time.sleep(n * float(body.get("ms_per_row", 0.0)) * int(body.get("epochs", 1)) / 1000)
    return {"rows": n, "held": len(held)}


@app.post("/train-events")
def train_events(ctx: nubes.Context, body: dict[str, Any]) -> dict[str, Any]:
    """The same work over ``events``: its smallest slice is 2,048 of 600,000 rows, so slow work samples fast."""
    n = ctx.sql("SELECT count(*) FROM events").fetchall()[0][0]
    time.sleep(n * float(body.get("ms_per_row", 0.0)) * int(body.get("epochs", 1)) / 1000)
    return {"rows": n}


@app.job("/train-job")
def train_job(ctx: nubes.Context, body: dict[str, Any]) -> dict[str, Any]:
    return train_events(ctx, body)


def make_events(store_uri: str, rows: int = 600_000) -> None:
    """Write ``events.parquet`` (one row group) into the store at ``store_uri``."""
    import tempfile

    import duckdb

    from nubes.storage import open as open_store

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "events.parquet")
        duckdb.connect().execute(f"COPY (SELECT i AS id, i % 13 AS kind FROM range({rows}) t(i)) TO '{path}' "
                                 f"(FORMAT parquet, ROW_GROUP_SIZE {rows})")
        with open(path, "rb") as f:
            open_store(store_uri).put("events.parquet", f)
