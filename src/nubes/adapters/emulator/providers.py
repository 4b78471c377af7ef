"""What each emulated provider is: its figures, the payload path it builds, and the answers it gives.

Every figure and every answer the emulator uses lives in the two tables below (:data:`FIGURES`,
:data:`ANSWERS`), each with its source, so a change on the provider's side is one edit here.
A :class:`Provider` (one subclass per cloud) reads them to:

* build the provider's own payload for a :class:`~nubes.Request` (:meth:`Provider.encode`), or the
  answer its front end gives when the payload is over a limit;
* turn what the deployed adapter returned back into the HTTP answer the caller gets
  (:meth:`Provider.decode`), again checking the response limit;
* answer a failed invocation (handler overran its timeout, ran out of memory, the worker died)
  the provider's way (:meth:`Provider.failure`).

Payloads cross the worker-process boundary as ``(meta, body)``: a small JSON header and raw bytes
(AWS: the event JSON as Lambda delivers it; GCP and Azure: the HTTP request the function host
receives). See :mod:`nubes.adapters.emulator.targets` for the worker side.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nubes.errors import ConfigError
from nubes.core.request import Request
from nubes.core.response import Response

MB = 1024 * 1024


@dataclass(frozen=True)
class Figure:
    value: float
    source: str


# -- every provider figure, with where it comes from -------------------------------------------------
FIGURES: dict[str, Figure] = {
    # AWS Lambda quotas: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
    # ("Invocation payload (request and response): 6 MB each for request and response (synchronous)";
    # the service counts 6 MB as 6,291,456 bytes: "Request must be smaller than 6291456 bytes").
    "aws.payload_bytes": Figure(6 * MB, "docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"),
    "aws.timeout_max_s": Figure(900, "docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"),
    "aws.memory_min_mb": Figure(128, "docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"),
    "aws.memory_max_mb": Figure(10240, "docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"),
    # nubes' emulation defaults for AWS (a console-created function has 3 s / 128 MB; nubes apps
    # with duckdb/polars need more, and 30 s is what an API Gateway front end allows anyway).
    "aws.default_timeout_s": Figure(30, "nubes default (API Gateway HTTP API integration maximum)"),
    "aws.default_memory_mb": Figure(1024, "nubes default (nubes.adapters.aws.builders.LambdaContext)"),
    # API Gateway quotas: https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html
    # and .../limits.html: HTTP API integration timeout 30 s, REST 29 s (default), payload 10 MB.
    "aws.http_api.timeout_s": Figure(30, "docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html"),
    "aws.rest_api.timeout_s": Figure(29, "docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"),
    "aws.api_gateway.body_bytes": Figure(10 * MB, "docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"),
    # ALB with a Lambda target: "The maximum size of the request body that you can send to a Lambda
    # function is 1 MB" and "the response JSON ... is 1 MB":
    # https://docs.aws.amazon.com/elasticloadbalancing/latest/application/lambda-functions.html
    "aws.alb.body_bytes": Figure(1 * MB, "docs.aws.amazon.com/elasticloadbalancing/latest/application/lambda-functions.html"),
    "aws.alb.response_bytes": Figure(1 * MB, "docs.aws.amazon.com/elasticloadbalancing/latest/application/lambda-functions.html"),
    # Cloud Functions 2nd gen (Cloud Run functions) quotas: https://cloud.google.com/functions/quotas
    # 32 MiB HTTP request and response; HTTP timeout default 60 s, max 60 min; memory default 256 MiB.
    "gcp.request_bytes": Figure(32 * MB, "cloud.google.com/functions/quotas"),
    "gcp.response_bytes": Figure(32 * MB, "cloud.google.com/functions/quotas"),
    "gcp.default_timeout_s": Figure(60, "cloud.google.com/functions/docs/configuring/timeout"),
    "gcp.timeout_max_s": Figure(3600, "cloud.google.com/functions/docs/configuring/timeout"),
    "gcp.default_memory_mb": Figure(256, "cloud.google.com/functions/docs/configuring/memory"),
    "gcp.memory_max_mb": Figure(32768, "cloud.google.com/functions/docs/configuring/memory"),
    # Azure Functions, Consumption plan: https://learn.microsoft.com/azure/azure-functions/functions-scale
    # functionTimeout 5 min default / 10 min max; 1.5 GB memory per instance; HTTP request 100 MB
    # (host maxRequestBodySize 104857600); "Regardless of the function app timeout setting, 230 seconds
    # is the maximum amount of time that an HTTP triggered function can take to respond ... because of
    # the default idle timeout of Azure Load Balancer" (MicrosoftDocs/azure-docs
    # includes/functions-timeout-duration.md).
    "azure.request_bytes": Figure(100 * MB, "learn.microsoft.com/azure/azure-functions/functions-scale#service-limits"),
    "azure.http_timeout_s": Figure(230, "learn.microsoft.com/azure/azure-functions/functions-scale#timeout"),
    "azure.default_timeout_s": Figure(300, "learn.microsoft.com/azure/azure-functions/functions-scale#timeout"),
    "azure.timeout_max_s": Figure(600, "learn.microsoft.com/azure/azure-functions/functions-scale#timeout"),
    "azure.default_memory_mb": Figure(1536, "learn.microsoft.com/azure/azure-functions/functions-scale#service-limits"),
    "azure.memory_max_mb": Figure(1536, "learn.microsoft.com/azure/azure-functions/functions-scale#service-limits"),
}


def figure(name: str) -> float:
    return FIGURES[name].value


@dataclass(frozen=True)
class Answer:
    """A canned answer of a provider's front end: status, body, content type, and why."""

    status: int
    body: bytes
    content_type: str | None
    source: str

    def response(self) -> Response:
        headers = [("content-type", self.content_type)] if self.content_type else []
        return Response(self.body, self.status, headers)


_AGW_413 = b'{"message":"Request Entity Too Large"}'
_ALB = "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n</body>\r\n</html>\r\n"

# -- every answer a front end gives on its own, with where it comes from ---------------------------
# Situations: request_too_large, response_too_large, function_error (the function failed: unhandled
# error, out of memory, its own timeout, the process died), gateway_timeout (the front end stopped
# waiting before the function's timeout), function_timeout (where it differs from function_error).
ANSWERS: dict[tuple[str, str], Answer] = {
    # API Gateway HTTP API: a failed Lambda integration answers 500 {"message":"Internal Server Error"}
    # (docs.aws.amazon.com/apigateway/latest/developerguide/http-api-troubleshooting-lambda.html);
    # the 30 s integration timeout answers 503 {"message":"Service Unavailable"}.
    ("aws-http", "request_too_large"): Answer(413, _AGW_413, "application/json", "API Gateway: payload over 10 MB / Lambda 6 MB"),
    ("aws-http", "function_error"): Answer(500, b'{"message":"Internal Server Error"}', "application/json",
                                           "docs.aws.amazon.com/apigateway/latest/developerguide/http-api-troubleshooting-lambda.html"),
    ("aws-http", "gateway_timeout"): Answer(503, b'{"message":"Service Unavailable"}', "application/json",
                                            "docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html (30 s)"),
    # API Gateway REST API (Lambda proxy): function errors 502 {"message": "Internal server error"},
    # integration timeout 504 {"message": "Endpoint request timed out"}
    # (repost.aws/knowledge-center/api-gateway-5xx-error).
    ("aws-rest", "request_too_large"): Answer(413, _AGW_413, "application/json", "API Gateway: payload over 10 MB / Lambda 6 MB"),
    ("aws-rest", "function_error"): Answer(502, b'{"message": "Internal server error"}', "application/json",
                                           "repost.aws/knowledge-center/malformed-502-api-gateway"),
    ("aws-rest", "gateway_timeout"): Answer(504, b'{"message": "Endpoint request timed out"}', "application/json",
                                            "repost.aws/knowledge-center/api-gateway-5xx-error"),
    # Lambda Function URL: no front-end timeout (the function's own, up to 900 s); a failed
    # invocation answers 502 "Internal Server Error" (awsdocs/aws-lambda-developer-guide#430).
    ("aws-url", "request_too_large"): Answer(413, _AGW_413, "application/json", "Lambda 6 MB invocation payload (unverified body)"),
    ("aws-url", "function_error"): Answer(502, b"Internal Server Error", "application/json",
                                          "github.com/awsdocs/aws-lambda-developer-guide/issues/430"),
    # ALB with a Lambda target: body over 1 MB -> 413, failed function or response over 1 MB -> 502
    # (docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-troubleshooting.html).
    ("aws-alb", "request_too_large"): Answer(413, _ALB.format("413 Request Entity Too Large").encode(), "text/html",
                                             "docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-troubleshooting.html"),
    ("aws-alb", "function_error"): Answer(502, _ALB.format("502 Bad Gateway").encode(), "text/html",
                                          "docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-troubleshooting.html"),
    # Cloud Functions 2nd gen runs on Cloud Run: over-size request 413 from Google's front end;
    # request timeout 504 "upstream request timeout"; an instance that dies mid-request (crash,
    # memory limit exceeded) 503 (cloud.google.com/run/docs/troubleshooting: "The request failed
    # because either the HTTP response was malformed or connection to the instance had an error").
    ("gcp", "request_too_large"): Answer(413, b"<!DOCTYPE html>\n<title>Error 413 (Request Entity Too Large)!!1</title>\n"
                                         b"<p><b>413.</b> That\xe2\x80\x99s an error.\n<p>Your client issued a request that was too large.\n",
                                         "text/html; charset=UTF-8", "cloud.google.com/functions/quotas (32 MiB)"),
    ("gcp", "response_too_large"): Answer(500, b"Internal Server Error", "text/plain", "cloud.google.com/functions/quotas (32 MiB)"),
    ("gcp", "function_error"): Answer(503, b"Service Unavailable", "text/plain",
                                      "cloud.google.com/run/docs/troubleshooting#503-malformed-or-connection-error"),
    ("gcp", "function_timeout"): Answer(504, b"upstream request timeout", "text/plain",
                                        "cloud.google.com/run/docs/troubleshooting#504-deadline-exceeded"),
    # Azure Functions: body over maxRequestBodySize -> 413 (Kestrel, empty body); a function that
    # fails or exceeds functionTimeout -> 500 from the host; an HTTP call still running at 230 s ->
    # the front end's 502 ("the Azure Load Balancer will time out and return an HTTP 502 error",
    # learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger#limits;
    # some report 500, MicrosoftDocs/azure-docs#94418 — nubes follows the documentation).
    ("azure", "request_too_large"): Answer(413, b"", None, "learn.microsoft.com/azure/azure-functions/functions-scale#service-limits"),
    ("azure", "function_error"): Answer(500, b"", None, "github.com/Azure/azure-functions-host (FunctionTimeoutException / unhandled -> 500)"),
    ("azure", "gateway_timeout"): Answer(502, b"The specified CGI application encountered an error and the server terminated the process.",
                                         "text/html", "learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger#limits"),
}


@dataclass
class Settings:
    """The function's configuration as deployed: timeout (s), memory (MB), name, AWS front end."""

    timeout: float
    memory: int
    function_name: str = "nubes-app"
    aws_event: str = "http"
    request_limit: int | None = None  # override the front end's request limit (tests, smaller hosts)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "memory": self.memory, "function_name": self.function_name,
                "aws_event": self.aws_event}


class Provider:
    """One cloud's front end and function runtime, as far as the emulator needs them."""

    name: ClassVar[str]
    key: str  # the ANSWERS key
    gateway_timeout: float | None = None  # the front end stops waiting after this many seconds
    default_timeout: float
    default_memory: int
    max_timeout: float
    min_memory: int = 128
    max_memory: int

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- configuration ----------------------------------------------------------------------------
    @classmethod
    def configure(cls, *, timeout: float | None = None, memory: int | None = None, function_name: str | None = None,
                  aws_event: str = "http", request_limit: int | None = None) -> Provider:
        timeout = float(timeout) if timeout is not None else float(cls.default_timeout)
        memory = int(memory) if memory is not None else int(cls.default_memory)
        if not 0 < timeout <= cls.max_timeout:
            raise ConfigError(f"--timeout {timeout:g}: {cls.name} functions time out after 1 to {cls.max_timeout:g} seconds")
        if not cls.min_memory <= memory <= cls.max_memory:
            raise ConfigError(f"--memory {memory}: {cls.name} functions have {cls.min_memory} to {cls.max_memory} MB")
        return cls(Settings(timeout, memory, function_name or "nubes-app", aws_event, request_limit))

    @property
    def label(self) -> str:
        return self.name

    @property
    def max_body(self) -> int:
        """Bodies over this are refused by the front end before they are read."""
        raise NotImplementedError

    @property
    def wait(self) -> float:
        """How long the caller waits for the function: its timeout, or the front end's if shorter."""
        t = self.settings.timeout
        return min(t, self.gateway_timeout) if self.gateway_timeout else t

    def answer(self, situation: str) -> Response:
        found = ANSWERS.get((self.key, situation))
        if found is None and situation == "function_timeout":
            found = ANSWERS.get((self.key, "function_error"))
        if found is None and situation == "response_too_large":
            found = ANSWERS.get((self.key, "function_error"))
        if found is None:
            raise KeyError(f"no {situation} answer for {self.key}")
        return found.response()

    # -- the payload path -------------------------------------------------------------------------
    def encode(self, request: Request, request_id: str) -> tuple[dict[str, Any], bytes] | Response:
        """The invocation ``(meta, body)`` for ``request``, or the front end's over-limit answer."""
        raise NotImplementedError

    def decode(self, meta: Mapping[str, Any], body: bytes) -> tuple[Response, str | None]:
        """The HTTP answer for what the adapter returned, and an error type if the invocation failed."""
        raise NotImplementedError

    def failure(self, kind: str) -> Response:
        """The answer for a failed invocation: ``timeout`` (the function's own), ``gateway_timeout``,
        ``out_of_memory`` or ``crash``."""
        if kind == "gateway_timeout":
            return self.answer("gateway_timeout")
        if kind == "timeout":
            return self.answer("function_timeout")
        return self.answer("function_error")

    def worker_env(self) -> dict[str, str]:
        """Environment variables the provider's runtime sets in the function's process."""
        return {}


def _http_meta(request: Request, request_id: str) -> dict[str, Any]:
    return {"op": "http", "request_id": request_id, "method": request.method, "raw_path": request.raw_path,
            "query": request.query_string, "headers": request.headers.multi_items(), "scheme": request.scheme}


class Aws(Provider):
    """Lambda behind API Gateway (HTTP API 2.0 by default, or REST), a Function URL, or an ALB."""

    name = "aws"
    default_timeout = figure("aws.default_timeout_s")
    default_memory = int(figure("aws.default_memory_mb"))
    max_timeout = figure("aws.timeout_max_s")
    min_memory = int(figure("aws.memory_min_mb"))
    max_memory = int(figure("aws.memory_max_mb"))
    FRONTS: ClassVar[dict[str, str]] = {"http": "http", "rest": "rest", "alb": "alb", "url": "function_url"}

    def __init__(self, settings: Settings) -> None:
        if settings.aws_event not in self.FRONTS:
            raise ConfigError(f"--aws-event {settings.aws_event!r}: use one of {', '.join(self.FRONTS)}")
        super().__init__(settings)
        self.front = settings.aws_event
        self.fmt = self.FRONTS[self.front]
        self.key = f"aws-{self.front}"
        self.gateway_timeout = {"http": figure("aws.http_api.timeout_s"), "rest": figure("aws.rest_api.timeout_s")}.get(self.front)

    @property
    def label(self) -> str:
        return {"http": "aws (API Gateway HTTP API)", "rest": "aws (API Gateway REST API)", "alb": "aws (ALB)",
                "url": "aws (Function URL)"}[self.front]

    @property
    def max_body(self) -> int:
        if self.settings.request_limit is not None:
            return self.settings.request_limit
        if self.front == "alb":
            return int(figure("aws.alb.body_bytes"))
        return int(figure("aws.api_gateway.body_bytes"))

    @property
    def payload_limit(self) -> int:
        return self.settings.request_limit if self.settings.request_limit is not None else int(figure("aws.payload_bytes"))

    @property
    def response_limit(self) -> int:
        return int(figure("aws.alb.response_bytes" if self.front == "alb" else "aws.payload_bytes"))

    def build_event(self, request: Request) -> dict[str, Any]:
        from nubes.adapters.aws import builders as events

        if self.front == "rest":
            return events.rest_api_event(request)
        if self.front == "alb":
            return events.alb_event(request, multi_value=True)
        if self.front == "url":
            return events.function_url_event(request)
        return events.http_api_event(request)

    def encode(self, request: Request, request_id: str) -> tuple[dict[str, Any], bytes] | Response:
        if len(request.body) > self.max_body:
            return self.answer("request_too_large")
        event = self.build_event(request)
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(data) > self.payload_limit:  # Lambda's 6 MB is on the whole event (base64 bodies grow 4/3)
            return self.answer("request_too_large")
        return {"op": "aws", "request_id": request_id}, data

    def decode(self, meta: Mapping[str, Any], body: bytes) -> tuple[Response, str | None]:
        from nubes.adapters.aws.builders import to_response

        if not meta.get("ok"):
            return self.answer("function_error"), str(meta.get("error_type") or "Unhandled")
        if len(body) > self.response_limit:
            # Lambda: "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
            return self.answer("response_too_large"), "Function.ResponseSizeTooLarge"
        result = json.loads(body)
        return to_response(result, self.fmt), None  # type: ignore[arg-type]

    def worker_env(self) -> dict[str, str]:
        return {"AWS_REGION": os.environ.get("AWS_REGION", "us-east-1")}


class Gcp(Provider):
    """Cloud Functions 2nd gen: the functions-framework HTTP target behind Google's front end."""

    name = "gcp"
    key = "gcp"
    default_timeout = figure("gcp.default_timeout_s")
    default_memory = int(figure("gcp.default_memory_mb"))
    max_timeout = figure("gcp.timeout_max_s")
    max_memory = int(figure("gcp.memory_max_mb"))

    @property
    def max_body(self) -> int:
        return self.settings.request_limit if self.settings.request_limit is not None else int(figure("gcp.request_bytes"))

    def encode(self, request: Request, request_id: str) -> tuple[dict[str, Any], bytes] | Response:
        if len(request.body) > self.max_body:
            return self.answer("request_too_large")
        meta = _http_meta(request, request_id)
        meta["op"] = "gcp-http"
        return meta, request.body

    def decode(self, meta: Mapping[str, Any], body: bytes) -> tuple[Response, str | None]:
        if not meta.get("ok"):
            return self.answer("function_error"), str(meta.get("error_type") or "crash")
        if len(body) > figure("gcp.response_bytes"):
            return self.answer("response_too_large"), "ResponseTooLarge"
        return Response(body, int(meta["status"]), [tuple(h) for h in meta["headers"]]), None

    def worker_env(self) -> dict[str, str]:
        return {"FUNCTION_TARGET": "main", "FUNCTION_SIGNATURE_TYPE": "http",
                "FUNCTION_TIMEOUT_SEC": f"{self.settings.timeout:g}", "FUNCTION_MEMORY_MB": str(self.settings.memory)}


class Azure(Provider):
    """Azure Functions (Consumption): the FunctionApp's HTTP function behind the Functions host."""

    name = "azure"
    key = "azure"
    gateway_timeout = figure("azure.http_timeout_s")
    default_timeout = figure("azure.default_timeout_s")
    default_memory = int(figure("azure.default_memory_mb"))
    max_timeout = figure("azure.timeout_max_s")
    max_memory = int(figure("azure.memory_max_mb"))

    @property
    def max_body(self) -> int:
        return self.settings.request_limit if self.settings.request_limit is not None else int(figure("azure.request_bytes"))

    def encode(self, request: Request, request_id: str) -> tuple[dict[str, Any], bytes] | Response:
        if len(request.body) > self.max_body:
            return self.answer("request_too_large")
        meta = _http_meta(request, request_id)
        meta["op"] = "azure-http"
        return meta, request.body

    def decode(self, meta: Mapping[str, Any], body: bytes) -> tuple[Response, str | None]:
        if not meta.get("ok"):
            return self.answer("function_error"), str(meta.get("error_type") or "crash")
        return Response(body, int(meta["status"]), [tuple(h) for h in meta["headers"]]), None

    def worker_env(self) -> dict[str, str]:
        return {"NUBES_MEMORY_MB": str(self.settings.memory)}


PROVIDERS: dict[str, type[Provider]] = {"aws": Aws, "gcp": Gcp, "azure": Azure}


def provider(name: str, **kw: Any) -> Provider:
    """The configured :class:`Provider` named ``name`` (aws, gcp or azure)."""
    cls = PROVIDERS.get(str(name).lower())
    if cls is None:
        raise ConfigError(f"--emulate {name!r}: use one of {', '.join(PROVIDERS)}")
    return cls.configure(**kw)


def new_request_id() -> str:
    return str(uuid.uuid4())
