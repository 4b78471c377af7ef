"""One app, three clouds: handlers name logical sources and queues, nubes.toml binds them per cloud.

Each handler appends what it got as a JSON line to ``$NUBES_PORTABLE_OUT`` (so a worker process's
calls can be checked by the test)."""

from __future__ import annotations

import json
import os

import nubes
from nubes import Context, Message, ObjectCreated

app = nubes.App("portable", openapi=False)


def _record(ctx: Context, **fields: object) -> None:
    out = os.environ.get("NUBES_PORTABLE_OUT")
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"provider": ctx.platform.provider, **fields}) + "\n")


@app.on_object_created(prefix="raw/", source="landing")
def landed(ctx: Context, event: ObjectCreated) -> dict:
    _record(ctx, handler="landed", store=event.store, key=event.key, source=event.source)
    return {"key": event.key, "store": event.store, "source": event.source}


@app.on_message("orders")
def order(ctx: Context, message: Message) -> dict:
    _record(ctx, handler="order", body=message.text(), queue=message.queue, source=message.source)
    return {"body": message.text(), "queue": message.queue, "source": message.source}
