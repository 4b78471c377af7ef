"""``app.asgi``: the App as an ASGI 3 application, driven directly with scope/receive/send."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nubes
from nubes.core.asgi import ASGIApp
from nubes.core.handler_pool import ThreadPool
from nubes.core.request import Request
from nubes.core.response import Response

Message = dict[str, Any]

app = nubes.App("asgi-tests", openapi=False)


@app.route("/echo", methods=["GET", "POST", "HEAD"])
def echo(ctx: nubes.Context) -> dict:
    return {"method": ctx.request.method, "size": len(ctx.request.body), "query": ctx.request.query_string,
            "path": ctx.request.path, "agent": ctx.request.headers.get("user-agent"),
            "thread": threading.current_thread().name}


@app.get("/none")
def nothing(ctx: nubes.Context) -> None:
    return None


def scope(method: str = "GET", path: str = "/echo", headers: list[tuple[bytes, bytes]] | None = None,
          query: bytes = b"", raw_path: bytes | None = None) -> Message:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": raw_path if raw_path is not None else path.encode(), "query_string": query,
            "headers": headers or [(b"host", b"test")], "root_path": "", "client": ("127.0.0.1", 1), "server": None}


def body_messages(*chunks: bytes) -> Callable[[], Awaitable[Message]]:
    """A receive() giving ``chunks`` as http.request messages, then waiting forever; counts its calls."""
    queue = list(chunks)

    async def receive() -> Message:
        receive.calls += 1  # type: ignore[attr-defined]
        if not queue:
            await asyncio.sleep(3600)
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    receive.calls = 0  # type: ignore[attr-defined]
    return receive


def run(asgi: Any, sc: Message, receive: Callable[[], Awaitable[Message]] | None = None) -> tuple[int, dict[str, list[str]], bytes]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(asgi(sc, receive or body_messages(b""), send), 10))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    headers: dict[str, list[str]] = {}
    for name, value in sent[0]["headers"]:
        headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    return sent[0]["status"], headers, sent[1]["body"]


def test_app_asgi_is_one_asgi_app_per_app() -> None:
    assert isinstance(app.asgi, ASGIApp) and app.asgi is app.asgi and app.asgi.app is app
    assert app.asgi.max_body == 100 * 1024 * 1024


def test_a_request_is_answered_from_a_handler_thread() -> None:
    status, headers, body = run(app.asgi, scope(path="/echo", raw_path=b"/ech%6F", query=b"a=1&b=%20",
                                                headers=[(b"host", b"t"), (b"user-agent", b"probe")]))
    data = json.loads(body)
    assert status == 200 and data["query"] == "a=1&b=%20" and data["path"] == "/echo" and data["agent"] == "probe"
    assert data["thread"].startswith("nubes-handler")
    assert headers["content-length"] == [str(len(body))] and headers["x-nubes-request-id"]


def test_a_body_in_several_messages_is_joined() -> None:
    status, _, body = run(app.asgi, scope("POST", headers=[(b"host", b"t"), (b"transfer-encoding", b"chunked")]),
                          body_messages(b"ab", b"cd", b"e"))
    assert status == 200 and json.loads(body)["size"] == 5


def test_a_declared_length_over_the_limit_is_refused_without_reading() -> None:
    asgi = ASGIApp(app, max_body=10)
    receive = body_messages(b"x" * 11)
    status, headers, body = run(asgi, scope("POST", headers=[(b"host", b"t"), (b"content-length", b"11")]), receive)
    assert status == 413 and receive.calls == 0  # type: ignore[attr-defined]
    assert headers["content-type"] == ["application/problem+json"] and headers["connection"] == ["close"]
    assert json.loads(body)["status"] == 413


def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit() -> None:
    asgi = ASGIApp(app, max_body=10)
    receive = body_messages(*[b"x" * 4] * 100)
    status, _, _ = run(asgi, scope("POST", headers=[(b"host", b"t"), (b"transfer-encoding", b"chunked")]), receive)
    assert status == 413 and receive.calls == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("headers", [
    [(b"content-length", b"+3")], [(b"content-length", b"1_0")], [(b"content-length", b"-1")],
    [(b"content-length", b"3"), (b"transfer-encoding", b"chunked")],
])
def test_framing_another_server_let_through_is_refused(headers: list[tuple[bytes, bytes]]) -> None:
    receive = body_messages(b"abc")
    status, response_headers, _ = run(app.asgi, scope("POST", headers=[(b"host", b"t"), *headers]), receive)
    assert status == 400 and response_headers["connection"] == ["close"]


@pytest.mark.parametrize(("method", "headers", "expected"), [
    ("A" * 65, [], 400),                                          # a method no HTTP token is: Request refuses it
    ("GE T", [], 400),
    ("POST", [(b"content-length", b"9" * 5000)], 413),              # int() of it would raise ValueError
    ("POST", [(b"content-length", b"0" * 25 + b"5")], 413),
    ("POST", [(b"x-bad", "caf\u00e9".encode("latin-1")), (b"content-length", b"3")], 200),  # Latin-1 is text
])
def test_a_request_that_cannot_be_read_is_a_problem_not_a_crash(method: str, headers: list[tuple[bytes, bytes]],
                                                                 expected: int) -> None:
    receive = body_messages(b"abc")
    status, response_headers, body = run(app.asgi, scope(method, headers=[(b"host", b"t"), *headers]), receive)
    assert status == expected
    if expected >= 400:
        assert response_headers["content-type"] == ["application/problem+json"] and json.loads(body)["status"] == status
        assert receive.calls == 0  # type: ignore[attr-defined]  # refused before any of the body was read


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80),
       length=st.binary(min_size=1, max_size=40) | st.from_regex(rb"\A[0-9]{1,40}\Z"))
def test_any_method_and_content_length_get_an_http_answer(method: str, length: bytes) -> None:
    asgi = ASGIApp(app, max_body=10)
    status, response_headers, _ = run(asgi, scope(method, headers=[(b"host", b"t"), (b"content-length", length)]),
                                         body_messages(b"x" * 3))
    assert status in (200, 204, 400, 404, 405, 408, 413)
    if status >= 400:
        assert response_headers["content-type"] == ["application/problem+json"]


def test_a_body_that_stops_arriving_is_a_408() -> None:
    asgi = ASGIApp(app, read_timeout=0.2)
    started = time.monotonic()
    status, headers, _ = run(asgi, scope("POST", headers=[(b"host", b"t"), (b"content-length", b"10")]), body_messages())
    assert status == 408 and headers["connection"] == ["close"] and time.monotonic() - started < 2


def test_head_keeps_the_length_and_sends_no_body_and_204_has_no_length() -> None:
    status, headers, body = run(app.asgi, scope("HEAD"))
    assert status == 200 and body == b"" and int(headers["content-length"][0]) > 0
    status, headers, body = run(app.asgi, scope(path="/none"))
    assert status == 204 and body == b"" and "content-length" not in headers


def test_an_answer_function_that_raises_is_a_500_problem() -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    status, headers, body = run(ASGIApp(app, answer=broken), scope())
    assert status == 500 and headers["content-type"] == ["application/problem+json"] and b"boom" not in body


def test_lifespan_and_websocket() -> None:
    closed: list[bool] = []
    asgi = ASGIApp(app, on_shutdown=lambda: closed.append(True))
    events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[Message] = []

    async def receive() -> Message:
        return next(events)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(asgi({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"] and closed == [True]
    sent.clear()
    asyncio.run(asgi({"type": "websocket"}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1003}]


def test_the_pool_bounds_its_threads_and_passes_errors_back() -> None:
    pool = ThreadPool(2)
    running: list[int] = []
    peak: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> int:
        with lock:
            running.append(n)
            peak.append(len(running))
        time.sleep(0.05)
        with lock:
            running.remove(n)
        if n == 3:
            raise ValueError("three")
        return n * 2

    async def main() -> list[Any]:
        return await asyncio.gather(*[pool.run(work, n) for n in range(6)], return_exceptions=True)

    results = asyncio.run(main())
    pool.close()
    assert results[:3] == [0, 2, 4] and isinstance(results[3], ValueError) and results[4:] == [8, 10]
    assert max(peak) == 2


def test_the_pool_reuses_the_last_idle_thread_and_releases_its_threads_on_close() -> None:
    pool = ThreadPool(8, name="reuse-test")

    async def sequential() -> set[str]:
        return {await pool.run(lambda _: threading.current_thread().name, None) for _ in range(50)}

    assert len(asyncio.run(sequential())) == 1 and pool.threads == 1
    pool.close()
    deadline = time.monotonic() + 5
    while any(t.name.startswith("reuse-test") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.threads == 0 and not any(t.name.startswith("reuse-test") for t in threading.enumerate())
    assert asyncio.run(pool.run(lambda x: x + 1, 1)) == 2  # a closed pool starts afresh when used again
    pool.close()


def test_quick_calls_share_a_hot_thread_and_blocking_ones_spread() -> None:
    pool = ThreadPool(8, name="spread-test")

    async def burst(fn: Callable[[Any], Any], count: int) -> list[Any]:
        return await asyncio.gather(*[pool.run(fn, n) for n in range(count)])

    assert asyncio.run(burst(lambda n: n * 2, 200)) == [n * 2 for n in range(200)]
    assert pool.threads <= 2  # 200 concurrent quick calls: no thread woken per call
    started = time.monotonic()
    asyncio.run(burst(lambda n: time.sleep(0.3), 4))
    assert time.monotonic() - started < 0.9 and pool.threads >= 4  # blocking calls ran at once
    pool.close()
