"""The provider emulator through its Python API: Client(app, emulate=...), limits, failures, events."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

import nubes
from nubes.adapters.emulator import ANSWERS, FIGURES, Emulator
from nubes.core.loader import load_app
from nubes.core.request import Request
from nubes.testing import Client

PROVIDERS = ("aws", "gcp", "azure")

EMU_APP = textwrap.dedent('''
    """An app for emulator tests: slow, big, hungry and event routes."""
    import os
    import time

    import nubes
    from nubes import Context, Response

    app = nubes.App("emu")


    @app.get("/hello")
    def hello(ctx: Context) -> dict:
        return {"hello": "world"}


    @app.get("/sleep")
    def sleep(ctx: Context, s: float = 0.5) -> dict:
        start = time.time()
        time.sleep(s)
        return {"slept": s, "pid": os.getpid(), "start": start, "end": time.time()}


    @app.get("/big")
    def big(ctx: Context, n: int) -> Response:
        return Response(b"x" * n, media_type="text/plain")


    @app.post("/size")
    def size(ctx: Context) -> dict:
        return {"size": len(ctx.request.body)}


    @app.get("/hog")
    def hog(ctx: Context, mb: int) -> dict:
        data = bytearray(mb * 1024 * 1024)
        for i in range(0, len(data), 4096):
            data[i] = 1
        time.sleep(1)
        return {"bytes": len(data)}


    @app.get("/platform")
    def platform(ctx: Context) -> dict:
        p = ctx.platform
        return {"provider": p.provider, "cold": p.cold_start, "memory": p.memory_mb, "emulated": p.emulated,
                "pid": os.getpid()}


    @app.on_object_created("in/")
    def created(ctx: Context, event) -> dict:
        return {"key": event.key, "size": event.size, "store": event.store}


    @app.on_object_created("in/", store="az://uploads")
    def created_azure(ctx: Context, event) -> dict:
        return {"key": event.key}


    @app.on_message("orders")
    def message(ctx: Context, msg) -> str:
        if msg.text() == "fail":
            raise RuntimeError("cannot take this order")
        return msg.text()


    @app.on_schedule("nightly", cron="0 0 2 * * *")
    def nightly(ctx: Context, event) -> str:
        return event.name
''')


@pytest.fixture(scope="module")
def emu_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("emu") / "emu_app.py"
    path.write_text(EMU_APP, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def emu_app(emu_path: Path) -> nubes.App:
    return load_app(f"{emu_path}:app")


def _comparable(resp) -> tuple:
    media = resp.headers.get("content-type", "")
    body = resp.content
    if "json" in media:
        data = json.loads(body)
        if isinstance(data, dict):
            data.pop("request_id", None)
            if "detail" in data:
                data["detail"] = re.sub(r"request id \S+", "request id ID", str(data["detail"]))
        body = data
    return resp.status_code, media, body


CALLS = [
    ("GET", "/hello/ada", {"params": {"times": "2"}}),
    ("GET", "/hello/w%C3%B6rld", {}),
    ("GET", "/teapot", {}),
    ("GET", "/nowhere", {}),
    ("DELETE", "/hello/x", {}),
    ("GET", "/types", {"params": {"i": "x"}}),
    ("POST", "/orders", {"json": {"item": "tea", "qty": 2, "price": 2.5}}),
    ("POST", "/orders", {"content": b"{oops", "headers": {"content-type": "application/json"}}),
    ("PUT", "/echo", {"json": {"a": [1, 2]}}),
    ("GET", "/sales", {"headers": {"accept": "text/csv"}}),
    ("GET", "/sales/summary", {}),
    ("GET", "/bytes", {}),
    ("GET", "/crash", {}),
    ("GET", "/async", {"params": {"n": "4"}}),
]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_client_emulate_matches_plain_client_on_contract_routes(contract_app: nubes.App, provider: str) -> None:
    plain = Client(contract_app)
    with Client(contract_app, emulate=provider) as emulated:
        for method, path, kw in CALLS:
            want = plain.request(method, path, **kw)
            got = emulated.request(method, path, **kw)
            assert _comparable(got) == _comparable(want), (provider, method, path)


@pytest.mark.parametrize("event", ["rest", "alb", "url"])
def test_client_emulate_aws_front_ends(contract_app: nubes.App, event: str) -> None:
    with Client(contract_app, emulate="aws", aws_event=event) as client:
        r = client.get("/hello/ada", params={"times": "2"})
        assert r.status_code == 200 and r.json()["greeting"] == "hello ada hello ada"
        assert client.get("/bytes").content == bytes(range(256))
        assert client.get("/teapot").status_code == 418


def test_every_figure_and_answer_has_a_source() -> None:
    assert all(f.source and f.value > 0 for f in FIGURES.values())
    assert all(a.source and 400 <= a.status < 600 for a in ANSWERS.values())
    assert FIGURES["aws.payload_bytes"].value == 6 * 1024 * 1024
    assert FIGURES["gcp.request_bytes"].value == 32 * 1024 * 1024
    assert FIGURES["azure.request_bytes"].value == 100 * 1024 * 1024
    assert FIGURES["azure.http_timeout_s"].value == 230


# -- limits -------------------------------------------------------------------------------------
def test_aws_request_over_6_mb_is_413_from_api_gateway(emu_app: nubes.App) -> None:
    with Client(emu_app, emulate="aws") as client:
        r = client.post("/size", content=b"a" * (6 * 1024 * 1024 + 1), headers={"content-type": "text/plain"})
        assert r.status_code == 413 and r.json() == {"message": "Request Entity Too Large"}
        # the limit is on the whole event: a 5 MB binary body is base64-encoded to ~6.7 MB
        r = client.post("/size", content=b"\x00" * (5 * 1024 * 1024), headers={"content-type": "application/octet-stream"})
        assert r.status_code == 413
        r = client.post("/size", content=b"a" * (5 * 1024 * 1024), headers={"content-type": "text/plain"})
        assert r.status_code == 200 and r.json() == {"size": 5 * 1024 * 1024}


def oversize_answer(status: int, content_type: str, body: bytes, provider_status: int) -> bool:
    """A response over the limit: the AWS adapter answers it itself (500 "Response Too Large"
    problem); if an adapter let it through, the emulator gives the front end's own answer."""
    if status == 500 and content_type == "application/problem+json":
        return json.loads(body)["title"] == "Response Too Large"
    return status == provider_status


def test_aws_alb_limits_are_1_mb(emu_app: nubes.App) -> None:
    with Client(emu_app, emulate="aws", aws_event="alb") as client:
        r = client.post("/size", content=b"a" * (1024 * 1024 + 1), headers={"content-type": "text/plain"})
        assert r.status_code == 413 and b"413 Request Entity Too Large" in r.content
        r = client.get("/big", params={"n": str(1024 * 1024 + 1)})
        assert oversize_answer(r.status_code, r.headers.get("content-type", ""), r.content, 502)


@pytest.mark.parametrize(("event", "status"), [("http", 500), ("rest", 502), ("url", 502)])
def test_aws_response_over_6_mb(emu_app: nubes.App, event: str, status: int) -> None:
    with Client(emu_app, emulate="aws", aws_event=event) as client:
        r = client.get("/big", params={"n": str(6 * 1024 * 1024 + 1)})
        assert oversize_answer(r.status_code, r.headers.get("content-type", ""), r.content, status)
        assert client.get("/big", params={"n": "10"}).content == b"x" * 10


@pytest.mark.parametrize(("event", "limit", "status", "body"), [
    ("http", 6 * 1024 * 1024, 500, b'{"message":"Internal Server Error"}'),
    ("rest", 6 * 1024 * 1024, 502, b'{"message": "Internal server error"}'),
    ("url", 6 * 1024 * 1024, 502, b"Internal Server Error"),
    ("alb", 1024 * 1024, 502, b"<html>"),
])
def test_lambda_result_over_the_limit_gets_the_front_ends_answer(event: str, limit: int, status: int, body: bytes) -> None:
    from nubes.adapters.emulator import provider

    aws = provider("aws", front=event)
    result = json.dumps({"statusCode": 200, "headers": {}, "body": "x" * limit, "isBase64Encoded": False}).encode()
    response, error_type = aws.decode({"ok": True}, result)
    assert response.status == status and response.body.startswith(body)
    assert error_type == "Function.ResponseSizeTooLarge"
    response, _ = aws.decode({"ok": True}, json.dumps({"statusCode": 201, "body": "ok"}).encode())
    assert (response.status, response.body) == (201, b"ok")


@pytest.mark.parametrize("provider", ["gcp", "azure"])
def test_request_limit_override_gives_the_providers_413(emu_app: nubes.App, provider: str) -> None:
    with Client(emu_app, emulate=provider, request_limit=1000) as client:
        assert client.post("/size", content=b"a" * 1000).json() == {"size": 1000}
        r = client.post("/size", content=b"a" * 1001)
        assert r.status_code == 413


# -- timeouts (in-process: detected when the handler returns) ---------------------------------------
@pytest.mark.parametrize(("provider", "event", "status", "body"), [
    ("aws", "http", 500, b'{"message":"Internal Server Error"}'),
    ("aws", "rest", 502, b'{"message": "Internal server error"}'),
    ("aws", "url", 502, b"Internal Server Error"),
    ("gcp", "http", 504, b"upstream request timeout"),
    ("azure", "http", 500, b""),
])
def test_overrun_in_process_gets_the_providers_answer(emu_app: nubes.App, provider: str, event: str, status: int,
                                                       body: bytes) -> None:
    with Client(emu_app, emulate=provider, aws_event=event, timeout=0.2) as client:
        r = client.get("/sleep", params={"s": "0.3"})
        assert (r.status_code, r.content) == (status, body)
        assert client.get("/sleep", params={"s": "0"}).status_code == 200


def test_bad_settings_are_config_errors(emu_app: nubes.App) -> None:
    from nubes.errors import ConfigError

    for kw in ({"timeout": 901}, {"memory": 64}, {"front": "sns"}):
        with pytest.raises(ConfigError):
            Emulator(emu_app, "aws", isolate=False, **kw)
    with pytest.raises(ConfigError):
        Emulator(emu_app, "azure", isolate=False, timeout=601)
    with pytest.raises(ConfigError):
        Emulator(emu_app, "ibm", isolate=False)


# -- worker processes ---------------------------------------------------------------------------
def test_isolated_worker_cold_start_then_warm(emu_app: nubes.App) -> None:
    with Client(emu_app, emulate="aws", isolate=True, memory=512) as client:
        first, second = client.get("/platform").json(), client.get("/platform").json()
    assert first["cold"] is True and second["cold"] is False and first["pid"] == second["pid"]
    assert first["provider"] == "aws" and first["memory"] == 512 and first["emulated"] is True


def test_isolated_worker_out_of_memory_is_killed(emu_app: nubes.App, capsys: pytest.CaptureFixture[str]) -> None:
    with Client(emu_app, emulate="aws", isolate=True, memory=160) as client:
        pid = client.get("/platform").json()["pid"]
        r = client.get("/hog", params={"mb": "300"})
        assert r.status_code == 500 and r.json() == {"message": "Internal Server Error"}
        again = client.get("/platform").json()
    assert again["cold"] is True and again["pid"] != pid
    assert "Runtime.OutOfMemory" in capsys.readouterr().err


def test_gateway_timeout_answers_and_function_runs_on(emu_app: nubes.App) -> None:
    with Emulator(emu_app, "aws", timeout=5, workers=1) as emulator:
        emulator.provider.gateway_timeout = 0.5  # stand-in for API Gateway's 30 s
        r = emulator.handle(Request("GET", "/sleep?s=1"))
        assert r.status == 503 and json.loads(r.body) == {"message": "Service Unavailable"}
        after = emulator.handle(Request("GET", "/platform"))  # waits for the same (warm) instance
        assert json.loads(after.body)["cold"] is False


# -- events -------------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", PROVIDERS)
def test_emit_events_in_process(emu_app: nubes.App, provider: str) -> None:
    with Emulator(emu_app, provider, isolate=False) as emulator:
        bucket = "uploads"
        created = emulator.emit("object-created", "in/a b.csv", bucket=bucket, size=12)
        assert created.ok, created.output
        ok = emulator.emit("message", "two teas", queue="orders")
        assert ok.ok, ok.output
        failed = emulator.emit("message", "fail", queue="orders")
        assert not failed.ok
        nightly = emulator.emit("schedule", "nightly")
        assert nightly.ok, nightly.output
    if provider == "aws":
        assert ok.output == {"batchItemFailures": []}
        assert failed.output["batchItemFailures"][0]["itemIdentifier"]


def test_emit_unknown_handler_fails(emu_app: nubes.App) -> None:
    with Emulator(emu_app, "aws", isolate=False) as emulator:
        result = emulator.emit("schedule", "weekly")
    assert not result.ok and result.error_type == "NoHandler"


def test_the_in_process_aws_emulator_leaves_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulated Lambda reports the machine's architecture without writing NUBES_ARCHITECTURE into
    the caller's process (isolate=False runs in it)."""
    from nubes.core.events import machine_architecture

    monkeypatch.delenv("NUBES_ARCHITECTURE", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    app = nubes.App("arch", auth=False, openapi=False)
    app.get("/arch")(lambda ctx: {"architecture": ctx.platform.architecture})
    with Emulator(app, "aws", isolate=False) as emulator:
        r = emulator.handle(Request("GET", "/arch"))
    assert json.loads(r.body) == {"architecture": machine_architecture()}
    import os

    assert "NUBES_ARCHITECTURE" not in os.environ


@pytest.mark.parametrize(("machine", "arch"), [("x86_64", "x86_64"), ("AMD64", "x86_64"), ("aarch64", "arm64"),
                                               ("arm64", "arm64"), ("riscv64", "riscv64")])
def test_one_machine_to_architecture_mapping(monkeypatch: pytest.MonkeyPatch, machine: str, arch: str) -> None:
    import platform

    from nubes.core.events import machine_architecture

    monkeypatch.setattr(platform, "machine", lambda: machine)
    machine_architecture.cache_clear()
    try:
        assert machine_architecture() == arch
    finally:
        machine_architecture.cache_clear()
