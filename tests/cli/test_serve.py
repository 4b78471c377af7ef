"""`nubes serve` as a real process answering real HTTP on loopback."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nubes.testing.servers import free_port, port_open, wait_until
from tests.conftest import CONTRACT_APP

NUBES = str(Path(sys.executable).with_name("nubes"))


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [NUBES, "serve", str(CONTRACT_APP), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "NUBES_LOG_LEVEL": "off"},
    )
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
