"""Azure Functions adapter (Python v2 programming model): one nubes App as a ``FunctionApp``.

``function_app(app)`` returns an ``azure.functions.FunctionApp`` the Python worker indexes:

* one HTTP function, route ``{*path}``, every method nubes routes, anonymous by default. With
  ``host.json`` ``extensions.http.routePrefix = ""`` (see :func:`host_json`) the URL path *is* the
  app path; with another prefix pass ``route_prefix=`` so it is stripped. The query comes from the
  raw query string of the URL (the host joins repeated keys with ``,`` in ``req.params``).
* a blob trigger per Azure container that ``on_object_created`` routes watch (``store`` an
  ``az://`` URI, or the app's home store when that is ``az://`` and the route names no store);
  routes on ``s3://`` / ``gs://`` stores are skipped with a warning (they run on those clouds).
* a queue trigger per queue of ``on_message`` routes (Azure Storage queues need a name).
* a timer trigger per ``on_schedule`` name (its ``cron``, six-field NCRONTAB, is required).
* with job routes, the queue trigger ``nubes_jobs`` on the app's jobs queue (:mod:`.jobs`).

Blob and queue triggers follow the logical names of ``nubes.toml`` ``[deploy.azure.sources]`` /
``[deploy.azure.queues]`` (:mod:`nubes.core.triggers`).

One function per container / queue / schedule so a blob or message invokes exactly one function,
which calls :meth:`App.handle_event`: every matching handler runs once. Handler exceptions propagate
so Azure retries (blob receipts, queue ``maxDequeueCount`` then ``<queue>-poison``).

Malformed input never raises: an HTTP request the adapter cannot read (``method=None``, a URL that
does not parse, text that is not valid Unicode) is a 400 problem, a failure of the adapter itself a
500 problem; a blob, message or timer it cannot read is logged (``unreadable event``) and consumed,
since a retry cannot make it readable.

Known limits of the platform (documented, not hidden):

* The host hands the worker request headers as a map: repeated request headers arrive joined with
  ``,`` in one value. Response headers are a map too, so nubes joins repeated response headers with
  ``, `` itself; ``Set-Cookie`` is the exception: each one goes through the worker's cookie list.
  The worker parses those with ``http.cookies.SimpleCookie``: a cookie it cannot parse is dropped,
  so the adapter logs a warning naming it.
  The host writes those cookies back with ASP.NET Core, which may percent-encode values again:
  keep cookie values to cookie-token characters (unverified here: Core Tools cannot run).
* A response without ``content-type`` gets ``application/octet-stream`` (the worker always sets one).
* Paths under ``/admin`` and ``/runtime`` are reserved by the Functions host.
* A blob trigger hands the blob's *contents* to the worker although nubes passes only metadata
  to the handler, so very large blobs cost memory and time before the handler runs.
  ``blob_source="EventGrid"`` lowers trigger latency; it does not change that.
* A blob trigger watches its container at the routes' common prefix; blobs that match no route
  are logged (``no handler``) and not raised, so Azure neither retries nor poisons them.
"""

import os
import platform as _platform
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.decorators.core import AuthLevel, BlobSource

from nubes.adapters.azure.conversion import (
    _is_az,
    _split_az,
    message_event,
    object_created_event,
    scheduled_event,
    to_func_response,
    to_nubes_request,
)
from nubes.adapters.azure.limits import FIGURES
from nubes.adapters.azure.triggers import queue_problem
from nubes.core.app import App, new_request_id, problem_response
from nubes.core.events import EventRoute, Platform
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.errors import ConfigError, HTTPError, NoHandler, UnknownEvent

__all__ = ["HTTP_FUNCTION", "JOBS_FUNCTION", "function_app", "host_json", "message_event", "object_created_event", "scheduled_event",
           "to_func_response", "to_nubes_request", "write_project"]

HTTP_FUNCTION = "nubes_http"
JOBS_FUNCTION = "nubes_jobs"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
HTTP_TIMEOUT_S = FIGURES["http_timeout_s"].value  # the front end cuts HTTP responses at 230 s whatever functionTimeout says
DEFAULT_TIMEOUT_S = FIGURES["default_timeout_s"].value  # Consumption plan default functionTimeout (max 10 min)
EXTENSION_BUNDLE = {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
_TIMESPAN = re.compile(r"^\d{1,2}:\d{2}:\d{2}$")


# -- the FunctionApp ------------------------------------------------------------------------------
class _Runtime:
    """Per-process facts of one function app: platform description, cold start, deadlines."""

    def __init__(self, timeout: float, memory_mb: int | None = None) -> None:
        self.timeout = float(timeout)
        self.memory_mb = memory_mb
        self._cold = True
        self._lock = threading.Lock()

    def platform(self) -> Platform:
        with self._lock:
            cold, self._cold = self._cold, False
        env = os.environ
        memory = env.get("WEBSITE_MEMORY_LIMIT_MB") or env.get("NUBES_MEMORY_MB")
        return Platform(
            provider="azure",
            function_name=env.get("WEBSITE_SITE_NAME"),
            memory_mb=int(memory) if memory and memory.isdigit() else self.memory_mb,
            region=env.get("REGION_NAME"),
            architecture=_architecture(),
            cold_start=cold,
            emulated="WEBSITE_INSTANCE_ID" not in env,
        )

    def deadline(self, http: bool) -> float:
        return time.monotonic() + (min(self.timeout, HTTP_TIMEOUT_S) if http else self.timeout)


def _architecture() -> str:
    machine = _platform.machine().lower()
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)


def _request_id(context: func.Context | None) -> str | None:
    rid = getattr(context, "invocation_id", None)
    return str(rid) if rid else None


def _problem(status: int, detail: str, rid: str) -> Response:
    response = problem_response(HTTPError(status, detail), Request("GET", "/"), rid)
    response.headers["x-nubes-request-id"] = rid
    return response


def _unreadable_request(app: App, exc: Exception, rid: str | None) -> Response:
    """The 400 answer to an ``HttpRequest`` that is no readable request (the reason is logged)."""
    rid = rid or new_request_id()
    if isinstance(exc, HTTPError):  # what nubes.Request refuses to carry
        app.log.bind(request_id=rid).warning("unreadable request", adapter="azure", detail=exc.detail)
        return _problem(400, f"the request cannot be read: {exc.detail}", rid)
    app.log.bind(request_id=rid).exception("unreadable request", adapter="azure")
    return _problem(400, "the request cannot be read", rid)


def _unreadable(app: App, context: func.Context | None, trigger: str, exc: Exception, what: Any) -> None:
    """Log a blob / message / timer the adapter cannot read; it is consumed, not retried."""
    detail = str(exc) if isinstance(exc, UnknownEvent) else f"{type(exc).__name__} reading the trigger input"
    app.log.bind(request_id=_request_id(context) or "-").error(
        "unreadable event", adapter="azure", trigger=trigger, detail=detail, event_excerpt=repr(what)[:2000])


def function_app(
    app: App,
    *,
    connection: str = "AzureWebJobsStorage",
    auth_level: AuthLevel | str = AuthLevel.ANONYMOUS,
    route_prefix: str = "",
    timeout: float = DEFAULT_TIMEOUT_S,
    blob_source: str | None = None,
    memory_mb: int | None = None,
) -> func.FunctionApp:
    """Build the ``FunctionApp`` that serves ``app`` on Azure Functions (see the module docstring).

    ``connection`` names the app setting with the storage connection for blob and queue triggers;
    ``auth_level`` is the HTTP function's level (anonymous, function or admin); ``route_prefix``
    must match host.json's ``extensions.http.routePrefix``; ``timeout`` is the app's
    ``functionTimeout`` in seconds (the handlers' deadline; HTTP is capped at 230 s);
    ``blob_source="EventGrid"`` makes blob triggers Event Grid based; ``memory_mb`` states the
    instance memory when the environment does not (the emulator's ``--memory``). Raises
    :class:`ConfigError` for event routes Azure cannot bind.
    """
    if not isinstance(app, App):
        raise ConfigError(f"function_app needs a nubes.App, not {type(app).__name__}")
    level = _auth_level(auth_level)
    source = _blob_source(blob_source)
    runtime = _Runtime(timeout, memory_mb)
    fa = func.FunctionApp(http_auth_level=level)
    names = _Names()

    def nubes_http(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        rid = _request_id(context)
        try:
            request = to_nubes_request(req, route_prefix=route_prefix)
        except Exception as exc:
            return to_func_response(_unreadable_request(app, exc, rid))
        try:
            response = app.handle(request, request_id=rid, deadline=runtime.deadline(True), platform=runtime.platform())
            return to_func_response(response, log=app.log)
        except Exception:  # a failure of the adapter itself (App.handle does not raise)
            rid = rid or new_request_id()
            app.log.bind(request_id=rid).exception("azure adapter failed")
            return to_func_response(_problem(500, f"the server failed to answer; quote request id {rid} when reporting this", rid))

    _register(fa, nubes_http, names.take(HTTP_FUNCTION),
              fa.route(route="{*path}", methods=list(HTTP_METHODS), auth_level=level))

    for container, plan in _blob_plans(app).items():
        fn = _blob_function(app, runtime, plan)
        _register(fa, fn, names.take(f"blob_{container}"),
                  fa.blob_trigger(arg_name="blob", path=plan.path, connection=connection, source=source))
    from nubes.adapters.azure.jobs import has_jobs, jobs_function, jobs_queue
    from nubes.core import triggers

    bound = triggers.read(app, "azure")
    for queue in _group(app, "message", lambda r: _queue_of(r, bound)):
        _register(fa, _queue_function(app, runtime, queue), names.take(f"queue_{queue}"),
                  fa.queue_trigger(arg_name="msg", queue_name=queue, connection=connection))
    if has_jobs(app):
        _register(fa, jobs_function(app, runtime, _request_id), names.take(JOBS_FUNCTION),
                  fa.queue_trigger(arg_name="msg", queue_name=jobs_queue(app), connection=connection))
    for schedule, routes in _group(app, "schedule", lambda r: r.schedule or "").items():
        cron = _cron_of(schedule, routes)
        _register(fa, _timer_function(app, runtime, schedule), names.take(f"timer_{schedule}"),
                  fa.timer_trigger(arg_name="timer", schedule=cron))
    return fa


def _auth_level(value: AuthLevel | str) -> AuthLevel:
    if isinstance(value, AuthLevel):
        return value
    try:
        return AuthLevel(str(value).lower())
    except ValueError:
        raise ConfigError(f"auth_level {value!r}: use one of {[a.value for a in AuthLevel]}") from None


def _blob_source(value: str | None) -> BlobSource | None:
    if value is None:
        return None
    for member in BlobSource:
        if value.lower() == member.value.lower():
            return member
    raise ConfigError(f"blob_source {value!r}: use one of {[b.value for b in BlobSource]}")


class _Names:
    """Valid (letter first, letters/digits/_ only, <= 100 chars), unique Azure function names."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, wanted: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", wanted).strip("_") or "fn"
        if not base[0].isalpha():
            base = "f_" + base
        base = base[:100]
        name, n = base, 2
        while name.lower() in self.used:
            name, n = f"{base}_{n}", n + 1
        self.used.add(name.lower())
        return name


def _register(fa: func.FunctionApp, fn: Callable[..., Any], name: str, trigger: Callable[[Any], Any]) -> None:
    fn.__name__ = fn.__qualname__ = name
    fa.function_name(name=name)(trigger(fn))


# -- blob triggers --------------------------------------------------------------------------------
class _BlobPlan:
    """One container's trigger: its ``path`` and the store the app's home is in, if it is here."""

    def __init__(self, container: str) -> None:
        self.container = container
        self.prefixes: list[str] = []
        self.home_path: str | None = None  # the home store's path inside this container ("" = root)

    @property
    def path(self) -> str:
        common = os.path.commonprefix(self.prefixes) if self.prefixes else ""  # noqa: RUF071 - a string prefix, not a path
        escaped = common.replace("{", "{{").replace("}", "}}")
        return f"{self.container}/{escaped}{{name}}"


def _blob_plans(app: App) -> dict[str, _BlobPlan]:
    from nubes.core import triggers

    plans: dict[str, _BlobPlan] = {}
    home = app.storage_uri
    bound = triggers.read(app, "azure")
    for route in app.event_routes:
        if route.kind != "object_created":
            continue
        if route.source is not None:
            store = bound.source_uri(route.source)
            if store is None:
                app.log.warning("azure: on_object_created source is not bound; not bound to a blob trigger (bind it under "
                                "[deploy.azure.sources] in nubes.toml)", route=route.name, source=route.source)
                continue
        else:
            store = route.store or (home if _is_az(home) else None)
        if store is None:
            app.log.warning("azure: on_object_created route with no store and a home store that is not az://; "
                            "not bound to a blob trigger", route=route.name, home=home)
            continue
        if not _is_az(store):
            app.log.warning("azure: on_object_created route watches a store on another cloud; not bound here",
                            route=route.name, store=store)
            continue
        container, path = _split_az(store)
        if not container:
            raise ConfigError(f"on_object_created route {route.name}: store {store!r} names no container; "
                              "use az://CONTAINER[/PREFIX]")
        plan = plans.setdefault(container, _BlobPlan(container))
        plan.prefixes.append(path + route.prefix)
        if _is_az(home):
            home_container, home_path = _split_az(home)
            if home_container == container:
                plan.home_path = home_path
    return plans


def _blob_function(app: App, runtime: _Runtime, plan: _BlobPlan) -> Callable[..., None]:
    home = app.storage_uri if plan.home_path else None

    def on_blob(blob: func.InputStream, context: func.Context) -> None:
        try:
            event = object_created_event(blob, home_store=home)
        except Exception as exc:
            return _unreadable(app, context, "blob", exc, blob)
        try:
            app.handle_event(event, request_id=_request_id(context), deadline=runtime.deadline(False),
                             platform=runtime.platform())
        except NoHandler:
            # The trigger watches the routes' common prefix, so blobs between their prefixes reach us;
            # handle_event logged it, and raising would make Azure retry and then poison the blob.
            return

    return on_blob


# -- queue triggers -------------------------------------------------------------------------------
def _queue_of(route: EventRoute, bound: Any) -> str:
    """The Storage queue ``route`` listens to: its logical name's binding, else the name itself."""
    queue = route.queue
    if queue in (None, "*"):
        raise ConfigError(
            f"on_message route {route.name} listens to any queue, but an Azure queue trigger binds one named "
            "queue; name it: @app.on_message('orders')")
    real = bound.queue_name(queue)
    why = queue_problem(real)
    if why:
        raise ConfigError(f"on_message route {route.name}: {real!r} is not a valid Azure Storage queue name "
                          f"({why}); bind the logical name {queue!r} to one under [deploy.azure.queues] in nubes.toml")
    return str(real)


def _queue_function(app: App, runtime: _Runtime, queue: str) -> Callable[..., None]:
    def on_message(msg: func.QueueMessage, context: func.Context) -> None:
        try:
            message = message_event(msg, queue=queue)
        except Exception as exc:
            return _unreadable(app, context, "queue", exc, msg)
        app.handle_event(message, request_id=_request_id(context), deadline=runtime.deadline(False), platform=runtime.platform())

    return on_message


# -- timer triggers -------------------------------------------------------------------------------
def _cron_of(schedule: str, routes: list[EventRoute]) -> str:
    crons = {r.cron for r in routes if r.cron}
    missing = [r.name for r in routes if not r.cron]
    if missing:
        raise ConfigError(
            f"on_schedule {schedule!r} ({', '.join(missing)}) has no cron; an Azure timer is declared with its "
            "schedule: @app.on_schedule('nightly', cron='0 0 2 * * *') (six fields: sec min hour day month weekday)")
    if len(crons) > 1:
        raise ConfigError(f"on_schedule {schedule!r} is registered with different crons {sorted(crons)}; "
                          "one schedule name fires on one timetable")
    cron = crons.pop().strip()
    if not (len(cron.split()) == 6 or _TIMESPAN.match(cron) or (cron.startswith("%") and cron.endswith("%"))):
        raise ConfigError(f"on_schedule {schedule!r}: cron {cron!r} is not a six-field NCRONTAB expression "
                          "(sec min hour day month weekday), e.g. '0 */5 * * * *'")
    return cron


def _timer_function(app: App, runtime: _Runtime, schedule: str) -> Callable[..., None]:
    def on_timer(timer: func.TimerRequest, context: func.Context) -> None:
        try:
            scheduled = scheduled_event(timer, name=schedule)
        except Exception as exc:
            return _unreadable(app, context, "timer", exc, timer)
        app.handle_event(scheduled, request_id=_request_id(context), deadline=runtime.deadline(False), platform=runtime.platform())

    return on_timer


def _group(app: App, kind: str, key: Callable[[EventRoute], str]) -> dict[str, list[EventRoute]]:
    groups: dict[str, list[EventRoute]] = {}
    for route in app.event_routes:
        if route.kind == kind:
            groups.setdefault(key(route), []).append(route)
    return groups


# -- deployment files -----------------------------------------------------------------------------
def host_json(app: App | None = None, *, route_prefix: str = "", timeout: float | None = None) -> dict[str, Any]:
    """The ``host.json`` for a nubes app: version 2.0, the extension bundle (blob, queue, timer
    bindings) and ``extensions.http.routePrefix`` (``""``: URL paths are app paths)."""
    doc: dict[str, Any] = {
        "version": "2.0",
        "extensionBundle": dict(EXTENSION_BUNDLE),
        "extensions": {"http": {"routePrefix": route_prefix.strip("/")}},
        "logging": {"logLevel": {"default": "Information"}},
    }
    if app is not None:
        from nubes.adapters.azure.jobs import has_jobs

        if has_jobs(app):  # a job's queue message is tried as many times as the job has attempts
            doc["extensions"]["queues"] = {"maxDequeueCount": app.jobs.max_attempts}
    if timeout is not None:
        seconds = int(timeout)
        doc["functionTimeout"] = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return doc


def write_project(
    app_spec: str,
    folder: str | os.PathLike[str],
    *,
    connection: str = "AzureWebJobsStorage",
    auth_level: str = "anonymous",
    route_prefix: str = "",
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Path]:
    """Write ``host.json`` and ``function_app.py`` for ``app_spec`` into ``folder`` (each atomically).

    The entry text is :func:`nubes.adapters.azure.packaging.entry_text`, the one ``nubes build --cloud
    azure`` writes into a full zip-deploy package (with the distributions; see :mod:`.packaging`).

    The app is loaded and its FunctionApp indexed first, so a route Azure cannot bind fails here
    (:class:`ConfigError`) rather than at deployment. A file spec must lie inside ``folder`` (it is
    deployed with it) and is written relative to the entry script. Returns the paths written.
    """
    from nubes.core.loader import load_app

    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"write_project: {str(root)!r} is not a folder")
    app = load_app(app_spec)
    function_app(app, connection=connection, auth_level=auth_level, route_prefix=route_prefix,
                 timeout=timeout).get_functions()
    target, sep, attr = app_spec.rpartition(":")
    if not sep or "/" in attr or "\\" in attr or len(target) == 1:
        target, attr = app_spec, ""
    if target.endswith(".py") or "/" in target or os.sep in target:
        source = Path(target).resolve()
        try:
            relative = source.relative_to(root.resolve())
        except ValueError:
            raise ConfigError(f"write_project: {target} is outside {str(root)!r}; the app file must be deployed "
                              "with the project, so put it in that folder") from None
        if relative.as_posix() == "function_app.py":
            raise ConfigError("write_project: the app file is named function_app.py, the name of the entry script "
                              "Azure loads; rename it (e.g. app.py)")
        spec = f'str(Path(__file__).with_name({relative.as_posix()!r}))' if len(relative.parts) == 1 else (
            f'str(Path(__file__).parent / {relative.as_posix()!r})')
        spec = f'{spec} + {":" + attr!r}' if attr else spec
    else:
        spec = repr(app_spec)
    import json

    from nubes.adapters.azure.packaging import entry_text

    host = json.dumps(host_json(app, route_prefix=route_prefix, timeout=timeout), indent=2) + "\n"
    entry = entry_text(spec, storage=None, connection=connection, auth_level=str(_auth_level(auth_level).value),
                       route_prefix=route_prefix, timeout=float(timeout))
    return [_write_atomic(root / "host.json", host), _write_atomic(root / "function_app.py", entry)]


def _write_atomic(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
