"""`nubes serve --emulate`, `nubes invoke --emulate` and `nubes emit` as real processes on loopback."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.adapters.test_emulator import EMU_APP, oversize_answer
from tests.cli.test_serve import ABUSE
from tests.rawhttp import exchange, stream

from nubes.testing.servers import free_port, port_open, wait_until

NUBES = str(Path(sys.executable).with_name("nubes"))


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("emu-cli") / "emu_app.py"
    path.write_text(EMU_APP, encoding="utf-8")
    return path


class Served:
    def __init__(self, app: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen([NUBES, "serve", str(app), "--port", str(self.port), *args],
                                     stdout=subprocess.DEVNULL, stderr=self._out, env={**os.environ, "NUBES_LOG_LEVEL": "info"})
        wait_until(lambda: port_open(self.port), timeout=60, what="nubes serve --emulate")

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def lines(self) -> list[dict]:
        out = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


@pytest.fixture(scope="module")
def servers(emu: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    logs = tmp_path_factory.mktemp("logs")
    started: dict[str, Served] = {}
    try:
        for provider in ("aws", "gcp", "azure"):
            started[provider] = Served(emu, logs / f"{provider}.log", "--emulate", provider, "--timeout", "1", "--workers", "3")
        yield started
    finally:
        for served in started.values():
            served.stop()


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_json_request(servers: dict[str, Served], provider: str) -> None:
    status, headers, body = servers[provider].call("GET", "/platform")
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)
    assert data["provider"] == provider and data["emulated"] is True
    assert data["memory"] == {"aws": 1024, "gcp": 256, "azure": 1536}[provider]


def test_aws_request_over_6_mb(servers: dict[str, Served]) -> None:
    status, _, body = servers["aws"].call("POST", "/size", b"a" * (6 * 1024 * 1024 + 1), {"Content-Type": "text/plain"})
    assert status == 413 and json.loads(body) == {"message": "Request Entity Too Large"}
    status, _, body = servers["aws"].call("POST", "/size", b"a" * (1024 * 1024), {"Content-Type": "text/plain"})
    assert status == 200 and json.loads(body) == {"size": 1024 * 1024}


def test_aws_response_over_6_mb(servers: dict[str, Served]) -> None:
    status, headers, body = servers["aws"].call("GET", f"/big?n={6 * 1024 * 1024 + 1}")
    assert oversize_answer(status, headers.get("content-type", ""), body, 500)  # HTTP API; REST: 502
    status, _, body = servers["aws"].call("GET", "/big?n=3")
    assert (status, body) == (200, b"xxx")


@pytest.mark.parametrize(("provider", "limit"), [("gcp", 32 * 1024 * 1024), ("azure", 100 * 1024 * 1024)])
def test_request_over_the_default_limit_refused_before_it_is_sent(servers: dict[str, Served], provider: str, limit: int) -> None:
    head = f"POST /size HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {limit + 1}\r\n\r\n".encode()
    answer = exchange(servers[provider].port, head, timeout=10)
    assert answer.status == 413 and answer.seconds < 2
    # streamed: refused as the running total passes the limit, before the rest is read
    head = b"POST /size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer, sent = stream(servers[provider].port, head, limit + 64 * 1024 * 1024, piece=1 << 20, timeout=60)
    assert answer.status == 413 and limit < sent < limit + 16 * 1024 * 1024
    status, _, body = servers[provider].call("POST", "/size", b"a" * 1000)
    assert status == 200 and json.loads(body) == {"size": 1000}


@pytest.mark.parametrize("case", ["negative Content-Length", "Content-Length +3", "Content-Length 1_0",
                                  "conflicting Content-Length", "Transfer-Encoding xchunked", "negative chunk size",
                                  "CL.TE smuggling", "TE.CL smuggling", "200 kB header"])
@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_malformed_requests_are_refused_by_the_front(servers: dict[str, Served], provider: str, case: str) -> None:
    data = ABUSE[case].replace("/echo", "/size").encode("latin-1")
    answer = exchange(servers[provider].port, data, timeout=10, wait_close=True)
    assert answer.refused and answer.status in (None, 400, 431) and answer.closed and answer.seconds < 5, answer
    assert answer.raw.count(b"HTTP/1.1 ") <= 1


def test_a_body_that_stops_arriving_does_not_hold_the_front(servers: dict[str, Served]) -> None:
    head = b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
    answer = exchange(servers["aws"].port, head, timeout=30)
    assert answer.status == 408 and 9 < answer.seconds < 20 and answer.header("connection") == ["close"]


@pytest.mark.parametrize(("provider", "status", "body"), [
    ("aws", 500, b'{"message":"Internal Server Error"}'),
    ("gcp", 504, b"upstream request timeout"),
    ("azure", 500, b""),
])
def test_handler_overrunning_timeout_is_stopped(servers: dict[str, Served], provider: str, status: int, body: bytes) -> None:
    started = time.monotonic()
    got = servers[provider].call("GET", "/sleep?s=5")
    elapsed = time.monotonic() - started
    assert (got[0], got[2]) == (status, body)
    assert elapsed < 1 + 2.5
    stopped = [line for line in servers[provider].lines() if line.get("msg") == "worker stopped"]
    assert stopped and stopped[-1]["reason"] == "timeout"


def test_next_call_after_a_timeout_is_a_cold_start(emu: Path, tmp_path: Path) -> None:
    served = Served(emu, tmp_path / "one.log", "--emulate", "aws", "--timeout", "1", "--workers", "1")
    try:
        first = json.loads(served.call("GET", "/platform")[2])
        warm = json.loads(served.call("GET", "/platform")[2])
        assert served.call("GET", "/sleep?s=3")[0] == 500
        after = json.loads(served.call("GET", "/platform")[2])
    finally:
        served.stop()
    assert (first["cold"], warm["cold"], after["cold"]) == (True, False, True)
    assert after["pid"] != first["pid"]
    colds = [line for line in served.lines() if line.get("msg") == "cold start"]
    assert [line["cold_start"] for line in colds] == [True, True]
    invocations = [line for line in served.lines() if line.get("msg", "").startswith("emulated invocation")]
    assert [line["cold_start"] for line in invocations] == [True, False, False, True]
    assert invocations[2]["error_type"] == "Sandbox.Timedout"


def test_concurrent_requests_use_the_pool(servers: dict[str, Served]) -> None:
    aws = servers["aws"]

    def sleep(_: int) -> dict:
        status, _, body = aws.call("GET", "/sleep?s=0.5")
        assert status == 200
        return json.loads(body)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(sleep, range(3)))  # warm three instances
        started = time.monotonic()
        results = list(pool.map(sleep, range(6)))
        elapsed = time.monotonic() - started
    assert elapsed < 6 * 0.5, elapsed  # about two rounds of 0.5 s (~1.1 s here), never six in a row
    assert len({r["pid"] for r in results}) == 3
    edges = sorted([(r["start"], 1) for r in results] + [(r["end"], -1) for r in results], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 3  # three handlers in flight at once: one per worker, never more
    colds = [line for line in aws.lines() if line.get("msg") == "cold start"]
    assert len({line["worker"] for line in colds}) == len(colds)  # once per worker
    invocations = [line for line in aws.lines() if line.get("msg", "").startswith("emulated invocation")]
    for pid in {r["pid"] for r in results}:
        mine = [line["cold_start"] for line in invocations if line["worker"] == pid]
        assert mine.count(True) <= 1 and (not mine[0] or mine[0] is True)


# -- invoke and emit ------------------------------------------------------------------------------
def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([NUBES, *args], check=False, capture_output=True, env={**os.environ, "NUBES_LOG_LEVEL": "off"},
                          timeout=120)


def test_invoke_emulate_prints_the_providers_answer(emu: Path) -> None:
    r = run("invoke", str(emu), "GET", "/hello", "--emulate", "gcp", "-i")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("HTTP/1.1 200 OK") and b'{"hello":"world"}' in r.stdout
    r = run("invoke", str(emu), "GET", f"/big?n={6 * 1024 * 1024 + 1}", "--emulate", "aws", "--aws-event", "rest", "-i")
    head, _, body = r.stdout.partition(b"\n\n")
    status = int(head.split()[1])
    ctype = next((line.split(b":", 1)[1].strip().decode() for line in head.splitlines() if line.lower().startswith(b"content-type")), "")
    assert r.returncode == 1 and oversize_answer(status, ctype, body.strip(), 502)
    r = run("invoke", str(emu), "GET", "/hello", "--timeout", "3")
    assert r.returncode == 2 and b"--emulate" in r.stderr


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_emit_fires_event_handlers(emu: Path, provider: str) -> None:
    r = run("emit", str(emu), "object-created", "in/data.csv", "--emulate", provider, "--bucket", "uploads", "--size", "10")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["ok"] is True
    r = run("emit", str(emu), "message", "fail", "--queue", "orders", "--emulate", provider)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["ok"] is False
    if provider == "aws":
        assert out["result"]["batchItemFailures"]
    r = run("emit", str(emu), "schedule", "nightly", "--emulate", provider)
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_emit_without_emulate_runs_locally(emu: Path) -> None:
    r = run("emit", str(emu), "message", "tea", "--queue", "orders")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "result": ["tea"]}
    r = run("emit", str(emu), "sneeze", "x", "--emulate", "aws")
    assert r.returncode == 2
