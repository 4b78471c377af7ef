"""AWS Lambda under emulation: the front ends' limits and answers, the payloads, and the worker side.

:class:`AwsProfile` is Lambda behind API Gateway (HTTP API payload 2.0 by default, or REST), a
Function URL, or an ALB (``front``: ``http``, ``rest``, ``url``, ``alb``); :class:`AwsTarget` is
``nubes.adapters.aws.handler(app)`` called with the event dict and a Lambda context, its result (or
the error, as the Python runtime reports it) sent back as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from nubes.adapters.aws.limits import FIGURES
from nubes.adapters.emulator.profile import Answer, EventResult, Frame, Profile, default_bucket, error_frame
from nubes.core.app import App
from nubes.core.request import Request
from nubes.core.response import Response

_AGW_413 = b'{"message":"Request Entity Too Large"}'
_ALB = "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n</body>\r\n</html>\r\n"
_ALB_DOC = "docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-troubleshooting.html"

# Every answer a front end gives on its own, with where it comes from.
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
    # integration timeout 504 {"message": "Endpoint request timed out"}.
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
    # ALB with a Lambda target: body over 1 MB -> 413, failed function or response over 1 MB -> 502.
    ("aws-alb", "request_too_large"): Answer(413, _ALB.format("413 Request Entity Too Large").encode(), "text/html", _ALB_DOC),
    ("aws-alb", "function_error"): Answer(502, _ALB.format("502 Bad Gateway").encode(), "text/html", _ALB_DOC),
}

_LABELS = {"http": "aws (API Gateway HTTP API)", "rest": "aws (API Gateway REST API)", "alb": "aws (ALB)",
           "url": "aws (Function URL)"}
_FORMATS = {"http": "http", "rest": "rest", "alb": "alb", "url": "function_url"}


class AwsProfile(Profile):
    """Lambda behind API Gateway (HTTP API 2.0 by default, or REST), a Function URL, or an ALB."""

    name = "aws"
    figures = FIGURES
    answers = ANSWERS
    fronts: ClassVar[tuple[str, ...]] = ("http", "rest", "alb", "url")

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.front = settings.front
        self.fmt = _FORMATS[self.front]
        self.key = f"aws-{self.front}"
        self.gateway_timeout = {"http": self.figure("http_api.timeout_s"), "rest": self.figure("rest_api.timeout_s")}.get(self.front)

    @property
    def label(self) -> str:
        return _LABELS[self.front]

    @property
    def max_body(self) -> int:
        if self.settings.request_limit is not None:
            return self.settings.request_limit
        return int(self.figure("alb.body_bytes" if self.front == "alb" else "api_gateway.body_bytes"))

    @property
    def payload_limit(self) -> int:
        return self.settings.request_limit if self.settings.request_limit is not None else int(self.figure("payload_bytes"))

    @property
    def response_limit(self) -> int:
        return int(self.figure("alb.response_bytes" if self.front == "alb" else "payload_bytes"))

    def build_event(self, request: Request) -> dict[str, Any]:
        from nubes.adapters.aws import builders as events

        if self.front == "rest":
            return events.rest_api_event(request)
        if self.front == "alb":
            return events.alb_event(request, multi_value=True)
        if self.front == "url":
            return events.function_url_event(request)
        return events.http_api_event(request)

    def encode(self, request: Request, request_id: str) -> Frame | Response:
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

    def event_payload(self, kind: str, arg: str, *, request_id: str, bucket: str | None, size: int,
                      queue: str | None, home: str) -> Frame:
        from nubes.adapters.aws import builders as ev

        if kind == "object-created":
            event = ev.s3_put_event(bucket or default_bucket(home, "s3://"), arg, size)
        elif kind == "message":
            event = ev.sqs_event([arg], queue_arn=f"arn:aws:sqs:{ev.REGION}:{ev.ACCOUNT_ID}:{queue or 'nubes-queue'}")
        else:
            event = ev.schedule_event(arg)
        return {"op": "aws", "request_id": request_id}, json.dumps(event).encode("utf-8")

    def job_retry_delays(self, attempts: int) -> list[float]:
        """Lambda's asynchronous retries: at most two, one minute then two minutes later."""
        schedule = [self.figure("async.first_retry_delay_s"), self.figure("async.second_retry_delay_s")]
        return schedule[: max(0, min(attempts - 1, int(self.figure("async.retries"))))]

    def job_payload(self, app: Any, job_id: str, token: str, request_id: str) -> Frame:
        from nubes.core.job_runs import delivery

        return {"op": "aws", "request_id": request_id}, json.dumps(delivery(job_id, token)).encode()

    def event_result(self, meta: Mapping[str, Any], body: bytes) -> EventResult:
        if not meta.get("ok"):
            return super().event_result(meta, body)
        output = json.loads(body) if body else None
        failed = isinstance(output, Mapping) and bool(output.get("batchItemFailures"))
        return EventResult(not failed, output, "PartialBatchFailure" if failed else None)


class AwsTarget:
    """The worker side: the app behind ``nubes.adapters.aws.handler``, called as the Lambda runtime calls it."""

    def __init__(self, app: App, settings: Mapping[str, Any]) -> None:
        from nubes.adapters.aws import handler

        self.settings = settings
        self.handler = handler(app)  # the platform's architecture: the machine's (aws/context.py, emulated contexts)

    def invoke(self, meta: dict[str, Any], body: bytes) -> Frame:
        from nubes.adapters.aws.builders import LambdaContext

        context = LambdaContext(self.settings["function_name"], int(self.settings["memory"]),
                                float(meta.get("remaining", self.settings["timeout"])), meta.get("request_id"))
        try:
            result = self.handler(json.loads(body), context)
            data = json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except Exception as exc:  # the Lambda runtime reports it as a function error
            return error_frame(exc, meta.get("request_id"))
        return {"ok": True}, data
