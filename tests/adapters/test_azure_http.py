"""The Azure adapter's HTTP function, driven with real azure.functions objects on the contract app."""

from __future__ import annotations

import io
import json
import sys

import azure.functions as func
import pytest
from tests.adapters.test_azure_support import CONTRACT_APP, EVENTS_APP, Indexed, assert_worker_loads, fresh

from nubes import App, Context, Request
from nubes.adapters.azure.builders import from_http_response, invocation_context, to_http_request
from nubes.adapters.azure.functions import HTTP_FUNCTION, function_app, host_json, to_nubes_request
from nubes.core.response import Response


@pytest.fixture
def contract() -> Indexed:
    return Indexed(function_app(fresh(CONTRACT_APP)))


def call(indexed: Indexed, request: Request, *, context: func.Context | None = None, **kw: str) -> func.HttpResponse:
    fn = indexed[HTTP_FUNCTION]
    response = fn(to_http_request(request, **kw), context or invocation_context())
    assert isinstance(response, func.HttpResponse)
    return response


def through_host(indexed: Indexed, request: Request, **kw: str) -> Response:
    """What the host sends back: the func response after the worker's converter."""
    return from_http_response(call(indexed, request, **kw))


def assert_problem(resp: Response, status: int) -> dict:
    assert resp.status == status, resp.body
    assert resp.headers["content-type"] == "application/problem+json"
    problem = json.loads(resp.body)
    assert problem["status"] == status and problem["title"] and problem["type"]
    assert problem["request_id"] == resp.headers["x-nubes-request-id"]
    return problem


# -- indexing ------------------------------------------------------------------------------------
def test_one_catch_all_http_function_anonymous_by_default(contract: Indexed) -> None:
    assert list(contract.functions) == [HTTP_FUNCTION]
    trigger = contract.trigger(HTTP_FUNCTION)
    assert trigger["type"] == "httpTrigger" and trigger["route"] == "{*path}"
    assert sorted(trigger["methods"]) == sorted(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    assert trigger["authLevel"] == "ANONYMOUS"
    (out,) = [b for b in contract.bindings(HTTP_FUNCTION) if b["direction"] == "OUT"]
    assert out == {"direction": "OUT", "type": "http", "name": "$return"}
    assert_worker_loads(contract.functions[HTTP_FUNCTION])


@pytest.mark.parametrize("level", ["function", "FUNCTION", func.AuthLevel.FUNCTION])
def test_auth_level_is_configurable(level: object) -> None:
    indexed = Indexed(function_app(fresh(CONTRACT_APP), auth_level=level))  # type: ignore[arg-type]
    assert indexed.trigger(HTTP_FUNCTION)["authLevel"] == "FUNCTION"


def test_host_json_maps_url_paths_to_app_paths() -> None:
    doc = host_json(fresh(CONTRACT_APP))
    assert doc["version"] == "2.0"
    assert doc["extensions"]["http"]["routePrefix"] == ""
    assert doc["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host_json(None, timeout=600)["functionTimeout"] == "00:10:00"


# -- requests ------------------------------------------------------------------------------------
def test_path_query_and_request_id_from_the_invocation(contract: Indexed) -> None:
    ctx = invocation_context("6c3e3f1e-1111-2222-3333-444455556666")
    response = call(contract, Request("GET", "/hello/ada?times=2&shout=true"), context=ctx)
    body = json.loads(response.get_body())
    assert response.status_code == 200
    assert body == {"greeting": "HELLO ADA HELLO ADA", "request_id": "6c3e3f1e-1111-2222-3333-444455556666"}
    assert response.headers["x-nubes-request-id"] == "6c3e3f1e-1111-2222-3333-444455556666"


@pytest.mark.parametrize("path", ["/hello/J%C3%BCrgen%20M", "/hello/Jürgen M"])
def test_unicode_and_percent_encoded_paths(contract: Indexed, path: str) -> None:
    resp = through_host(contract, Request("GET", path))
    assert json.loads(resp.body)["greeting"] == "hello Jürgen M"


def test_encoded_slash_stays_in_a_path_parameter(contract: Indexed) -> None:
    resp = through_host(contract, Request("GET", "/files/a%2Fb/c.txt"))
    assert json.loads(resp.body) == {"path": "a/b/c.txt"}
    assert json.loads(through_host(contract, Request("GET", "/files/README")).body) == {"static": True}


def test_route_prefix_is_stripped_when_host_json_keeps_one() -> None:
    indexed = Indexed(function_app(fresh(CONTRACT_APP), route_prefix="api"))
    resp = through_host(indexed, Request("GET", "/hello/ada"), route_prefix="api")
    assert json.loads(resp.body)["greeting"] == "hello ada"


def test_repeated_query_keys_survive_though_params_collapse_them(contract: Indexed) -> None:
    req = to_http_request(Request("GET", "/types?i=1&ids=4&ids=5&ids="))
    assert req.params["ids"] == "4,5"  # what the host gives the worker: one joined value
    resp = from_http_response(contract[HTTP_FUNCTION](req, invocation_context()))
    assert resp.status == 422  # ids= (empty) is not an int: the raw query reached the app
    resp = through_host(contract, Request("GET", "/types?i=1&ids=4&ids=5"))
    assert json.loads(resp.body)["ids"] == [4, 5]
    resp = through_host(contract, Request("GET", "/headers?x=1&x=2&y=%26%3D"))
    assert json.loads(resp.body)["query"] == [["x", "1"], ["x", "2"], ["y", "&="]]


def test_repeated_request_headers_arrive_joined_by_the_host(contract: Indexed) -> None:
    resp = through_host(contract, Request("GET", "/headers", headers=[("X-Tag", "a"), ("x-tag", "b")]))
    assert json.loads(resp.body)["x_tag"] == ["a,b"]


def test_cookies_in_and_every_set_cookie_out(contract: Indexed) -> None:
    response = call(contract, Request("GET", "/cookies", headers=[("cookie", "a=1; b=two%20words")]))
    assert json.loads(response.get_body()) == {"a": "1", "b": "two words"}
    assert response.headers.get_all("Set-Cookie") == [
        "seen=yes; Path=/; HttpOnly; SameSite=Lax",
        "theme=dark; Path=/; SameSite=Lax",
    ]
    sent = from_http_response(response).headers.getlist("set-cookie")
    assert len(sent) == 2
    assert sent[0].startswith("seen=yes") and "HttpOnly" in sent[0] and "Path=/" in sent[0]
    assert sent[1].startswith("theme=dark")


def test_repeated_response_headers_are_joined_not_lost() -> None:
    indexed = Indexed(function_app(fresh(EVENTS_APP)))
    resp = through_host(indexed, Request("GET", "/repeat"))
    assert resp.headers.getlist("x-multi") == ["a, b"]
    assert resp.headers["vary"] == "accept"
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.body == b"ok"


def test_json_body_post_and_put(contract: Indexed) -> None:
    order = {"item": "pen", "qty": 2, "price": 1.5, "tags": ["x"], "due": "2024-05-01"}
    resp = through_host(contract, Request("POST", "/orders", headers={"content-type": "application/json"},
                                          body=json.dumps(order)))
    assert resp.status == 201
    assert resp.headers["location"] == "/orders/pen"
    assert json.loads(resp.body)["total"] == 3.0
    resp = through_host(contract, Request("PUT", "/echo", headers={"content-type": "application/json; charset=utf-8"},
                                          body=json.dumps({"k": "ü"})))
    assert json.loads(resp.body) == {"body": {"k": "ü"}, "content_type": "application/json"}


def test_binary_parquet_and_bytes_are_unaltered(contract: Indexed) -> None:
    import polars as pl

    resp = through_host(contract, Request("GET", "/sales?format=parquet&region=north"))
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/vnd.apache.parquet"
    frame = pl.read_parquet(io.BytesIO(resp.body))
    assert frame.height == 2 and set(frame["region"].to_list()) == {"north"}
    raw = call(contract, Request("GET", "/bytes"))
    assert raw.get_body() == bytes(range(256))
    assert raw.mimetype == "application/octet-stream"


def test_head_has_no_body(contract: Indexed) -> None:
    resp = through_host(contract, Request("HEAD", "/hello/ada"))
    assert resp.status == 200 and resp.body == b""
    assert int(resp.headers["content-length"]) > 0


# -- errors --------------------------------------------------------------------------------------
def test_unknown_path_is_404(contract: Indexed) -> None:
    assert_problem(through_host(contract, Request("GET", "/nowhere")), 404)


def test_wrong_method_is_405_with_allow(contract: Indexed) -> None:
    resp = through_host(contract, Request("DELETE", "/hello/ada"))
    assert_problem(resp, 405)
    assert "GET" in resp.headers["allow"]


def test_bad_parameter_is_422_naming_it(contract: Indexed) -> None:
    problem = assert_problem(through_host(contract, Request("GET", "/types?i=x")), 422)
    assert [e["name"] for e in problem["errors"]] == ["i"]


def test_crash_is_500_without_leaking(contract: Indexed) -> None:
    resp = through_host(contract, Request("GET", "/crash"))
    problem = assert_problem(resp, 500)
    assert "hunter2" not in resp.body.decode()
    assert problem["request_id"] in problem["detail"]


def test_http_error_keeps_its_headers(contract: Indexed) -> None:
    resp = through_host(contract, Request("GET", "/teapot"))
    assert_problem(resp, 418)
    assert resp.headers["x-pot"] == "yes"


def test_async_handler(contract: Indexed) -> None:
    assert json.loads(through_host(contract, Request("GET", "/async?n=21")).body) == {"double": 42}


# -- platform ------------------------------------------------------------------------------------
def test_platform_from_the_app_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSITE_SITE_NAME", "sales-func")
    monkeypatch.setenv("REGION_NAME", "West Europe")
    monkeypatch.setenv("WEBSITE_MEMORY_LIMIT_MB", "1536")
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "abc123")
    indexed = Indexed(function_app(fresh(EVENTS_APP)))
    first = json.loads(through_host(indexed, Request("GET", "/platform")).body)
    second = json.loads(through_host(indexed, Request("GET", "/platform")).body)
    assert first == {"provider": "azure", "function_name": "sales-func", "region": "West Europe", "memory_mb": 1536,
                     "cold_start": True, "emulated": False, "request_id": first["request_id"], "has_deadline": True}
    assert second["cold_start"] is False


def test_without_app_service_environment_it_is_emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBSITE_SITE_NAME", "REGION_NAME", "WEBSITE_MEMORY_LIMIT_MB", "NUBES_MEMORY_MB", "WEBSITE_INSTANCE_ID"):
        monkeypatch.delenv(name, raising=False)
    indexed = Indexed(function_app(fresh(EVENTS_APP)))
    body = json.loads(from_http_response(indexed[HTTP_FUNCTION](to_http_request(Request("GET", "/platform")), None)).body)
    assert body["emulated"] is True and body["function_name"] is None and body["memory_mb"] is None
    assert len(body["request_id"]) == 32  # no context: nubes makes one


def test_to_nubes_request_reads_the_worker_request() -> None:
    req = func.HttpRequest("post", "https://x.azurewebsites.net/a%20b/c?k=1&k=2", headers={"Content-Type": "text/plain"},
                           params={"k": "1,2"}, route_params={"path": "a b/c"}, body=b"hi")
    nreq = to_nubes_request(req)
    assert (nreq.method, nreq.path, nreq.raw_path, nreq.scheme) == ("POST", "/a b/c", "/a%20b/c", "https")
    assert nreq.query.getlist("k") == ["1", "2"]
    assert nreq.headers["content-type"] == "text/plain" and nreq.body == b"hi"


def test_a_set_cookie_the_worker_cannot_parse_is_dropped_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    app = App("cookies")

    @app.get("/c")
    def c(ctx: Context) -> Response:
        response = Response.text("ok")
        response.headers.add("set-cookie", "ok=1; Path=/")
        response.headers.add("set-cookie", "chip=2; Path=/; Secure; Partitioned")  # unknown to http.cookies < 3.14
        return response

    response = call(Indexed(function_app(app)), Request("GET", "/c"))
    sent = response.headers.get_all("Set-Cookie")
    if sys.version_info < (3, 14):
        assert sent == ["ok=1; Path=/"]
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
        assert any(x["level"] == "warning" and x.get("cookie") == "chip" for x in lines)
    assert from_http_response(response).headers.getlist("set-cookie")[0].startswith("ok=1")


def test_the_platform_is_read_once_and_only_cold_start_varies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The function app reads the environment at its first invocation and reuses that Platform (as AWS does)."""
    from nubes.core.events import machine_architecture

    monkeypatch.setenv("WEBSITE_SITE_NAME", "sales-func")
    app = App("platforms", auth=False, openapi=False)
    seen: list = []
    app.get("/p")(lambda ctx: seen.append(ctx.platform) or {})
    indexed = Indexed(function_app(app))
    for _ in range(3):
        assert through_host(indexed, Request("GET", "/p")).status == 200
    assert [p.cold_start for p in seen] == [True, False, False]
    assert seen[1] is seen[2] and seen[0].function_name == "sales-func"
    assert seen[0].architecture == machine_architecture()
