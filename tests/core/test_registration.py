"""Declaring routes: mistakes are refused at registration with a message that says how to fix them."""

from __future__ import annotations

import pytest

import nubes
from nubes.errors import ConfigError


def make() -> nubes.App:
    return nubes.App("t", openapi=False)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("items", "must start with '/'"),
        ("/items/{id", "unbalanced"),
        ("/items/{1id}", "not a valid parameter name"),
        ("/a/{x}/{x}", "appears twice"),
        ("/a/{rest:path}/b", "whole last segment"),
        ("/a/{id:int}", "only '{name:path}'"),
        ("/_nubes/mine", "reserved"),
    ],
)
def test_bad_paths_are_refused(path: str, fragment: str) -> None:
    app = make()
    with pytest.raises(ConfigError, match=fragment.replace("{", r"\{").replace("(", r"\(")):
        app.get(path)(lambda ctx, id=None, x=None, rest=None: None)


def test_handler_needs_context_parameter() -> None:
    with pytest.raises(ConfigError, match="first parameter"):
        make().get("/")(lambda: None)


def test_path_parameter_without_handler_parameter() -> None:
    with pytest.raises(ConfigError, match="no handler parameter"):
        make().get("/items/{item_id}")(lambda ctx: None)


def test_unsupported_query_annotation() -> None:
    def handler(ctx, filters: dict) -> None: ...

    with pytest.raises(ConfigError, match=r"'filters'.*name it 'body'"):
        make().get("/x")(handler)


def test_duplicate_route_and_unknown_method() -> None:
    app = make()
    app.get("/x")(lambda ctx: 1)
    with pytest.raises(ConfigError, match="already handled"):
        app.route("/x", methods=["GET", "POST"])(lambda ctx: 2)
    with pytest.raises(ConfigError, match="unknown HTTP method"):
        app.route("/y", methods=["FETCH"])(lambda ctx: 2)


def test_app_needs_a_name() -> None:
    with pytest.raises(ConfigError, match="needs a name"):
        nubes.App("")


def test_match_order_is_by_specificity_not_registration() -> None:
    app = make()
    app.get("/r/{a}/{b}")(lambda ctx, a, b: "params")
    app.get("/r/{a}.csv/x")(lambda ctx, a: "mixed")
    app.get("/r/static/x")(lambda ctx: "static")
    app.get("/r/{rest:path}")(lambda ctx, rest: "tail")
    route, values = app.router.match("GET", "/r/static/x")
    assert route.path == "/r/static/x"
    route, values = app.router.match("GET", "/r/day.csv/x")
    assert route.path == "/r/{a}.csv/x" and values == {"a": "day"}
    route, values = app.router.match("GET", "/r/one/two")
    assert route.path == "/r/{a}/{b}"
    route, values = app.router.match("GET", "/r/one/two/three")
    assert route.path == "/r/{rest:path}" and values == {"rest": "one/two/three"}
