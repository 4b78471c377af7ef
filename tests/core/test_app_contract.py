"""The foundation's contract, exercised through nubes.testing.Client on a user-written app."""

from __future__ import annotations

import io
import json

import pytest

from nubes.testing import Client


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"] and problem["type"]
    assert problem["request_id"] == response.headers["x-nubes-request-id"]
    return problem


def test_path_and_query_parameters_are_bound_and_converted(client: Client) -> None:
    r = client.get("/hello/ada", params={"times": "2", "shout": "true"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["greeting"] == "HELLO ADA HELLO ADA"
    assert r.json()["request_id"] == r.headers["X-Nubes-Request-Id"]


def test_percent_encoded_unicode_path_is_decoded(client: Client) -> None:
    r = client.get("/hello/J%C3%BCrgen%20M")
    assert r.json()["greeting"] == "hello Jürgen M"


def test_typed_query_parameters(client: Client) -> None:
    r = client.get(
        "/types",
        params=[("i", "3"), ("f", "2.5"), ("d", "2024-02-29"), ("dt", "2024-02-29T10:00:00+01:00"),
                ("dec", "1.25"), ("color", "blue"), ("mode", "slow"), ("ids", "4"), ("ids", "5")],
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"i": 3, "f": 2.5, "d": "2024-02-29", "dt": "2024-02-29T10:00:00+01:00", "dec": 1.25,
                        "color": "blue", "mode": "slow", "ids": [4, 5]}


def test_defaults_apply_when_query_parameters_are_absent(client: Client) -> None:
    assert client.get("/types?i=1").json() == {"i": 1, "f": 1.5, "d": None, "dt": None, "dec": None,
                                                "color": "red", "mode": "fast", "ids": []}


@pytest.mark.parametrize(
    ("query", "name"),
    [("i=x", "i"), ("", "i"), ("i=1&f=abc", "f"), ("i=1&d=2024-13-01", "d"), ("i=1&color=green", "color"),
     ("i=1&mode=medium", "mode"), ("i=1&ids=1&ids=two", "ids"), ("i=1.5", "i"), ("i=1&dec=nan", "dec")],
)
def test_bad_parameter_is_422_naming_it(client: Client, query: str, name: str) -> None:
    problem = assert_problem(client.get(f"/types?{query}"), 422)
    assert [e["name"] for e in problem["errors"]] == [name]
    assert name in problem["detail"]


def test_bad_path_parameter_is_422(client: Client) -> None:
    problem = assert_problem(client.delete("/orders/abc"), 422)
    assert problem["errors"] == [{"name": "order_id", "in": "path", "detail": "must be an integer"}]


def test_json_body_builds_the_annotated_dataclass(client: Client) -> None:
    r = client.post("/orders", json={"item": "tea", "qty": 3, "price": 2, "due": "2024-03-01"})
    assert r.status_code == 201
    assert r.headers["location"] == "/orders/tea"
    assert r.json() == {"total": 6.0, "order": {"item": "tea", "qty": 3, "price": 2.0, "tags": [], "due": "2024-03-01"}}


def test_body_fields_that_do_not_bind_are_422_each_named(client: Client) -> None:
    problem = assert_problem(client.post("/orders", json={"qty": "many", "colour": "red"}), 422)
    names = {e["name"] for e in problem["errors"]}
    assert names == {"body.item", "body.qty", "body.colour"}


def test_malformed_json_is_400(client: Client) -> None:
    problem = assert_problem(client.post("/orders", content=b'{"item": "tea",', headers={"content-type": "application/json"}), 400)
    assert "not valid JSON" in problem["detail"]


def test_missing_body_is_422(client: Client) -> None:
    problem = assert_problem(client.post("/orders"), 422)
    assert problem["errors"][0]["name"] == "body"


def test_unsupported_body_type_is_415(client: Client) -> None:
    assert_problem(client.put("/echo", content=b"<a/>", headers={"content-type": "application/xml"}), 415)


def test_form_body_is_accepted_as_a_mapping(client: Client) -> None:
    r = client.put("/echo", data={"a": "1", "b": "x y"})
    assert r.json() == {"body": {"a": "1", "b": "x y"}, "content_type": "application/x-www-form-urlencoded"}


def test_http_error_from_handler_is_problem_with_extensions(client: Client) -> None:
    problem = assert_problem(client.post("/orders", json={"item": "tea", "qty": 0}), 409)
    assert problem["type"] == "https://example.com/probs/qty"
    assert problem["detail"] == "cannot order 0 of tea"
    assert problem["qty"] == 0
    assert problem["instance"] == "/orders"


def test_http_error_headers_are_sent(client: Client) -> None:
    r = client.get("/teapot")
    assert_problem(r, 418)
    assert r.headers["x-pot"] == "yes"


def test_unknown_path_is_404(client: Client) -> None:
    problem = assert_problem(client.get("/nowhere"), 404)
    assert "/nowhere" in problem["detail"]


def test_wrong_method_is_405_with_allow(client: Client) -> None:
    r = client.post("/hello/ada")
    assert_problem(r, 405)
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"
    r = client.put("/multi")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


def test_options_and_head_are_answered(client: Client) -> None:
    r = client.options("/multi")
    assert r.status_code == 204 and "POST" in r.headers["allow"]
    r = client.head("/hello/ada")
    assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0


def test_unexpected_exception_is_500_without_details(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    r = client.get("/crash")
    problem = assert_problem(r, 500)
    assert "hunter2" not in r.text and "Traceback" not in r.text
    assert problem["request_id"] in problem["detail"]
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    failure = next(line for line in lines if line["msg"] == "unhandled exception")
    assert failure["request_id"] == problem["request_id"]
    assert "hunter2" in failure["error"]["traceback"]
    assert any(line["msg"] == "about to fail" and line["secret_step"] == 1 for line in lines)


def test_one_json_log_line_per_invocation(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    r = client.get("/hello/ada")
    client.get("/types?i=zzz")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    calls = [line for line in lines if line["msg"] == "invocation"]
    assert len(calls) == 2
    assert calls[0]["request_id"] == r.headers["x-nubes-request-id"]
    assert calls[0]["route"] == "/hello/{name}" and calls[0]["status"] == 200 and calls[0]["app"] == "contract"
    assert calls[1]["status"] == 422 and isinstance(calls[1]["duration_ms"], float)


def test_static_route_wins_over_path_capture(client: Client) -> None:
    assert client.get("/files/README").json() == {"static": True}
    assert client.get("/files/a/b%2Fc/d.csv").json() == {"path": "a/b/c/d.csv"}
    assert client.get("/files/").status_code == 404


def test_polars_frame_defaults_to_json_records(client: Client) -> None:
    r = client.get("/sales", params={"region": "north"})
    assert r.headers["content-type"] == "application/json"
    assert r.json() == [{"region": "north", "day": "2024-01-01", "amount": 10.5},
                        {"region": "north", "day": "2024-01-02", "amount": 3.0}]


def test_accept_text_csv_gives_csv(client: Client) -> None:
    r = client.get("/sales", headers={"Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines() == ["region,day,amount", "north,2024-01-01,10.5", "south,2024-01-01,7.25", "north,2024-01-02,3.0"]


def test_format_query_and_accept_give_parquet_arrow_and_ndjson(client: Client) -> None:
    import polars as pl

    parquet = client.get("/sales?format=parquet")
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert pl.read_parquet(io.BytesIO(parquet.content))["amount"].to_list() == [10.5, 7.25, 3.0]
    arrow = client.get("/sales", headers={"accept": "application/vnd.apache.arrow.stream"})
    assert pl.read_ipc_stream(io.BytesIO(arrow.content)).height == 3
    nd = client.get("/sales", headers={"accept": "application/x-ndjson;q=0.9, text/csv;q=0.5"})
    assert [json.loads(x)["amount"] for x in nd.text.splitlines()] == [10.5, 7.25, 3.0]


def test_accept_nothing_we_produce_is_406_and_bad_format_422(client: Client) -> None:
    assert_problem(client.get("/sales", headers={"accept": "image/png"}), 406)
    problem = assert_problem(client.get("/sales?format=xlsx"), 422)
    assert problem["errors"][0]["name"] == "format"


def test_duckdb_relation_is_encoded(client: Client) -> None:
    assert client.get("/sales/summary").json() == [{"region": "north", "total": 13.5, "n": 2},
                                                   {"region": "south", "total": 7.25, "n": 1}]
    assert client.get("/sales/summary?format=csv").text.splitlines()[0] == "region,total,n"


def test_json_encoding_of_numpy_nan_decimal_dates(client: Client) -> None:
    assert client.get("/nan").json() == {"nan": None, "inf": None, "np_int": 7, "np_float": 0.5, "arr": [0, 1, 2],
                                        "dec": 2.5, "when": "2024-05-06T07:08:09"}


def test_bytes_are_octet_stream(client: Client) -> None:
    r = client.get("/bytes")
    assert r.headers["content-type"] == "application/octet-stream" and r.content == bytes(range(256))


def test_none_is_204(client: Client) -> None:
    r = client.delete("/orders/7")
    assert r.status_code == 204 and r.content == b""


def test_cookies_in_and_set_cookie_out(client: Client) -> None:
    r = client.get("/cookies", cookies={"session": "abc", "lang": "fr"})
    assert r.json() == {"session": "abc", "lang": "fr"}
    assert r.headers.getlist("set-cookie") == ["seen=yes; Path=/; HttpOnly; SameSite=Lax", "theme=dark; Path=/; SameSite=Lax"]


def test_repeated_headers_and_query_keys_keep_order(client: Client) -> None:
    r = client.get("/headers?b=2&a=1&b=3", headers={"X-Tag": "one"})
    assert r.json() == {"x_tag": ["one"], "query": [["b", "2"], ["a", "1"], ["b", "3"]]}


def test_async_handler(client: Client) -> None:
    assert client.get("/async?n=21").json() == {"double": 42}


def test_route_methods_helpers(client: Client) -> None:
    assert client.get("/multi").json() == {"method": "GET"}
    assert client.post("/multi").json() == {"method": "POST"}
