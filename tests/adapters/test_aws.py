"""The AWS Lambda adapter on HTTP payloads rendered by ``sam local generate-event`` (tests/data/aws).

Each test feeds a real payload to ``handler(app)`` and checks what the app saw and what went
back in that format; what the app saw is also compared with what Mangum derives from the same
event (its ASGI scope), for REST, HTTP API and ALB.
"""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from tests.adapters.mangum_probe import mangum_scope

import nubes
from nubes.adapters.aws import handler, sources
from nubes.adapters.aws.builders import LambdaContext
from nubes.adapters.aws.http import Alb, FunctionUrl, HttpApi, RestApi

DATA = Path(__file__).parent.parent / "data" / "aws"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


# -- a probe app that answers with everything it saw ---------------------------------------------
probe = nubes.App("probe", openapi=False)


@probe.route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
def seen(ctx: nubes.Context, rest: str) -> dict[str, Any]:
    r = ctx.request
    return {
        "method": r.method,
        "path": r.path,
        "raw_path": r.raw_path,
        "query": r.query.multi_items(),
        "headers": r.headers.multi_items(),
        "cookies": dict(r.cookies),
        "body": base64.b64encode(r.body).decode(),
        "scheme": r.scheme,
    }


def saw(result: dict[str, Any]) -> dict[str, Any]:
    assert result["statusCode"] == 200, result
    body = base64.b64decode(result["body"]) if result["isBase64Encoded"] else result["body"].encode()
    data = json.loads(body)
    data["body"] = base64.b64decode(data["body"])
    data["query"] = [tuple(p) for p in data["query"]]
    data["headers"] = [tuple(p) for p in data["headers"]]
    return data


def call(event: dict[str, Any], app: nubes.App = probe, **kw: Any) -> dict[str, Any]:
    return handler(app, **kw)(copy.deepcopy(event), LambdaContext())


# -- Mangum on the same event --------------------------------------------------------------------
def assert_same_as_mangum(seen_by_nubes: dict[str, Any], scope: dict[str, Any]) -> None:
    assert seen_by_nubes["method"] == scope["method"]
    assert seen_by_nubes["path"] == scope["path"]
    assert seen_by_nubes["query"] == parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
    assert seen_by_nubes["body"] == scope["body"]
    assert seen_by_nubes["scheme"] == scope["scheme"]
    # Mangum joins repeated headers with ", " (REST) or keeps each pair (ALB); compare joined values
    ours: dict[str, list[str]] = {}
    for name, value in seen_by_nubes["headers"]:
        ours.setdefault(name, []).append(value)
    theirs: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        theirs.setdefault(name.decode(), []).append(value.decode())
    assert {k: ", ".join(v) for k, v in ours.items()} == {k: ", ".join(v) for k, v in theirs.items()}


# -- which source takes which payload ------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("rest_sam.json", RestApi),
        ("rest_custom_domain.json", RestApi),
        ("http_sam.json", HttpApi),
        ("http_stage.json", HttpApi),
        ("function_url.json", FunctionUrl),
        ("alb_sam.json", Alb),
        ("alb_multi.json", Alb),
    ],
)
def test_each_payload_is_inferred_as_its_source(name: str, kind: type) -> None:
    event = load(name)
    chosen = next(s for s in sources() if s.infer(event))
    assert type(chosen) is kind


# -- REST API (payload 1.0) ----------------------------------------------------------------------
def test_rest_default_render() -> None:
    event = load("rest_sam.json")
    got = saw(call(event))
    assert got["method"] == "POST"
    assert got["path"] == "/path/to/resource"  # requestContext.path has /prod; the app does not
    assert got["query"] == [("foo", "bar")]
    assert got["body"] == b'{"test":"body"}'  # isBase64Encoded: true in the render
    assert ("user-agent", "Custom User Agent String") in got["headers"]
    assert got["scheme"] == "https"
    assert_same_as_mangum(got, mangum_scope(event))


def test_rest_unicode_path_through_the_contract_app(contract_app: nubes.App) -> None:
    event = load("rest_unicode.json")
    got = saw(call(event))
    assert got["path"] == "/hello/café" and got["raw_path"] == "/hello/caf%C3%A9"
    assert_same_as_mangum(got, mangum_scope(event))
    result = call(event, contract_app)
    assert result["statusCode"] == 200 and result["isBase64Encoded"] is False
    assert json.loads(result["body"])["greeting"] == "hello café hello café"
    assert result["headers"]["content-type"] == "application/json"
    assert result["multiValueHeaders"] == {}


def test_rest_repeated_query_keys_headers_and_cookies(contract_app: nubes.App) -> None:
    event = load("rest_headers.json")
    got = saw(call(event))
    assert got["query"] == [("a", "1"), ("a", "2"), ("b", "x y")]
    assert [v for k, v in got["headers"] if k == "x-tag"] == ["one", "two"]
    assert got["cookies"] == {"session": "abc def", "theme": "dark"}
    assert_same_as_mangum(got, mangum_scope(event))
    answer = json.loads(call(event, contract_app)["body"])
    assert answer == {"x_tag": ["one", "two"], "query": [["a", "1"], ["a", "2"], ["b", "x y"]]}


def test_rest_binary_request_body() -> None:
    event = load("rest_binary.json")
    got = saw(call(event))
    assert got["body"] == bytes(range(256))
    assert_same_as_mangum(got, mangum_scope(event))


def test_rest_custom_domain_base_path_is_removed() -> None:
    event = load("rest_custom_domain.json")
    assert event["path"] == event["requestContext"]["path"] == "/v1/hello/world"
    got = saw(call(event))
    assert got["path"] == "/hello/world"
    assert_same_as_mangum(got, mangum_scope(event, base_path="/v1"))
    assert saw(call(event, base_path="v1"))["path"] == "/hello/world"


def test_rest_custom_domain_without_base_path_keeps_the_path() -> None:
    event = load("rest_custom_domain_root.json")
    got = saw(call(event))
    assert got["path"] == "/hello/world"
    assert_same_as_mangum(got, mangum_scope(event))


def test_rest_path_that_only_looks_like_the_stage_is_kept() -> None:
    event = load("rest_unicode.json")
    event["path"] = "/prod/x"
    event["pathParameters"] = {"proxy": "prod/x"}
    event["requestContext"]["path"] = "/prod/prod/x"
    assert saw(call(event))["path"] == "/prod/x"


def test_http_api_payload_1_0_named_stage_is_removed() -> None:
    event = load("rest_unicode.json")
    event["version"] = "1.0"
    event["path"] = "/dev/hello/caf%C3%A9"
    event["requestContext"].update(stage="dev", path="/dev/hello/caf%C3%A9", domainName="id.execute-api.us-east-1.amazonaws.com")
    assert saw(call(event))["path"] == "/hello/café"


def test_rest_response_cookies_and_headers(contract_app: nubes.App) -> None:
    event = load("rest_unicode.json")
    event["path"] = "/cookies"
    event["requestContext"]["path"] = "/prod/cookies"
    result = call(event, contract_app)
    assert result["multiValueHeaders"]["set-cookie"] == [
        "seen=yes; Path=/; HttpOnly; SameSite=Lax",
        "theme=dark; Path=/; SameSite=Lax",
    ]
    assert "set-cookie" not in result["headers"]
    assert result["headers"]["content-type"] == "application/json"


def test_rest_binary_responses_are_base64(contract_app: nubes.App) -> None:
    event = load("rest_unicode.json")
    event.update(path="/bytes", queryStringParameters=None, multiValueQueryStringParameters=None)
    result = call(event, contract_app)
    assert result["isBase64Encoded"] is True
    assert base64.b64decode(result["body"]) == bytes(range(256))
    assert result["headers"]["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(("fmt", "media", "magic"), [("parquet", "application/vnd.apache.parquet", b"PAR1")])
def test_parquet_answer_is_base64_in_every_format(contract_app: nubes.App, fmt: str, media: str, magic: bytes) -> None:
    rest = load("rest_unicode.json")
    rest.update(path="/sales", queryStringParameters={"format": fmt}, multiValueQueryStringParameters={"format": [fmt]})
    http = load("http_stage.json")
    http.update(rawPath="/dev/sales", rawQueryString=f"format={fmt}")
    alb = load("alb_query.json")
    alb.update(path="/sales", queryStringParameters={"format": fmt})
    for event in (rest, http, alb):
        result = call(event, contract_app)
        assert result["statusCode"] == 200, result
        assert result["isBase64Encoded"] is True
        data = base64.b64decode(result["body"])
        assert data[:4] == magic and data[-4:] == magic
        headers = result.get("headers") or {}
        assert headers.get("content-type", "").startswith(media)
    import polars as pl

    assert pl.read_parquet(io.BytesIO(data)).height == 3


def test_problem_answers_keep_status_and_headers(contract_app: nubes.App) -> None:
    event = load("rest_unicode.json")
    event.update(path="/teapot", queryStringParameters=None, multiValueQueryStringParameters=None)
    result = call(event, contract_app)
    assert result["statusCode"] == 418 and result["isBase64Encoded"] is False
    assert result["headers"]["x-pot"] == "yes"
    assert result["headers"]["content-type"] == "application/problem+json"
    assert json.loads(result["body"])["detail"] == "short and stout"


# -- HTTP API (payload 2.0) ----------------------------------------------------------------------
def test_http_api_default_render() -> None:
    event = load("http_sam.json")
    got = saw(call(event))
    assert got["method"] == "POST"
    assert got["path"] == "/path/to/resource"
    assert got["query"] == [("parameter1", "value1"), ("parameter1", "value2"), ("parameter2", "value")]
    assert ("header2", "value1,value2") in got["headers"]
    assert ("cookie", "cookie1; cookie2") in got["headers"]
    assert got["body"] == b'{"test":"body"}'
    assert_same_as_mangum(got, mangum_scope(event))


def test_http_api_named_stage_is_removed(contract_app: nubes.App) -> None:
    event = load("http_stage.json")
    assert event["rawPath"] == "/dev/hello/café"
    got = saw(call(event))
    assert got["path"] == "/hello/café"
    assert got["cookies"] == {"session": "abc", "theme": "dark"}
    assert_same_as_mangum(got, mangum_scope(event, base_path="/dev"))
    result = call(event, contract_app)
    assert json.loads(result["body"])["greeting"] == "hello café hello café"


def test_http_api_default_stage_keeps_a_segment_named_like_it() -> None:
    event = load("http_stage.json")
    event["requestContext"]["stage"] = "$default"
    assert saw(call(event))["path"] == "/dev/hello/café"


def test_http_api_custom_domain_mapping_key_is_removed() -> None:
    event = load("http_sam.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/hello/world"
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /hello/{name}"
    event["pathParameters"] = {"name": "world"}
    event["requestContext"].update(domainName="api.example.com", domainPrefix="api", stage="prod")
    assert saw(call(event))["path"] == "/hello/world"


def test_http_api_response_cookies_list(contract_app: nubes.App) -> None:
    event = load("http_stage.json")
    event.update(rawPath="/dev/cookies", rawQueryString="")
    result = call(event, contract_app)
    assert result["cookies"] == ["seen=yes; Path=/; HttpOnly; SameSite=Lax", "theme=dark; Path=/; SameSite=Lax"]
    assert "set-cookie" not in result["headers"] and "multiValueHeaders" not in result
    assert json.loads(result["body"]) == {"session": "abc", "theme": "dark"}


# -- Lambda Function URL ---------------------------------------------------------------------------
def test_function_url_render(contract_app: nubes.App) -> None:
    event = load("function_url.json")
    got = saw(call(event))
    assert got["path"] == "/files/a b/café.csv"
    assert got["query"] == [("parameter1", "value1"), ("parameter1", "value2"), ("parameter2", "value")]
    result = call(event, contract_app)
    assert json.loads(result["body"]) == {"path": "a b/café.csv"}
    assert "cookies" not in result


@pytest.mark.parametrize("name", ["rest_sam.json", "http_sam.json", "alb_sam.json"])
@pytest.mark.parametrize(("proto", "scheme"), [("https\r\nx-evil: 1", "https"), ("gopher", "https"), ("HTTP", "http")])
def test_a_forwarded_proto_that_is_not_http_or_https_is_not_the_scheme(name: str, proto: str, scheme: str) -> None:
    """X-Forwarded-Proto is client text behind some fronts: CR/LF or another word never becomes request.scheme."""
    event = load(name)
    for key in ("headers", "multiValueHeaders"):
        if isinstance(event.get(key), dict):
            found = [k for k in event[key] if k.lower() == "x-forwarded-proto"] or ["X-Forwarded-Proto"]
            event[key][found[0]] = [proto] if key == "multiValueHeaders" else proto
    assert saw(call(event))["scheme"] == scheme


# -- ALB ---------------------------------------------------------------------------------------------
def test_alb_default_render() -> None:
    event = load("alb_sam.json")
    result = call(event)
    got = saw(result)
    assert got["path"] == "/path/to/resource" and got["query"] == [("query", "1234ABCD")]
    assert got["body"] == b'{"test":"body"}'
    assert got["scheme"] == "http"  # x-forwarded-proto: http in the render
    assert_same_as_mangum(got, mangum_scope(event))
    assert result["statusDescription"] == "200 OK"
    assert "headers" in result and "multiValueHeaders" not in result


def test_alb_query_is_percent_decoded_once() -> None:
    event = load("alb_query.json")
    got = saw(call(event))
    assert got["query"] == [("q", "a b"), ("name", "café"), ("plus", "x y")]
    assert_same_as_mangum(got, mangum_scope(event))


def test_alb_multi_value_mode(contract_app: nubes.App) -> None:
    event = load("alb_multi.json")
    got = saw(call(event))
    assert got["query"] == [("a", "1"), ("a", "2"), ("q", "x+y")]
    assert [v for k, v in got["headers"] if k == "x-tag"] == ["one", "two"]
    assert got["cookies"] == {"theme": "dark"}
    assert_same_as_mangum(got, mangum_scope(event))
    event["path"] = "/cookies"
    result = call(event, contract_app)
    assert set(result) == {"statusCode", "statusDescription", "multiValueHeaders", "body", "isBase64Encoded"}
    assert len(result["multiValueHeaders"]["set-cookie"]) == 2
    assert result["statusDescription"] == "200 OK"


def test_alb_single_value_mode_sends_one_cookie_and_warns(contract_app: nubes.App, capsys: pytest.CaptureFixture[str]) -> None:
    event = load("alb_query.json")
    event.update(path="/cookies", queryStringParameters={})
    result = call(event, contract_app)
    assert "multiValueHeaders" not in result
    assert result["headers"]["set-cookie"] == "seen=yes; Path=/; HttpOnly; SameSite=Lax"
    assert "cookies dropped" in capsys.readouterr().err


def test_alb_status_description_for_errors(contract_app: nubes.App) -> None:
    event = load("alb_query.json")
    event.update(path="/nowhere", queryStringParameters={})
    result = call(event, contract_app)
    assert result["statusCode"] == 404 and result["statusDescription"] == "404 Not Found"


def test_head_request_has_no_body(contract_app: nubes.App) -> None:
    event = load("http_stage.json")
    event["requestContext"]["http"]["method"] = "HEAD"
    result = call(event, contract_app)
    assert result["statusCode"] == 200 and result["body"] == "" and result["isBase64Encoded"] is False


@pytest.mark.parametrize(("front", "source"), [("http", HttpApi), ("rest", RestApi), ("url", FunctionUrl), ("alb", Alb)])
def test_the_adapter_and_the_emulator_read_one_response_limit(front: str, source: type) -> None:
    """The limit the adapter turns into a 500 problem is the figure the emulator enforces (aws/limits.py)."""
    from nubes.adapters.aws.emulation import AwsProfile
    from nubes.adapters.aws.limits import FIGURES

    assert source.max_result_bytes == AwsProfile.configure(front=front).response_limit
    assert source.max_result_bytes == FIGURES["alb.response_bytes" if front == "alb" else "payload_bytes"].value
