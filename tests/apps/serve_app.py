"""The app `nubes serve` tests run: where the handler runs, slow answers, bodies, header injection."""

from __future__ import annotations

import threading
import time

import nubes
from nubes import Context, Response

app = nubes.App("serve-tests", openapi=False)


@app.get("/ping")
def ping(ctx: Context) -> dict:
    return {"ok": True}


@app.get("/thread")
def thread(ctx: Context) -> dict:
    """The thread this handler runs in."""
    return {"thread": threading.current_thread().name, "main": threading.current_thread() is threading.main_thread()}


@app.get("/sleep")
def sleep(ctx: Context, s: float = 0.5) -> dict:
    time.sleep(s)
    return {"slept": s}


@app.route("/size", methods=["POST", "PUT"])
def size(ctx: Context) -> dict:
    return {"size": len(ctx.request.body)}


@app.get("/redirect")
def redirect(ctx: Context, to: str) -> Response:
    return Response.redirect(to)


@app.get("/cookie")
def cookie(ctx: Context, path: str = "/") -> Response:
    response = Response.json({"ok": True})
    response.set_cookie("session", "v", path=path)
    return response


@app.get("/header")
def header(ctx: Context, name: str, value: str) -> Response:
    return Response.text("ok", headers={name: value})


@app.get("/empty")
def empty(ctx: Context) -> None:
    return None
