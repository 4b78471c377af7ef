"""A user app with HTTP and event handlers, for the Azure adapter tests (loaded the way users run it)."""

from __future__ import annotations

from typing import Any

import nubes
from nubes import Context, Response
from nubes.core.events import Message, ObjectCreated, Scheduled
from nubes.metering import configure

app = nubes.App("azure-events", storage="az://home-data/base")
# The tests call its functions directly, with no Azurite behind the home store: keep costs in headers
# and log lines only, so no ledger write is attempted (and retried at exit) against a missing server.
configure(app, ledger=False)

SEEN: list[tuple[str, Any]] = []


@app.get("/platform")
def where(ctx: Context) -> dict:
    p = ctx.platform
    return {"provider": p.provider, "function_name": p.function_name, "region": p.region, "memory_mb": p.memory_mb,
            "cold_start": p.cold_start, "emulated": p.emulated, "request_id": ctx.request_id,
            "has_deadline": ctx.deadline is not None}


@app.get("/repeat")
def repeat(ctx: Context) -> Response:
    return Response.text("ok", headers=[("x-multi", "a"), ("x-multi", "b"), ("vary", "accept")])


@app.on_object_created("uploads/", store="az://raw-data")
def raw_upload(ctx: Context, event: ObjectCreated) -> None:
    SEEN.append(("raw_upload", event))


@app.on_object_created("archive/", store="az://raw-data")
def raw_archive(ctx: Context, event: ObjectCreated) -> None:
    SEEN.append(("raw_archive", event))


@app.on_object_created("incoming/")
def home_incoming(ctx: Context, event: ObjectCreated) -> None:
    SEEN.append(("home_incoming", event))


@app.on_object_created("exports/", store="s3://elsewhere")
def on_s3(ctx: Context, event: ObjectCreated) -> None:
    SEEN.append(("on_s3", event))


@app.on_message("orders")
def order(ctx: Context, message: Message) -> None:
    SEEN.append(("order", message))
    SEEN.append(("order_ctx", (ctx.request_id, ctx.platform.provider)))


@app.on_message("orders")
def order_audit(ctx: Context, message: Message) -> None:
    SEEN.append(("order_audit", message))


@app.on_message("fragile")
def fragile(ctx: Context, message: Message) -> None:
    raise RuntimeError(f"cannot process {message.text()}")


@app.on_schedule("nightly", cron="0 0 2 * * *")
def nightly(ctx: Context, event: Scheduled) -> None:
    SEEN.append(("nightly", event))
