"""What Lambda's own runtime does with nubes' results and log lines (issue 12, item 5).

* Result size: the runtime client (awslambdaric) escapes non-ASCII text unless ``AWS_EXECUTION_ENV``
  names a python3.12+ managed runtime; nubes must measure a result the way it will be sent, so a
  2.4 MB body of accented text (7.2 MB escaped) is nubes' 500 problem, not the runtime's bare 502.
* Logging: ``AWS_LAMBDA_LOG_LEVEL`` filters nubes' lines and ``AWS_LAMBDA_LOG_FORMAT`` picks
  Lambda's JSON or text layout, as the runtime does for the root logger.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.adapters.malformed import assert_problem

import nubes
from nubes.adapters.aws import handler, wire
from nubes.adapters.aws.builders import LambdaContext, alb_event, http_api_event, rest_api_event
from nubes.core import logs

MANAGED_312 = "AWS_Lambda_python3.12"


def big_app() -> nubes.App:
    app = nubes.App("big", openapi=False, storage="mem://big")

    @app.get("/text")
    def text(ctx: nubes.Context, n: int, ch: str = "é") -> nubes.Response:
        return nubes.Response((ch * n).encode("utf-8"), media_type="text/plain; charset=utf-8")

    @app.get("/bytes")
    def raw(ctx: nubes.Context, n: int) -> nubes.Response:
        return nubes.Response(b"\x00" * n, media_type="application/octet-stream")

    return app


def body_of(result: dict[str, Any]) -> bytes:
    return base64.b64decode(result["body"]) if result["isBase64Encoded"] else result["body"].encode("utf-8")


# -- result size as the runtime client sends it ---------------------------------------------------------
RESULTS = [
    {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "plain ascii", "isBase64Encoded": False},
    {"statusCode": 200, "headers": {"x-name": "café"}, "body": "é" * 50 + "😀" * 7 + "\u2028\x01/\x7f", "isBase64Encoded": False},
    {"statusCode": 200, "multiValueHeaders": {"set-cookie": ["a=1", "b=ü"]}, "body": "AAEC", "isBase64Encoded": True},
]


@pytest.mark.parametrize("execution_env", [None, "AWS_Lambda_python3.11", MANAGED_312, "AWS_Lambda_python3.13"])
@pytest.mark.parametrize("result", RESULTS)
def test_result_size_is_what_the_runtime_client_sends(monkeypatch: pytest.MonkeyPatch, execution_env: str | None,
                                                      result: dict[str, Any]) -> None:
    marshaller = pytest.importorskip("awslambdaric.lambda_runtime_marshaller", reason="awslambdaric (the runtime client) not installed")
    if execution_env is None:
        monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    else:
        monkeypatch.setenv("AWS_EXECUTION_ENV", execution_env)
    sent = marshaller.to_json(result).encode("utf-8")
    assert wire.result_bytes(result) == len(sent)
    assert wire.escapes_non_ascii() == sent.isascii() or result["body"].isascii()


@settings(max_examples=200, deadline=None, database=None)
@given(body=st.text(max_size=300), b64=st.booleans(), header=st.text(max_size=40), escaped=st.booleans())
def test_the_cheap_bound_never_misses_an_oversized_result(body: str, b64: bool, header: str, escaped: bool) -> None:
    import os

    saved = os.environ.get("AWS_EXECUTION_ENV")
    os.environ["AWS_EXECUTION_ENV"] = "AWS_Lambda_python3.11" if escaped else MANAGED_312
    try:
        result = {"statusCode": 200, "headers": {"x-h": header}, "body": body, "isBase64Encoded": b64}
        for limit in (600, 1500, 4000):
            if not wire.may_exceed(result, [("x-h", header)], limit):
                assert wire.result_bytes(result) <= limit  # type: ignore[operator]
    finally:
        if saved is None:
            os.environ.pop("AWS_EXECUTION_ENV", None)
        else:
            os.environ["AWS_EXECUTION_ENV"] = saved


@pytest.mark.parametrize("build", [rest_api_event, http_api_event])
def test_non_ascii_body_over_6mb_once_escaped_is_a_problem(monkeypatch: pytest.MonkeyPatch, build: Any) -> None:
    lam = handler(big_app())
    event = build(nubes.Request("GET", "/text", query={"n": str(1_200_000)}))  # 2.4 MB of UTF-8, 7.2 MB escaped
    monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)  # a container image or the RIE: escaped
    result = lam(event, LambdaContext())
    assert result["statusCode"] == 500
    problem = assert_problem(body_of(result), 500)
    assert problem["title"] == "Response Too Large" and "7,200," in problem["detail"]
    assert len(json.dumps(result)) < 10_000
    monkeypatch.setenv("AWS_EXECUTION_ENV", MANAGED_312)  # sent as UTF-8: 2.4 MB fits
    result = lam(event, LambdaContext())
    assert result["statusCode"] == 200 and body_of(result).decode("utf-8") == "é" * 1_200_000
    assert wire.result_bytes(result) <= 6 * 1024 * 1024


def test_alb_limit_is_1mb_of_escaped_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    lam = handler(big_app())
    ok = lam(alb_event(nubes.Request("GET", "/text", query={"n": "150000", "ch": "a"})), LambdaContext())
    assert ok["statusCode"] == 200
    over = lam(alb_event(nubes.Request("GET", "/text", query={"n": "200000"})), LambdaContext())  # 400 kB UTF-8, 1.2 MB escaped
    assert over["statusCode"] == 500 and over["statusDescription"].startswith("500")
    assert_problem(body_of(over), 500)


def test_binary_bodies_are_measured_as_base64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    lam = handler(big_app())
    fits = lam(http_api_event(nubes.Request("GET", "/bytes", query={"n": str(4_500_000)})), LambdaContext())
    assert fits["statusCode"] == 200 and fits["isBase64Encoded"] and len(body_of(fits)) == 4_500_000
    over = lam(http_api_event(nubes.Request("GET", "/bytes", query={"n": str(5_000_000)})), LambdaContext())
    assert over["statusCode"] == 500


# -- Lambda's logging controls -----------------------------------------------------------------------
@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A Lambda runtime's environment; nubes' logger is put back as it was afterwards."""
    log = logs.logger()
    level, layout = log.level, logs._STYLE[0]
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    for name in ("AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "NUBES_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    log.setLevel(level)
    logs._STYLE[0] = layout


def chatty_app() -> nubes.App:
    app = nubes.App("chatty", openapi=False, storage="mem://chatty")

    @app.get("/talk")
    def talk(ctx: nubes.Context) -> dict[str, bool]:
        ctx.log.debug("debug line", step=1)
        ctx.log.info("info line", step=2)
        ctx.log.warning("warning line", step=3)
        return {"ok": True}

    @app.get("/fail")
    def fail(ctx: nubes.Context) -> None:
        raise RuntimeError("kaput")

    return app


def call(path: str, request_id: str = "req-42") -> None:
    lam = handler(chatty_app())
    lam(http_api_event(nubes.Request("GET", path)), LambdaContext(request_id=request_id))


def test_json_format_and_level(lambda_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lambda_env.setenv("AWS_LAMBDA_LOG_FORMAT", "JSON")
    lambda_env.setenv("AWS_LAMBDA_LOG_LEVEL", "WARN")
    call("/talk")
    call("/fail")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["warning line", "unhandled exception"]
    warning, error = lines
    assert warning["level"] == "WARN" and warning["requestId"] == "req-42" and warning["step"] == 3
    assert warning["logger"] == "nubes" and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", warning["timestamp"])
    assert error["level"] == "ERROR" and error["errorType"] == "RuntimeError" and error["errorMessage"] == "kaput"
    assert isinstance(error["stackTrace"], list) and any("kaput" in frame for frame in error["stackTrace"])
    assert "msg" not in warning and "ts" not in warning


TEXT_LINE = re.compile(r"^\[(DEBUG|INFO|WARNING|ERROR)\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t([^\t]*)\t(\{.*\})$")


def test_text_format_is_the_runtimes_layout_with_nubes_json(lambda_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lambda_env.setenv("AWS_LAMBDA_LOG_FORMAT", "Text")
    lambda_env.setenv("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
    call("/talk", "req-7")
    lines = capsys.readouterr().err.splitlines()
    parsed = [TEXT_LINE.match(line) for line in lines]
    assert all(parsed), lines
    entries = [(m.group(1), m.group(2), json.loads(m.group(3))) for m in parsed if m]
    assert [(level, e["msg"]) for level, _, e in entries] == [
        ("DEBUG", "debug line"), ("INFO", "info line"), ("WARNING", "warning line"), ("INFO", "invocation")]
    assert {rid for _, rid, _ in entries} == {"req-7"}


def test_nubes_log_level_may_only_be_stricter(lambda_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lambda_env.setenv("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
    lambda_env.setenv("NUBES_LOG_LEVEL", "warning")
    call("/talk")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["msg"] for line in lines] == ["warning line"]  # no format set: nubes' JSON lines


def test_outside_lambda_nothing_changes(lambda_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lambda_env.delenv("AWS_LAMBDA_FUNCTION_NAME")
    lambda_env.setenv("AWS_LAMBDA_LOG_FORMAT", "JSON")
    lambda_env.setenv("AWS_LAMBDA_LOG_LEVEL", "ERROR")
    call("/talk")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["msg"] for line in lines] == ["info line", "warning line", "invocation"]


def test_an_application_configured_logger_is_left_alone(lambda_env: pytest.MonkeyPatch) -> None:
    from nubes.adapters.aws.logs import configure_logging

    lambda_env.setenv("AWS_LAMBDA_LOG_FORMAT", "JSON")
    log = logging.getLogger("nubes")
    handlers = log.handlers[:]
    own = logging.NullHandler()
    log.handlers = [own]
    try:
        assert configure_logging() is False
        assert logs._STYLE[0] is None
    finally:
        log.handlers = handlers
