"""The cloud-agnostic application: routes, dispatch, errors as problem documents, one log line per call."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC
from typing import TYPE_CHECKING, Any, TypeVar

from nubes.core import encoding
from nubes.core.binding import bind, signature_params
from nubes.core.context import Context
from nubes.core.event_handlers import EventHandlers
from nubes.core.extensions import Extensible
from nubes.core.logs import BoundLog, logger
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.core.routing import PathTemplate, Route, Router, _Options
from nubes.errors import ConfigError, HTTPError, StorageError
from nubes.storage.current import CURRENT_IO

if TYPE_CHECKING:
    from nubes.core.asgi import ASGIApp
    from nubes.core.auth import Auth
    from nubes.core.events import EventRoute, Platform
    from nubes.core.extensions import Extension
    from nubes.core.hooks import Invocation, InvocationHook
    from nubes.core.job_runs import JobRun
    from nubes.core.jobs import Jobs
    from nubes.storage.base import ObjectStore

F = TypeVar("F", bound=Callable[..., Any])

INTERNAL_PREFIX = "/_nubes/"
JOB_PATH = "/_nubes/jobs/{job_id}"
DEFAULT_STORAGE = "file://.nubes"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class App(Extensible, EventHandlers):
    """A nubes application: the same object runs locally, on AWS Lambda, Cloud Functions and Azure.

    ``storage`` is the URI of the app's home store, where it keeps its own state (default:
    ``NUBES_STORAGE`` from the environment, else ``file://.nubes`` beside the file that creates the app).
    ``openapi=False`` removes ``GET /_nubes/openapi.json``. ``max_rows`` caps the rows of a table a
    route may answer with (per route: ``max_rows=``).

    Features attach as extensions (:mod:`nubes.core.extensions`); by default the data, ML and metering
    extensions, which read these options: ``catalog`` (a ``catalog.yaml`` path; default: the one beside
    the app's file), ``sql_endpoint`` (``True`` or a :class:`~nubes.data.sql_endpoint.SqlEndpoint`;
    default ``NUBES_SQL_ENDPOINT``) adds ``POST /_nubes/sql``, ``models=False`` removes the model
    routes. ``extensions=[...]`` replaces the defaults; ``app.include(ext)`` adds one.

    ``auth`` (:mod:`nubes.core.auth`): an :class:`~nubes.core.auth.Auth`, ``False`` (no authentication,
    every route open) or ``None`` (default: ``[auth]`` in ``nubes.toml`` and the environment, read on
    the first request). Built-in ``/_nubes/`` routes need the ``admin`` role unless opened.
    """

    def __init__(
        self,
        name: str,
        *,
        storage: str | None = None,
        openapi: bool = True,
        title: str | None = None,
        version: str = "0.1.0",
        description: str | None = None,
        catalog: str | os.PathLike[str] | None = None,
        sql_endpoint: bool | Any = None,
        max_rows: int = 100_000,
        models: bool = True,
        extensions: Iterable[Extension] | None = None,
        auth: Auth | bool | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("App needs a name, e.g. nubes.App('sales')")
        self.name = name
        self.title = title or name
        self.version = version
        self.description = description
        self.router = Router()
        self.event_routes: list[EventRoute] = []
        self.max_rows = max_rows
        caller = sys._getframe(1).f_globals.get("__file__")
        self.root: str = os.path.dirname(os.path.abspath(caller)) if caller else os.getcwd()
        """The directory of the file that created the app (the working directory if none)."""
        self.options: dict[str, Any] = {"catalog": catalog, "sql_endpoint": sql_endpoint, "models": models}
        """Options for the extensions, by name (each extension documents the ones it reads)."""
        self._stores: dict[str, ObjectStore] = {}
        self.hooks: list[InvocationHook] = []
        self._storage_uri = storage
        self._storage: ObjectStore | None = None
        self._lock = threading.RLock()
        self.log = BoundLog(logger(), app=name)
        self.extensions: dict[str, Extension] = {}
        self._attributes: dict[str, Any] = {}
        self._lazy: dict[str, Callable[[App], Any]] = {}
        self._context_attributes: dict[str, Any] = {}
        self.context_class: type[Context] = Context
        if auth is not None and auth is not False:
            from nubes.core.auth import Auth

            if not isinstance(auth, Auth):  # anything else would be replaced by the config: an open door
                raise ConfigError(f"App(auth={auth!r}): use a nubes.core.auth.Auth (or a subclass), "
                                  "False (no authentication) or None ([auth] in nubes.toml)")
        self._auth_spec = auth
        self._auth: Auth | None = None
        self._needs: dict[Route, Any] = {}
        self._jobs: Jobs | None = None
        if openapi:
            self._internal("/_nubes/openapi.json", ["GET"], _openapi_route, summary="This API as OpenAPI 3.1")
        if extensions is None:
            from nubes.core.extensions import defaults

            extensions = defaults()
        for extension in extensions:
            self.include(extension)

    # -- registration ----------------------------------------------------------------------
    def route(
        self,
        path: str,
        methods: Iterable[str] = ("GET",),
        *,
        name: str | None = None,
        summary: str | None = None,
        tags: Iterable[str] = (),
        **options: Any,
    ) -> Callable[[F], F]:
        """Register the decorated function for ``methods`` on ``path`` (see :mod:`nubes.core.routing`)."""
        if path.startswith(INTERNAL_PREFIX):
            raise ConfigError(f"route {path!r}: paths under {INTERNAL_PREFIX} are reserved for nubes itself")
        if isinstance(methods, str):
            methods = [methods]

        def decorator(fn: F) -> F:
            self._add(path, methods, fn, name=name, summary=summary, tags=tuple(tags), options=options)
            return fn

        return decorator

    def get(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route(path, ["GET"], **kw)

    def post(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route(path, ["POST"], **kw)

    def put(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route(path, ["PUT"], **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route(path, ["PATCH"], **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route(path, ["DELETE"], **kw)

    def job(self, path: str, methods: Iterable[str] = ("POST",), **kw: Any) -> Callable[[F], F]:
        """A route whose handler runs asynchronously: the caller gets 202 and a job to poll
        (:mod:`nubes.core.jobs`); the same as ``@app.post(path, job=True)``."""
        return self.route(path, methods, job=True, **kw)

    @property
    def jobs(self) -> Jobs:
        """The app's jobs (:class:`~nubes.core.jobs.Jobs`), opened on first use."""
        if self._jobs is None:
            with self._lock:
                if self._jobs is None:
                    from nubes.core.jobs import Jobs

                    self._jobs = Jobs(self)
        return self._jobs

    def run_job(self, job_id: str, *, platform: Platform | None = None, deadline: float | None = None,
                request_id: str | None = None, token: str | None = None) -> str:
        """Run one attempt of job ``job_id`` here, if no one else is: ``"done"`` (it finished, or had
        nothing to do), ``"retry"`` (the attempt failed and the job is queued for another), ``"busy"``
        (another runner holds it) or ``"refused"`` (``token``, from a delivery, is not the job's);
        see :mod:`nubes.core.job_runs`."""
        from nubes.core.job_runs import run_job

        return run_job(self, job_id, platform=platform, deadline=deadline, request_id=request_id, token=token)

    def _internal(self, path: str, methods: list[str], fn: Callable[..., Any], **kw: Any) -> None:
        self._add(path, methods, fn, internal=True, **kw)

    def _add(
        self,
        path: str,
        methods: Iterable[str],
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        summary: str | None = None,
        tags: tuple[str, ...] = (),
        options: dict[str, Any] | None = None,
        internal: bool = False,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"route {path!r}: the handler must be a function")
        upper = frozenset(m.upper() for m in methods)
        unknown = upper - _METHODS
        if unknown or not upper:
            raise ConfigError(f"route {path!r}: unknown HTTP method(s) {sorted(unknown)}; use {sorted(_METHODS)}")
        template = PathTemplate(path)
        where = f"route {'/'.join(sorted(upper))} {path} ({getattr(fn, '__qualname__', fn)})"
        if options and "auth" in options:
            from nubes.core.auth import requirement

            requirement(options["auth"], f"{where}: auth")  # a bad setting fails at import, not per request
        if options and options.get("job") and not any(r.path == JOB_PATH for r in self.router.routes):
            self._add_job_routes()
        params = signature_params(fn, template.names, where)
        import inspect

        doc = inspect.getdoc(fn) or ""
        first, _, rest = doc.partition("\n\n")
        self.router.add(
            Route(
                path=path,
                methods=upper,
                handler=fn,
                params=params,
                template=template,
                name=name or f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', repr(fn))}",
                summary=summary or (" ".join(first.split()) or None),
                description=rest.strip() or None,
                tags=tags,
                internal=internal,
                options=options or {},
            )
        )

    def _add_job_routes(self) -> None:
        from nubes.core.jobs import job_cancel, job_result, job_status

        # visible to the job's submitter and admins (checked per job), so open at the route level
        self._internal(JOB_PATH, ["GET"], job_status, summary="A job's status, progress and result", options={"auth": False})
        self._internal(JOB_PATH, ["DELETE"], job_cancel, summary="Cancel a queued job", options={"auth": False})
        self._internal(JOB_PATH + "/result", ["GET"], job_result, summary="A finished job's result", options={"auth": False})

    @property
    def routes(self) -> list[Route]:
        """The app's own routes in match order (nubes' built-in ``/_nubes/`` routes excluded)."""
        return [r for r in self.router.routes if not r.internal]

    # -- authentication ----------------------------------------------------------------------
    @property
    def auth(self) -> Auth:
        """The app's authentication settings (:mod:`nubes.core.auth`), resolved on first use."""
        if self._auth is None:
            with self._lock:
                if self._auth is None:
                    from nubes.core.auth import Auth, NoAuth

                    spec = self._auth_spec
                    self._auth = NoAuth() if spec is False else spec if isinstance(spec, Auth) else Auth.from_config(self.root)
        return self._auth

    def _authorize(self, route: Route, request: Request) -> Any:
        """The caller of ``request`` if ``route`` lets them in; raises the 401/403 HTTPError otherwise."""
        auth = self._auth or self.auth
        needs = self._needs
        if route in needs:
            needed = needs[route]
        else:
            needed = needs[route] = auth.requirement_for(route)
        return auth.check(request, needed)

    # -- storage ---------------------------------------------------------------------------
    @property
    def storage_uri(self) -> str:
        """The home store's URI; the default ``file://.nubes`` is resolved beside the app's file."""
        uri = self._storage_uri or os.environ.get("NUBES_STORAGE") or DEFAULT_STORAGE
        if uri == DEFAULT_STORAGE:
            from pathlib import Path

            uri = (Path(self.root) / ".nubes").as_uri()
        return uri

    @property
    def storage(self) -> ObjectStore:
        """The app's home object store, opened on first use."""
        if self._storage is None:
            with self._lock:
                if self._storage is None:
                    from nubes.storage import open as open_store

                    self._storage = open_store(self.storage_uri)
        return self._storage

    def open_store(self, uri: str) -> ObjectStore:
        """The store at ``uri``, opened once per warm instance and shared by its invocations."""
        store = self._stores.get(uri)
        if store is None:
            with self._lock:
                store = self._stores.get(uri)
                if store is None:
                    if uri.rstrip("/") == self.storage_uri.rstrip("/"):
                        store = self.storage
                    else:
                        from nubes.storage import open as open_store

                        store = open_store(uri)
                    self._stores[uri] = store
        return store

    # -- dispatch --------------------------------------------------------------------------
    def handle(
        self,
        request: Request,
        *,
        request_id: str | None = None,
        deadline: float | None = None,
        platform: Platform | None = None,
        job: JobRun | None = None,
    ) -> Response:
        """Answer one request. Never raises: every failure becomes a problem+json response.

        ``deadline`` is the monotonic time by which the provider stops the invocation;
        ``platform`` says where it runs (adapters pass both). ``request_id`` is used when it is
        1-128 visible ASCII characters (:func:`valid_request_id`), else a new one. ``job`` runs a job's stored request
        (see :meth:`run_job`): its handler is called as the submitter, instead of being queued.
        """
        started = time.perf_counter()
        rid = valid_request_id(request_id) or new_request_id()  # a header a client sent may carry it
        route: Route | None = None
        ctx: Context | None = None
        log = self.log.bind(request_id=rid)
        inv = self._begin(rid, "http", platform, started, request=request)
        token = CURRENT_IO.set(inv.io) if inv is not None else None
        try:
            try:
                route, values = self.router.match(request.method, request.raw_path)
                if inv is not None:
                    inv.route = route.path
                principal = job.principal if job is not None else self._authorize(route, request)
                if inv is not None:
                    inv.principal = principal
                kwargs = bind(route.params, request, values)
                encoding.check_query_format(request, query_format=route.query_format)  # before doing the work
                if job is None and route.options.get("job"):
                    response = self.jobs.submit(route, request, principal, platform, request_id=rid)
                else:
                    ctx = self.context_class(request, self, rid, log, deadline=deadline, route=route.path,
                                             platform=platform, options=route.options, principal=principal, job=job)
                    result = route.handler(ctx, **kwargs)
                    if hasattr(result, "__await__"):
                        result = run_awaitable(result)
                    response = encoding.encode(result, request, query_format=route.query_format,
                                               max_rows=route.options.get("max_rows", self.max_rows))
            except _Options as opt:
                response = Response(b"", 204, {"allow": opt.allow})
            except HTTPError as exc:
                response = problem_response(exc, request, rid)
            except StorageError as exc:  # the full message (store URI, key, local path) goes to the log only
                status = exc.http_status
                (log.exception if status >= 500 else log.warning)("storage error", route=route.path if route else None, error=str(exc))
                what = f"{type(exc).__name__}, key {exc.key!r}" if exc.key and status < 500 and "://" not in exc.key else type(exc).__name__
                detail = f"a storage operation failed ({what}); quote request id {rid} when reporting this"
                response = problem_response(HTTPError(status, detail), request, rid)
        except Exception:
            log.exception("unhandled exception", route=route.path if route else None, path=request.path)
            response = problem_response(
                HTTPError(500, f"the server failed to answer; quote request id {rid} when reporting this"),
                request,
                rid,
            )
        finally:
            if ctx is not None:
                self._finish(ctx, log)
            if token is not None:
                CURRENT_IO.reset(token)
        response.headers["x-nubes-request-id"] = rid
        if request.method == "HEAD":
            response.headers.setdefault("content-length", str(len(response.body)))
            response.body = b""
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        fields = self._end(inv, response.status, duration_ms, response, log) if inv is not None else {}
        log.info(
            "invocation",
            method=request.method,
            path=request.path,
            route=route.path if route else None,
            status=response.status,
            duration_ms=duration_ms,
            **fields,
        )
        return response

    def _begin(self, rid: str, kind: str, platform: Platform | None, started: float, **what: Any) -> Invocation | None:
        """An :class:`Invocation` for the hooks (None when there are none), after their ``begin``."""
        hooks = [h for h in self.hooks if getattr(h, "enabled", True)]
        if not hooks:
            return None
        from datetime import datetime

        from nubes.core.hooks import Invocation
        from nubes.storage.base import IOStats

        if platform is None:
            from nubes.core.events import LOCAL

            platform = LOCAL
        inv = Invocation(self, rid, kind, platform, started, datetime.now(UTC), IOStats(), **what)
        inv.state["hooks"] = hooks
        for hook in hooks:
            try:
                hook.begin(inv)
            except Exception:
                self.log.exception("invocation hook failed in begin", request_id=rid, hook=type(hook).__name__)
        return inv

    def _end(self, inv: Invocation, status: int, duration_ms: float, response: Response | None, log: BoundLog) -> dict[str, Any]:
        inv.status, inv.duration_ms, inv.response = status, duration_ms, response
        for hook in inv.state["hooks"]:
            try:
                hook.end(inv)
            except Exception:
                log.exception("invocation hook failed in end", hook=type(hook).__name__)
        return inv.log_fields

    def _finish(self, ctx: Context, log: BoundLog) -> None:
        """Run the callbacks extensions registered with ``ctx.on_finish`` (never fails the invocation)."""
        callbacks = ctx._finishers
        if not callbacks:
            return
        ctx._finishers = None
        for callback in reversed(callbacks):
            try:
                callback(ctx)
            except Exception:
                log.exception("invocation clean-up failed", route=ctx.route, callback=getattr(callback, "__qualname__", None))

    @property
    def asgi(self) -> ASGIApp:
        """This app as an ASGI 3 application (:mod:`nubes.core.asgi`), made on first use."""
        from nubes.core.asgi import asgi_of

        return asgi_of(self)

    def openapi(self) -> dict[str, Any]:
        """This app's routes as an OpenAPI 3.1 document."""
        from nubes.core.openapi import document

        return document(self)

    def __repr__(self) -> str:
        return f"<nubes.App {self.name!r} routes={len(self.routes)}>"


def new_request_id() -> str:
    """A fresh 32-hex-digit request id. Unique, not secret: Python's generator, seeded from the OS at
    start and again after a fork (a getrandom call per request cost ~25 us in sandboxes)."""
    import random  # here, not at module level: import nubes stays light

    return f"{random.getrandbits(128):032x}"


def valid_request_id(value: object) -> str | None:
    """``value`` if it can serve as a request id (1-128 visible ASCII characters: safe in a header value
    and a log line), else None. Adapters take ids from headers a client can send."""
    return value if isinstance(value, str) and _REQUEST_ID.fullmatch(value) else None


_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def problem_response(exc: HTTPError, request: Request | None, request_id: str) -> Response:
    """An RFC 9457 ``application/problem+json`` response for ``exc`` (``request`` None: one that could
    not be read as a request, so the problem names no ``instance``)."""
    body = exc.problem()
    if request is not None:
        body["instance"] = request.path
    body["request_id"] = request_id
    response = Response(encoding.dumps(body), exc.status, exc.headers, "application/problem+json")
    return response


def run_awaitable(awaitable: Any) -> Any:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    raise ConfigError("an async handler was called from inside a running event loop; call App.handle from a thread")


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _openapi_route(ctx: Context) -> dict[str, Any]:
    return ctx.app.openapi()
