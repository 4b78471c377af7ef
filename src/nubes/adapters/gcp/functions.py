"""Google Cloud Functions (2nd gen) adapter: functions-framework targets for HTTP and CloudEvents.

A deployment's ``main.py`` names the targets::

    from nubes.adapters.gcp import cloud_event_function, http_function
    from sales import app

    main = http_function(app)               # --trigger-http             --entry-point main
    on_event = cloud_event_function(app)    # --trigger-topic / --trigger-bucket  --entry-point on_event

and ``functions-framework --target main --source main.py`` serves the same file locally.

HTTP: the framework hands over the path after the function's name (``/fn/items/3`` arrives as
``/items/3``); the raw path (percent-encoding kept), the raw query string, every header and the
body bytes become a :class:`~nubes.Request`. WSGI joins a repeated request header into one
comma-separated value, so a handler sees ``X-Tag: a,b`` (RFC 9110 list semantics), as it would
on Google. Response headers go out one line each (several ``Set-Cookie`` included). Requests and
responses over 32 MiB get the answer Cloud Functions would give (413, 500) with a problem body.

Events (CloudEvents from Eventarc): ``google.cloud.storage.object.v1.finalized`` becomes
:class:`~nubes.ObjectCreated` (``store="gs://BUCKET"``, ``etag`` the object's generation, as the
GCS store's etags are); ``google.cloud.pubsub.topic.v1.messagePublished`` becomes
:class:`~nubes.Message` whose ``queue`` is the topic's short name (the subscription's when the
event names no topic: Eventarc generates subscription names, the topic is the name you chose).
A handler's exception propagates, so the invocation fails and Pub/Sub / Eventarc retry it; so does
:class:`~nubes.errors.NoHandler` (configure a dead-letter topic). Other types raise
:class:`~nubes.errors.UnknownEvent`.

Cloud Scheduler, by the nubes convention:

* Pub/Sub target: a message whose attributes include ``nubes-schedule=NAME`` is delivered as
  :class:`~nubes.Scheduled` ``(NAME, publish time)``, e.g. ``gcloud scheduler jobs create pubsub
  nightly --topic nubes-schedules --message-body '{}' --attributes nubes-schedule=nightly``.
* HTTP target, when ``http_function(app, schedules=True)``: ``POST /_nubes/schedule/NAME`` fires
  schedule NAME at ``X-CloudScheduler-ScheduleTime`` (else now). It is off by default because
  anyone who can call the function could fire schedules: turn it on only for a function that
  requires authentication (Scheduler sends an OIDC token).

Jobs: ``POST /_nubes/jobs/{id}/run`` carrying a job's delivery (a Cloud Tasks task, :mod:`.jobs`)
runs one attempt of the job instead of a route (200 done, 503 retry, 403 wrong token).

Every invocation carries a :class:`~nubes.Platform`: ``function_name`` from ``K_SERVICE`` (else
``FUNCTION_TARGET``), ``memory_mb`` from ``FUNCTION_MEMORY_MB``, ``region`` from
``FUNCTION_REGION`` / ``GOOGLE_CLOUD_REGION``, ``cold_start`` for the first invocation of the
process, ``emulated`` when ``K_SERVICE`` is unset (not on Google). The deadline comes from
``FUNCTION_TIMEOUT_SEC`` or ``CLOUD_RUN_TIMEOUT_SECONDS`` when set; the request id from the
``Function-Execution-Id`` header (the framework always sets one), else ``X-Cloud-Trace-Context``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import platform as _platform
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from nubes.adapters.gcp.limits import FIGURES
from nubes.core.app import App, problem_response
from nubes.errors import BackendMissing, ConfigError, HTTPError, NoHandler, UnknownEvent
from nubes.core.events import Event, Message, ObjectCreated, Platform, Scheduled
from nubes.core.job_runs import delivery_from_http
from nubes.core.request import Request
from nubes.core.response import Response

try:
    import flask
except ImportError as exc:  # pragma: no cover - the gcp extra brings Flask with functions-framework
    raise BackendMissing("nubes.adapters.gcp.functions needs functions-framework (and Flask): pip install 'nubes[gcp]'") from exc

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
SUPPORTED_EVENT_TYPES: tuple[str, ...] = (STORAGE_FINALIZED, PUBSUB_PUBLISHED)
SCHEDULE_ATTRIBUTE = "nubes-schedule"
"""The Pub/Sub message attribute that marks a Cloud Scheduler message; its value is the schedule name."""
SCHEDULE_PATH = "/_nubes/schedule/"
"""``POST SCHEDULE_PATH + NAME`` fires schedule NAME (with ``http_function(app, schedules=True)``)."""
MAX_REQUEST_BYTES = int(FIGURES["request_bytes"].value)
MAX_RESPONSE_BYTES = int(FIGURES["response_bytes"].value)
"""Cloud Functions 2nd gen: 32 MiB per HTTP request and per response."""

HTTPTarget = Callable[[flask.Request], flask.Response]
CloudEventTarget = Callable[[Any], "str | None"]

_cold = True
_cold_lock = threading.Lock()


def http_function(app: App, *, schedules: bool = False, memory_mb: int | None = None) -> HTTPTarget:
    """A functions-framework HTTP target serving ``app``: ``main = http_function(app)``.

    Never raises: every failure is a problem+json response. ``schedules=True`` also accepts
    Cloud Scheduler's ``POST /_nubes/schedule/NAME`` (see the module doc for why it is off by default).
    ``memory_mb`` states the function's memory when the environment does not (the emulator's ``--memory``).
    """
    if not isinstance(app, App):
        raise ConfigError(f"http_function needs a nubes.App, not {type(app).__name__}")

    def nubes_http(request: flask.Request) -> flask.Response:
        started = time.monotonic()
        platform = current_platform(cold_start=_take_cold_start(), memory_mb=memory_mb)
        rid = request_id_from_headers(request.headers)
        try:
            response = _serve(app, request, rid, _deadline(started), platform, schedules)
        except Exception:  # a failure of the adapter itself, never of a handler (App.handle does not raise)
            rid = rid or os.urandom(16).hex()
            app.log.bind(request_id=rid).exception("gcp adapter failed", path=request.path)
            detail = f"the server failed to answer; quote request id {rid} when reporting this"
            response = problem_response(HTTPError(500, detail), Request(request.method or "GET", "/"), rid)
            response.headers["x-nubes-request-id"] = rid
        return response_to_flask(response)

    nubes_http.__doc__ = f"Cloud Functions HTTP target for nubes app {app.name!r}."
    return nubes_http


def cloud_event_function(app: App, *, memory_mb: int | None = None) -> CloudEventTarget:
    """A functions-framework CloudEvent target for ``app``'s event handlers: ``on_event = cloud_event_function(app)``.

    Serve it with ``--signature-type cloudevent`` (what Cloud Functions uses for event triggers);
    served with the default HTTP signature it parses the CloudEvent from the request itself.
    Raises what :meth:`App.handle_event` raises, and :class:`~nubes.errors.UnknownEvent`.
    """
    if not isinstance(app, App):
        raise ConfigError(f"cloud_event_function needs a nubes.App, not {type(app).__name__}")

    def nubes_cloud_event(cloud_event: Any) -> str | None:
        started = time.monotonic()
        platform = current_platform(cold_start=_take_cold_start(), memory_mb=memory_mb)
        http_signature = isinstance(cloud_event, flask.Request)
        if http_signature:
            cloud_event = cloud_event_from_flask(cloud_event)
        attributes, _ = _split_cloud_event(cloud_event)
        rid = _execution_id() or str(attributes.get("id") or "") or None
        try:
            event = event_from_cloud_event(cloud_event)
        except UnknownEvent as exc:
            app.log.bind(request_id=rid or "-").warning("unknown event", type=attributes.get("type"), detail=str(exc))
            raise
        app.handle_event(event, request_id=rid, deadline=_deadline(started), platform=platform)
        return "OK" if http_signature else None

    nubes_cloud_event.__doc__ = f"Cloud Functions CloudEvent target for nubes app {app.name!r}."
    return nubes_cloud_event


# -- HTTP ---------------------------------------------------------------------------------------
def _serve(
    app: App, request: flask.Request, rid: str | None, deadline: float | None, platform: Platform, schedules: bool
) -> Response:
    length = request.content_length
    if length is not None and length > MAX_REQUEST_BYTES:
        bare = Request(request.method, _raw_path(request))
        return _problem(413, f"request body of {length:,} bytes is over the {MAX_REQUEST_BYTES:,}-byte limit of Cloud Functions", rid, bare)
    nubes_request = request_from_flask(request)
    if len(nubes_request.body) > MAX_REQUEST_BYTES:
        detail = f"request body of {len(nubes_request.body):,} bytes is over the {MAX_REQUEST_BYTES:,}-byte limit of Cloud Functions"
        return _problem(413, detail, rid, nubes_request)
    job = delivery_from_http(nubes_request.method, nubes_request.path, nubes_request.body)
    if job is not None:
        response = _run_job(app, job, rid or os.urandom(16).hex(), deadline, platform)
    elif schedules and nubes_request.path.startswith(SCHEDULE_PATH):
        response = _fire_schedule(app, nubes_request, rid or os.urandom(16).hex(), deadline, platform)
    else:
        response = app.handle(nubes_request, request_id=rid, deadline=deadline, platform=platform)
    if len(response.body) > MAX_RESPONSE_BYTES:
        rid = response.headers.get("x-nubes-request-id") or rid
        app.log.bind(request_id=rid).error("response too large", size=len(response.body), limit=MAX_RESPONSE_BYTES)
        return _problem(
            500,
            f"the response of {len(response.body):,} bytes is over the {MAX_RESPONSE_BYTES:,}-byte limit of Cloud Functions;"
            " page the result or write it to storage and return its location",
            rid,
            nubes_request,
        )
    return response


def _problem(status: int, detail: str, rid: str | None, request: Request | None = None) -> Response:
    rid = rid or os.urandom(16).hex()
    response = problem_response(HTTPError(status, detail), request or Request("POST", "/"), rid)
    response.headers["x-nubes-request-id"] = rid
    return response


def _run_job(app: App, job: tuple[str, str], rid: str, deadline: float | None, platform: Platform) -> Response:
    """One attempt of a job a Cloud Tasks task delivers (:mod:`.jobs`): 200 when it needs no other
    attempt, 503 (Cloud Tasks retries) when it failed or another runner holds it, 403 for a wrong token."""
    job_id, token = job
    outcome = app.run_job(job_id, token=token, platform=platform, deadline=deadline, request_id=rid)
    status = {"done": 200, "refused": 403}.get(outcome, 503)
    response = Response.json({"job": job_id, "outcome": outcome}, status=status)
    response.headers["x-nubes-request-id"] = rid
    return response


def _fire_schedule(app: App, request: Request, rid: str, deadline: float | None, platform: Platform) -> Response:
    name = request.path[len(SCHEDULE_PATH):]
    if not name:
        response = problem_response(HTTPError(404, f"name the schedule: POST {SCHEDULE_PATH}NAME"), request, rid)
    elif request.method != "POST":
        response = problem_response(HTTPError(405, "fire a schedule with POST", headers={"allow": "POST"}), request, rid)
    else:
        when = parse_time(request.headers.get("x-cloudscheduler-scheduletime")) or datetime.now(timezone.utc)
        try:
            results = app.handle_event(Scheduled(name, when), request_id=rid, deadline=deadline, platform=platform)
        except NoHandler as exc:
            response = problem_response(HTTPError(404, str(exc)), request, rid)
        except Exception:  # logged by handle_event; a non-2xx makes Cloud Scheduler retry per its retry config
            detail = f"schedule {name!r} failed; quote request id {rid} when reporting this"
            response = problem_response(HTTPError(500, detail), request, rid)
        else:
            response = Response.json({"schedule": name, "time": when, "handlers": len(results), "request_id": rid})
    response.headers["x-nubes-request-id"] = rid
    return response


def request_from_flask(request: flask.Request) -> Request:
    """The :class:`~nubes.Request` for a functions-framework (Flask) request: raw path, raw query, all headers, body."""
    return Request(
        request.method,
        _raw_path(request),
        query=_decode(request.query_string),
        headers=list(request.headers.items()),
        body=request.get_data(cache=True),
        scheme=_scheme(request),
    )


def response_to_flask(response: Response) -> flask.Response:
    """The Flask response for a :class:`~nubes.Response`: status, every header line as is, body bytes."""
    out = flask.Response(response.body, status=response.status)
    out.headers.clear()  # no Flask default content-type: exactly the nubes headers
    for name, value in response.headers.multi_items():
        out.headers.add(name, value)
    if "content-length" not in response.headers and response.status >= 200 and response.status not in (204, 304):
        out.headers["content-length"] = str(len(response.body))
    return out


def _raw_path(request: flask.Request) -> str:
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    path = raw.split("?", 1)[0].split("#", 1)[0]
    if path and not path.startswith("/"):
        path = urlsplit(path).path  # absolute-form request target
    if path and not request.script_root and unquote(path) == request.path:
        return path
    return quote(request.path, safe="/!$&'()*+,;=:@")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _scheme(request: flask.Request) -> str:
    """The client's scheme: Google's front end terminates TLS and says so in X-Forwarded-Proto / Forwarded."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",", 1)[0].strip().lower()
    if not proto:
        for part in request.headers.get("Forwarded", "").split(",", 1)[0].split(";"):
            key, _, value = part.strip().partition("=")
            if key.lower() == "proto":
                proto = value.strip('"').lower()
    return proto if proto in ("http", "https") else request.scheme


def request_id_from_headers(headers: Mapping[str, str]) -> str | None:
    """``Function-Execution-Id``, else the ``TRACE/SPAN`` of ``X-Cloud-Trace-Context``, else None."""
    execution_id = (headers.get("Function-Execution-Id") or "").strip()
    if execution_id:
        return execution_id
    trace = (headers.get("X-Cloud-Trace-Context") or "").split(";", 1)[0].strip()
    return trace or None


# -- events -------------------------------------------------------------------------------------
def event_from_cloud_event(cloud_event: Any) -> Event:
    """The nubes event for a CloudEvent (a ``cloudevents`` object or its structured-mode dict).

    Raises :class:`~nubes.errors.UnknownEvent` for a type nubes does not handle or a malformed payload.
    """
    attributes, data = _split_cloud_event(cloud_event)
    kind = attributes.get("type")
    if kind == STORAGE_FINALIZED:
        return _object_created(attributes, _json_data(data, kind))
    if kind == PUBSUB_PUBLISHED:
        return _pubsub_event(attributes, _json_data(data, kind))
    raise UnknownEvent(
        f"cannot handle CloudEvent type {kind!r} (source {attributes.get('source')!r}); "
        f"nubes on Cloud Functions handles {', '.join(SUPPORTED_EVENT_TYPES)}"
    )


def cloud_event_from_flask(request: flask.Request) -> Any:
    """The CloudEvent in a request (binary or structured mode, or a legacy background event the framework converts)."""
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http

    try:
        return from_http(request.headers, request.get_data())
    except GenericException as exc:
        try:
            from functions_framework.event_conversion import background_event_to_cloud_event

            return background_event_to_cloud_event(request)
        except Exception:
            raise UnknownEvent(f"the request carries no CloudEvent ({exc}); expected one of {', '.join(SUPPORTED_EVENT_TYPES)}") from None


def _split_cloud_event(cloud_event: Any) -> tuple[dict[str, Any], Any]:
    if hasattr(cloud_event, "get_attributes") and hasattr(cloud_event, "data"):
        return dict(cloud_event.get_attributes()), cloud_event.data
    if isinstance(cloud_event, Mapping):
        attributes = {k: v for k, v in cloud_event.items() if k not in ("data", "data_base64")}
        if "data_base64" in cloud_event:
            try:
                return attributes, base64.b64decode(cloud_event["data_base64"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise UnknownEvent("the CloudEvent's data_base64 is not base64") from None
        return attributes, cloud_event.get("data")
    raise UnknownEvent(f"expected a CloudEvent, got {type(cloud_event).__name__}")


def _json_data(data: Any, kind: str) -> Mapping[str, Any]:
    if isinstance(data, (bytes, bytearray, str)):
        try:
            data = json.loads(data)
        except ValueError:
            raise UnknownEvent(f"{kind} event data is not JSON") from None
    if not isinstance(data, Mapping):
        raise UnknownEvent(f"{kind} event data is {type(data).__name__}, expected a JSON object")
    return data


def _object_created(attributes: Mapping[str, Any], data: Mapping[str, Any]) -> ObjectCreated:
    bucket = data.get("bucket") or _after(attributes.get("source"), "/buckets/")
    key = data.get("name") or str(attributes.get("subject") or "").removeprefix("objects/")
    if not bucket or not key:
        raise UnknownEvent(f"{STORAGE_FINALIZED} event names no bucket or object (source {attributes.get('source')!r})")
    try:
        size = int(data["size"]) if data.get("size") not in (None, "") else None
    except (TypeError, ValueError):
        raise UnknownEvent(f"{STORAGE_FINALIZED} event has a non-numeric size {data.get('size')!r}") from None
    generation = data.get("generation")
    etag = str(generation) if generation not in (None, "") else data.get("etag")
    when = parse_time(data.get("timeCreated")) or parse_time(attributes.get("time"))
    return ObjectCreated(store=f"gs://{bucket}", key=str(key), size=size, etag=etag, time=when)


def _pubsub_event(attributes: Mapping[str, Any], data: Mapping[str, Any]) -> Message | Scheduled:
    message = data.get("message")
    if not isinstance(message, Mapping):
        raise UnknownEvent(f"{PUBSUB_PUBLISHED} event has no message object")
    attrs = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
    published = parse_time(message.get("publishTime") or message.get("publish_time")) or parse_time(attributes.get("time"))
    if SCHEDULE_ATTRIBUTE in attrs:
        return Scheduled(attrs[SCHEDULE_ATTRIBUTE], published or datetime.now(timezone.utc))
    try:
        body = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise UnknownEvent(f"{PUBSUB_PUBLISHED} message data is not base64") from None
    message_id = message.get("messageId") or message.get("message_id") or attributes.get("id") or ""
    queue = _after(attributes.get("source"), "/topics/") or _after(data.get("subscription"), "/subscriptions/") or ""
    return Message(id=str(message_id), body=body, attributes=attrs, queue=queue)


def _after(value: Any, marker: str) -> str | None:
    """The path segment after ``marker`` in ``value`` (``//pubsub.../topics/T`` -> ``T``)."""
    _, found, rest = str(value or "").partition(marker)
    if not found:
        return None
    return rest.split("/", 1)[0] or None


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or offset, any fraction) as an aware datetime; None if absent or invalid."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        when = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


# -- where this runs ----------------------------------------------------------------------------
def current_platform(*, cold_start: bool = False, memory_mb: int | None = None) -> Platform:
    """This process's :class:`~nubes.Platform` on Cloud Functions, read from the environment
    (``memory_mb`` is used when ``FUNCTION_MEMORY_MB`` is not set)."""
    env = os.environ
    return Platform(
        provider="gcp",
        function_name=env.get("K_SERVICE") or env.get("FUNCTION_TARGET") or None,
        memory_mb=_number(env.get("FUNCTION_MEMORY_MB"), int) or memory_mb,
        region=env.get("FUNCTION_REGION") or env.get("GOOGLE_CLOUD_REGION") or None,
        architecture=_architecture(),
        cold_start=cold_start,
        emulated=not env.get("K_SERVICE"),
    )


def _take_cold_start() -> bool:
    global _cold
    with _cold_lock:
        cold, _cold = _cold, False
    return cold


def _deadline(started: float) -> float | None:
    for name in ("FUNCTION_TIMEOUT_SEC", "CLOUD_RUN_TIMEOUT_SECONDS"):
        seconds = _number(os.environ.get(name), float)
        if seconds and seconds > 0:
            return started + seconds
    return None


def _execution_id() -> str | None:
    if flask.has_request_context():
        return request_id_from_headers(flask.request.headers)
    return None


def _number(value: str | None, kind: Callable[[str], Any]) -> Any:
    try:
        return kind(value) if value else None
    except ValueError:
        return None


def _architecture() -> str:
    machine = _platform.machine().lower()
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)


__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "PUBSUB_PUBLISHED",
    "SCHEDULE_ATTRIBUTE",
    "SCHEDULE_PATH",
    "STORAGE_FINALIZED",
    "SUPPORTED_EVENT_TYPES",
    "cloud_event_from_flask",
    "cloud_event_function",
    "current_platform",
    "event_from_cloud_event",
    "http_function",
    "parse_time",
    "request_from_flask",
    "request_id_from_headers",
    "response_to_flask",
]
