"""The Cloud Functions targets never raise on malformed input (issue 10, item 6).

HTTP: requests generated through functions-framework's own test client (the app file loaded by
``create_app``, as in production), and WSGI environs broken key by key handed to the target as
Flask requests; every answer is a response, every 4xx/5xx a problem+json body that leaks nothing.
CloudEvents: the builders' Eventarc events broken field by field in their structured form, and
generated ones, handed to the target; an unreadable event is logged and acknowledged, never
raised (only a handler's own failure and :class:`~nubes.errors.NoHandler` propagate, by design).
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import functions_framework
import pytest
from cloudevents.conversion import to_structured
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.adapters.malformed import HOSTILE, assert_problem, json_values, mutations, strict_stderr, texts
from werkzeug.test import Client as WerkzeugClient
from werkzeug.test import EnvironBuilder

import nubes
from nubes.adapters.gcp import functions as gcp
from nubes.adapters.gcp.builders import pubsub_event, scheduler_event, storage_finalized_event
from nubes.errors import NoHandler

APP_FILE = Path(__file__).resolve().parents[1] / "apps" / "attack_app.py"
FF_ENV = ("FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE", "K_SERVICE")
SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[str, WerkzeugClient]]:
    """The attack app served by functions-framework, with the HTTP and the CloudEvent signature."""
    mp = pytest.MonkeyPatch()
    for name in FF_ENV:
        mp.delenv(name, raising=False)
    yield {"http": functions_framework.create_app("main", str(APP_FILE), "http").test_client(use_cookies=False),
           "cloudevent": functions_framework.create_app("on_event", str(APP_FILE), "cloudevent").test_client(use_cookies=False)}
    mp.undo()


@pytest.fixture(scope="module")
def targets() -> Any:
    from nubes.core.loader import load_app

    app = load_app(f"{APP_FILE}:app")
    return gcp.http_function(app), gcp.cloud_event_function(app), flask.Flask("attack")


def check_http(status: int, body: bytes, content_type: str | None, method: str = "GET") -> None:
    assert 200 <= status <= 599
    if status >= 400 and method.upper() != "HEAD":
        assert_problem(body, status, content_type)


# -- HTTP through the functions-framework test client ------------------------------------------------
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "M-SEARCH", "get"])
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
header_names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-XYZ_0123456789"), min_size=1, max_size=20)


@SETTINGS
@given(method=methods, path=texts, query=st.binary(max_size=60), headers=st.lists(st.tuples(header_names, header_text), max_size=6),
       body=st.binary(max_size=300) | st.sampled_from([b"[" * 100_000, b'{"a":' * 60_000, b"\xff\xfe", b"{}"]),
       ctype=st.sampled_from(["application/json", "text/plain; charset=utf-8", "text/plain; charset=nope",
                              "application/x-www-form-urlencoded", "", "multipart/form-data; boundary=x"]))
def test_generated_requests_through_the_framework(clients: dict[str, WerkzeugClient], method: str, path: str, query: bytes,
                                                  headers: list[tuple[str, str]], body: bytes, ctype: str) -> None:
    target = "/" + path.lstrip("/")
    if target.split("?")[0] in ("/robots.txt", "/favicon.ico"):  # answered by the framework itself
        target = "/x" + target
    try:
        r = clients["http"].open(target, method=method, query_string=query.decode("latin-1"), headers=headers, data=body,
                                 content_type=ctype or None)
    except (ValueError, UnicodeError):  # the test client could not build such a request at all
        return
    check_http(r.status_code, r.get_data(), r.content_type, method)


def test_json_nested_100000_deep_is_400(clients: dict[str, WerkzeugClient]) -> None:
    r = clients["http"].post("/deep", data=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
    problem = assert_problem(r.get_data(), 400, r.content_type)
    assert "nested too deeply" in problem["detail"]


def test_a_deeply_nested_job_delivery_is_not_a_500(clients: dict[str, WerkzeugClient]) -> None:
    """A job delivery path with a body nested past the JSON parser's recursion limit is an ordinary
    request (no route: 404), not an adapter failure."""
    r = clients["http"].post(f"/_nubes/jobs/{'a' * 32}/run", data=b"[" * 4000, content_type="application/json")
    assert r.status_code < 500
    check_http(r.status_code, r.get_data(), r.content_type, "POST")


# -- HTTP: WSGI environs broken key by key, as Flask requests ---------------------------------------
def environ() -> dict[str, Any]:
    builder = EnvironBuilder(path="/items/caf%C3%A9", method="POST", query_string="a=1&a=2", data=b'{"k": 1}',
                             headers={"Content-Type": "application/json", "X-Tag": "one", "Function-Execution-Id": "exec-1",
                                      "X-Forwarded-Proto": "https"})
    try:
        return builder.get_environ()
    finally:
        builder.close()


def environ_mutations() -> Iterator[tuple[str, dict[str, Any]]]:
    base = environ()
    for key in sorted(k for k in base if k != "wsgi.input"):
        for name, value in HOSTILE:
            env = dict(base)
            env["wsgi.input"] = io.BytesIO(b'{"k": 1}')
            if value is HOSTILE[0][1]:
                del env[key]
            else:
                env[key] = copy.deepcopy(value)
            yield f"{key} -> {name}", env
    for length in ("-1", "abc", "9" * 40, "+3", "1_0", "3, 3"):
        yield f"CONTENT_LENGTH {length}", {**base, "CONTENT_LENGTH": length, "wsgi.input": io.BytesIO(b'{"k": 1}')}


def test_every_broken_environ_key_is_answered(targets: Any) -> None:
    main, _, flask_app = targets
    count = 0
    with strict_stderr() as stderr:
        for label, env in environ_mutations():
            try:
                request = flask.Request(env)
            except (TypeError, AttributeError, ValueError, UnicodeError):  # werkzeug cannot even build it
                continue
            with flask_app.test_request_context():
                response = main(request)
            assert isinstance(response, flask.Response), label
            try:
                check_http(response.status_code, response.get_data(), response.content_type)
            except AssertionError as exc:
                raise AssertionError(f"{label}: {exc}") from None
            count += 1
    assert count > 300 and stderr.lines >= count


def test_a_streamed_body_over_the_limit_is_413_without_reading_it_all(targets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    main, _, flask_app = targets
    monkeypatch.setattr(gcp, "MAX_REQUEST_BYTES", 1000)

    class Endless(io.RawIOBase):
        served = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            n = len(buffer)
            buffer[:n] = b"x" * n
            Endless.served += n
            return n

    env = {**environ(), "wsgi.input": io.BufferedReader(Endless()), "wsgi.input_terminated": True}
    del env["CONTENT_LENGTH"]
    with flask_app.test_request_context():
        response = main(flask.Request(env))
    assert response.is_streamed  # so the framework will not drain it
    problem = assert_problem(response.get_data(), 413, response.content_type)
    assert "1,000-byte limit" in problem["detail"]
    assert Endless.served < 100_000


# -- CloudEvents ------------------------------------------------------------------------------------
def structured(event: Any) -> dict[str, Any]:
    return json.loads(to_structured(event)[1])


EVENTS = {
    "storage": structured(storage_finalized_event("raw", "uploads/é x.csv", 12, 1700000000000001)),
    "pubsub": structured(pubsub_event(b"\x00payload", {"origin": "pos"}, "eventarc-sub", topic="orders", message_id="42")),
    "scheduler": structured(scheduler_event("nightly")),
}


def fire(on_event: Any, flask_app: flask.Flask, event: Any) -> Any:
    with flask_app.test_request_context():
        try:
            return on_event(event)
        except NoHandler:
            return NoHandler


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_every_broken_field_of_a_cloud_event_is_acknowledged(targets: Any, kind: str) -> None:
    _, on_event, flask_app = targets
    with strict_stderr() as stderr:
        for label, broken in mutations(EVENTS[kind]):
            result = fire(on_event, flask_app, broken)
            assert result is None or (result is NoHandler and kind == "scheduler"), label
    assert stderr.lines > 100


@SETTINGS
@given(event=st.fixed_dictionaries(
    {"type": st.sampled_from([gcp.STORAGE_FINALIZED, gcp.PUBSUB_PUBLISHED]) | texts},
    optional={"source": texts, "id": texts | st.integers(), "subject": json_values, "time": json_values,
              "specversion": st.just("1.0"), "data": json_values, "data_base64": json_values}))
def test_generated_cloud_events_never_raise(targets: Any, event: dict[str, Any]) -> None:
    _, on_event, flask_app = targets
    assert fire(on_event, flask_app, event) in (None, NoHandler)


@SETTINGS
@given(data=st.binary(max_size=200) | st.builds(lambda v: json.dumps(v, default=str).encode(), json_values),
       ctype=st.sampled_from(["application/cloudevents+json", "application/json", "text/plain"]),
       ce_type=st.sampled_from([gcp.STORAGE_FINALIZED, gcp.PUBSUB_PUBLISHED, "x"]), binary_mode=st.booleans())
def test_generated_posts_to_the_cloudevent_signature(clients: dict[str, WerkzeugClient], data: bytes, ctype: str, ce_type: str,
                                                     binary_mode: bool) -> None:
    headers = {"ce-specversion": "1.0", "ce-type": ce_type, "ce-source": "//x", "ce-id": "1"} if binary_mode else {}
    r = clients["cloudevent"].post("/", data=data, headers={"Content-Type": ctype, **headers})
    # 200: handled or acknowledged; 4xx: no CloudEvent in it (nubes' problem, or the framework's own
    # answer, e.g. 415 for a legacy event that is not JSON). Never a crash.
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.get_data()[:300]
    if r.content_type == "application/problem+json":
        assert_problem(r.get_data(), r.status_code)


def test_http_signature_without_a_cloud_event_is_a_400_problem(targets: Any) -> None:
    _, on_event, flask_app = targets
    env = environ()
    with flask_app.test_request_context():
        response = on_event(flask.Request(env))
    problem = assert_problem(response.get_data(), 400, response.content_type)
    assert "CloudEvent" in problem["detail"]


def test_unreadable_events_are_logged_with_an_excerpt(targets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, on_event, flask_app = targets
    event = copy.deepcopy(EVENTS["storage"])
    event["data"]["size"] = "1e999"
    assert fire(on_event, flask_app, event) is None
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    line = next(entry for entry in logged if entry.get("msg") == "unreadable event")
    assert line["level"] == "error" and "size" in line["detail"] and "uploads" in line["event_excerpt"]


def test_a_readable_event_still_reaches_its_handler(targets: Any) -> None:
    flask_app = targets[2]
    seen: list[nubes.ObjectCreated] = []
    app = nubes.App("seen", openapi=False, storage="mem://seen")
    app.on_object_created("")(lambda ctx, event: seen.append(event))
    target = gcp.cloud_event_function(app)
    with flask_app.test_request_context():
        assert target(EVENTS["storage"]) is None
    assert seen and seen[0].key == "uploads/é x.csv" and seen[0].size == 12
