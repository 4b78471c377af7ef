"""The local server (uvicorn + the app's ASGI application) in-process, with short limits and timeouts
so that every refusal can be watched happen: body limits while streaming, slow bodies and heads,
framing uvicorn's parser refuses, handlers in the thread pool, keep-alive without Nagle stalls."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import TESTS
from tests.rawhttp import exchange, stream

from nubes.adapters.local import LocalServer, make_server
from nubes.core.loader import load_app

LIMIT = 1000


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    app = load_app(f"{TESTS / 'apps' / 'serve_app.py'}:app")
    served = make_server(app, "127.0.0.1", 0, max_body=LIMIT, read_timeout=0.5, body_timeout=2.0,
                         header_timeout=0.5, keep_alive=1)
    served.start_background()
    try:
        yield served
    finally:
        served.shutdown()
        served.server_close()


def port(server: LocalServer) -> int:
    return server.server_address[1]


def post(size: int, extra: str = "") -> bytes:
    return f"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n{extra}\r\n".encode() + b"x" * size


def test_a_body_at_the_limit_is_answered(server: LocalServer) -> None:
    answer = exchange(port(server), post(LIMIT))
    assert answer.status == 200 and json.loads(answer.raw.split(b"\r\n\r\n", 1)[1]) == {"size": LIMIT}


def test_content_length_over_the_limit_is_refused_before_the_body_is_sent(server: LocalServer) -> None:
    head = f"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMIT + 1}\r\n\r\n".encode()
    answer = exchange(port(server), head, timeout=5)
    assert answer.status == 413 and answer.seconds < 2
    assert answer.header("content-type") == ["application/problem+json"] and answer.header("connection") == ["close"]
    assert b"1,000-byte limit" in answer.raw


def test_a_chunked_body_is_refused_as_its_total_passes_the_limit(server: LocalServer) -> None:
    head = b"PUT /size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer, sent = stream(port(server), head, 20 * 1024 * 1024, piece=100, timeout=20)
    assert answer.status == 413 and answer.header("content-type") == ["application/problem+json"]
    assert sent < 2 * 1024 * 1024  # refused as it streamed, not after 20 MB
    answer = exchange(port(server), head + b"64\r\n" + b"y" * 100 + b"\r\n0\r\n\r\n")
    assert answer.status == 200 and answer.raw.endswith(b'{"size":100}')


def test_a_body_that_stops_arriving_is_refused_after_the_read_timeout(server: LocalServer) -> None:
    answer = exchange(port(server), post(10)[:-7], timeout=10)  # 3 of 10 bytes, then nothing
    assert answer.status == 408 and 0.4 < answer.seconds < 3
    assert answer.header("connection") == ["close"]


def test_a_trickling_body_is_refused_after_the_body_timeout(server: LocalServer) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port(server)), timeout=10) as sock:
        sock.sendall(b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        answer = b""
        for _ in range(40):  # one byte every 0.2 s: each read is in time, the whole body is not
            try:
                sock.sendall(b"x")
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 4


def test_a_head_that_never_ends_is_closed_after_the_header_timeout(server: LocalServer) -> None:
    answer = exchange(port(server), b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ", timeout=10, wait_close=True)
    assert answer.closed and answer.status is None and 0.4 < answer.seconds < 3
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port(server)), timeout=10) as sock:  # a byte at a time does not reset it
        try:
            for _ in range(30):
                sock.sendall(b"x")
                time.sleep(0.1)
        except OSError:
            pass
    assert time.monotonic() - started < 2.5


def test_an_idle_keep_alive_connection_is_closed(server: LocalServer) -> None:
    answer = exchange(port(server), b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10, wait_close=True)
    assert answer.status == 200 and answer.closed and answer.seconds < 4


def test_handlers_run_in_the_thread_pool_and_never_block_the_loop(server: LocalServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port(server), timeout=10)
    conn.request("GET", "/thread")
    where = json.loads(conn.getresponse().read())
    conn.close()
    assert where["thread"].startswith("nubes-handler") and not where["main"]

    def call(path: str) -> float:
        c = http.client.HTTPConnection("127.0.0.1", port(server), timeout=10)
        started = time.monotonic()
        c.request("GET", path)
        assert c.getresponse().status == 200
        c.close()
        return time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(5) as pool:
        sleepers = [pool.submit(call, "/sleep?s=0.6") for _ in range(4)]
        time.sleep(0.1)
        ping = call("/ping")
        assert all(s.result() >= 0.6 for s in sleepers)
    assert ping < 0.4  # answered while four handlers blocked
    assert time.monotonic() - started < 1.5  # the four ran at once, not one after another


def test_keep_alive_requests_do_not_wait_for_delayed_acks(server: LocalServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port(server), timeout=10)
    conn.request("GET", "/ping")
    conn.getresponse().read()
    started = time.monotonic()
    for _ in range(50):  # header and body are separate writes: with Nagle on each would wait ~40 ms
        conn.request("POST", "/size", body=b"abc", headers={"Content-Type": "text/plain"})
        assert conn.getresponse().read() == b'{"size":3}'
    conn.close()
    assert time.monotonic() - started < 1.5
    listener = server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert listener  # accepted connections inherit it


@pytest.mark.parametrize("path", ["/redirect?to=/a%0d%0aSet-Cookie:%20evil=1", "/cookie?path=/%0d%0aSet-Cookie:%20evil=1",
                                  "/header?name=X-A&value=a%00b", "/header?name=X%0d%0aY&value=1"])
def test_an_injected_response_header_is_a_500_problem_not_a_split_response(server: LocalServer, path: str) -> None:
    answer = exchange(port(server), f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.status == 500 and answer.header("content-type") == ["application/problem+json"]
    assert b"evil" not in answer.raw and not answer.header("set-cookie") and not answer.header("y")


def test_head_and_no_content(server: LocalServer) -> None:
    answer = exchange(port(server), b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 200 and answer.header("content-length") == ["11"] and answer.raw.endswith(b"\r\n\r\n")
    answer = exchange(port(server), b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 204 and not answer.header("content-length")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=8),
    st.sampled_from(["+3", "-1", "1_0", "0x3", "3.0", " 3", "3 ", "03", "3,3", "1e3", "99999999999999999999999"]),
))
def test_content_length_is_answered_only_when_it_is_digits(server: LocalServer, value: str) -> None:
    digits = value.strip(" \t")
    size = int(digits) if digits.isascii() and digits.isdigit() and int(digits) <= LIMIT else 3
    head = f"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\n".encode("latin-1")
    answer = exchange(port(server), head + b"x" * size, timeout=5)
    if digits.isascii() and digits.isdigit():
        expected = {200} if int(digits) <= LIMIT else {413, 400}  # 400: past 2**64, the parser's own refusal
        assert answer.status in expected, (value, answer)
    else:
        assert answer.refused and answer.status in (None, 400), (value, answer)
    assert answer.seconds < 3


def test_serving_from_a_thread_starts_and_stops() -> None:
    app = load_app(f"{TESTS / 'apps' / 'serve_app.py'}:app")
    served = make_server(app, "127.0.0.1", 0)
    thread = served.start_background()
    try:
        assert served.url.startswith("http://127.0.0.1:") and served.server.started
        assert exchange(port(served), b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").status == 200
    finally:
        served.shutdown()
        served.server_close()
    assert not thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port(served)), timeout=1).close()
    assert threading.active_count() < 50
