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
:class:`~nubes.errors.NoHandler` (configure a dead-letter topic). An event nubes cannot read (another
type, a field missing or of the wrong type) does not raise: it is logged (``unreadable event``,
with an excerpt) and acknowledged, since redelivery cannot make it readable; served with the HTTP
signature, the answer is a 400 problem.

Malformed HTTP requests never raise either: a request nubes cannot read (a method that is not a
token, text that is not valid Unicode, a body over 32 MiB while it streams) is a 400 / 413 problem,
and a failure of the adapter itself a 500 problem.

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

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from nubes.adapters.gcp.cloud_events import (
    PUBSUB_PUBLISHED,
    SCHEDULE_ATTRIBUTE,
    STORAGE_FINALIZED,
    SUPPORTED_EVENT_TYPES,
    cloud_event_from_flask,
    cloud_event_id,
    event_from_cloud_event,
    parse_time,
)
from nubes.adapters.gcp.limits import FIGURES
from nubes.adapters.problems import adapter_problem
from nubes.core.app import App, new_request_id, problem_response, valid_request_id
from nubes.core.events import Platform, Scheduled, machine_architecture
from nubes.core.job_runs import delivery_from_http
from nubes.core.logs import excerpt
from nubes.core.request import Request, forwarded_scheme
from nubes.core.response import Response
from nubes.errors import BackendMissing, ConfigError, HTTPError, NoHandler, UnknownEvent

try:
    import flask
    from werkzeug.exceptions import RequestEntityTooLarge
except ImportError as exc:  # pragma: no cover - the gcp extra brings Flask with functions-framework
    raise BackendMissing("nubes.adapters.gcp.functions needs functions-framework (and Flask): pip install 'nubes[gcp]'") from exc

SCHEDULE_PATH = "/_nubes/schedule/"
"""``POST SCHEDULE_PATH + NAME`` fires schedule NAME (with ``http_function(app, schedules=True)``)."""
MAX_REQUEST_BYTES = int(FIGURES["request_bytes"].value)
MAX_RESPONSE_BYTES = int(FIGURES["response_bytes"].value)
"""Cloud Functions 2nd gen: 32 MiB per HTTP request and per response."""

__all__ = [  # the event names are defined in .cloud_events and re-exported here
    "MAX_REQUEST_BYTES", "MAX_RESPONSE_BYTES", "PUBSUB_PUBLISHED", "SCHEDULE_ATTRIBUTE", "SCHEDULE_PATH", "STORAGE_FINALIZED",
    "SUPPORTED_EVENT_TYPES", "cloud_event_from_flask", "cloud_event_function", "current_platform", "event_from_cloud_event",
    "http_function", "parse_time", "request_from_flask", "request_id_from_headers", "response_to_flask",
]

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
    platforms = _Platforms(memory_mb)

    def nubes_http(request: flask.Request) -> flask.Response:
        started = time.monotonic()
        platform = platforms.take()
        rid: str | None = None
        try:
            rid = request_id_from_headers(request.headers)
            response = _serve(app, request, rid, _deadline(started), platform, schedules)
            return response if isinstance(response, flask.Response) else response_to_flask(response)
        except Exception:  # a failure of the adapter itself, never of a handler (App.handle does not raise)
            rid = rid or new_request_id()
            app.log.bind(request_id=rid).exception("gcp adapter failed")
            return response_to_flask(adapter_problem(500, f"the server failed to answer; quote request id {rid} when reporting this", rid))

    nubes_http.__doc__ = f"Cloud Functions HTTP target for nubes app {app.name!r}."
    return nubes_http


def cloud_event_function(app: App, *, memory_mb: int | None = None) -> CloudEventTarget:
    """A functions-framework CloudEvent target for ``app``'s event handlers: ``on_event = cloud_event_function(app)``.

    Serve it with ``--signature-type cloudevent`` (what Cloud Functions uses for event triggers);
    served with the default HTTP signature it parses the CloudEvent from the request itself.
    Raises what :meth:`App.handle_event` raises; an unreadable event is logged and acknowledged
    (with the HTTP signature: a 400 problem), never raised.
    """
    if not isinstance(app, App):
        raise ConfigError(f"cloud_event_function needs a nubes.App, not {type(app).__name__}")
    platforms = _Platforms(memory_mb)

    def nubes_cloud_event(cloud_event: Any) -> Any:
        started = time.monotonic()
        if flask.has_request_context():
            flask.g.nubes_event = True  # from here on, a failure is nubes' or a handler's, not the framework's parsing
        platform = platforms.take()
        http_signature = isinstance(cloud_event, flask.Request)
        rid = _execution_id()
        try:
            if http_signature:
                cloud_event = cloud_event_from_flask(cloud_event)
            rid = rid or cloud_event_id(cloud_event)
            event = event_from_cloud_event(cloud_event)
        except UnknownEvent as exc:
            rid = rid or new_request_id()
            app.log.bind(request_id=rid).error("unreadable event", adapter="gcp", detail=str(exc), event_excerpt=excerpt(cloud_event))
            if http_signature:
                return response_to_flask(adapter_problem(400, f"this request carries no CloudEvent nubes can read: {exc}", rid))
            return None  # acknowledged: redelivering it cannot make it readable
        app.handle_event(event, request_id=rid, deadline=_deadline(started), platform=platform)
        return "OK" if http_signature else None

    nubes_cloud_event.__doc__ = f"Cloud Functions CloudEvent target for nubes app {app.name!r}."
    _guard_framework()
    return nubes_cloud_event


def _guard_framework() -> None:
    """Inside functions-framework's ``create_app`` (which runs the user file in its app context),
    answer what its CloudEvent parsing raises on a malformed request (before nubes runs: an empty or
    non-JSON structured body, a legacy event of the wrong shape) with a 400 problem, not a 500 crash."""
    if not flask.has_app_context():
        return
    try:
        import functions_framework
    except ImportError:  # pragma: no cover - the gcp extra brings it
        return
    framework_app: flask.Flask = flask.current_app._get_current_object()  # type: ignore[attr-defined]
    if getattr(functions_framework.errorhandler, "__self__", None) is framework_app:  # inside create_app, not elsewhere
        framework_app.register_error_handler(Exception, _framework_error)


def _framework_error(exc: Exception) -> Any:
    from werkzeug.exceptions import HTTPException, InternalServerError

    if isinstance(exc, HTTPException):
        return exc
    if flask.g.get("nubes_event"):  # a handler failed: the framework's crash answer, so the event is retried
        return str(InternalServerError()), 500, {"X-Google-Status": "crash"}
    rid = request_id_from_headers(flask.request.headers) or new_request_id()
    detail = f"{type(exc).__name__}: {exc}"[:300]
    logging.getLogger("nubes").warning("unreadable event", extra={"nubes": {"adapter": "gcp", "request_id": rid, "detail": detail}})
    return response_to_flask(adapter_problem(400, "the request carries no CloudEvent nubes can read", rid))


# -- HTTP ---------------------------------------------------------------------------------------
def _serve(
    app: App, request: flask.Request, rid: str | None, deadline: float | None, platform: Platform, schedules: bool
) -> Response | flask.Response:
    rid = rid or new_request_id()
    log = app.log.bind(request_id=rid)
    length = request.content_length
    if length is not None and length > MAX_REQUEST_BYTES:
        log.warning("request too large", adapter="gcp", size=length, limit=MAX_REQUEST_BYTES)
        return _too_large(f"request body of {length:,} bytes is over the {MAX_REQUEST_BYTES:,}-byte limit of Cloud Functions",
                          rid, drain=length <= 2 * MAX_REQUEST_BYTES)
    try:
        nubes_request = request_from_flask(request)
    except RequestEntityTooLarge:  # a body without a length, streaming past the limit
        log.warning("request too large", adapter="gcp", limit=MAX_REQUEST_BYTES)
        return _too_large(f"request body is over the {MAX_REQUEST_BYTES:,}-byte limit of Cloud Functions", rid, drain=False)
    except HTTPError as exc:  # what nubes.Request refuses to carry
        log.warning("unreadable request", adapter="gcp", detail=exc.detail)
        return adapter_problem(exc.status, f"the request cannot be read: {exc.detail}", rid)
    except Exception:
        log.exception("unreadable request", adapter="gcp")
        return adapter_problem(400, "the request cannot be read", rid)
    job = delivery_from_http(nubes_request.method, nubes_request.path, nubes_request.body)
    if job is not None:
        response = _run_job(app, job, rid, deadline, platform)
    elif schedules and nubes_request.path.startswith(SCHEDULE_PATH):
        response = _fire_schedule(app, nubes_request, rid, deadline, platform)
    else:
        response = app.handle(nubes_request, request_id=rid, deadline=deadline, platform=platform)
    if len(response.body) > MAX_RESPONSE_BYTES:
        rid = response.headers.get("x-nubes-request-id") or rid
        app.log.bind(request_id=rid).error("response too large", size=len(response.body), limit=MAX_RESPONSE_BYTES)
        return adapter_problem(
            500,
            f"the response of {len(response.body):,} bytes is over the {MAX_RESPONSE_BYTES:,}-byte limit of Cloud Functions;"
            " page the result or write it to storage and return its location",
            rid,
            request=nubes_request,
        )
    return response


def _too_large(detail: str, rid: str, *, drain: bool) -> Response | flask.Response:
    """The 413 problem. ``drain=False`` makes it a streamed response, which functions-framework
    does not follow by reading the rest of the body into memory (its ``read_request`` hook): the
    server closes the connection instead."""
    problem = adapter_problem(413, detail, rid)
    if drain:
        return problem
    out = flask.Response(iter([problem.body]), status=413)
    out.headers.clear()
    for name, value in problem.headers.multi_items():
        out.headers.add(name, value)
    out.headers["connection"] = "close"
    return out


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
        when = parse_time(request.headers.get("x-cloudscheduler-scheduletime")) or datetime.now(UTC)
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
    """The :class:`~nubes.Request` for a functions-framework (Flask) request: raw path, raw query, all headers, body.

    The body is read with a 32 MiB limit, also when it streams without a length
    (:class:`~werkzeug.exceptions.RequestEntityTooLarge` past it: werkzeug's own limit would cut
    such a body short silently); what :class:`~nubes.Request` refuses raises its 400
    :class:`~nubes.errors.HTTPError`.
    """
    request.max_content_length = MAX_REQUEST_BYTES + 1  # one byte over the limit tells a cut body from a whole one
    body = request.get_data(cache=True)
    if len(body) > MAX_REQUEST_BYTES:
        raise RequestEntityTooLarge()
    return Request(
        request.method,
        _raw_path(request),
        query=_decode(request.query_string),
        headers=list(request.headers.items()),
        body=body,
        scheme=forwarded_scheme(request.headers, request.scheme),  # Google's front end terminates TLS
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


def request_id_from_headers(headers: Any) -> str | None:
    """``Function-Execution-Id``, else the ``TRACE/SPAN`` of ``X-Cloud-Trace-Context``, else None.

    A client can send either header: a value that is not 1-128 visible ASCII characters is ignored
    (:func:`nubes.core.app.valid_request_id`, which ``App.handle`` applies again).
    """
    for name, cut in (("Function-Execution-Id", False), ("X-Cloud-Trace-Context", True)):
        value = headers.get(name)
        if not isinstance(value, str):
            continue
        valid = valid_request_id((value.split(";", 1)[0] if cut else value).strip())
        if valid is not None:
            return valid
    return None


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
        architecture=machine_architecture(),
        cold_start=cold_start,
        emulated=not env.get("K_SERVICE"),
    )


class _Platforms:
    """One target's :class:`~nubes.Platform`, read from the environment at its first invocation and
    reused (the function's environment does not change while the process lives); only ``cold_start``
    varies, taken once per process."""

    def __init__(self, memory_mb: int | None) -> None:
        self.memory_mb = memory_mb
        self._pair: tuple[Platform, Platform] | None = None  # (warm, cold)

    def take(self) -> Platform:
        pair = self._pair
        if pair is None:
            warm = current_platform(memory_mb=self.memory_mb)
            pair = self._pair = (warm, dataclasses.replace(warm, cold_start=True))
        return pair[_take_cold_start()]


def _take_cold_start() -> bool:
    global _cold
    if not _cold:  # every warm call
        return False
    with _cold_lock:
        cold, _cold = _cold, False
    return cold


def _deadline(started: float) -> float | None:
    for name in ("FUNCTION_TIMEOUT_SEC", "CLOUD_RUN_TIMEOUT_SECONDS"):
        seconds = _number(os.environ.get(name), float)
        if seconds and seconds > 0:
            return started + float(seconds)
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

