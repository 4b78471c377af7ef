"""The app `tests/build` builds for each cloud and runs under the clouds' own runtime pieces.

Small on purpose (test builds resolve few wheels): plain routes, a route that writes to the home
store, one import each of two small distributions (``jinja2``, ``idna``) so a split has something
to split, errors, and an event handler of each kind.
"""

from __future__ import annotations

import nubes
from nubes import Context, HTTPError, Message, ObjectCreated, Scheduled

app = nubes.App("shop", models=False)


@app.get("/hello/{name}")
def hello(ctx: Context, name: str, times: int = 1) -> dict:
    return {"greeting": " ".join([f"hello {name}"] * times), "query": ctx.request.query.multi_items()}


@app.route("/path/to/resource", methods=["GET", "POST"])
def resource(ctx: Context) -> dict:
    """The path SAM's rendered events ask for."""
    r = ctx.request
    return {"method": r.method, "path": r.path, "query": r.query.multi_items(), "body": r.body.decode("utf-8", "replace"),
            "content_type": r.content_type}


@app.get("/files/{rest:path}")
def files(ctx: Context, rest: str) -> dict:
    return {"rest": rest, "raw_path": ctx.request.raw_path}


@app.get("/platform")
def platform(ctx: Context) -> dict:
    p = ctx.platform
    return {"provider": p.provider, "function_name": p.function_name, "memory_mb": p.memory_mb, "architecture": p.architecture}


@app.put("/notes/{key}")
def put_note(ctx: Context, key: str, body: str) -> dict:
    info = ctx.storage.put(f"notes/{key}", body.encode("utf-8"))
    return {"key": key, "size": info.size, "read_back": ctx.storage.get(f"notes/{key}").decode("utf-8")}


@app.get("/teapot")
def teapot(ctx: Context) -> None:
    raise HTTPError(418, "short and stout")


@app.get("/crash")
def crash(ctx: Context) -> None:
    raise RuntimeError("boom")


@app.get("/large-unicode")
def large_unicode(ctx: Context, kib: int = 2400) -> dict:
    """A body whose UTF-8 size is under Lambda's 6 MB but whose JSON-escaped size is not."""
    return {"text": "é" * (kib * 1024 // 2)}


@app.get("/template")
def template(ctx: Context, who: str = "world") -> dict:
    import jinja2

    return {"text": jinja2.Template("hi {{ who }}").render(who=who)}


@app.get("/punycode/{host}")
def punycode(ctx: Context, host: str) -> dict:
    import idna

    return {"ascii": idna.encode(host).decode("ascii")}


@app.on_object_created(prefix="incoming/")
def stored(ctx: Context, event: ObjectCreated) -> None:
    ctx.log.info("stored", key=event.key, size=event.size)


@app.on_object_created(prefix="fail/")
def refuse(ctx: Context, event: ObjectCreated) -> None:
    raise ValueError(f"cannot take {event.key}")


@app.on_message("orders")
def message(ctx: Context, event: Message) -> None:
    if "poison" in event.body.decode("utf-8", "replace"):
        raise ValueError("poison message")


@app.on_schedule("nightly-rollup", cron="0 0 2 * * *")
def nightly(ctx: Context, event: Scheduled) -> None:
    ctx.log.info("nightly", at=event.time.isoformat() if event.time else None)
