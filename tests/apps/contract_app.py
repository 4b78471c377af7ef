"""A user app written only from the foundation's contract; loaded by the tests the way users run it."""

from __future__ import annotations

import dataclasses
import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

import nubes
from nubes import Context, HTTPError, Response

app = nubes.App("contract")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Order:
    item: str
    qty: int
    price: float = 0.0
    tags: list[str] = dataclasses.field(default_factory=list)
    due: date | None = None


SALES = [
    {"region": "north", "day": date(2024, 1, 1), "amount": 10.5},
    {"region": "south", "day": date(2024, 1, 1), "amount": 7.25},
    {"region": "north", "day": date(2024, 1, 2), "amount": 3.0},
]


@app.get("/hello/{name}")
def hello(ctx: Context, name: str, times: int = 1, shout: bool = False) -> dict:
    """Greet someone.

    Repeats the greeting ``times`` times.
    """
    text = " ".join([f"hello {name}"] * times)
    return {"greeting": text.upper() if shout else text, "request_id": ctx.request_id}


@app.get("/types")
def types(
    ctx: Context,
    i: int,
    f: float = 1.5,
    d: date | None = None,
    dt: datetime | None = None,
    dec: Decimal | None = None,
    color: Color = Color.RED,
    mode: Literal["fast", "slow"] = "fast",
    ids: list[int] = [],  # noqa: B006 - never mutated
) -> dict:
    return {"i": i, "f": f, "d": d, "dt": dt, "dec": dec, "color": color, "mode": mode, "ids": ids}


@app.post("/orders")
def create_order(ctx: Context, body: Order) -> Response:
    if body.qty <= 0:
        raise HTTPError(409, f"cannot order {body.qty} of {body.item}", type="https://example.com/probs/qty", qty=body.qty)
    response = Response.json({"total": body.qty * body.price, "order": body}, status=201)
    response.headers["location"] = f"/orders/{body.item}"
    return response


@app.put("/echo")
def echo(ctx: Context, body: dict) -> dict:
    return {"body": body, "content_type": ctx.request.content_type}


@app.delete("/orders/{order_id}")
def delete_order(ctx: Context, order_id: int) -> None:
    return None


@app.route("/multi", methods=["GET", "POST"])
def multi(ctx: Context) -> dict:
    return {"method": ctx.request.method}


@app.get("/files/{path:path}")
def files(ctx: Context, path: str) -> dict:
    return {"path": path}


@app.get("/files/README")
def readme(ctx: Context) -> dict:
    return {"static": True}


@app.get("/sales")
def sales(ctx: Context, region: str | None = None):
    import polars as pl

    frame = pl.DataFrame(SALES)
    if region:
        frame = frame.filter(pl.col("region") == region)
    return frame


@app.get("/sales/summary")
def summary(ctx: Context):
    import duckdb

    rows = ", ".join(f"('{s['region']}', DATE '{s['day']}', {s['amount']})" for s in SALES)
    return duckdb.sql(
        f"select region, sum(amount)::double as total, count(*) as n from (values {rows}) t(region, day, amount) "
        "group by region order by region"
    )


@app.get("/nan")
def nan(ctx: Context) -> dict:
    import numpy as np

    return {"nan": float("nan"), "inf": float("inf"), "np_int": np.int64(7), "np_float": np.float32(0.5),
            "arr": np.arange(3), "dec": Decimal("2.50"), "when": datetime(2024, 5, 6, 7, 8, 9)}


@app.get("/bytes")
def raw(ctx: Context) -> bytes:
    return bytes(range(256))


@app.get("/cookies")
def cookies(ctx: Context) -> Response:
    response = Response.json(dict(ctx.request.cookies))
    response.set_cookie("seen", "yes", httponly=True)
    response.set_cookie("theme", "dark")
    return response


@app.get("/headers")
def headers(ctx: Context) -> dict:
    return {"x_tag": ctx.request.headers.getlist("x-tag"), "query": ctx.request.query.multi_items()}


@app.get("/teapot")
def teapot(ctx: Context) -> dict:
    raise HTTPError(418, "short and stout", headers={"x-pot": "yes"})


@app.get("/crash")
def crash(ctx: Context) -> dict:
    ctx.log.info("about to fail", secret_step=1)
    raise RuntimeError("database password is hunter2")


@app.get("/async")
async def asynchronous(ctx: Context, n: int = 2) -> dict:
    return {"double": n * 2}
