"""The parity probe: one app replayed through every path (local, AWS formats, GCP, Azure) by
tests/adapters/test_parity.py, which asserts that each path answers byte for byte like the local one.

``/echo/...`` answers with what the app saw; the other routes produce each kind of result
(JSON, tables as CSV / Parquet, bytes, 204, redirects, errors, cookies, a large body).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import nubes
from nubes import Context, HTTPError, Response

app = nubes.App("parity", openapi=False)

ECHOED_HEADERS = ("accept", "content-type", "user-agent", "x-tag", "x-single", "x-empty")
"""Request headers the echo reports (every value, ``getlist``); provider-added ones are left out."""

LARGE_BYTES = 1024 * 1024
ROWS = [
    {"region": "north", "day": "2024-01-01", "amount": 10.5, "note": "café"},
    {"region": "south", "day": "2024-01-01", "amount": 7.25, "note": "a,b \"quoted\""},
    {"region": "north", "day": "2024-01-02", "amount": 3.0, "note": None},
]


def _seen(ctx: Context) -> dict[str, Any]:
    r = ctx.request
    return {
        "method": r.method,
        "path": r.path,
        "raw_path": r.raw_path,
        "query": r.query.multi_items(),
        "headers": {name: r.headers.getlist(name) for name in ECHOED_HEADERS},
        "cookies": dict(sorted(r.cookies.items())),
        "body_b64": base64.b64encode(r.body).decode("ascii"),
        "body_len": len(r.body),
        "body_sha256": hashlib.sha256(r.body).hexdigest(),
        "content_type": r.content_type,
    }


@app.route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def echo_root(ctx: Context) -> dict[str, Any]:
    return _seen(ctx)


@app.route("/echo/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def echo(ctx: Context, rest: str) -> dict[str, Any]:
    return {**_seen(ctx), "rest": rest}


@app.get("/json")
def json_result(ctx: Context) -> dict[str, Any]:
    return {"text": "héllo wörld ✓ 日本", "n": 3, "f": 0.5, "none": None, "list": [1, "two", {"three": 3}]}


@app.get("/table")
def table(ctx: Context):
    import polars as pl

    return pl.DataFrame(ROWS)


@app.get("/bytes")
def raw_bytes(ctx: Context) -> bytes:
    return bytes(range(256)) * 4


@app.get("/empty")
def empty(ctx: Context) -> None:
    return None


@app.get("/redirect")
def redirect(ctx: Context) -> Response:
    return Response.redirect("/echo/after?from=redirect", 302)


@app.get("/multi-header")
def multi_header(ctx: Context) -> Response:
    response = Response.json({"ok": True})
    response.headers.add("x-multi", "a")
    response.headers.add("x-multi", "b; q=1")
    return response


@app.get("/cookies")
def cookies(ctx: Context) -> Response:
    response = Response.json({"cookies": dict(sorted(ctx.request.cookies.items()))})
    response.set_cookie("session", "abc 123", httponly=True, max_age=3600)
    response.set_cookie("theme", "dark", secure=True, samesite="strict")
    return response


@app.get("/teapot")
def teapot(ctx: Context) -> dict[str, Any]:
    raise HTTPError(418, "short and stout", headers={"x-pot": "yes"})


@app.get("/typed")
def typed(ctx: Context, n: int, flag: bool = False) -> dict[str, Any]:
    return {"n": n, "flag": flag}


@app.post("/parse")
def parse(ctx: Context) -> dict[str, Any]:
    return {"json": ctx.request.json()}


@app.get("/crash")
def crash(ctx: Context) -> dict[str, Any]:
    raise RuntimeError("boom: this message must not leak")


@app.get("/large")
def large(ctx: Context, kind: str = "text") -> Response:
    if kind == "binary":
        block = hashlib.sha256(b"parity").digest()  # 32 bytes, not text
        return Response(block * (LARGE_BYTES // len(block)), media_type="application/octet-stream")
    line = "0123456789abcdef" * 4 + "\n"  # 65 bytes
    return Response.text(line * (LARGE_BYTES // len(line)))
