"""A shop analytics app written from the analytics contract; SHOP_DATA says where its datasets live."""

from __future__ import annotations

import os
from datetime import date

import polars as pl

import nubes
from nubes import Context, checks

DATA = os.environ["SHOP_DATA"].rstrip("/")
app = nubes.App("shop", storage=os.environ.get("SHOP_HOME", "mem://shop-home"))

app.dataset(
    "orders",
    f"{DATA}/orders.parquet",
    owner="sales-ops",
    description="One row per order",
    tags=("finance",),
    checks=[checks.not_null("order_id"), checks.unique("order_id"), checks.in_range("amount", min=0)],
)
app.dataset(
    "customers",
    f"{DATA}/customers.csv",
    owner="crm",
    checks=[checks.accepted_values("tier", ["gold", "silver", "bronze"], severity="warn")],
)
app.dataset("daily", f"{DATA}/daily/", description="Revenue per day and region, rebuilt by POST /daily/rebuild")


@app.get("/revenue")
def revenue(ctx: Context, region: str, since: date = date(2024, 1, 1)):
    """Orders and revenue of one region since a day."""
    return ctx.sql(
        "select region, count(*) as orders, sum(amount) as revenue from orders "
        "where region = $region and day >= $since group by region",
        region=region,
        since=since,
    )


@app.get("/top-customers")
def top_customers(ctx: Context, n: int = 3):
    return ctx.sql(
        "select c.name, c.tier, round(sum(o.amount), 2) as spent from orders o join customers c using (customer_id) "
        "group by all order by spent desc, c.name limit $n",
        n=n,
    )


@app.get("/big-orders")
def big_orders(ctx: Context, min_amount: float = 100.0):
    return ctx.table("orders").filter(pl.col("amount") >= min_amount).select("order_id", "amount").sort("order_id")


@app.post("/daily/rebuild")
def rebuild(ctx: Context, mode: str = "overwrite") -> dict:
    daily = ctx.sql("select day, region, round(sum(amount), 2) as revenue from orders group by all")
    ctx.write("daily", daily, partition_by="region", mode=mode)
    return {"rows": ctx.sql("select count(*) as n from daily").fetchall()[0][0]}


@app.get("/daily")
def daily(ctx: Context):
    return ctx.sql("select region, count(*) as days, round(sum(revenue), 2) as revenue from daily group by region order by region")


@app.get("/all-orders", max_rows=50)
def all_orders(ctx: Context):
    return ctx.sql("select * from orders order by order_id")


@app.get("/order-count", checks=False)
def order_count(ctx: Context) -> dict:
    return {"orders": ctx.sql("select count(*) from orders").fetchall()[0][0]}
