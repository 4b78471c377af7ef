"""The Cloud Functions HTTP adapter in-process: user files loaded by functions_framework.create_app, as in production."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import flask
import functions_framework
import pytest
from werkzeug.test import Client as WerkzeugClient

import nubes
from nubes.adapters.gcp import functions as gcp
from nubes.adapters.gcp.builders import from_flask_response, scheduler_request, to_flask_request

APPS = Path(__file__).resolve().parents[1] / "apps"
FF_ENV = ("FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE", "K_SERVICE", "FUNCTION_MEMORY_MB", "FUNCTION_REGION",
          "GOOGLE_CLOUD_REGION", "FUNCTION_TIMEOUT_SEC", "CLOUD_RUN_TIMEOUT_SECONDS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """create_app writes FUNCTION_TARGET / FUNCTION_SIGNATURE_TYPE into os.environ; monkeypatch restores them."""
    for name in FF_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUBES_GCP_TEST_OUT", str(tmp_path))


def serve(source: str, target: str) -> WerkzeugClient:
    return functions_framework.create_app(target, str(APPS / source), "http").test_client(use_cookies=False)


@pytest.fixture
def fn() -> WerkzeugClient:
    return serve("gcp_main.py", "main")


@pytest.fixture
def web() -> WerkzeugClient:
    return serve("gcp_events.py", "web")


def records(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.headers["Content-Type"] == "application/problem+json"
    problem = r.get_json(force=True)
    assert problem["status"] == status
    assert problem["request_id"] == r.headers["X-Nubes-Request-Id"]
    return problem


def test_percent_encoded_unicode_path_and_query(fn: WerkzeugClient) -> None:
    r = fn.get("/hello/J%C3%BCrgen%20M?times=2&shout=false", headers={"Function-Execution-Id": "exec-123"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.get_json() == {"greeting": "hello Jürgen M hello Jürgen M", "request_id": "exec-123"}
    assert r.headers["X-Nubes-Request-Id"] == "exec-123"


def test_encoded_slash_stays_in_the_raw_path(fn: WerkzeugClient) -> None:
    assert fn.get("/files/a%2Fb/c.txt").get_json() == {"path": "a/b/c.txt"}


def test_execution_id_is_the_request_id_even_when_the_framework_makes_it(fn: WerkzeugClient) -> None:
    r = fn.get("/hello/x")
    assert len(r.headers["X-Nubes-Request-Id"]) == 12  # functions-framework's generated execution id
    assert r.get_json()["request_id"] == r.headers["X-Nubes-Request-Id"]


def test_repeated_query_keys_and_headers(fn: WerkzeugClient) -> None:
    r = fn.get("/headers?q=1&q=two%20words&empty=", headers=[("X-Tag", "a"), ("X-Tag", "b")])
    body = r.get_json()
    assert body["query"] == [["q", "1"], ["q", "two words"], ["empty", ""]]
    assert [v.strip() for tag in body["x_tag"] for v in tag.split(",")] == ["a", "b"]  # WSGI joins repeats
    assert fn.get("/types?i=1&ids=4&ids=5").get_json()["ids"] == [4, 5]


def test_cookies_in_and_every_set_cookie_out(fn: WerkzeugClient) -> None:
    r = fn.get("/cookies", headers={"Cookie": "a=1; b=x%20y"})
    assert r.get_json() == {"a": "1", "b": "x y"}
    cookies = r.headers.getlist("Set-Cookie")
    assert len(cookies) == 2
    assert cookies[0].startswith("seen=yes") and "HttpOnly" in cookies[0]
    assert cookies[1].startswith("theme=dark")


def test_json_body_status_and_location(fn: WerkzeugClient) -> None:
    r = fn.post("/orders", json={"item": "tea", "qty": 3, "price": 2})
    assert r.status_code == 201
    assert r.headers["Location"] == "/orders/tea"
    assert r.get_json()["total"] == 6.0
    r = fn.put("/echo", data=b'{"k": [1, 2]}', headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.get_json() == {"body": {"k": [1, 2]}, "content_type": "application/json"}


def test_binary_bodies_pass_untouched(fn: WerkzeugClient) -> None:
    r = fn.get("/bytes")
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.get_data() == bytes(range(256))
    assert r.headers["Content-Length"] == "256"


def test_parquet_response(fn: WerkzeugClient) -> None:
    import polars as pl

    r = fn.get("/sales?format=parquet&region=north")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/vnd.apache.parquet"
    frame = pl.read_parquet(io.BytesIO(r.get_data()))
    assert frame["amount"].to_list() == [10.5, 3.0]


def test_no_flask_default_content_type(fn: WerkzeugClient) -> None:
    r = fn.delete("/orders/7")
    assert r.status_code == 204
    assert "Content-Type" not in r.headers
    assert r.get_data() == b""


def test_head_keeps_the_get_length(fn: WerkzeugClient) -> None:
    get = fn.get("/hello/ada")
    head = fn.head("/hello/ada")
    assert head.status_code == 200
    assert head.get_data() == b""
    assert head.headers["Content-Length"] == str(len(get.get_data()))


def test_errors_are_problem_documents(fn: WerkzeugClient) -> None:
    assert_problem(fn.get("/nowhere"), 404)
    r = fn.post("/hello/ada")
    assert_problem(r, 405)
    assert "GET" in r.headers["Allow"]
    problem = assert_problem(fn.get("/types?i=x"), 422)
    assert problem["errors"][0]["name"] == "i"
    r = fn.get("/teapot")
    assert_problem(r, 418)
    assert r.headers["X-Pot"] == "yes"
    r = fn.get("/crash")
    assert_problem(r, 500)
    assert b"hunter2" not in r.get_data()
    assert "X-Google-Status" not in r.headers  # the adapter answered; the framework did not crash


def test_platform_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"K_SERVICE": "sales-api", "FUNCTION_MEMORY_MB": "512", "FUNCTION_REGION": "europe-west1",
                        "CLOUD_RUN_TIMEOUT_SECONDS": "120"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(gcp, "_cold", True)
    client = serve("gcp_events.py", "web")
    first = client.get("/platform", headers={"X-Forwarded-Proto": "https", "Host": "sales.example"}).get_json()
    second = client.get("/platform").get_json()
    assert first["platform"] == {"provider": "gcp", "function_name": "sales-api", "memory_mb": 512,
                                 "region": "europe-west1", "architecture": first["platform"]["architecture"],
                                 "cold_start": True, "emulated": False, "front": None}
    assert second["platform"]["cold_start"] is False
    assert 119 < first["remaining"] <= 120
    assert first["url"] == "https://sales.example/platform"
    legacy = client.get("/platform", headers={"Forwarded": 'for="1.2.3.4";proto=https', "Host": "h"}).get_json()
    assert legacy["url"] == "https://h/platform"
    assert client.get("/platform", headers={"Host": "h"}).get_json()["url"] == "http://h/platform"


def test_emulated_platform_falls_back_to_the_target(monkeypatch: pytest.MonkeyPatch, web: WerkzeugClient) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_REGION", "asia-east1")
    body = web.get("/platform", headers={"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}).get_json()
    assert body["platform"]["function_name"] == "web"  # FUNCTION_TARGET, set by the framework
    assert body["platform"]["emulated"] is True
    assert body["platform"]["region"] == "asia-east1"
    assert body["platform"]["memory_mb"] is None
    assert body["remaining"] is None


def test_request_id_from_headers() -> None:
    assert gcp.request_id_from_headers({"Function-Execution-Id": "abc"}) == "abc"
    assert gcp.request_id_from_headers({"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}) \
        == "105445aa7843bc8bf206b12000100000/1"
    assert gcp.request_id_from_headers({}) is None


def test_request_over_the_limit_is_413(monkeypatch: pytest.MonkeyPatch, fn: WerkzeugClient) -> None:
    monkeypatch.setattr(gcp, "MAX_REQUEST_BYTES", 10)
    problem = assert_problem(fn.put("/echo", data=b'{"k": "12345"}', content_type="application/json"), 413)
    assert "limit of Cloud Functions" in problem["detail"]
    assert fn.put("/echo", data=b"{}", content_type="application/json").status_code == 200


def test_response_over_the_limit_is_500(monkeypatch: pytest.MonkeyPatch, fn: WerkzeugClient) -> None:
    monkeypatch.setattr(gcp, "MAX_RESPONSE_BYTES", 100)
    problem = assert_problem(fn.get("/bytes"), 500)
    assert "256 bytes" in problem["detail"]


def test_schedule_over_http(web: WerkzeugClient, tmp_path: Path) -> None:
    when = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    r = web.post("/_nubes/schedule/nightly", headers={"X-CloudScheduler": "true", "X-CloudScheduler-JobName": "nightly",
                                                      "X-CloudScheduler-ScheduleTime": "2026-03-01T02:00:00Z"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["handlers"] == 1
    [rec] = records(tmp_path)
    assert rec["kind"] == "schedule" and rec["name"] == "nightly"
    assert datetime.fromisoformat(rec["time"]) == when
    assert rec["request_id"] == r.headers["X-Nubes-Request-Id"]
    assert_problem(web.get("/_nubes/schedule/nightly"), 405)
    assert_problem(web.post("/_nubes/schedule/unknown"), 404)
    assert_problem(web.post("/_nubes/schedule/broken"), 500)
    assert_problem(web.post("/_nubes/schedule/"), 404)


def test_schedule_route_is_off_by_default(fn: WerkzeugClient) -> None:
    assert_problem(fn.post("/_nubes/schedule/nightly"), 404)


def test_nubes_request_round_trip_without_the_framework(tmp_path: Path) -> None:
    from contract_app import app  # type: ignore[import-not-found]  # tests/apps is on sys.path via the framework

    target = gcp.http_function(app)
    request = nubes.Request("POST", "/orders?x=1&x=2", headers=[("content-type", "application/json"), ("host", "h.test")],
                            body=b'{"item": "ink", "qty": 2, "price": 1.5}', scheme="https")
    flask_request = to_flask_request(request)
    assert flask_request.query_string == b"x=1&x=2"
    assert flask_request.url == "https://h.test/orders?x=1&x=2"
    response = from_flask_response(target(flask_request))
    assert response.status == 201
    assert json.loads(response.body)["total"] == 3.0
    assert response.headers["location"] == "/orders/ink"


def test_scheduler_request_builder_fires_the_schedule(tmp_path: Path) -> None:
    from nubes.core.loader import load_app

    app = load_app(f"{APPS / 'gcp_events.py'}:app")
    target = gcp.http_function(app, schedules=True)
    response = from_flask_response(target(to_flask_request(scheduler_request("nightly"))))
    assert response.status == 200
    assert records(tmp_path)[0]["name"] == "nightly"


def test_adapter_needs_an_app() -> None:
    with pytest.raises(nubes.errors.ConfigError):
        gcp.http_function(flask.Flask("x"))  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _tests_apps_importable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(APPS))
    yield


def test_the_platform_is_read_once_and_only_cold_start_varies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A target reads the environment at its first invocation and reuses that Platform (as AWS does)."""
    monkeypatch.setenv("K_SERVICE", "sales-api")
    monkeypatch.setattr(gcp, "_cold", True)
    app = nubes.App("platforms", auth=False, openapi=False)
    seen: list[nubes.Platform] = []
    app.get("/p")(lambda ctx: seen.append(ctx.platform) or {})
    target = gcp.http_function(app)
    flask_app = flask.Flask("platforms")
    for _ in range(3):
        with flask_app.test_request_context("/p"):
            assert target(flask.request).status_code == 200
    assert [p.cold_start for p in seen] == [True, False, False]
    assert seen[1] is seen[2] and seen[0].function_name == seen[1].function_name == "sales-api"
    assert seen[0].architecture == nubes.core.events.machine_architecture()


def test_gcp_functions_exports_one_complete_list() -> None:
    import ast
    import inspect

    from nubes.adapters.gcp import functions

    tree = ast.parse(inspect.getsource(functions))
    assigned = [n for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)]
    assert len(assigned) == 1
    assert all(hasattr(functions, name) for name in functions.__all__)
    assert {"MAX_REQUEST_BYTES", "current_platform", "http_function"} <= set(functions.__all__)
