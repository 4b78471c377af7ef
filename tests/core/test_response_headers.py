"""Response headers can never split a response: names are tokens, values hold no CR, LF, NUL or
other control character, checked whenever a header is set; a handler that tries is a 500 problem."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nubes
from nubes.core.response import InvalidHeader, Response, ResponseHeaders
from nubes.testing import Client

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
CONTROL = set(map(chr, [*range(0x09), *range(0x0A, 0x20), 0x7F]))

names = st.one_of(st.text(max_size=12), st.from_regex(TOKEN, fullmatch=True).map(lambda s: s[:20]))
values = st.one_of(st.text(max_size=30), st.text(st.sampled_from("ab \t\r\n\x00;=:"), max_size=12))


def acceptable(name: str, value: str) -> bool:
    return bool(TOKEN.fullmatch(name)) and not (set(value) & CONTROL)


@settings(max_examples=150)
@given(name=names, value=values)
def test_every_way_of_setting_a_header_checks_it(name: str, value: str) -> None:
    ok = acceptable(name, value)
    attempts = [
        lambda: Response(b"", 200, {name: value}),
        lambda: Response(b"", 200, [(name, value)]),
        lambda: Response().headers.__setitem__(name, value),
        lambda: Response().headers.add(name, value),
        lambda: Response().headers.setdefault(name, value),
        lambda: Response().headers.update({name: value}),
        lambda: setattr(Response(), "headers", {name: value}),
    ]
    for attempt in attempts:
        if ok:
            attempt()
        else:
            with pytest.raises(InvalidHeader):
                attempt()
    if ok:
        headers = ResponseHeaders({name: value})
        assert headers.multi_items() == [(name.lower(), value)]


@settings(max_examples=100)
@given(location=values)
def test_redirect_refuses_a_location_that_would_split_the_response(location: str) -> None:
    if set(location) & CONTROL:
        with pytest.raises(InvalidHeader, match="control character"):
            Response.redirect(location)
    else:
        assert Response.redirect(location).headers["location"] == location


@settings(max_examples=100)
@given(name=names, path=values, domain=st.one_of(st.none(), values), value=st.text(max_size=20))
def test_set_cookie_adds_exactly_one_header_and_no_attribute(name: str, path: str, domain: str | None, value: str) -> None:
    response = Response()
    bad = not TOKEN.fullmatch(name) or any(t and (";" in t or set(t) & CONTROL) for t in (path, domain))
    if bad:
        with pytest.raises(InvalidHeader):
            response.set_cookie(name, value, path=path, domain=domain)
        assert "set-cookie" not in response.headers
        return
    response.set_cookie(name, value, path=path, domain=domain)
    [cookie] = response.headers.getlist("set-cookie")
    attributes = [part.split("=", 1)[0] for part in cookie.split("; ")[1:]]
    assert attributes == [*(["Path"] if path else []), *(["Domain"] if domain else []), "SameSite"]
    assert cookie.split("; ")[0] == f"{name}={cookie.split('; ')[0].split('=', 1)[1]}"


def test_samesite_must_be_a_known_value() -> None:
    with pytest.raises(InvalidHeader, match="samesite"):
        Response().set_cookie("a", "b", samesite="lax\r\nSet-Cookie: x=y")


def test_a_handler_that_injects_a_header_gets_a_500_problem() -> None:
    app = nubes.App("inject", openapi=False)

    @app.get("/go")
    def go(ctx: nubes.Context, to: str) -> Response:
        return Response.redirect(to)

    @app.get("/cookie")
    def cookie(ctx: nubes.Context, path: str) -> Response:
        response = Response.json({})
        response.set_cookie("s", "v", path=path)
        return response

    client = Client(app)
    for path, params in (("/go", {"to": "/x\r\nSet-Cookie: evil=1"}), ("/cookie", {"path": "/\r\nSet-Cookie: evil=1"})):
        r = client.get(path, params=params)
        assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
        assert "set-cookie" not in r.headers and "evil" not in r.text
    assert client.get("/go", params={"to": "/fine"}).status_code == 307


request_id_app = nubes.App("request-ids", openapi=False, auth=False, extensions=[])


@request_id_app.get("/rid")
def rid(ctx: nubes.Context) -> dict:
    return {"request_id": ctx.request_id}


@settings(max_examples=120, deadline=None)
@given(request_id=st.one_of(st.text(max_size=140), st.text(st.sampled_from("ab-/\r\n\x00 \x7f"), max_size=12),
                            st.from_regex(r"\A[\x21-\x7e]{1,128}\Z")))
def test_handle_keeps_a_valid_request_id_and_replaces_any_other(request_id: str) -> None:
    response = request_id_app.handle(nubes.Request("GET", "/rid"), request_id=request_id)  # never raises
    valid = re.fullmatch(r"[\x21-\x7e]{1,128}", request_id) is not None
    sent = response.headers["x-nubes-request-id"]
    assert response.status == 200 and re.fullmatch(r"[\x21-\x7e]{1,128}", sent)
    assert (sent == request_id) is valid and json.loads(response.body)["request_id"] == sent
