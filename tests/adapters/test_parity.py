"""Parity: the same requests through every path answer the same.

Each request case (a :class:`nubes.Request`) is replayed through

* ``local``: the in-process :class:`nubes.testing.Client` (``App.handle`` for the cases the
  Client cannot express: it takes headers as a plain mapping, so no repeated header names);
* ``aws-v1``, ``aws-v2``, ``aws-alb``, ``aws-alb-multi``, ``aws-url``: the provider payload made
  by :mod:`nubes.adapters.aws.builders`, ``nubes.adapters.aws.handler(app)``, and the proxy result
  decoded by ``to_response`` the way the front end would;
* ``gcp``: ``to_flask_request``, ``http_function(app)``, ``from_flask_response``;
* ``gcp-framework``: the same target served by ``functions_framework.create_app`` (its Flask app,
  routing and response handling, as on Google), called with werkzeug's test client;
* ``azure``: ``to_http_request``, the indexed FunctionApp's HTTP function, ``from_http_response``
  (the worker's own response converter);

and each path's status, body bytes and significant headers (content-type, location, allow,
x-pot, every set-cookie, presence of x-nubes-request-id) must equal the local path's. Request
ids differ per path: the header is compared for presence and the id is blanked out of bodies.

Where a provider cannot carry something, :data:`EXPECTED_DIFFERENCES` says so, with the source
of the fact, and the test asserts exactly that difference (the local answer transformed as the
provider transforms it) rather than skipping. A mismatch nothing explains is an adapter bug:
:data:`KNOWN_BUGS` marks those strict xfails until the adapter's owner fixes them.

Last, what the app sees from an AWS event is compared with what Mangum derives from the same
event (ASGI scope) for every request case, in each event format Mangum reads.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from tests.adapters.mangum_probe import mangum_scope

import nubes
from nubes import Request, Response
from nubes.adapters.aws import builders as aws_events
from nubes.adapters.aws import handler as aws_handler
from nubes.adapters.aws.http import Alb, FunctionUrl, HttpApi, RestApi
from nubes.core.loader import load_app
from nubes.testing import Client

APP_FILE = Path(__file__).resolve().parent.parent / "apps" / "parity_app.py"
PATHS = ("local", "aws-v1", "aws-v2", "aws-alb", "aws-alb-multi", "aws-url", "gcp", "gcp-framework", "azure")
SIGNIFICANT = ("content-type", "location", "allow", "x-pot", "x-multi")
RID = "x-nubes-request-id"


# -- request cases ---------------------------------------------------------------------------------
def _req(method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes | str = b"") -> Request:
    extra = list(headers or [])
    base = [(k, v) for k, v in (("accept", "*/*"), ("user-agent", "parity/1.0")) if k not in {n for n, _ in extra}]
    return Request(method, target, headers=base + extra, body=body, scheme="https")


JSON_BODY = json.dumps({"name": "Zoë", "tags": ["a", "b"], "n": 1.5, "emoji": "✓"}, ensure_ascii=False).encode()
FORM_BODY = b"a=1&b=caf%C3%A9&a=2&space=x+y&empty="
BINARY_BODY = bytes(range(256)) * 8
LARGE_TEXT_BODY = ("0123456789abcdef" * 4 + "\n").encode() * 14_770  # ~960 kB: under ALB's 1 MB request limit
LARGE_BINARY_BODY = bytes(range(256)) * 2_800  # ~717 kB, ~956 kB as base64 in the event

CASES: dict[str, Request] = {
    # methods
    "get": _req("GET", "/echo/plain"),
    "get-root": _req("GET", "/echo"),
    "post-text": _req("POST", "/echo/m", [("content-type", "text/plain; charset=utf-8")], "hé"),
    "put-text": _req("PUT", "/echo/m", [("content-type", "text/plain; charset=utf-8")], "put"),
    "patch-text": _req("PATCH", "/echo/m", [("content-type", "text/plain; charset=utf-8")], "patch"),
    "delete": _req("DELETE", "/echo/m"),
    "head": _req("HEAD", "/json"),
    "options": _req("OPTIONS", "/echo/m"),
    # paths
    "unicode-path": _req("GET", "/echo/caf%C3%A9/%E6%97%A5%E6%9C%AC"),
    "encoded-path": _req("GET", "/echo/a%20b/100%25/x+y/%3Fq/%23h"),
    "encoded-slash": _req("GET", "/echo/a%2Fb/c"),
    "encoded-unreserved-lowercase": _req("GET", "/echo/%7Euser/caf%c3%a9"),
    "path-trailing-slash": _req("GET", "/echo/dir/"),
    "path-reserved-literals": _req("GET", "/echo/a;b=c/@x:y/!$&'()*,"),
    "path-invalid-utf8": _req("GET", "/echo/%FF%FE"),
    # query
    "query-repeated": _req("GET", "/echo/q?a=1&a=2&b=x%20y&plus=a+b&uni=caf%C3%A9&empty=&amp=%26"),
    "query-interleaved": _req("GET", "/echo/q?a=1&b=2&a=3"),
    "query-key-only": _req("GET", "/echo/q?flag&x=1"),
    "query-odd-escapes": _req("GET", "/echo/q?bad=%zz&pct=100%&p=%2B1&%C3%A9t%C3%A9=%E2%9C%93&semi=a;b"),
    # headers and cookies
    "headers-repeated": _req("GET", "/echo/h", [("x-tag", "one"), ("x-tag", "two"), ("x-single", "v, w")]),
    "header-empty": _req("GET", "/echo/h", [("x-empty", "")]),
    "header-non-ascii": _req("GET", "/echo/h", [("x-single", "café")]),
    "header-case": _req("GET", "/echo/h", [("X-Single", "Mixed"), ("Content-Type", "Text/Plain")]),
    "cookies": _req("GET", "/echo/c", [("cookie", "session=abc%20def; theme=dark; q=\"quoted\"")]),
    # bodies
    "body-empty": _req("POST", "/echo/b"),
    "body-json": _req("POST", "/echo/b", [("content-type", "application/json")], JSON_BODY),
    "body-json-charset": _req("PATCH", "/echo/b", [("content-type", "application/json; charset=utf-8")], JSON_BODY),
    "body-typed-but-empty": _req("POST", "/echo/b", [("content-type", "application/json")]),
    "body-form": _req("POST", "/echo/b", [("content-type", "application/x-www-form-urlencoded")], FORM_BODY),
    "body-binary": _req("POST", "/echo/b", [("content-type", "application/octet-stream")], BINARY_BODY),
    "body-binary-untyped": _req("PUT", "/echo/b", [], BINARY_BODY),
    "body-invalid-utf8-text": _req("POST", "/echo/b", [("content-type", "text/plain")], b"\xff\xfeok\x80"),
    "body-large-text": _req("POST", "/echo/b", [("content-type", "text/plain")], LARGE_TEXT_BODY),
    "body-large-binary": _req("POST", "/echo/b", [("content-type", "application/octet-stream")], LARGE_BINARY_BODY),
    # results
    "result-json": _req("GET", "/json"),
    "result-table-json": _req("GET", "/table"),
    "result-csv": _req("GET", "/table?format=csv"),
    "result-parquet": _req("GET", "/table?format=parquet"),
    "result-csv-accept": _req("GET", "/table", [("accept", "text/csv")]),
    "result-bytes": _req("GET", "/bytes"),
    "result-204": _req("GET", "/empty"),
    "result-redirect": _req("GET", "/redirect"),
    "result-cookies": _req("GET", "/cookies", [("cookie", "seen=1")]),
    "result-repeated-header": _req("GET", "/multi-header"),
    "result-large-text": _req("GET", "/large"),
    "result-large-binary": _req("GET", "/large?kind=binary"),
    # errors
    "error-404": _req("GET", "/nowhere/caf%C3%A9"),
    "error-405": _req("POST", "/json"),
    "error-418": _req("GET", "/teapot"),
    "error-422": _req("GET", "/typed?n=abc"),
    "error-422-missing": _req("GET", "/typed"),
    "error-400-json": _req("POST", "/parse", [("content-type", "application/json")], b"{not json"),
    "error-406": _req("GET", "/table", [("accept", "image/png")]),
    "error-500": _req("GET", "/crash"),
}


# -- one answer, reduced to what must match --------------------------------------------------------
@dataclass
class Outcome:
    status: int
    body: bytes | dict[str, Any]  # a dict: an echo report as a documented difference reshaped it
    headers: dict[str, list[str]]
    cookies: list[str]
    has_rid: bool

    @classmethod
    def of(cls, response: Response) -> Outcome:
        rid = response.headers.get(RID)
        body = response.body
        if rid:
            body = body.replace(rid.encode(), b"<request-id>")
        return cls(
            status=response.status,
            body=body,
            headers={name: response.headers.getlist(name) for name in SIGNIFICANT},
            cookies=response.headers.getlist("set-cookie"),
            has_rid=bool(rid),
        )

    def seen(self) -> dict[str, Any]:
        """The echo route's report of what the app saw (a fresh copy)."""
        return json.loads(self.body if isinstance(self.body, bytes) else json.dumps(self.body))


# -- the paths -------------------------------------------------------------------------------------
_APP: nubes.App | None = None
_AZURE: Any = None


def app() -> nubes.App:
    global _APP
    if _APP is None:
        _APP = load_app(f"{APP_FILE}:app")
    return _APP


def run_local(request: Request) -> Response:
    names = [name for name, _ in request.headers.multi_items()]
    if len(names) != len(set(names)):  # the Client's headers= is a plain mapping: no repeats
        return app().handle(request)
    target = request.raw_path + (f"?{request.query_string}" if request.query_string else "")
    got = Client(app()).request(
        request.method, target, headers=dict(request.headers.multi_items()), content=request.body or None
    )
    return Response(got.content, got.status_code, got.headers.multi_items())


def aws_result(fmt: str, request: Request, **kw: Any) -> dict[str, Any]:
    """The proxy result the AWS adapter returns for ``request`` sent in format ``fmt``."""
    event = aws_events.BUILDERS[fmt](request, **kw)
    result = aws_handler(app())(event, aws_events.LambdaContext())
    json.dumps(result)  # what Lambda returns must be JSON-serialisable
    return result


def _run_aws(fmt: str, **kw: Any) -> Callable[[Request], Response]:
    def run(request: Request) -> Response:
        return aws_events.to_response(aws_result(fmt, request, **kw), fmt)  # type: ignore[arg-type]

    return run


def run_gcp(request: Request) -> Response:
    from nubes.adapters.gcp.builders import from_flask_response, to_flask_request
    from nubes.adapters.gcp.functions import http_function

    return from_flask_response(http_function(app())(to_flask_request(request)))


_FRAMEWORK: Any = None


def run_gcp_framework(request: Request) -> Response:
    global _FRAMEWORK
    import atexit
    import os
    import shutil
    import tempfile

    import functions_framework

    from nubes.adapters.gcp.builders import from_flask_response

    if _FRAMEWORK is None:
        folder = tempfile.mkdtemp(prefix="nubes-parity-")
        atexit.register(shutil.rmtree, folder, True)
        source = Path(folder) / "main.py"
        source.write_text(
            "from nubes.adapters.gcp.functions import http_function\n"
            "from nubes.core.loader import load_app\n"
            f"main = http_function(load_app({str(APP_FILE) + ':app'!r}))\n"
        )
        saved = dict(os.environ)  # create_app writes FUNCTION_TARGET / FUNCTION_SIGNATURE_TYPE
        try:
            _FRAMEWORK = functions_framework.create_app("main", str(source), "http").test_client(use_cookies=False)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    got = _FRAMEWORK.open(
        request.raw_path,
        method=request.method,
        query_string=request.query_string,
        headers=request.headers.multi_items(),
        data=request.body,
        base_url=f"https://{request.headers.get('host', 'parity.example')}",
    )
    return from_flask_response(got)


def run_azure(request: Request) -> Response:
    global _AZURE
    from nubes.adapters.azure.builders import (
        from_http_response,
        invocation_context,
        to_http_request,
    )
    from nubes.adapters.azure.functions import HTTP_FUNCTION, function_app

    if _AZURE is None:  # get_functions() may be called once per FunctionApp
        functions = {f.get_function_name(): f for f in function_app(app()).get_functions()}
        _AZURE = functions[HTTP_FUNCTION].get_user_function()
    return from_http_response(_AZURE(to_http_request(request), invocation_context()))


RUNNERS: dict[str, Callable[[Request], Response]] = {
    "local": run_local,
    "aws-v1": _run_aws("rest"),
    "aws-v2": _run_aws("http"),
    "aws-alb": _run_aws("alb"),
    "aws-alb-multi": _run_aws("alb", multi_value=True),
    "aws-url": _run_aws("function_url"),
    "gcp": run_gcp,
    "gcp-framework": run_gcp_framework,
    "azure": run_azure,
}


# -- documented provider differences ---------------------------------------------------------------
def _repeated_headers(request: Request) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in request.headers.multi_items():
        grouped.setdefault(name, []).append(value)
    return {name: values for name, values in grouped.items() if len(values) > 1}


def _join_headers(sep: str) -> Callable[[Request, Outcome], Outcome]:
    def transform(request: Request, out: Outcome) -> Outcome:
        seen = out.seen()
        for name, values in _repeated_headers(request).items():
            if name in seen["headers"]:
                seen["headers"][name] = [sep.join(values)]
        return _with_seen(out, seen)

    return transform


def _last_header_value(request: Request, out: Outcome) -> Outcome:
    seen = out.seen()
    for name, values in _repeated_headers(request).items():
        if name in seen["headers"]:
            seen["headers"][name] = values[-1:]
    return _with_seen(out, seen)


def _query_last_value(request: Request, out: Outcome) -> Outcome:
    seen = out.seen()
    last: dict[str, str] = {}
    for key, value in seen["query"]:
        last[key] = value  # a map: first-seen key order, last value
    seen["query"] = [[k, v] for k, v in last.items()]
    return _with_seen(out, seen)


def _query_grouped(request: Request, out: Outcome) -> Outcome:
    seen = out.seen()
    grouped: dict[str, list[str]] = {}
    for key, value in seen["query"]:
        grouped.setdefault(key, []).append(value)
    seen["query"] = [[k, v] for k, values in grouped.items() for v in values]
    return _with_seen(out, seen)


def _decoded_raw_path(request: Request, out: Outcome) -> Outcome:
    """What the app sees when the front end hands over the path decoded: nubes re-escapes only what
    cannot stand in a path, so an escaped '/' (or any reserved character) is a literal again."""
    from nubes.adapters.aws.http import safe_path

    seen = out.seen()
    raw = safe_path(request.path)
    seen["raw_path"], seen["path"] = raw, unquote(raw)
    seen["rest"] = unquote(raw).removeprefix("/echo/")
    return _with_seen(out, seen)


def _first_cookie_only(request: Request, out: Outcome) -> Outcome:
    return Outcome(out.status, out.body, out.headers, out.cookies[:1], out.has_rid)


def _default_content_type(request: Request, out: Outcome) -> Outcome:
    headers = dict(out.headers)
    headers["content-type"] = headers["content-type"] or ["application/octet-stream"]
    return Outcome(out.status, out.body, headers, out.cookies, out.has_rid)


def _with_seen(out: Outcome, seen: dict[str, Any]) -> Outcome:
    """``out`` with its echo report replaced; compared as parsed JSON, not bytes."""
    return Outcome(out.status, seen, out.headers, out.cookies, out.has_rid)


def _is_echo(request: Request) -> bool:
    return request.path == "/echo" or request.path.startswith("/echo/")


@dataclass(frozen=True)
class Difference:
    """A documented way a provider cannot carry what the local path carries."""

    name: str
    paths: tuple[str, ...]
    fact: str
    source: str
    applies: Callable[[Request, Outcome], bool]
    transform: Callable[[Request, Outcome], Outcome] = field(repr=False)


def _has_repeated_echoed_header(request: Request, out: Outcome) -> bool:
    from tests.apps.parity_app import ECHOED_HEADERS

    return _is_echo(request) and any(name in ECHOED_HEADERS for name in _repeated_headers(request))


def _has_repeated_query_key(request: Request, out: Outcome) -> bool:
    keys = [k for k, _ in request.query.multi_items()]
    return _is_echo(request) and len(keys) != len(set(keys))


def _has_interleaved_query_keys(request: Request, out: Outcome) -> bool:
    keys = [k for k, _ in request.query.multi_items()]
    first_seen = list(dict.fromkeys(keys))
    return _is_echo(request) and [k for k in first_seen for _ in range(keys.count(k))] != keys


def _has_escaped_reserved_in_path(request: Request, out: Outcome) -> bool:
    from nubes.adapters.aws.http import safe_path

    return _is_echo(request) and safe_path(request.path) != request.raw_path


EXPECTED_DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "http-api-joins-repeated-headers",
        ("aws-v2", "aws-url"),
        "Payload 2.0 has no multiValueHeaders: duplicate headers are combined with commas in one "
        "value (the docs' example: \"header2\": \"value1,value2\"); Function URLs use payload 2.0.",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html"
        " ; https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html",
        _has_repeated_echoed_header,
        _join_headers(","),
    ),
    Difference(
        "wsgi-joins-repeated-headers",
        ("gcp", "gcp-framework"),
        "Under WSGI (CGI meta-variables) a repeated request header becomes one HTTP_* value: RFC 3875 "
        "4.1.18 'MUST rewrite them as a single value'. The test builder (werkzeug EnvironBuilder) joins "
        "with ', '; gunicorn, which serves functions-framework on Google, joins with ','.",
        "https://www.rfc-editor.org/rfc/rfc3875#section-4.1.18 ; "
        "https://github.com/benoitc/gunicorn/blob/master/gunicorn/http/wsgi.py (create: '%s,%s')",
        _has_repeated_echoed_header,
        _join_headers(", "),
    ),
    Difference(
        "azure-host-joins-repeated-headers",
        ("azure",),
        "The Functions host hands the worker request headers as a map: repeated headers arrive as one "
        "comma-joined value (the issue shows 'ValueA, ValueB'; the test builder joins with ',').",
        "https://github.com/Azure/azure-functions-host/issues/5294",
        _has_repeated_echoed_header,
        _join_headers(","),
    ),
    Difference(
        "alb-single-value-keeps-last-header",
        ("aws-alb",),
        "Without multi-value headers on the target group, ALB passes one value per header name: the "
        "last one the client sent.",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/lambda-functions.html#multi-value-headers",
        _has_repeated_echoed_header,
        _last_header_value,
    ),
    Difference(
        "alb-single-value-keeps-last-query-value",
        ("aws-alb",),
        "Without multi-value headers, queryStringParameters has one value per key: the last one sent.",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/lambda-functions.html#multi-value-headers",
        _has_repeated_query_key,
        _query_last_value,
    ),
    Difference(
        "multi-value-query-maps-group-by-key",
        ("aws-v1", "aws-alb-multi"),
        "REST (payload 1.0) and ALB multi-value events carry the query as a map key -> [values] "
        "(multiValueQueryStringParameters): the order of values within a key is kept, the "
        "interleaving of different keys is not.",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html"
        "#api-gateway-simple-proxy-for-lambda-input-format ; "
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/lambda-functions.html#multi-value-headers",
        _has_interleaved_query_keys,
        _query_grouped,
    ),
    Difference(
        "http-api-decodes-raw-path",
        ("aws-v2",),
        "HTTP APIs hand rawPath over percent-decoded (REST, Function URLs and ALB keep the encoding), "
        "so an escaped reserved character such as %2F arrives as a literal '/' and cannot be told apart.",
        "https://github.com/middleapi/standard-server/pull/93 (live captures in hotsock/voker#8)",
        _has_escaped_reserved_in_path,
        _decoded_raw_path,
    ),
    Difference(
        "alb-single-value-one-set-cookie",
        ("aws-alb",),
        "Without multi-value headers the response 'headers' map holds one value per name; Set-Cookie "
        "cannot be comma-joined (RFC 6265 3), so only one cookie reaches the client (nubes sends the "
        "first and logs the dropped ones). Enable lambda.multi_value_headers.enabled to send all.",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/lambda-functions.html#multi-value-headers"
        " ; https://www.rfc-editor.org/rfc/rfc6265#section-3",
        lambda request, out: len(out.cookies) > 1,
        _first_cookie_only,
    ),
    Difference(
        "azure-worker-always-sets-content-type",
        ("azure",),
        "The Python worker's HttpResponseConverter.encode adds content-type from the HttpResponse's "
        "mimetype when the headers have none (HttpResponse defaults it); nubes passes "
        "application/octet-stream, so answers without a body type (204, 3xx) get that one.",
        "https://github.com/Azure/azure-functions-python-library/blob/dev/azure/functions/http.py"
        " (HttpResponseConverter.encode; azure-functions 1.26.0 as installed)",
        lambda request, out: not out.headers["content-type"],
        _default_content_type,
    ),
)

def _join_response_header(request: Request, out: Outcome) -> Outcome:
    headers = {name: ([", ".join(values)] if len(values) > 1 else values) for name, values in out.headers.items()}
    return Outcome(out.status, out.body, headers, out.cookies, out.has_rid)


def _worker_cookies(request: Request, out: Outcome) -> Outcome:
    from http.cookies import SimpleCookie

    cookies = [m.OutputString() for c in out.cookies for m in SimpleCookie(c).values()]
    return Outcome(out.status, out.body, out.headers, cookies, out.has_rid)


EXPECTED_DIFFERENCES += (
    Difference(
        "response-header-maps-join-repeats",
        ("aws-v2", "aws-url", "aws-alb", "azure"),
        "The proxy result's 'headers' (payload 2.0, ALB without multi-value headers) and the Azure "
        "worker's response headers are maps of one string per name, so nubes joins a repeated "
        "response header with ', ' (RFC 9110 5.3 makes the two forms equivalent for list fields).",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html"
        " ; https://github.com/Azure/azure-functions-python-library/issues/87 ; "
        "https://www.rfc-editor.org/rfc/rfc9110#section-5.3",
        lambda request, out: any(len(v) > 1 for v in out.headers.values()),
        _join_response_header,
    ),
    Difference(
        "azure-worker-reserialises-set-cookie",
        ("azure",),
        "The worker turns each Set-Cookie into an http.cookies.SimpleCookie and the host writes it "
        "back from the Morsel, whose OutputString() emits the attributes in sorted order "
        "(HttpOnly; Max-Age; Path; SameSite; Secure). Same cookie, same attributes (attribute order "
        "has no meaning, RFC 6265 5.2); the bytes differ.",
        "https://github.com/Azure/azure-functions-python-library/blob/dev/azure/functions/http.py"
        " (HttpResponseConverter.encode: SimpleCookie) ; https://www.rfc-editor.org/rfc/rfc6265#section-5.2",
        lambda request, out: bool(out.cookies),
        _worker_cookies,
    ),
)

KNOWN_BUGS: dict[tuple[str, str], str] = {}
OVERSIZED_FOR_ALB = ("result-large-text", "result-large-binary", "body-large-text")
"""(case, path) -> the adapter bug that makes it differ; the test is a strict xfail until fixed."""


def expected(case: str, path: str, local: Outcome) -> tuple[Outcome, list[str]]:
    """The local answer as ``path`` must give it, and the names of the differences applied."""
    request = CASES[case]
    out, applied = local, []
    for diff in EXPECTED_DIFFERENCES:
        if path in diff.paths and diff.applies(request, out):
            out = diff.transform(request, out)
            applied.append(diff.name)
    return out, applied


def assert_same(got: Outcome, want: Outcome) -> None:
    assert got.status == want.status
    if isinstance(want.body, dict):
        assert got.seen() == want.body
    else:
        assert got.body == want.body, _body_diff(got.body, want.body)  # type: ignore[arg-type]
    assert got.headers == want.headers
    assert got.cookies == want.cookies
    assert got.has_rid == want.has_rid


def _body_diff(got: bytes, want: bytes) -> str:
    if len(got) > 2000 or len(want) > 2000:
        at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
        return f"bodies differ: {len(got)} vs {len(want)} bytes, first difference at {at}: {got[at:at+60]!r} vs {want[at:at+60]!r}"
    return f"{got!r} != {want!r}"


# -- the matrix ------------------------------------------------------------------------------------
_LOCAL: dict[str, Outcome] = {}


def local_outcome(case: str) -> Outcome:
    if case not in _LOCAL:
        _LOCAL[case] = Outcome.of(run_local(CASES[case]))
    return _LOCAL[case]


def _matrix() -> list[Any]:
    params = []
    for case in CASES:
        for path in PATHS[1:]:
            if case in OVERSIZED_FOR_ALB and path in ("aws-alb", "aws-alb-multi"):
                continue  # over ALB's 1 MB: refused as a problem, see test_alb_result_fits_or_is_refused_as_a_problem
            marks = []
            if (case, path) in KNOWN_BUGS:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[(case, path)]))
            params.append(pytest.param(case, path, id=f"{case}-{path}", marks=marks))
    return params


@pytest.mark.parametrize(("case", "path"), _matrix())
def test_parity(case: str, path: str, capsys: pytest.CaptureFixture[str]) -> None:
    local = local_outcome(case)
    got = Outcome.of(RUNNERS[path](CASES[case]))
    want, applied = expected(case, path, local)
    assert_same(got, want)
    if "alb-single-value-one-set-cookie" in applied:
        assert "cookies dropped" in capsys.readouterr().err  # the drop is logged, not silent


@pytest.mark.parametrize("case", list(CASES))
def test_local_path_is_sane(case: str) -> None:
    """The reference itself: every case answers, with a request id, and echo cases echo the request."""
    out = local_outcome(case)
    request = CASES[case]
    assert out.has_rid
    if _is_echo(request) and out.status == 200 and request.method != "HEAD":
        seen = out.seen()
        assert seen["method"] == request.method
        assert seen["raw_path"] == request.raw_path and seen["path"] == request.path
        assert [tuple(p) for p in seen["query"]] == request.query.multi_items()
        assert base64.b64decode(seen["body_b64"]) == request.body


def test_every_difference_is_exercised() -> None:
    """No documented difference is dead text: each one applies to at least one (case, path)."""
    used: set[str] = set()
    for case in CASES:
        for path in PATHS[1:]:
            used.update(expected(case, path, local_outcome(case))[1])
    assert used == {d.name for d in EXPECTED_DIFFERENCES}
    assert all(d.source.startswith("https://") for d in EXPECTED_DIFFERENCES)


# -- front-end size limits ----------------------------------------------------------------------------
ALB_MAX_RESPONSE_JSON = 1024 * 1024
"""ALB: 'The maximum size of the response JSON that the Lambda function can send is 1 MB' (read
generously as 1 MiB); over it the load balancer answers a bare 502, without the request id.
https://docs.aws.amazon.com/elasticloadbalancing/latest/application/lambda-functions.html"""

"""These produce results over the limit: the adapter must answer a problem+json 500 naming it instead."""


def _size_matrix() -> list[Any]:
    params = []
    for case in CASES:
        for path, kw in (("aws-alb", {}), ("aws-alb-multi", {"multi_value": True})):
            params.append(pytest.param(case, kw, id=f"{case}-{path}"))
    return params


@pytest.mark.parametrize(("case", "kw"), _size_matrix())
def test_alb_result_fits_or_is_refused_as_a_problem(case: str, kw: dict[str, Any]) -> None:
    result = aws_result("alb", CASES[case], **kw)
    assert len(json.dumps(result)) <= ALB_MAX_RESPONSE_JSON
    if case not in OVERSIZED_FOR_ALB:
        return
    headers = result.get("headers") or {k: v[0] for k, v in (result.get("multiValueHeaders") or {}).items()}
    assert result["statusCode"] >= 500 and headers.get("content-type") == "application/problem+json"
    assert headers.get(RID)


# -- AWS vs Mangum: what the app sees from the same event --------------------------------------------
MANGUM_FORMATS = {
    "aws-v1": ("rest", RestApi(), {}),
    "aws-v2": ("http", HttpApi(), {}),
    "aws-alb": ("alb", Alb(), {}),
    "aws-alb-multi": ("alb", Alb(), {"multi_value": True}),
    "aws-url": ("function_url", FunctionUrl(), {}),
}


MANGUM_DIFFERENCES: dict[tuple[str, str], str] = {}
"""(case, format) -> why nubes and Mangum legitimately see an event differently."""


def _mangum_matrix() -> list[Any]:
    return [
        pytest.param(case, fmt, id=f"{case}-{fmt}")
        for case, request in CASES.items()
        if _is_echo(request)
        for fmt in MANGUM_FORMATS
    ]


@pytest.mark.parametrize(("case", "fmt"), _mangum_matrix())
def test_aws_request_matches_mangum(case: str, fmt: str) -> None:
    builder, source, kw = MANGUM_FORMATS[fmt]
    event = aws_events.BUILDERS[builder](CASES[case], **kw)
    ours = source.request(copy.deepcopy(event))
    scope = mangum_scope(event)
    assert ours.method == scope["method"]
    assert ours.path == scope["path"]
    assert ours.query.multi_items() == parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
    assert ours.body == scope["body"]
    theirs: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        theirs.setdefault(name.decode(), []).append(value.decode())  # Mangum encodes str values as UTF-8
    mine: dict[str, list[str]] = {}
    for name, value in ours.headers.multi_items():
        mine.setdefault(name, []).append(value)
    # Mangum joins repeated REST headers with ", " and keeps ALB pairs; compare the joined values
    assert {k: ", ".join(v) for k, v in mine.items()} == {k: ", ".join(v) for k, v in theirs.items()}
