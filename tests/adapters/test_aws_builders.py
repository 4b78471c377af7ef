"""``nubes.adapters.aws.builders``: builders produce payloads shaped like the sam renders, and a request
sent through builder -> ``handler(app)`` -> ``to_response`` gets what ``App.handle`` answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import nubes
from nubes.adapters.aws import builders as ev
from nubes.adapters.aws import handler

DATA = Path(__file__).parent.parent / "data" / "aws"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


# members whose keys are data (header names, query keys ...), not structure: compared as "a map of X"
DATA_MAPS = {"headers", "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters",
             "pathParameters", "stageVariables", "messageAttributes"}


def shape(value: Any, key: str = "") -> Any:
    """The key structure of a payload: dicts by key, lists by their first item, leaves as '.'; None is '?'."""
    if isinstance(value, dict):
        if key in DATA_MAPS:
            return {"*": shape(next(iter(value.values()))) if value else "?"}
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return "?" if value is None else "."


def assert_same_shape(built: Any, real: Any, where: str = "event") -> None:
    """Same keys at every level; a null on either side (a nullable member, e.g. REST
    ``stageVariables``) matches anything."""
    if built == "?" or real == "?":
        return
    if isinstance(real, dict):
        assert isinstance(built, dict), f"{where}: expected an object, got {built!r}"
        extra, missing = sorted(set(built) - set(real)), sorted(set(real) - set(built))
        assert sorted(built) == sorted(real), f"{where}: keys differ: extra {extra}, missing {missing}"
        for key in real:
            assert_same_shape(built[key], real[key], f"{where}.{key}")
    elif isinstance(real, list):
        assert isinstance(built, list), f"{where}: expected a list"
        if real and built:
            assert_same_shape(built[0], real[0], f"{where}[0]")
    else:
        assert built == real, f"{where}: expected a value, got {built!r}"


def without(tree: dict[str, Any], *paths: str) -> dict[str, Any]:
    out = json.loads(json.dumps(tree))
    for path in paths:
        *parents, last = path.split(".")
        node = out
        for p in parents:
            node = node[p]
        node.pop(last)
    return out


FULL = nubes.Request(
    "POST",
    "/path/to/resource?foo=bar&foo=baz",
    headers=[("content-type", "application/json"), ("user-agent", "ua"), ("cookie", "a=1; b=2"), ("x-tag", "1"), ("x-tag", "2")],
    body=b'{"test":"body"}',
)

# sam's REST template lacks requestContext.domainName/domainPrefix, which real events carry.
REST_EXTRA = ("requestContext.domainName", "requestContext.domainPrefix")
# sam's HTTP API template fills members real events have only when configured: a JWT authorizer,
# mTLS, route path parameters, stage variables.
HTTP_OPTIONAL = ("requestContext.authentication", "requestContext.authorizer", "pathParameters", "stageVariables")


def test_rest_api_event_shape() -> None:
    assert_same_shape(without(shape(ev.rest_api_event(FULL)), *REST_EXTRA), shape(load("rest_sam.json")))


def test_http_api_event_shape() -> None:
    assert_same_shape(shape(ev.http_api_event(FULL)), without(shape(load("http_sam.json")), *HTTP_OPTIONAL))
    with_params = ev.http_api_event(FULL, route_key="POST /path/{rest+}", path_parameters={"rest": "to/resource"})
    assert_same_shape(shape(with_params), without(shape(load("http_sam.json")), *HTTP_OPTIONAL[:2], "stageVariables"))


def test_function_url_event_shape() -> None:
    built = ev.function_url_event(FULL)
    assert_same_shape(shape(built), shape(load("function_url.json")))
    assert built["requestContext"]["domainName"].endswith(".lambda-url.us-east-1.on.aws")


@pytest.mark.parametrize(("multi", "name"), [(False, "alb_sam.json"), (True, "alb_multi.json")])
def test_alb_event_shape(multi: bool, name: str) -> None:
    assert_same_shape(shape(ev.alb_event(FULL, multi_value=multi)), shape(load(name)))


def test_other_event_shapes() -> None:
    assert_same_shape(shape(ev.s3_put_event("b", "k", 1, "e")), shape(load("s3_put_sam.json")))
    assert_same_shape(shape(ev.sqs_event(["x"])), shape(load("sqs_sam.json")))
    # real EventBridge events carry "version": "0", which sam's template leaves out
    assert_same_shape(without(shape(ev.schedule_event("r")), "version"), shape(load("schedule.json")))


def test_builders_place_stage_and_encoding_like_aws() -> None:
    req = nubes.Request("GET", "/hello/caf%C3%A9?a=1&a=2&b=x%20y")
    rest = ev.rest_api_event(req, stage="prod")
    assert rest["path"] == "/hello/caf%C3%A9" and rest["requestContext"]["path"] == "/prod/hello/caf%C3%A9"
    assert rest["queryStringParameters"] == {"a": "2", "b": "x y"}
    assert rest["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x y"]}
    http = ev.http_api_event(req, stage="dev")
    assert http["rawPath"] == "/dev/hello/café" and http["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert http["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert ev.function_url_event(req)["rawPath"] == "/hello/caf%C3%A9"
    alb = ev.alb_event(req)
    assert alb["queryStringParameters"] == {"a": "2", "b": "x%20y"}
    assert ev.alb_event(req, multi_value=True)["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x%20y"]}
    binary = ev.http_api_event(nubes.Request("POST", "/x", headers={"content-type": "application/octet-stream"}, body=b"\x00\xff"))
    assert binary["isBase64Encoded"] is True and binary["body"] == "AP8="
    assert "body" not in ev.http_api_event(req)


# -- round trips through the emulated front ends -------------------------------------------------------
REQUESTS = [
    nubes.Request("GET", "/hello/caf%C3%A9?times=2&shout=true"),
    nubes.Request("GET", "/headers?a=1&a=2&b=x%20y", headers=[("x-tag", "one"), ("x-tag", "two")]),
    nubes.Request("GET", "/cookies", headers={"cookie": "session=abc; theme=dark"}),
    nubes.Request("GET", "/bytes"),
    nubes.Request("GET", "/sales?format=parquet"),
    nubes.Request("GET", "/sales?format=csv&region=north"),
    nubes.Request("GET", "/teapot"),
    nubes.Request("POST", "/orders", headers={"content-type": "application/json"}, body=b'{"item": "tea", "qty": 2, "price": 1.5}'),
    nubes.Request("PUT", "/echo", headers={"content-type": "application/json; charset=utf-8"}, body='{"é": [1, 2]}'),
    nubes.Request("GET", "/files/a%20b/c.csv"),
]
FORMATS: list[tuple[str, dict[str, Any]]] = [
    ("rest", {}),
    ("rest", {"domain": "api.example.com", "base_path": "v1"}),
    ("http", {}),
    ("http", {"stage": "dev"}),
    ("function_url", {}),
    ("alb", {}),
    ("alb", {"multi_value": True}),
]


def delivered(request: nubes.Request, fmt: str, options: dict[str, Any]) -> nubes.Request:
    """``request`` as the front end hands it over: HTTP API / Function URL join repeated headers
    with ``,``; ALB without multi-value headers keeps the last value of a repeated header or query key."""
    headers, query = request.headers.multi_items(), request.query.multi_items()
    if fmt in ("http", "function_url"):
        grouped: dict[str, list[str]] = {}
        for k, v in headers:
            grouped.setdefault(k, []).append(v)
        headers = [(k, ",".join(vs)) for k, vs in grouped.items()]
    elif fmt == "alb" and not options.get("multi_value"):
        headers = list(dict(headers).items())
        query = list(dict(query).items())
    return nubes.Request(request.method, request.raw_path, query=query, headers=headers, body=request.body)


def _comparable(response: nubes.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    # request id, and metering headers (billed memory/duration and cost differ by platform and timing)
    headers = sorted((k, v) for k, v in response.headers.multi_items()
                     if k != "x-nubes-request-id" and not k.startswith(("x-nubes-billed-", "x-nubes-cost-")))
    return response.status, headers, response.body


@pytest.mark.parametrize(("fmt", "options"), FORMATS, ids=[f"{f}-{'-'.join(map(str, o.values())) or 'default'}" for f, o in FORMATS])
@pytest.mark.parametrize("request_", REQUESTS, ids=[repr(r) for r in REQUESTS])
def test_round_trip_matches_app_handle(contract_app: nubes.App, fmt: str, options: dict[str, Any], request_: nubes.Request) -> None:
    event = ev.BUILDERS[fmt](request_, **options)
    result = handler(contract_app)(event, ev.LambdaContext(request_id="rid"))
    json.dumps(result)  # what Lambda serialises
    got = ev.to_response(result, fmt)  # type: ignore[arg-type]
    want = contract_app.handle(delivered(request_, fmt, options), request_id="rid")
    status, headers, body = _comparable(want)
    if fmt == "alb" and not options:  # one value per header name: cookies after the first are dropped
        cookies = [v for k, v in headers if k == "set-cookie"][:1]
        headers = [(k, v) for k, v in headers if k != "set-cookie"] + [("set-cookie", c) for c in cookies]
        headers.sort()
    if fmt in ("http", "function_url") or (fmt == "alb" and not options):  # repeated names joined
        grouped: dict[str, list[str]] = {}
        for k, v in headers:
            grouped.setdefault(k, []).append(v)
        headers = sorted(
            [(k, ", ".join(vs)) for k, vs in grouped.items() if k != "set-cookie"]
            + [("set-cookie", v) for v in grouped.get("set-cookie", [])]
        )
    assert _comparable(got) == (status, headers, body)
    assert got.headers.get("x-nubes-request-id") == "rid"


def test_to_response_rules() -> None:
    assert ev.to_response({"hello": 1}, "http").body == b'{"hello": 1}'  # 2.0: no statusCode -> JSON body
    assert ev.to_response({"hello": 1}, "rest").status == 502
    answer = {"statusCode": 201, "headers": {"a": "1", "b": "x"}, "multiValueHeaders": {"b": ["y", "z"]}}
    merged = ev.to_response({**answer, "body": "aGk=", "isBase64Encoded": True}, "rest")
    assert merged.status == 201 and merged.body == b"hi" and merged.headers.getlist("b") == ["y", "z"] and merged.headers["a"] == "1"
    with pytest.raises(ValueError):
        ev.to_response({}, "gcp")  # type: ignore[arg-type]


def test_lambda_context() -> None:
    ctx = ev.LambdaContext("fn", 256, 2.0, "rid", region="eu-central-1")
    assert ctx.aws_request_id == "rid" and ctx.memory_limit_in_mb == "256"
    assert ctx.invoked_function_arn == "arn:aws:lambda:eu-central-1:123456789012:function:fn"
    assert 1900 < ctx.get_remaining_time_in_millis() <= 2000


def test_schedule_builder_time() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert ev.schedule_event("r", when)["time"] == "2025-01-02T03:04:05Z"
