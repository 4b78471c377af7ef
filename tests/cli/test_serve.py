"""`nubes serve` as a real process answering real HTTP on loopback, including raw-socket abuse:
each malformed request is refused (a 4xx or a closed connection) within a bounded time, the
server's memory stays bounded, and it goes on answering."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import CONTRACT_APP
from tests.rawhttp import exchange, rss_mb, stream

from nubes.testing.servers import free_port, port_open, wait_until

NUBES = str(Path(sys.executable).with_name("nubes"))


PROCESSES: dict[int, subprocess.Popen[bytes]] = {}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [NUBES, "serve", str(CONTRACT_APP), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "NUBES_LOG_LEVEL": "off"},
    )
    PROCESSES[port] = proc
    try:
        wait_until(lambda: port_open(port), timeout=60, what="nubes serve")
        yield "127.0.0.1", port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.stderr.close()  # type: ignore[union-attr]


def call(server: tuple[str, int], method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(*server, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    response.data = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def test_get_json(server: tuple[str, int]) -> None:
    r = call(server, "GET", "/hello/w%C3%B6rld?times=2")
    assert r.status == 200 and r.getheader("content-type") == "application/json"
    assert json.loads(r.data)["greeting"] == "hello wörld hello wörld"  # type: ignore[attr-defined]
    assert r.getheader("x-nubes-request-id")


def test_polars_csv_over_http(server: tuple[str, int]) -> None:
    r = call(server, "GET", "/sales", headers={"Accept": "text/csv"})
    assert r.status == 200 and r.getheader("content-type").startswith("text/csv")
    assert r.data.decode().splitlines()[0] == "region,day,amount"  # type: ignore[attr-defined]


def test_post_body_and_errors(server: tuple[str, int]) -> None:
    r = call(server, "POST", "/orders", json.dumps({"item": "tea", "qty": 2, "price": 2}).encode(),
             {"Content-Type": "application/json"})
    assert r.status == 201 and r.getheader("location") == "/orders/tea"
    for method, path, body, status in [("POST", "/orders", b"{oops", 400), ("GET", "/types?i=x", None, 422),
                                       ("GET", "/nowhere", None, 404), ("DELETE", "/hello/x", None, 405),
                                       ("GET", "/crash", None, 500)]:
        r = call(server, method, path, body, {"Content-Type": "application/json"})
        assert r.status == status
        assert r.getheader("content-type") == "application/problem+json"
        assert json.loads(r.data)["status"] == status  # type: ignore[attr-defined]
    assert "hunter2" not in r.data.decode()  # type: ignore[attr-defined]


def test_chunked_request_body(server: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*server, timeout=30)
    conn.request("PUT", "/echo", body=iter([b'{"a": ', b'[1, 2]}']), headers={"Content-Type": "application/json"},
                 encode_chunked=True)
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["body"] == {"a": [1, 2]}
    conn.close()


def test_repeated_headers_set_cookie_and_head(server: tuple[str, int]) -> None:
    r = call(server, "GET", "/cookies", headers={"Cookie": "k=v"})
    assert json.loads(r.data) == {"k": "v"}  # type: ignore[attr-defined]
    assert len(r.headers.get_all("set-cookie")) == 2
    r = call(server, "HEAD", "/hello/ada")
    assert r.status == 200 and r.data == b"" and int(r.getheader("content-length")) > 0  # type: ignore[attr-defined]


def test_keep_alive_serves_several_requests_on_one_connection(server: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*server, timeout=30)
    for n in range(3):
        conn.request("GET", f"/async?n={n}")
        assert json.loads(conn.getresponse().read()) == {"double": 2 * n}
    conn.close()


def test_port_in_use_is_a_clear_error(server: tuple[str, int]) -> None:
    r = subprocess.run([NUBES, "serve", str(CONTRACT_APP), "--port", str(server[1])], capture_output=True, timeout=60)
    assert r.returncode == 2 and b"pick another with --port" in r.stderr and b"Traceback" not in r.stderr


H = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
ABUSE = {
    "negative Content-Length": H + "Content-Length: -1\r\n\r\n{}",
    "Content-Length +3": H + "Content-Length: +3\r\n\r\n{} ",
    "Content-Length 1_0": H + "Content-Length: 1_0\r\n\r\n{\"a\": 123}",
    "conflicting Content-Length": H + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{} ",
    "Content-Length list": H + "Content-Length: 2, 3\r\n\r\n{} ",
    "Transfer-Encoding xchunked": H + "Transfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "Transfer-Encoding chunked, identity": H + "Transfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "space before the colon": H + "Transfer-Encoding : chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "negative chunk size": H + "Transfer-Encoding: chunked\r\n\r\n-1\r\n" + "a" * 100,
    "chunk size 0x2": H + "Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
    "chunk size past 2**64": H + "Transfer-Encoding: chunked\r\n\r\n1" + "0" * 17 + "\r\n{}",
    "CL.TE smuggling": H + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "TE.CL smuggling": H + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    "obsolete line folding": H + "X-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{}",
    "NUL in a header": H + "X-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    "bare LF line ends": "PUT /echo HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}",
    "garbage request line": "G(T /hello/x HTTP/1.1\r\nHost: x\r\n\r\n",
    "200 kB header": "GET /hello/x HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 200_000 + "\r\n\r\n",
}


@pytest.mark.parametrize("data", ABUSE.values(), ids=ABUSE.keys())
def test_malformed_requests_are_refused_by_the_server(server: tuple[str, int], data: str) -> None:
    answer = exchange(server[1], data.encode("latin-1"), timeout=10, wait_close=True)
    assert answer.refused and answer.status in (None, 400, 431), answer
    assert answer.closed and answer.seconds < 5  # not left open waiting for more
    assert answer.raw.count(b"HTTP/1.1 ") <= 1  # nothing smuggled answered after it
    assert call(server, "GET", "/hello/ok").status == 200


def test_a_body_over_100_mb_is_refused_before_it_is_read(server: tuple[str, int]) -> None:
    head = b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857601\r\n\r\n"
    answer = exchange(server[1], head, timeout=10)
    assert answer.status == 413 and answer.seconds < 2 and answer.header("connection") == ["close"]
    assert answer.header("content-type") == ["application/problem+json"]
    assert b"104,857,600-byte limit" in answer.raw


def test_memory_stays_bounded_under_oversized_and_broken_bodies(server: tuple[str, int]) -> None:
    pid = PROCESSES[server[1]].pid
    before = rss_mb(pid)
    head = b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    # a negative chunk size, then 200 MB more: refused at once, nothing past it is read
    answer, sent = stream(server[1], head + b"-1\r\n", 200 * 1024 * 1024, chunked=False, timeout=20)
    assert answer.refused and answer.seconds < 5 and sent < 16 * 1024 * 1024
    # a header line that never ends: 431 once the head passes 64 KiB
    answer, sent = stream(server[1], b"GET /hello/x HTTP/1.1\r\nHost: x\r\nX-Big: ", 200 * 1024 * 1024, chunked=False,
                          fill=b"a", timeout=20)
    assert answer.refused and answer.seconds < 5 and sent < 16 * 1024 * 1024
    # a chunked body streamed past the 100 MB limit: refused as the total passes it
    answer, sent = stream(server[1], head, 200 * 1024 * 1024, piece=1 << 20, timeout=60)
    assert answer.status == 413 and answer.header("content-type") == ["application/problem+json"]
    assert 100 * 1024 * 1024 < sent < 120 * 1024 * 1024
    assert rss_mb(pid) - before < 160  # at most the 100 MB limit held at once, then released or reused
    assert call(server, "GET", "/hello/ok").status == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_answers_requests_in_flight_then_exits_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    serve_app = Path(__file__).parents[1] / "apps" / "serve_app.py"
    proc = subprocess.Popen([NUBES, "serve", str(serve_app), "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "NUBES_LOG_LEVEL": "off",
                                                         "NUBES_STORAGE": f"file://{tmp_path}/home"})
    try:
        wait_until(lambda: port_open(port), timeout=60, what="nubes serve")
        for _ in range(30):
            assert call(("127.0.0.1", port), "GET", "/ping").status == 200
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/sleep?s=1")
        time_sent = time.monotonic()
        time.sleep(0.3)
        proc.send_signal(sig)
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read()) == {"slept": 1.0}  # finished, not cut off
        conn.close()
        assert proc.wait(timeout=30) == 0 and time.monotonic() - time_sent < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    assert "nubes: stopped" in stderr and "Traceback" not in stderr
    ledger = list((tmp_path / "home" / "_nubes" / "ledger").rglob("*.ndjson"))
    records = [line for path in ledger for line in path.read_text().splitlines() if line]
    assert len(records) == 31  # every answered request is in the ledger: the exit flushed the buffer
