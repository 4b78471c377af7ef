"""Request and the multi-mappings: immutability, ordering, case-insensitivity, decoding."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

import nubes
from nubes import Request
from nubes.core.datastructures import Headers, MultiDict
from nubes.core.request import forwarded_scheme
from nubes.errors import HTTPError
from nubes.testing import Client


def test_request_is_immutable() -> None:
    r = Request("get", "/a%20b?x=1&x=2&y=", headers=[("X-A", "1"), ("x-a", "2")], body="{}")
    assert r.method == "GET" and r.path == "/a b" and r.raw_path == "/a%20b"
    assert r.query.getlist("x") == ["1", "2"] and r.query["y"] == ""
    assert r.headers.getlist("x-A") == ["1", "2"] and r.headers.get("X-a") == "1"
    with pytest.raises(AttributeError):
        r.path = "/other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.query["x"] = "3"  # type: ignore[index]


def test_multidict_api() -> None:
    m = MultiDict([("b", "1"), ("a", "2"), ("b", "3")])
    assert list(m) == ["b", "a"] and len(m) == 2
    assert m["b"] == "1" and m.get("zz", "d") == "d" and m.getlist("zz") == []
    assert m.multi_items() == [("b", "1"), ("a", "2"), ("b", "3")]
    assert MultiDict({"k": ["x", "y"]}).getlist("k") == ["x", "y"]
    h = Headers({"Content-Type": "text/plain"})
    assert "content-type" in h and h["CONTENT-TYPE"] == "text/plain"


def test_cookies_parse_multiple_headers_and_quotes() -> None:
    r = Request("GET", "/", headers=[("cookie", 'a=1; b="two words"'), ("Cookie", "c=%C3%A9; a=ignored")])
    assert dict(r.cookies) == {"a": "1", "b": "two words", "c": "é"}


def test_json_errors_are_400() -> None:
    with pytest.raises(HTTPError) as info:
        Request("POST", "/", body=b"\xff\xfe").json()
    assert info.value.status == 400
    with pytest.raises(HTTPError):
        Request("POST", "/", body=b"   ").json()


app = nubes.App("prop", openapi=False)


@app.get("/seg/{value}/{rest:path}")
def seg(ctx, value: str, rest: str) -> dict:
    return {"value": value, "rest": rest, "q": ctx.request.query.getlist("q")}


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@given(
    value=_text,
    rest=st.lists(_text.filter(lambda s: "/" not in s), min_size=1, max_size=3),
    q=st.lists(st.text(max_size=10), max_size=3),
)
def test_any_text_round_trips_through_path_and_query(value: str, rest: list[str], q: list[str]) -> None:
    path = f"/seg/{quote(value, safe='')}/" + "/".join(quote(r, safe="") for r in rest)
    result = Client(app).get(path, params=[("q", v) for v in q]).json()
    assert result == {"value": value, "rest": "/".join(rest), "q": q}


def test_forwarded_scheme_takes_only_http_or_https() -> None:
    assert forwarded_scheme(Headers([("X-Forwarded-Proto", "HTTPS, http")]), "http") == "https"
    assert forwarded_scheme(Headers([("Forwarded", 'for="1.2.3.4";proto="http", proto=https')]), "https") == "http"
    assert forwarded_scheme(Headers([("X-Forwarded-Proto", "https\r\nx-evil: 1")]), "http") == "http"
    assert forwarded_scheme(Headers([("X-Forwarded-Proto", "javascript")]), "https") == "https"
    assert forwarded_scheme(Headers([]), "https") == "https"


@given(proto=st.text(max_size=30), forwarded=st.text(max_size=40))
def test_forwarded_scheme_never_passes_client_text_through(proto: str, forwarded: str) -> None:
    """Whatever a client puts in X-Forwarded-Proto / Forwarded, the scheme (and so Request.url)
    is http, https or the adapter's default."""
    got = forwarded_scheme(Headers([("x-forwarded-proto", proto), ("forwarded", forwarded)]), "https")
    assert got in ("http", "https")
    url = Request("GET", "/", headers=[("host", "h")], scheme=got).url
    assert "\r" not in url and "\n" not in url
