"""The Cloud Functions adapter under the real functions-framework server (gunicorn), over real HTTP on loopback.

Each server is ``functions-framework --target T --source tests/apps/F.py --port P`` as a child
process in its own process group, ended by its PID when the module's tests are done.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from nubes.adapters.gcp.builders import pubsub_event, scheduler_event, storage_finalized_event
from nubes.testing.servers import free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"
CLI = Path(sys.executable).parent / "functions-framework"

pytestmark = pytest.mark.skipif(not CLI.exists(), reason="functions-framework is not installed next to this Python")


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FunctionServer:
    """One ``functions-framework`` process on 127.0.0.1; ``request`` sends raw HTTP/1.1 to it."""

    def __init__(self, source: str, target: str, *, signature_type: str | None = None, env: dict[str, str] | None = None,
                 log: Path) -> None:
        self.port = free_port()
        args = [str(CLI), "--target", target, "--source", str(APPS / source), "--host", "127.0.0.1", "--port", str(self.port)]
        if signature_type:
            args += ["--signature-type", signature_type]
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("FUNCTION_", "K_SERVICE", "CLOUD_RUN_"))}
        child_env.update(env or {})
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, cwd=ROOT, env=child_env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"functions-framework exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            return port_open(self.port)

        wait_until(ready, timeout=30, what=f"functions-framework on port {self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this process leads: gunicorn master and workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: Sequence[tuple[str, str]] | dict[str, str] = ()) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
            for name, value in pairs:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def send_event(self, event: CloudEvent, *, binary: bool = True) -> Reply:
        headers, body = (to_binary if binary else to_structured)(event)
        return self.request("POST", "/", body, dict(headers))


@dataclass
class Servers:
    http: FunctionServer
    events: FunctionServer
    web: FunctionServer
    out: Path
    first_platform: dict[str, Any]
    second_platform: dict[str, Any]

    def records(self) -> list[dict[str, Any]]:
        path = self.out / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def wait_for_record(self, **match: Any) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [r for r in self.records() if match.items() <= r.items()]
            return bool(found)

        wait_until(seen, timeout=5, what=f"a record {match}")
        return found[0]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    out = tmp_path_factory.mktemp("gcp-out")
    logs = tmp_path_factory.mktemp("gcp-logs")
    deployed = {"NUBES_GCP_TEST_OUT": str(out), "K_SERVICE": "nubes-events", "FUNCTION_MEMORY_MB": "512",
                "FUNCTION_REGION": "europe-west1", "CLOUD_RUN_TIMEOUT_SECONDS": "300"}
    started = [
        FunctionServer("gcp_main.py", "main", log=logs / "main.log"),
        FunctionServer("gcp_events.py", "events", signature_type="cloudevent", env={"NUBES_GCP_TEST_OUT": str(out)},
                       log=logs / "events.log"),
        FunctionServer("gcp_events.py", "web", env=deployed, log=logs / "web.log"),
    ]
    try:
        for server in started:
            server.wait_ready()
        http_server, events, web = started
        first = web.request("GET", "/platform").json()  # the first request this process serves
        second = web.request("GET", "/platform").json()
        yield Servers(http_server, events, web, out, first, second)
    finally:
        for server in started:
            server.stop()


def assert_problem(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == "application/problem+json"
    problem = reply.json()
    assert problem["status"] == status and problem["title"]
    assert problem["request_id"] == reply.headers["X-Nubes-Request-Id"]
    return problem


# -- HTTP: the contract app -------------------------------------------------------------------------
def test_unicode_path_over_the_wire(servers: Servers) -> None:
    r = servers.http.request("GET", "/hello/J%C3%BCrgen%20M?times=2", headers={"Function-Execution-Id": "ex-1"})
    assert r.status == 200
    assert r.json() == {"greeting": "hello Jürgen M hello Jürgen M", "request_id": "ex-1"}
    assert r.headers["X-Nubes-Request-Id"] == "ex-1"


def test_encoded_slash_and_reserved_characters(servers: Servers) -> None:
    assert servers.http.request("GET", "/files/a%2Fb/%E2%82%AC%3F.txt").json() == {"path": "a/b/€?.txt"}


def test_repeated_query_keys_and_headers(servers: Servers) -> None:
    r = servers.http.request("GET", "/headers?q=1&q=2&q=caf%C3%A9", headers=[("X-Tag", "a"), ("X-Tag", "b")])
    body = r.json()
    assert body["query"] == [["q", "1"], ["q", "2"], ["q", "café"]]
    assert body["x_tag"] == ["a,b"]  # gunicorn joins a repeated header into one value, as RFC 9110 allows


def test_cookies_both_ways(servers: Servers) -> None:
    r = servers.http.request("GET", "/cookies", headers={"Cookie": "a=1; b=x%20y"})
    assert r.json() == {"a": "1", "b": "x y"}
    cookies = r.headers.get_all("Set-Cookie")
    assert cookies is not None and len(cookies) == 2
    assert cookies[0].startswith("seen=yes") and cookies[1].startswith("theme=dark")


def test_json_post(servers: Servers) -> None:
    body = json.dumps({"item": "tea", "qty": 3, "price": 2.5, "due": "2026-01-31"}).encode()
    r = servers.http.request("POST", "/orders", body, {"Content-Type": "application/json"})
    assert r.status == 201
    assert r.headers["Location"] == "/orders/tea"
    assert r.json() == {"total": 7.5, "order": {"item": "tea", "qty": 3, "price": 2.5, "tags": [], "due": "2026-01-31"}}


def test_parquet_and_binary_responses(servers: Servers) -> None:
    import polars as pl

    r = servers.http.request("GET", "/sales?format=parquet")
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert pl.read_parquet(io.BytesIO(r.body)).height == 3
    r = servers.http.request("GET", "/bytes")
    assert r.body == bytes(range(256)) and r.headers["Content-Type"] == "application/octet-stream"


def test_head(servers: Servers) -> None:
    get = servers.http.request("GET", "/hello/ada")
    head = servers.http.request("HEAD", "/hello/ada")
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Length"] == str(len(get.body))


def test_errors_are_problem_documents(servers: Servers) -> None:
    assert_problem(servers.http.request("GET", "/nowhere"), 404)
    r = servers.http.request("DELETE", "/hello/ada")
    assert_problem(r, 405)
    assert "GET" in r.headers["Allow"]
    problem = assert_problem(servers.http.request("POST", "/orders", b'{"qty": "many"}', {"Content-Type": "application/json"}), 422)
    assert {e["name"] for e in problem["errors"]} == {"body.item", "body.qty"}
    assert_problem(servers.http.request("POST", "/orders", b"{not json", {"Content-Type": "application/json"}), 400)
    r = servers.http.request("GET", "/crash")
    assert_problem(r, 500)
    assert b"hunter2" not in r.body
    assert r.headers["X-Google-Status"] is None  # answered by nubes, not the framework's crash handler


def test_favicon_is_the_framework_s(servers: Servers) -> None:
    assert servers.http.request("GET", "/favicon.ico").status == 404  # functions-framework answers these itself


# -- CloudEvents --------------------------------------------------------------------------------------
def test_storage_finalized_binary_mode(servers: Servers) -> None:
    r = servers.events.send_event(storage_finalized_event("sales-raw", "uploads/2026/ü x.csv", 2048, 1711111111111111), binary=True)
    assert r.status == 200, r.body
    rec = servers.wait_for_record(kind="object_created", key="uploads/2026/ü x.csv")
    assert (rec["store"], rec["size"], rec["etag"]) == ("gs://sales-raw", 2048, "1711111111111111")
    assert rec["platform"]["provider"] == "gcp" and rec["platform"]["emulated"] is True


def test_pubsub_structured_mode(servers: Servers) -> None:
    r = servers.events.send_event(pubsub_event({"sku": "a-1"}, {"origin": "pos"}, topic="orders", message_id="m-structured"),
                                  binary=False)
    assert r.status == 200, r.body
    rec = servers.wait_for_record(kind="message", id="m-structured")
    assert (json.loads(rec["body"]), rec["attributes"], rec["queue"]) == ({"sku": "a-1"}, {"origin": "pos"}, "orders")


def test_pubsub_binary_mode(servers: Servers) -> None:
    assert servers.events.send_event(pubsub_event("plain text", topic="orders", message_id="m-binary")).status == 200
    assert servers.wait_for_record(id="m-binary")["body"] == "plain text"


def test_raw_pubsub_push(servers: Servers) -> None:
    push = {"subscription": "projects/p/subscriptions/push-sub",
            "message": {"data": base64.b64encode(b"pushed").decode(), "messageId": "m-push"}}
    r = servers.events.request("POST", "/projects/p/topics/orders", json.dumps(push).encode(), {"Content-Type": "application/json"})
    assert r.status == 200, r.body
    assert servers.wait_for_record(id="m-push")["queue"] == "orders"


def test_scheduler_message(servers: Servers) -> None:
    when = datetime(2026, 2, 3, 2, 0, tzinfo=UTC)
    assert servers.events.send_event(scheduler_event("nightly", time=when)).status == 200
    rec = servers.wait_for_record(kind="schedule", time=when.isoformat())
    assert rec["name"] == "nightly"


def test_failing_handler_is_a_failed_invocation(servers: Servers) -> None:
    r = servers.events.send_event(pubsub_event("bad", topic="poison", message_id="m-poison"))
    assert r.status >= 500
    assert not [rec for rec in servers.records() if rec.get("id") == "m-poison"]


def test_unknown_events_are_acknowledged_and_unhandled_ones_fail(servers: Servers) -> None:
    unknown = CloudEvent({"type": "google.cloud.storage.object.v1.deleted", "source": "//storage.googleapis.com/projects/_/buckets/b",
                          "id": "1", "subject": "objects/uploads/x"}, {"bucket": "b", "name": "uploads/x"})
    assert servers.events.send_event(unknown).status == 200  # logged; redelivery cannot make it readable
    assert servers.events.send_event(pubsub_event("x", topic="nobody-listens")).status >= 500
    not_an_event = servers.events.request("POST", "/", b'{"hello": 1}', {"Content-Type": "application/json"})
    assert not_an_event.status == 400  # the framework rejects it before our code runs


# -- the deployed-like HTTP target: platform and Cloud Scheduler over HTTP --------------------------
def test_platform_cold_start_and_deadline(servers: Servers) -> None:
    first, second = servers.first_platform, servers.second_platform
    assert first["platform"] == {"provider": "gcp", "function_name": "nubes-events", "memory_mb": 512,
                                 "region": "europe-west1", "architecture": first["platform"]["architecture"],
                                 "cold_start": True, "emulated": False}
    assert second["platform"]["cold_start"] is False
    assert 290 < first["remaining"] <= 300
    assert len(first["request_id"]) == 12 and first["request_id"] != second["request_id"]


def test_schedule_over_http(servers: Servers) -> None:
    headers = {"X-CloudScheduler": "true", "X-CloudScheduler-JobName": "nightly",
               "X-CloudScheduler-ScheduleTime": "2026-04-05T02:00:00Z", "User-Agent": "Google-Cloud-Scheduler"}
    started = time.monotonic()
    r = servers.web.request("POST", "/_nubes/schedule/nightly", b"", headers)
    assert r.status == 200, r.body
    rec = servers.wait_for_record(kind="schedule", time="2026-04-05T02:00:00+00:00")
    assert rec["request_id"] == r.headers["X-Nubes-Request-Id"]
    assert 290 < rec["remaining"] <= 300 + (time.monotonic() - started)
    assert rec["platform"]["function_name"] == "nubes-events"
    assert_problem(servers.web.request("GET", "/_nubes/schedule/nightly"), 405)
    assert_problem(servers.web.request("POST", "/_nubes/schedule/broken", b""), 500)
    assert_problem(servers.web.request("POST", "/_nubes/schedule/nobody", b""), 404)


def test_request_over_32_mib_is_413(servers: Servers) -> None:
    body = b"x" * (32 * 1024 * 1024 + 1)
    problem = assert_problem(servers.http.request("PUT", "/echo", body, {"Content-Type": "application/json"}), 413)
    assert "33,554,432-byte limit" in problem["detail"]
