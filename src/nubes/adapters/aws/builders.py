"""AWS Lambda payloads built from nubes objects, shaped like the real ones, and results decoded back.

Every builder returns a fresh dict with the keys the real payload has (checked in the tests
against ``sam local generate-event`` renders in ``tests/data/aws``):

* :func:`rest_api_event`: API Gateway REST API proxy event (payload 1.0). ``path`` is stage-less
  and still percent-encoded, ``requestContext.path`` has the stage (or, through a custom
  ``domain``, the ``base_path``); ``headers`` / ``queryStringParameters`` keep the last value of a
  repeated name, the ``multiValue*`` maps every value (query values decoded).
* :func:`http_api_event`: HTTP API event (payload 2.0). ``rawPath`` is percent-decoded (as HTTP
  APIs deliver it) and starts with a named stage; repeated headers are joined with ``,``, the
  ``Cookie`` header becomes ``cookies``.
* :func:`function_url_event`: Function URL event: payload 2.0 on ``<id>.lambda-url.<region>.on.aws``,
  ``rawPath`` as sent, stage and route ``$default``.
* :func:`alb_event`: ALB target-group event; query keys and values stay percent-encoded;
  ``multi_value`` selects the multi-value headers mode.
* :func:`s3_put_event`, :func:`sqs_event`, :func:`schedule_event`: S3 notification, SQS batch,
  EventBridge scheduled rule.

Bodies of text media types travel as text, others base64 with ``isBase64Encoded``.
:class:`LambdaContext` stands in for the runtime's context object; :func:`to_response` decodes a
Lambda proxy result back into a :class:`~nubes.Response` the way the front end would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time as _time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote_plus

from nubes.adapters.aws.http import is_text
from nubes.core.request import Request
from nubes.core.response import Response

Format = Literal["rest", "http", "function_url", "alb"]

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
API_ID = "abcdef1234"
URL_ID = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"
SOURCE_IP = "203.0.113.7"

__all__ = [
    "BUILDERS",
    "Format",
    "LambdaContext",
    "alb_event",
    "function_url_event",
    "http_api_event",
    "rest_api_event",
    "s3_put_event",
    "schedule_event",
    "sqs_event",
    "to_response",
]


# -- pieces ------------------------------------------------------------------------------------
def _now(when: datetime | None) -> datetime:
    return (when or datetime.now(UTC)).astimezone(UTC)


def _body(request: Request) -> tuple[str | None, bool]:
    if not request.body:
        return None, False
    if is_text(request.headers.get("content-type")):
        try:
            return request.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(request.body).decode("ascii"), True


def _grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def _headers(request: Request, host: str, source_ip: str) -> list[tuple[str, str]]:
    """The request's headers plus what the AWS front end adds (host, x-forwarded-*, content-length)."""
    pairs = request.headers.multi_items()
    names = {name for name, _ in pairs}
    extra = [("host", host)] if "host" not in names else []
    if request.body and "content-length" not in names:
        extra.append(("content-length", str(len(request.body))))
    extra += [("x-forwarded-for", source_ip), ("x-forwarded-port", "443"), ("x-forwarded-proto", "https")]
    return pairs + [p for p in extra if p[0] not in names]


def _raw_query_pairs(query_string: str) -> list[tuple[str, str]]:
    """The query as sent: keys and values still percent-encoded (what ALB passes on)."""
    pairs = []
    for part in query_string.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs


def _clf(when: datetime) -> str:
    return when.strftime("%d/%b/%Y:%H:%M:%S +0000")


# -- HTTP --------------------------------------------------------------------------------------
def rest_api_event(
    request: Request,
    *,
    stage: str = "prod",
    resource: str = "/{proxy+}",
    path_parameters: Mapping[str, str] | None = None,
    domain: str | None = None,
    base_path: str | None = None,
    api_id: str = API_ID,
    region: str = REGION,
    account_id: str = ACCOUNT_ID,
    source_ip: str = SOURCE_IP,
    time: datetime | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API proxy event for ``request`` on ``stage``.

    Without ``domain`` the call came to ``<api_id>.execute-api.<region>.amazonaws.com/<stage>``;
    with it, through that custom domain, whose ``base_path`` mapping (if any) stays in ``path``.
    ``path_parameters`` default to ``{"proxy": <path>}`` for the ``/{proxy+}`` resource.
    """
    when = _now(time)
    prefix = "/" + base_path.strip("/") if base_path and base_path.strip("/") else ""
    path = prefix + request.raw_path
    host = domain or f"{api_id}.execute-api.{region}.amazonaws.com"
    headers = _headers(request, host, source_ip)
    multi_headers = _grouped(headers)
    query = _grouped(request.query.multi_items())
    if path_parameters is None and resource == "/{proxy+}":
        path_parameters = {"proxy": request.path.lstrip("/")}
    body, b64 = _body(request)
    user_agent = request.headers.get("user-agent")
    return {
        "body": body,
        "resource": resource,
        "path": path,
        "httpMethod": request.method,
        "isBase64Encoded": b64,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": None,
        "headers": {k: v[-1] for k, v in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "requestContext": {
            "accountId": account_id,
            "resourceId": "abc123",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTime": _clf(when),
            "requestTimeEpoch": int(when.timestamp() * 1000),
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "accessKey": None,
                "sourceIp": source_ip,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
            },
            "path": path if domain else f"/{stage}{path}",
            "resourcePath": resource,
            "httpMethod": request.method,
            "apiId": api_id,
            "protocol": "HTTP/1.1",
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
        },
    }


def _v2_event(
    request: Request,
    *,
    raw_path: str,
    domain: str,
    api_id: str,
    stage: str,
    route_key: str,
    account_id: str,
    source_ip: str,
    time: datetime | None,
) -> dict[str, Any]:
    when = _now(time)
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in _headers(request, domain, source_ip):
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        elif name in headers:
            headers[name] = f"{headers[name]},{value}"
        else:
            headers[name] = value
    event: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": raw_path, "rawQueryString": request.query_string}
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if request.query_string:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in _grouped(request.query.multi_items()).items()}
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": request.headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": stage,
        "time": _clf(when),
        "timeEpoch": int(when.timestamp() * 1000),
    }
    body, b64 = _body(request)
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = b64
    return event


def http_api_event(
    request: Request,
    *,
    stage: str = "$default",
    route_key: str = "$default",
    path_parameters: Mapping[str, str] | None = None,
    domain: str | None = None,
    api_id: str = API_ID,
    region: str = REGION,
    account_id: str = ACCOUNT_ID,
    source_ip: str = SOURCE_IP,
    time: datetime | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API event (payload 2.0) for ``request`` on ``stage``.

    On the execute-api domain a named stage leads ``rawPath``; through a custom ``domain`` it does
    not. ``route_key`` is ``$default`` or ``"METHOD /path/{param}"`` (then pass ``path_parameters``).
    """
    stage_prefix = f"/{stage}" if stage != "$default" and domain is None else ""
    event = _v2_event(
        request,
        raw_path=stage_prefix + request.path,
        domain=domain or f"{api_id}.execute-api.{region}.amazonaws.com",
        api_id=api_id,
        stage=stage,
        route_key=route_key,
        account_id=account_id,
        source_ip=source_ip,
        time=time,
    )
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    return event


def function_url_event(
    request: Request,
    *,
    url_id: str = URL_ID,
    region: str = REGION,
    account_id: str = ACCOUNT_ID,
    source_ip: str = SOURCE_IP,
    time: datetime | None = None,
) -> dict[str, Any]:
    """A Lambda Function URL event (payload 2.0) for ``request`` on ``https://<url_id>.lambda-url.<region>.on.aws``."""
    return _v2_event(
        request,
        raw_path=request.raw_path,
        domain=f"{url_id}.lambda-url.{region}.on.aws",
        api_id=url_id,
        stage="$default",
        route_key="$default",
        account_id=account_id,
        source_ip=source_ip,
        time=time,
    )


def alb_event(
    request: Request,
    *,
    multi_value: bool = False,
    target_group_arn: str = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT_ID}:targetgroup/nubes/0123456789abcdef",
    source_ip: str = SOURCE_IP,
) -> dict[str, Any]:
    """An ALB target-group event for ``request``; ``multi_value`` as when the target group has
    multi-value headers on (else a repeated header or query key keeps its last value)."""
    headers = _grouped(_headers(request, "nubes-alb-1234567890.us-east-1.elb.amazonaws.com", source_ip))
    query = _grouped(_raw_query_pairs(request.query_string))
    body, b64 = _body(request)
    event: dict[str, Any] = {
        "requestContext": {"elb": {"targetGroupArn": target_group_arn}},
        "httpMethod": request.method,
        "path": request.raw_path,
    }
    if multi_value:
        event["multiValueQueryStringParameters"] = query
        event["multiValueHeaders"] = headers
    else:
        event["queryStringParameters"] = {k: v[-1] for k, v in query.items()}
        event["headers"] = {k: v[-1] for k, v in headers.items()}
    event["body"] = body or ""
    event["isBase64Encoded"] = b64
    return event


BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "rest": rest_api_event,
    "http": http_api_event,
    "function_url": function_url_event,
    "alb": alb_event,
}


# -- other events ------------------------------------------------------------------------------
def s3_put_event(
    bucket: str,
    key: str,
    size: int = 0,
    etag: str = "d41d8cd98f00b204e9800998ecf8427e",
    *,
    region: str = REGION,
    time: datetime | None = None,
    event_name: str = "ObjectCreated:Put",
) -> dict[str, Any]:
    """An S3 notification with one record; the key URL-encoded as S3 writes it (space as ``+``)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": _now(time).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "eventName": event_name,
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": SOURCE_IP},
                "responseElements": {
                    "x-amz-request-id": "C3D13FE58DE4C810",
                    "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "nubes",
                    "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag, "sequencer": "0055AED6DCD90281E5"},
                },
            }
        ]
    }


def sqs_event(
    messages: Iterable[str | bytes | Mapping[str, Any]], queue_arn: str = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:MyQueue"
) -> dict[str, Any]:
    """An SQS batch: each message is a body (str/bytes) or ``{"body", "attributes", "id"}`` (string attributes)."""
    region = queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else REGION
    sent = str(int(_time.time() * 1000))
    records: list[dict[str, Any]] = []
    for item in messages:
        spec: Mapping[str, Any] = item if isinstance(item, Mapping) else {"body": item}
        body = spec.get("body", "")
        text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
        record: dict[str, Any] = {
            "messageId": spec.get("id") or str(uuid.uuid4()),
            "receiptHandle": base64.b64encode(uuid.uuid4().bytes * 3).decode("ascii"),
            "body": text,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": sent,
                "SenderId": ACCOUNT_ID,
                "ApproximateFirstReceiveTimestamp": sent,
            },
            "messageAttributes": {
                name: {"stringValue": str(value), "stringListValues": [], "binaryListValues": [], "dataType": "String"}
                for name, value in (spec.get("attributes") or {}).items()
            },
            "md5OfBody": hashlib.md5(text.encode("utf-8")).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        if queue_arn.endswith(".fifo"):
            record["attributes"].update(
                {
                    "SequenceNumber": str(10**19 + len(records)),
                    "MessageGroupId": str(spec.get("group", "1")),
                    "MessageDeduplicationId": record["messageId"],
                }
            )
        records.append(record)
    return {"Records": records}


def schedule_event(
    rule_name: str, time: datetime | None = None, *, region: str = REGION, account_id: str = ACCOUNT_ID
) -> dict[str, Any]:
    """An EventBridge scheduled-rule event for the rule ``rule_name`` firing at ``time``."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": _now(time).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account_id}:rule/{rule_name}"],
        "detail": {},
    }


# -- context and results -----------------------------------------------------------------------
class LambdaContext:
    """A stand-in for the Lambda runtime's context object (``emulated`` tells nubes it is one)."""

    emulated = True

    def __init__(
        self,
        function_name: str = "nubes-app",
        memory_mb: int = 1024,
        timeout_s: float = 30.0,
        request_id: str | None = None,
        *,
        region: str = REGION,
        account_id: str = ACCOUNT_ID,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = _time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - _time.monotonic()) * 1000))


def to_response(result: Any, fmt: Format) -> Response:
    """Decode a Lambda proxy result the way the ``fmt`` front end does, into a :class:`~nubes.Response`.

    Base64 bodies are decoded; REST ``headers`` and ``multiValueHeaders`` are merged (the
    multi-value list wins for a name in both); ``cookies`` (2.0) become ``Set-Cookie`` headers. A 2.0
    result without ``statusCode`` is a 200 JSON body; a REST/ALB one is a 502, as AWS answers.
    """
    if fmt not in BUILDERS:
        raise ValueError(f"unknown format {fmt!r}; use one of {sorted(BUILDERS)}")
    if not isinstance(result, Mapping) or "statusCode" not in result:
        if fmt in ("http", "function_url"):
            return Response(result if isinstance(result, str) else json.dumps(result), 200, media_type="application/json")
        return Response(b'{"message": "Internal server error"}', 502, media_type="application/json")
    multi = dict(result.get("multiValueHeaders") or {}) if fmt != "http" and fmt != "function_url" else {}
    pairs: list[tuple[str, str]] = [
        (name, str(value)) for name, value in (result.get("headers") or {}).items() if name.lower() not in {k.lower() for k in multi}
    ]
    pairs += [(name, str(value)) for name, values in multi.items() for value in values]
    pairs += [("set-cookie", cookie) for cookie in result.get("cookies") or ()]
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    return Response(data, int(result["statusCode"]), pairs)
