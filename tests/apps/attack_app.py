"""The app the malformed-input tests attack: every method on every path echoes what it saw, and
every kind of event has a handler (any store, any queue; schedules ``nightly`` and ``nightly-rollup``).

Kept in memory (``mem://``) and without invocation hooks, so thousands of calls stay fast. For
Cloud Functions the file is also the deployed ``main.py``: ``main`` (HTTP) and ``on_event``
(CloudEvents) are its targets.
"""

from __future__ import annotations

import base64
from typing import Any

import nubes
from nubes.adapters.gcp.functions import cloud_event_function, http_function

app = nubes.App("attack", openapi=False, storage="mem://attack")
app.hooks = []


@app.route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def echo(ctx: nubes.Context, rest: str) -> dict[str, Any]:
    r = ctx.request
    return {"method": r.method, "path": r.path, "query": r.query.multi_items(), "headers": r.headers.multi_items(),
            "cookies": dict(r.cookies), "body": base64.b64encode(r.body).decode(),
            "json": r.json() if r.content_type == "application/json" else None}


@app.route("/", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def root(ctx: nubes.Context) -> dict[str, Any]:
    return echo(ctx, "")


@app.on_object_created("")
def created(ctx: nubes.Context, event: nubes.ObjectCreated) -> None:
    assert isinstance(event.key, str) and isinstance(event.store, str)
    assert event.size is None or (type(event.size) is int and event.size >= 0)


@app.on_message()
def message(ctx: nubes.Context, msg: nubes.Message) -> None:
    assert isinstance(msg.body, bytes) and isinstance(msg.id, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in msg.attributes.items())


@app.on_schedule("nightly", cron="0 0 2 * * *")
@app.on_schedule("nightly-rollup", cron="0 0 3 * * *")
def nightly(ctx: nubes.Context, event: nubes.Scheduled) -> None:
    assert event.time.tzinfo is not None


main = http_function(app)
on_event = cloud_event_function(app)
