"""HTTP event sources of Lambda, one small class each: REST API (payload 1.0), HTTP API (2.0),
Lambda Function URL (2.0 on ``*.lambda-url.*.on.aws``) and Application Load Balancer.

Each class has ``infer(event)`` (is this payload mine?), ``request(event)`` (the
:class:`~nubes.Request` the app sees) and ``result(response, event)`` (the dict Lambda returns).

What the app sees, whatever the source:

* the path without the API Gateway stage or custom-domain base path, percent-decoded in
  ``request.path`` (``request.raw_path`` keeps the escapes);
* every query pair (REST: rebuilt from ``multiValueQueryStringParameters``, so pairs are grouped by
  key; HTTP API / Function URL: ``rawQueryString`` as sent; ALB: the still-encoded values, decoded once);
* every header value; HTTP API ``cookies`` as one ``cookie`` header;
* the body as bytes (``isBase64Encoded`` bodies decoded).

What goes back: text bodies (``text/*``, JSON, XML, JavaScript, form) as text, anything else
(Parquet, Arrow, octet-stream, images) base64 with ``isBase64Encoded: true``. Headers per format:

* 2.0: ``headers`` (repeated names joined with ``", "``) and ``cookies`` (each ``Set-Cookie``);
* REST: ``headers`` for single-valued names, ``multiValueHeaders`` for repeated names and every
  ``Set-Cookie``; a REST API returns binary bodies decoded only if its ``binaryMediaTypes`` match
  (deploy with ``*/*``);
* ALB with multi-value headers on: ``multiValueHeaders`` only, plus ``statusDescription``;
* ALB without: ``headers`` only, one value per name. Repeated names are joined with ``", "``
  (RFC 9110 list syntax) except ``Set-Cookie``, which cannot be joined: the first cookie is sent and
  the others are dropped with a warning log line. Turn on multi-value headers on the target group
  to send several cookies.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import quote, unquote

from nubes.adapters.aws import fields, wire
from nubes.adapters.aws.context import Invocation
from nubes.adapters.aws.limits import FIGURES
from nubes.adapters.problems import adapter_problem
from nubes.core.app import App, new_request_id
from nubes.core.datastructures import Headers
from nubes.core.events import Platform
from nubes.core.logs import BoundLog, logger
from nubes.core.request import Request, forwarded_scheme
from nubes.core.response import Response
from nubes.errors import HTTPError, UnknownEvent

Event = Mapping[str, Any]

TEXT_MEDIA_TYPES = frozenset(
    {
        "application/json",
        "application/problem+json",
        "application/x-ndjson",
        "application/xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
        "application/graphql",
        "image/svg+xml",
    }
)

# characters that never stand for themselves in an encoded path: escape them (HTTP APIs hand the
# path over decoded, REST APIs, Function URLs and ALB still encoded; this makes both safe).
_UNSAFE_PATH = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]|%(?![0-9A-Fa-f]{2})")


def is_text(content_type: str | None) -> bool:
    """True when a body of this media type goes back as text rather than base64."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in TEXT_MEDIA_TYPES or media.endswith(("+json", "+xml"))


def encode_body(response: Response) -> tuple[str, bool]:
    """``(body, isBase64Encoded)`` for a Lambda proxy result."""
    body = response.body
    if not body:
        return "", False
    if is_text(response.headers.get("content-type")):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def decode_body(event: Event) -> bytes:
    """The request body as bytes (``body`` may be null, text, or base64 with ``isBase64Encoded``);
    :class:`~nubes.errors.UnknownEvent` if it is none of those."""
    return fields.body(event)


def safe_path(path: str | None) -> str:
    """``path`` as an encoded path: characters that cannot appear literally are percent-escaped."""
    if not path:
        return "/"
    if _UNSAFE_PATH.search(path) is None:
        return path
    return _UNSAFE_PATH.sub(lambda m: quote(m.group(0), safe=""), path)


def strip_prefix(path: str, prefix: str) -> str:
    """``path`` without the leading segment(s) ``prefix`` (``/dev``), if it starts with them."""
    if prefix and prefix != "/" and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix) :] or "/"
    return path


def strip_to_route(path: str, template: str | None, params: Mapping[str, Any] | None) -> str:
    """Remove segments in front of what the route ``template`` (``/orders/{id}``, ``/{proxy+}``)
    filled with ``params`` matches: a custom domain's base path mapping, or a stage."""
    if not template or "$default" in template:
        return path
    filled: list[str] = []
    for seg in template.split("/"):
        if not seg:
            continue
        if seg[0] == "{" and seg[-1] == "}":
            name = seg[1:-1]
            value = fields.opt_text(fields.mapping(params, "pathParameters").get(name.rstrip("+")), "pathParameters." + name)
            if value is None:
                return path
            if name.endswith("+"):
                filled.extend(p for p in value.split("/") if p)
            else:
                filled.append(value)
        else:
            filled.append(seg)
    segs = [p for p in path.split("/") if p]
    extra = len(segs) - len(filled)
    if extra <= 0 or [unquote(s) for s in segs[extra:]] != [unquote(f) for f in filled]:
        return path
    return strip_prefix(path, "/" + "/".join(segs[:extra]))


def _on_execute_api(request_context: Mapping[str, Any]) -> bool:
    """True when the call came through API Gateway's own domain (stage in the URL), not a custom one."""
    domain = fields.field(request_context, "domainName", "requestContext.domainName")
    return domain is None or ".execute-api." in domain


def _rc(event: Event) -> Mapping[str, Any]:
    """``requestContext`` (empty if absent), or :class:`~nubes.errors.UnknownEvent` if it is not an object."""
    return fields.mapping(event.get("requestContext"), "requestContext")


def _quote_pairs(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in pairs)


def _headers(event: Event) -> Headers:
    """Every header value: ``multiValueHeaders`` when the event has them, else ``headers``."""
    multi = event.get("multiValueHeaders")
    if multi:
        return Headers(fields.text_multimap(multi, "multiValueHeaders"))
    return Headers(fields.text_map(event.get("headers"), "headers"))


class HttpSource:
    """Base of the HTTP event sources: request in, :meth:`App.handle`, proxy result out."""

    name: ClassVar[str] = "HTTP"
    # Lambda's synchronous response payload limit; ALB overrides it with its 1 MB limit on the Lambda response.
    max_result_bytes: ClassVar[int] = int(FIGURES["payload_bytes"].value)

    @staticmethod
    def infer(event: Event) -> bool:
        raise NotImplementedError

    def request(self, event: Event) -> Request:
        raise NotImplementedError

    def result(self, response: Response, event: Event) -> dict[str, Any]:
        raise NotImplementedError

    def front(self, event: Event) -> str:
        """The front that delivered ``event`` (metering prices its fee: nubes.adapters.aws.prices)."""
        return "http"

    def __call__(self, app: App, event: Event, inv: Invocation) -> dict[str, Any]:
        """Answer ``event``. Never raises: an event that cannot be read is a 400 problem, a result
        the runtime could not send (over its size limit) a 500 problem, both in this source's shape."""
        try:
            request = self.request(event)
        except Exception as exc:
            return self.reject(app, event, inv, exc)
        try:
            platform = _with_front(inv.platform, self.front(event))
            response = app.handle(request, request_id=inv.request_id, deadline=inv.deadline, platform=platform)
            result = self.result(response, event)
            if wire.may_exceed(result, response.headers.multi_items(), self.max_result_bytes):
                result = self._fit(app, result, event, inv)
            return result
        except Exception:  # a failure of the adapter itself (App.handle does not raise)
            rid = inv.request_id or new_request_id()
            app.log.bind(request_id=rid).exception("aws adapter failed", adapter="aws", source=self.name)
            return self.result(adapter_problem(500, f"the server failed to answer; quote request id {rid} when reporting this", rid), event)

    def reject(self, app: App, event: Event, inv: Invocation, exc: Exception) -> dict[str, Any]:
        """The 400 answer, in this source's shape, to an event that is not a readable request."""
        rid = inv.request_id or new_request_id()
        log = app.log.bind(request_id=rid)
        if isinstance(exc, (UnknownEvent, HTTPError)):  # HTTPError: what nubes.Request refuses to carry
            reason = exc.detail if isinstance(exc, HTTPError) else str(exc)
            detail = f"this {self.name} event cannot be read: {reason}"
            log.warning("unreadable event", adapter="aws", source=self.name, detail=reason)
        else:
            detail = f"this {self.name} event cannot be read as a request"
            log.exception("unreadable event", adapter="aws", source=self.name)
        return self.result(adapter_problem(400, detail, rid), event)

    def _fit(self, app: App, result: dict[str, Any], event: Event, inv: Invocation) -> dict[str, Any]:
        """``result``, or a 500 problem if the runtime could not send it (too large once serialized)."""
        limit = self.max_result_bytes
        size = wire.result_bytes(result)
        if size is not None and size <= limit:
            return result
        # The service would drop it with a bare 502 and no trace; answer a problem the caller can act on.
        rid = inv.request_id or new_request_id()
        app.log.error("response over the provider limit", request_id=rid, source=self.name, bytes=size, limit=limit,
                      escaped=wire.escapes_non_ascii())
        if size is None:
            detail = "the response cannot be encoded as the Lambda runtime sends it (text that is not valid Unicode)"
        else:
            detail = (f"the response is {size:,} bytes as the Lambda runtime sends it, over the {limit:,}-byte limit "
                      f"({self.name}); narrow the query, page the results, or write them to storage and return a reference")
        return self.result(adapter_problem(500, detail, rid, title="Response Too Large"), event)


class RestApi(HttpSource):
    """API Gateway REST API, and HTTP API with payload format 1.0.

    The path is ``event["path"]``. On the execute-api domain a REST API leaves the stage out of
    it (``requestContext.path`` has it); through a custom domain with a base path mapping the base
    path is in it and is removed by matching ``resource`` filled with ``pathParameters`` (or by the
    adapter's explicit ``base_path``). HTTP API payload 1.0 puts a named stage in ``path``: removed.
    """

    name = "API Gateway REST API (payload 1.0)"

    def front(self, event: Event) -> str:
        return "http" if event.get("version") == "1.0" else "rest"  # an HTTP API's payload 1.0 says its version

    def __init__(self, base_path: str | None = None) -> None:
        self.base_path = "/" + base_path.strip("/") if base_path and base_path.strip("/") else None

    @staticmethod
    def infer(event: Event) -> bool:
        return "httpMethod" in event and "requestContext" in event

    def path(self, event: Event) -> str:
        raw = fields.field(event, "path")
        path = safe_path(raw)
        if self.base_path:
            return strip_prefix(path, self.base_path)
        rc = _rc(event)
        stage = fields.field(rc, "stage", "requestContext.stage")
        if event.get("version") == "1.0":  # HTTP API, payload 1.0
            if stage and stage != "$default" and _on_execute_api(rc):
                return strip_prefix(path, "/" + stage)
        elif stage and rc.get("path") == f"/{stage}{raw}":
            return path  # REST API on its execute-api domain: path has no stage
        resource = fields.field(event, "resource")
        return strip_to_route(path, resource, fields.mapping(event.get("pathParameters"), "pathParameters"))

    def request(self, event: Event) -> Request:
        if event.get("multiValueQueryStringParameters"):
            query = fields.text_multimap(event["multiValueQueryStringParameters"], "multiValueQueryStringParameters")
        else:
            query = fields.text_map(event.get("queryStringParameters"), "queryStringParameters")
        headers = _headers(event)
        return Request(
            fields.text(event.get("httpMethod"), "httpMethod"),
            self.path(event),
            query=_quote_pairs(query),
            headers=headers,
            body=decode_body(event),
            scheme=forwarded_scheme(headers, "https"),
        )

    def result(self, response: Response, event: Event) -> dict[str, Any]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in response.headers.multi_items():
            if name in multi:
                multi[name].append(value)
            elif name == "set-cookie":
                multi[name] = [value]
            elif name in single:
                multi[name] = [single.pop(name), value]
            else:
                single[name] = value
        body, b64 = encode_body(response)
        return {
            "statusCode": response.status,
            "headers": single,
            "multiValueHeaders": multi,
            "body": body,
            "isBase64Encoded": b64,
        }


@functools.lru_cache(maxsize=128)
def _with_front(platform: Platform, front: str) -> Platform:
    return dataclasses.replace(platform, front=front)


class HttpApi(HttpSource):
    """API Gateway HTTP API, payload format 2.0.

    ``rawPath`` carries a named stage (``/dev/...``) when called on the execute-api domain: removed;
    through a custom domain an API mapping key is removed by matching ``routeKey``'s path filled with
    ``pathParameters``. ``cookies`` become one ``cookie`` header.
    """

    name = "API Gateway HTTP API (payload 2.0)"

    @staticmethod
    def infer(event: Event) -> bool:
        rc = event.get("requestContext")
        return event.get("version") == "2.0" and (type(rc) is dict or isinstance(rc, Mapping)) and "http" in rc

    def path(self, event: Event) -> str:
        path = safe_path(fields.field(event, "rawPath"))
        rc = _rc(event)
        stage = fields.field(rc, "stage", "requestContext.stage")
        if stage and stage != "$default" and _on_execute_api(rc):
            return strip_prefix(path, "/" + stage)
        route = fields.opt_text(rc.get("routeKey") or event.get("routeKey"), "routeKey") or ""
        return strip_to_route(path, route.partition(" ")[2], fields.mapping(event.get("pathParameters"), "pathParameters"))

    def request(self, event: Event) -> Request:
        pairs = fields.text_map(event.get("headers"), "headers")
        cookies = fields.text_list(event.get("cookies"), "cookies")
        if cookies:
            pairs.append(("cookie", "; ".join(cookies)))
        headers = Headers(pairs)
        http = fields.mapping(_rc(event).get("http"), "requestContext.http")
        return Request(
            fields.text(http.get("method"), "requestContext.http.method"),
            self.path(event),
            query=fields.field(event, "rawQueryString") or "",
            headers=headers,
            body=decode_body(event),
            scheme=forwarded_scheme(headers, "https"),
        )

    def result(self, response: Response, event: Event) -> dict[str, Any]:
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in response.headers.multi_items():
            if name == "set-cookie":
                cookies.append(value)
            elif name in headers:
                headers[name] = f"{headers[name]}, {value}"
            else:
                headers[name] = value
        body, b64 = encode_body(response)
        out: dict[str, Any] = {"statusCode": response.status, "headers": headers, "body": body, "isBase64Encoded": b64}
        if cookies:
            out["cookies"] = cookies
        return out


class FunctionUrl(HttpApi):
    """Lambda Function URL: payload 2.0 on a ``<id>.lambda-url.<region>.on.aws`` domain; no stage,
    no routes, ``rawPath`` as sent."""

    name = "Lambda Function URL (payload 2.0)"

    def front(self, event: Event) -> str:
        return "url"

    @staticmethod
    def infer(event: Event) -> bool:
        rc = event.get("requestContext")
        if event.get("version") != "2.0" or not (type(rc) is dict or isinstance(rc, Mapping)):
            return False
        domain = rc.get("domainName")
        return isinstance(domain, str) and ".lambda-url." in domain

    def path(self, event: Event) -> str:
        return safe_path(fields.field(event, "rawPath"))


class Alb(HttpSource):
    """Application Load Balancer target group, with or without multi-value headers.

    ALB passes query keys and values as sent, still percent-encoded: they are decoded once here.
    Multi-value mode is recognised by ``multiValueHeaders`` in the event and answered the same way.
    """

    name = "Application Load Balancer"
    max_result_bytes = int(FIGURES["alb.response_bytes"].value)

    def front(self, event: Event) -> str:
        return "alb"

    @staticmethod
    def infer(event: Event) -> bool:
        rc = event.get("requestContext")
        return (type(rc) is dict or isinstance(rc, Mapping)) and "elb" in rc

    def request(self, event: Event) -> Request:
        if "multiValueQueryStringParameters" in event:
            pairs = fields.text_multimap(event["multiValueQueryStringParameters"], "multiValueQueryStringParameters")
        else:
            pairs = fields.text_map(event.get("queryStringParameters"), "queryStringParameters")
        query = "&".join(f"{key}={value}" for key, value in pairs)
        headers = _headers(event)
        return Request(
            fields.text(event.get("httpMethod"), "httpMethod"),
            safe_path(fields.field(event, "path")),
            query=query,
            headers=headers,
            body=decode_body(event),
            scheme=forwarded_scheme(headers, "https"),
        )

    def result(self, response: Response, event: Event) -> dict[str, Any]:
        body, b64 = encode_body(response)
        out: dict[str, Any] = {
            "statusCode": response.status,
            "statusDescription": _status_line(response.status),
            "body": body,
            "isBase64Encoded": b64,
        }
        if "multiValueHeaders" in event:
            multi: dict[str, list[str]] = {}
            for name, value in response.headers.multi_items():
                multi.setdefault(name, []).append(value)
            out["multiValueHeaders"] = multi
            return out
        headers: dict[str, str] = {}
        dropped: list[str] = []
        for name, value in response.headers.multi_items():
            if name not in headers:
                headers[name] = value
            elif name == "set-cookie":
                dropped.append(value.split(";", 1)[0].split("=", 1)[0])
            else:
                headers[name] = f"{headers[name]}, {value}"
        if dropped:
            _log().warning(
                "ALB without multi-value headers sends one Set-Cookie; cookies dropped "
                "(enable multi-value headers on the target group)",
                dropped=dropped,
            )
        out["headers"] = headers
        return out


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _log() -> BoundLog:
    return BoundLog(logger(), adapter="aws")
