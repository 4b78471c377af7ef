"""A user app with event handlers, deployed to Cloud Functions as two targets from one file.

``events`` is the CloudEvent target (Pub/Sub, Cloud Storage), ``web`` the HTTP target that also
takes Cloud Scheduler's ``POST /_nubes/schedule/NAME``. Each handler appends what it received as
one JSON line to ``$NUBES_GCP_TEST_OUT/events.jsonl``, so a test in another process can check it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Any

import nubes
from nubes import Context, Message, ObjectCreated, Scheduled
from nubes.adapters.gcp.functions import cloud_event_function, http_function

app = nubes.App("gcp-events", openapi=False)
_lock = threading.Lock()


def _record(ctx: Context, kind: str, **fields: Any) -> None:
    line = {"kind": kind, "request_id": ctx.request_id, "platform": dataclasses.asdict(ctx.platform), **fields}
    with _lock, (Path(os.environ["NUBES_GCP_TEST_OUT"]) / "events.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


@app.on_object_created("uploads/")
def uploaded(ctx: Context, event: ObjectCreated) -> None:
    _record(ctx, "object_created", store=event.store, key=event.key, size=event.size, etag=event.etag,
            time=event.time.isoformat() if event.time else None)


@app.on_message("orders")
def order(ctx: Context, message: Message) -> None:
    _record(ctx, "message", id=message.id, body=message.text(), attributes=dict(message.attributes), queue=message.queue)


@app.on_message("poison")
def poison(ctx: Context, message: Message) -> None:
    raise RuntimeError(f"cannot digest message {message.id}")


@app.on_schedule("nightly", cron="0 0 2 * * *")
def nightly(ctx: Context, event: Scheduled) -> None:
    _record(ctx, "schedule", name=event.name, time=event.time.isoformat(), remaining=ctx.remaining())


@app.on_schedule("broken")
def broken(ctx: Context, event: Scheduled) -> None:
    raise RuntimeError("the nightly report failed")


@app.get("/platform")
def where(ctx: Context) -> dict[str, Any]:
    url = ctx.request.url if ctx.request else None
    return {"platform": ctx.platform, "request_id": ctx.request_id, "remaining": ctx.remaining(), "url": url}


events = cloud_event_function(app)
web = http_function(app, schedules=True)
