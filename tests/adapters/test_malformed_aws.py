"""The AWS handler never raises on a malformed event (issue 10, item 6).

Every real SAM-rendered event in tests/data/aws is broken field by field (:func:`mutations`), and
hypothesis generates more; whatever comes in, no exception escapes the handler (Lambda would turn
it into a 502 carrying nubes' frames), every HTTP-shaped event gets a well-formed proxy result
(4xx/5xx ones with a problem+json body that leaks nothing), and every other event a result its
source understands: ``None``, ``batchItemFailures``, or ``{"errorType", "errorMessage"}``.
The only exception a readable event may raise is :class:`~nubes.errors.NoHandler` for an S3
object or a schedule no handler wants (by design: Lambda retries it, then dead-letters it).
"""

from __future__ import annotations

import base64
import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.adapters.malformed import HUGE_INT, SURROGATE, assert_problem, json_values, mutations, paths, replaced, strict_stderr
from tests.apps import attack_app

import nubes
from nubes.adapters.aws import handler
from nubes.adapters.aws.builders import LambdaContext
from nubes.errors import NoHandler

DATA = Path(__file__).parent.parent / "data" / "aws"
HTTP_FILES = sorted(p.name for p in DATA.glob("*.json") if p.name.startswith(("rest", "http", "alb", "function_url")))
OTHER_FILES = sorted(p.name for p in DATA.glob("*.json") if p.name.startswith(("s3", "sqs", "schedule")))


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def metered_app() -> nubes.App:
    """The attack app's routes and handlers, with metering on (a ledger in memory)."""
    app = nubes.App("attack-metered", openapi=False, storage="mem://attack-aws")
    app.route("/{rest:path}", methods=METHODS)(attack_app.echo)
    app.on_object_created("")(attack_app.created)
    app.on_message()(attack_app.message)
    app.on_schedule("nightly-rollup", cron="0 0 3 * * *")(attack_app.nightly)
    return app


@pytest.fixture(scope="module")
def lam() -> Any:
    return handler(metered_app())


@pytest.fixture(scope="module")
def bare() -> Any:
    return handler(attack_app.app)


# -- what a valid answer is ------------------------------------------------------------------------
def check_http(result: Any) -> None:
    """A Lambda proxy result in one of the HTTP shapes; a 4xx/5xx carries a problem body."""
    assert isinstance(result, dict), result
    status = result["statusCode"]
    assert type(status) is int and 200 <= status <= 599, result
    assert isinstance(result["body"], str) and isinstance(result["isBase64Encoded"], bool)
    headers: dict[str, str] = {}
    for name, value in (result.get("headers") or {}).items():
        assert isinstance(name, str) and isinstance(value, str)
        headers[name.lower()] = value
    for name, values in (result.get("multiValueHeaders") or {}).items():
        assert isinstance(values, list) and all(isinstance(v, str) for v in values)
        headers.setdefault(name.lower(), values[0])
    assert "headers" in result or "multiValueHeaders" in result, result
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # sendable by the runtime client, either mode
    if status >= 400:
        body = base64.b64decode(result["body"]) if result["isBase64Encoded"] else result["body"]
        assert_problem(body, status, headers.get("content-type"))


def check_other(result: Any) -> None:
    """None, a partial batch response, or an error result without a traceback."""
    if result is None:
        return
    assert isinstance(result, dict), result
    if "batchItemFailures" in result:
        assert set(result) == {"batchItemFailures"}
        assert all(set(f) == {"itemIdentifier"} and isinstance(f["itemIdentifier"], str) for f in result["batchItemFailures"])
        return
    assert set(result) == {"errorType", "errorMessage"} and result["errorType"] == "UnknownEvent", result
    assert "Traceback" not in result["errorMessage"]


def check_any(result: Any) -> None:
    if isinstance(result, dict) and "statusCode" in result:
        check_http(result)
    else:
        check_other(result)


def invoke(lam: Any, event: Any) -> Any:
    try:
        return lam(event, LambdaContext())
    except NoHandler:
        return NoHandler


# -- the systematic mutation -----------------------------------------------------------------------
@pytest.mark.parametrize("name", HTTP_FILES)
def test_every_broken_field_of_an_http_event_is_answered(bare: Any, name: str) -> None:
    with strict_stderr() as stderr:
        count = attack_http(bare, name)
    assert count > 300 and stderr.lines >= count  # every call logged, every line JSON


def attack_http(lam: Any, name: str) -> int:
    count = 0
    for label, broken in mutations(load(name)):
        result = invoke(lam, broken)
        assert result is not NoHandler, label
        try:
            if label.startswith("event ->"):  # the whole event replaced: no longer HTTP-shaped
                check_any(result)
            else:
                check_http(result)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {label}: {exc}") from None
        count += 1
    return count


@pytest.mark.parametrize("name", OTHER_FILES)
def test_every_broken_field_of_other_events_is_reported(bare: Any, name: str) -> None:
    with strict_stderr() as stderr:
        attack_other(bare, name)
    assert stderr.lines > 0


def attack_other(lam: Any, name: str) -> None:
    for label, broken in mutations(load(name)):
        result = invoke(lam, broken)
        if result is NoHandler:  # a readable record no handler wants (a changed rule name)
            assert name.startswith(("s3", "schedule")), label
            continue
        try:
            check_other(result)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {label}: {exc}") from None


def test_the_mutation_is_exhaustive() -> None:
    total = sum(1 for name in HTTP_FILES + OTHER_FILES for _ in mutations(load(name)))
    fields = sum(1 for name in HTTP_FILES + OTHER_FILES for _ in paths(load(name)))
    assert fields > 800 and total > 20 * fields


# -- named cases from the attack -------------------------------------------------------------------
def answer(lam: Any, event: Any) -> tuple[int, dict[str, Any], dict[str, Any]]:
    result = lam(event, LambdaContext())
    check_http(result)
    body = base64.b64decode(result["body"]) if result["isBase64Encoded"] else result["body"]
    return result["statusCode"], json.loads(body), result


@pytest.mark.parametrize(
    ("name", "path", "value", "says"),
    [
        ("rest_sam.json", ("httpMethod",), None, "httpMethod"),
        ("rest_sam.json", ("body",), HUGE_INT, "body must be a string"),
        ("rest_sam.json", ("multiValueHeaders", "Accept"), [None], "multiValueHeaders.Accept[]"),
        ("rest_sam.json", ("multiValueQueryStringParameters", "foo"), "bar", "an array"),
        ("rest_sam.json", ("requestContext",), [1], "requestContext must be an object"),
        ("rest_sam.json", ("path",), f"/x{SURROGATE}", "path"),
        ("http_sam.json", ("requestContext", "http"), None, "requestContext.http.method"),
        ("http_sam.json", ("cookies",), "a=b", "cookies"),
        ("http_sam.json", ("headers", "header1"), f"v{SURROGATE}", "headers.header1"),
        ("http_sam.json", ("requestContext", "http", "method"), "GET /x", "HTTP method"),
        ("alb_multi.json", ("multiValueHeaders", "x-tag"), [None], "multiValueHeaders.x-tag[]"),
        ("alb_sam.json", ("headers",), ["a"], "headers must be an object"),
        ("function_url.json", ("rawQueryString",), 5, "rawQueryString"),
    ],
)
def test_unreadable_http_events_are_400_in_their_shape(lam: Any, name: str, path: tuple[Any, ...], value: Any, says: str) -> None:
    status, problem, result = answer(lam, replaced(load(name), path, value))
    assert status == 400 and says in problem["detail"], problem
    assert problem["request_id"]
    if name.startswith("alb"):
        assert result["statusDescription"] == "400 Bad Request"
    if name.startswith(("http", "function_url")):
        assert "multiValueHeaders" not in result and "statusDescription" not in result


def test_missing_http_method_still_answers_in_the_rest_shape(lam: Any) -> None:
    event = load("rest_sam.json")
    del event["httpMethod"]
    del event["requestContext"]  # nothing says REST but its other fields
    status, _problem, result = answer(lam, event)
    assert status == 400 and set(result) == {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}


@pytest.mark.parametrize("body", ["!!!", "QUJ", "é"])
def test_bad_base64_body_is_400(lam: Any, body: str) -> None:
    event = {**load("rest_binary.json"), "body": body, "isBase64Encoded": True}
    status, problem, _ = answer(lam, event)
    assert status == 400 and "base64" in problem["detail"]


def test_a_huge_integer_body_allocates_nothing(lam: Any) -> None:
    event = {**load("http_sam.json"), "body": 10**15, "isBase64Encoded": False}
    started = time.perf_counter()
    status, _, _ = answer(lam, event)
    assert status == 400 and time.perf_counter() - started < 1.0  # bytes(10**15) would not return


def test_json_nested_100000_deep_is_400(lam: Any) -> None:
    event = {**load("http_sam.json"), "body": "[" * 100_000 + "]" * 100_000, "isBase64Encoded": False}
    event["headers"] = {**event["headers"], "content-type": "application/json"}
    event["requestContext"] = copy.deepcopy(event["requestContext"])
    event["requestContext"]["http"]["method"] = "POST"
    status, problem, _ = answer(lam, event)
    assert status == 400 and "nested too deeply" in problem["detail"]


def test_sqs_unreadable_record_is_a_batch_item_failure(lam: Any) -> None:
    event = load("sqs_batch.json")
    event["Records"][0]["body"] = {"not": "text"}
    event["Records"][1]["messageAttributes"] = {"a": {"stringValue": 5}}
    event["Records"][2]["messageId"] = None
    result = lam(event, LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": "00000000-0000-4000-8000-000000000001"},
                                            {"itemIdentifier": "00000000-0000-4000-8000-000000000002"},
                                            {"itemIdentifier": ""}]}


def test_s3_unreadable_record_is_logged_and_the_rest_handled(capsys: pytest.CaptureFixture[str]) -> None:
    app = nubes.App("s3", openapi=False, storage="mem://attack-s3")
    seen: list[str] = []
    app.on_object_created("")(lambda ctx, event: seen.append(event.key))
    event = load("s3_put.json")
    good = copy.deepcopy(event["Records"][0])
    event["Records"][0]["s3"]["object"]["key"] = ["not", "text"]
    event["Records"].append(good)
    result = handler(app)(event, LambdaContext())
    assert result["errorType"] == "UnknownEvent" and "Records[0]" in result["errorMessage"]
    assert seen == ["incoming/my report été.csv"]
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    bad = next(line for line in logged if line["msg"] == "unreadable event")
    assert bad["level"] == "error" and "s3.object.key" in bad["detail"] and '"not"' in bad["event_excerpt"]


@pytest.mark.parametrize("change", [{"time": "yesterday"}, {"resources": [None]}, {"resources": "rule/x"}])
def test_unreadable_schedule_is_an_error_result(lam: Any, change: dict[str, Any]) -> None:
    result = lam({**load("schedule.json"), **change}, LambdaContext())
    check_other(result)
    assert result is not None and result["errorType"] == "UnknownEvent"


# -- generated events -------------------------------------------------------------------------------
HTTP_EVENTS = [load(name) for name in HTTP_FILES]
KEYS = sorted({".".join(map(str, p)) for e in HTTP_EVENTS for p in paths(e) if all(isinstance(s, str) for s in p)})


@st.composite
def http_events(draw: st.DrawFn) -> dict[str, Any]:
    """A real HTTP event with a few of its fields (by dotted path) set to arbitrary values or removed."""
    event = copy.deepcopy(draw(st.sampled_from(HTTP_EVENTS)))
    for dotted in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4)):
        holder: Any = event
        steps = dotted.split(".")
        for step in steps[:-1]:
            holder = holder.get(step) if isinstance(holder, dict) else None
        if not isinstance(holder, dict):
            continue
        if draw(st.booleans()) and steps[-1] in holder:
            del holder[steps[-1]]
        else:
            holder[steps[-1]] = draw(json_values)
    return event


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          database=None)
@given(event=http_events())
def test_generated_http_events_never_raise(lam: Any, event: dict[str, Any]) -> None:
    check_http(lam(event, LambdaContext()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          database=None)
@given(event=st.dictionaries(st.sampled_from([*sorted({k.split(".")[0] for k in KEYS}), "Records", "detail-type"]), json_values,
                             max_size=8) | json_values)
def test_generated_shapes_never_raise(lam: Any, event: Any) -> None:
    check_any(invoke(lam, event))
