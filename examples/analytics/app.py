"""Analytics only: DuckDB SQL over order files in the home store, no data frame library, no model.

Order batches arrive as Parquet under ``orders/`` in the app's home store (``POST /orders`` writes one,
atomically; so can any other writer). A nightly schedule rolls them up into ``daily/`` with
``ctx.write``, an object-created handler logs each batch as it lands, and the routes answer with SQL.
Its code imports neither Polars nor scikit-learn, so on AWS it builds as one zip:

    nubes serve examples/analytics/app.py
    nubes build examples/analytics/app.py --cloud aws --out build/analytics-aws
    nubes deploy examples/analytics/app.py --cloud aws --dry-run
"""

from __future__ import annotations

from datetime import date
from typing import Any

import nubes
from nubes import Context, HTTPError, ObjectCreated, Scheduled
from nubes.errors import NotFound

app = nubes.App("sales", models=False, description="Revenue from order batches in object storage")
HOME = app.storage_uri.rstrip("/")  # file://.nubes beside this file locally, NUBES_STORAGE when deployed
app.dataset("orders", f"{HOME}/orders/", format="parquet", owner="sales-ops",
            description="order lines: day, region, amount (one Parquet object per batch)")
app.dataset("daily", f"{HOME}/daily/", format="parquet", description="revenue per day and region (nightly)")

_ROLLUP = "select day, region, count(*) as orders, round(sum(amount), 2) as revenue from orders group by all"


@app.post("/orders")
def add_orders(ctx: Context, body: list[dict[str, Any]]) -> dict[str, Any]:
    """Append a batch of ``{"day": "2026-12-01", "region": "north", "amount": 12.5}`` order lines."""
    if not body or len(body) > 10_000:
        raise HTTPError(422, "send between 1 and 10,000 order lines")
    try:
        days = [date.fromisoformat(str(o["day"])) for o in body]
        regions = [str(o["region"]) for o in body]
        amounts = [float(o["amount"]) for o in body]
    except (KeyError, TypeError, ValueError) as exc:
        raise HTTPError(422, f"each order line needs day (YYYY-MM-DD), region and amount: {exc}") from None
    batch = ctx.sql("select unnest($days) as day, unnest($regions) as region, unnest($amounts) as amount",
                    days=days, regions=regions, amounts=amounts)
    ctx.write("orders", batch, mode="append")
    return {"added": len(body)}


@app.get("/revenue")
def revenue(ctx: Context, region: str | None = None) -> Any:
    """Revenue per region (one region with ``?region=``), from every batch so far."""
    where = "where region = $region" if region else ""
    params = {"region": region} if region else {}
    try:
        return ctx.sql(f"select region, count(*) as orders, round(sum(amount), 2) as revenue from orders {where} "
                       "group by region order by region", **params)
    except NotFound:  # no batch has arrived yet
        return []


@app.get("/daily")
def daily(ctx: Context) -> Any:
    """The nightly rollup as last written."""
    try:
        return ctx.sql("select day, region, orders, revenue from daily order by day, region")
    except NotFound:  # the schedule has not run yet
        return []


@app.on_schedule("nightly", cron="0 0 2 * * *")
def nightly(ctx: Context, event: Scheduled) -> dict[str, Any]:
    """Rewrite ``daily`` from every order batch (a new version, swapped in atomically)."""
    ctx.write("daily", ctx.sql(_ROLLUP), partition_by="region")
    return {"rolled_up_at": event.time.isoformat()}


@app.on_object_created(prefix="orders/")
def landed(ctx: Context, event: ObjectCreated) -> None:
    ctx.log.info("order batch landed", key=event.key, size=event.size)
