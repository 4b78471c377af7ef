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


@app.post("/train")
def train(ctx: nubes.Context, body: dict[str, Any]) -> dict[str, Any]:
    rows = ctx.sql("SELECT trip_id, distance, fare FROM trips").fetchall()
    n = len(rows)
    held = b"x" * (n * int(body.get("bytes_per_row", 0)))  # resident: bytes are written, not just reserved
    time.sleep(n * float(body.get("ms_per_row", 0.0)) * int(body.get("epochs", 1)) / 1000)
    return {"rows": n, "held": len(held)}


@app.job("/train-job")
def train_job(ctx: nubes.Context, body: dict[str, Any]) -> dict[str, Any]:
    return train(ctx, body)
