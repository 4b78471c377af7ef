"""The cloud-agnostic application: routes, dispatch, errors as problem documents, one log line per call."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from nubes.core import encoding
from nubes.core.binding import bind, signature_params
from nubes.core.context import Context
from nubes.errors import ConfigError, HTTPError, NoHandler, StorageError
from nubes.core.logs import BoundLog, logger
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.core.routing import PathTemplate, Route, Router, _Options
from nubes.storage.current import CURRENT_IO

if TYPE_CHECKING:
    from nubes.core.events import Event, EventRoute, Platform
    from nubes.core.hooks import Invocation, InvocationHook
    from nubes.ml.registry import ModelRegistry
    from nubes.storage.base import ObjectStore

F = TypeVar("F", bound=Callable[..., Any])

INTERNAL_PREFIX = "/_nubes/"
DEFAULT_STORAGE = "file://.nubes"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class App:
    """A nubes application: the same object runs locally, on AWS Lambda, Cloud Functions and Azure.

    ``storage`` is the URI of the app's home store, where it keeps its own state (default:
    ``NUBES_STORAGE`` from the environment, else ``file://.nubes`` under the working directory).
    ``openapi=False`` removes ``GET /_nubes/openapi.json``. ``catalog`` is a ``catalog.yaml`` path
    (default: ``catalog.yaml`` beside the module that creates the app, if it exists).
    ``sql_endpoint=True`` (or a :class:`~nubes.data.sql_endpoint.SqlEndpoint` with limits, or
    ``NUBES_SQL_ENDPOINT=1`` in the environment) adds ``POST /_nubes/sql`` (read-only SQL over the catalog).
    ``max_rows`` caps the rows of a table a route may answer with (per route: ``max_rows=``).
    ``models=False`` removes the built-in model routes (``/_nubes/models``, see :mod:`nubes.ml.serving`).
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
        if sql_endpoint is None:  # not set in code: the environment decides (off by default)
            sql_endpoint = os.environ.get("NUBES_SQL_ENDPOINT", "").lower() in ("1", "true", "yes", "on")
        self.sql_endpoint = sql_endpoint
        from pathlib import Path

        if catalog is None:
            caller = sys._getframe(1).f_globals.get("__file__")
            yaml_path = Path(caller).resolve().parent / "catalog.yaml" if caller else None
        else:
            yaml_path = Path(catalog)
        from nubes.data.catalog import Catalog

        self.catalog = Catalog(yaml_path)
        self._stores: dict[str, ObjectStore] = {}
        from nubes.data.session import CheckCache

        self.check_cache = CheckCache()
        from nubes.metering.meter import Meter

        self.hooks: list[InvocationHook] = [Meter(self)]  # metering (nubes.metering)
        self._storage_uri = storage
        self._storage: ObjectStore | None = None
        self._models: ModelRegistry | None = None
        self._lock = threading.Lock()
        self.log = BoundLog(logger(), app=name)
        if openapi:
            self._internal("/_nubes/openapi.json", ["GET"], _openapi_route, summary="This API as OpenAPI 3.1")
        self._internal("/_nubes/catalog", ["GET"], _catalog_route, summary="The data catalog")
        from nubes.metering.routes import costs_route, quote_route

        self._internal("/_nubes/costs", ["GET"], costs_route, summary="Metered costs from the ledger")
        self._internal("/_nubes/quote", ["GET"], quote_route, summary="An invocation's cost on each provider, before it runs")
        if sql_endpoint:
            from nubes.data.sql_endpoint import sql_route

            self._internal("/_nubes/sql", ["POST"], sql_route, summary="Read-only SQL over the catalog")
        if models:
            self._internal("/_nubes/models", ["GET"], _models_route, summary="The registered models")
            self._internal("/_nubes/models/{name}", ["GET"], _model_route, summary="One model's versions")
            self._internal("/_nubes/models/{name}/predict", ["POST"], _predict_route,
                           summary="Predictions of a registered model")

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

    # -- event handlers --------------------------------------------------------------------
    def on_object_created(self, prefix: str = "", *, store: str | None = None, **options: Any) -> Callable[[F], F]:
        """Call the decorated ``handler(ctx, event: ObjectCreated)`` when an object whose key starts
        with ``prefix`` is created (in ``store``, a URI such as ``s3://bucket``; any store if None)."""
        from nubes.core.events import EventRoute

        return self._on(EventRoute("object_created", _nothing, "", prefix=prefix, store=store, options=options))

    def on_message(self, queue: str | None = None, **options: Any) -> Callable[[F], F]:
        """Call the decorated ``handler(ctx, message: Message)`` for each message of ``queue`` (any queue if None)."""
        from nubes.core.events import EventRoute

        return self._on(EventRoute("message", _nothing, "", queue=queue, options=options))

    def on_schedule(self, name: str, *, cron: str | None = None, **options: Any) -> Callable[[F], F]:
        """Call the decorated ``handler(ctx, event: Scheduled)`` when the schedule ``name`` fires.

        ``cron`` (six-field NCRONTAB ``sec min hour day month weekday``) says when, for deployment
        and for providers whose timers are declared with the function (Azure).
        """
        if not name:
            raise ConfigError("on_schedule needs the schedule's name (the EventBridge rule / Scheduler job / timer)")
        from nubes.core.events import EventRoute

        return self._on(EventRoute("schedule", _nothing, "", schedule=name, cron=cron, options=options))

    def _on(self, route: EventRoute) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            import inspect

            where = f"{route.kind} handler {getattr(fn, '__qualname__', fn)}"
            try:
                positional = [
                    p for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                ]
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: cannot read its signature: {exc}") from None
            if len(positional) < 2:
                raise ConfigError(f"{where}: an event handler takes (ctx, event), e.g. def handler(ctx, event): ...")
            route.handler = fn
            route.name = f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', repr(fn))}"
            self.event_routes.append(route)
            return fn

        return decorator

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

    @property
    def routes(self) -> list[Route]:
        """The app's own routes in match order (nubes' built-in ``/_nubes/`` routes excluded)."""
        return [r for r in self.router.routes if not r.internal]

    # -- storage ---------------------------------------------------------------------------
    @property
    def storage_uri(self) -> str:
        return self._storage_uri or os.environ.get("NUBES_STORAGE") or DEFAULT_STORAGE

    @property
    def storage(self) -> ObjectStore:
        """The app's home object store, opened on first use."""
        if self._storage is None:
            with self._lock:
                if self._storage is None:
                    from nubes.storage import open as open_store

                    self._storage = open_store(self.storage_uri)
        return self._storage

    @property
    def models(self) -> ModelRegistry:
        """The model registry in the app's home store (:mod:`nubes.ml.registry`), opened on first use."""
        if self._models is None:
            store = self.storage
            with self._lock:
                if self._models is None:
                    from nubes.ml.registry import ModelRegistry

                    self._models = ModelRegistry(store, app=self)
        return self._models

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

    # -- catalog ---------------------------------------------------------------------------
    def dataset(
        self,
        name: str,
        uri: str,
        *,
        format: str | None = None,  # noqa: A002
        schema: dict[str, str] | None = None,
        description: str = "",
        owner: str = "",
        tags: Iterable[str] = (),
        checks: Iterable[Any] = (),
        partitioning: str | None = None,
    ) -> Any:
        """Declare a dataset: visible to ``ctx.sql`` as a view named ``name``, to ``ctx.table(name)``,
        listed by ``nubes catalog`` and ``GET /_nubes/catalog``; ``checks`` guard its readers."""
        from nubes.data.catalog import make_dataset

        return self.catalog.add(
            make_dataset(name, uri, format=format, schema=schema, description=description, owner=owner,
                         tags=tags, checks=checks, partitioning=partitioning)
        )

    # -- dispatch --------------------------------------------------------------------------
    def handle(
        self,
        request: Request,
        *,
        request_id: str | None = None,
        deadline: float | None = None,
        platform: Platform | None = None,
    ) -> Response:
        """Answer one request. Never raises: every failure becomes a problem+json response.

        ``deadline`` is the monotonic time by which the provider stops the invocation;
        ``platform`` says where it runs (adapters pass both).
        """
        started = time.perf_counter()
        rid = request_id or new_request_id()
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
                ctx = Context(request, self, rid, log, deadline=deadline, route=route.path, platform=platform,
                              options=route.options)
                kwargs = bind(route.params, request, values)
                result = route.handler(ctx, **kwargs)
                if hasattr(result, "__await__"):
                    result = _run(result)
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
        from datetime import datetime, timezone

        from nubes.core.hooks import Invocation
        from nubes.storage.base import IOStats

        if platform is None:
            from nubes.core.events import LOCAL as platform
        inv = Invocation(self, rid, kind, platform, started, datetime.now(timezone.utc), IOStats(), **what)
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
        """End an invocation's analytics session and record its lineage (never fails the invocation)."""
        session = ctx._session
        if session is None:
            return
        try:
            io = CURRENT_IO.get()
            if io is not None and session._bridge is not None:
                io.merge(session._bridge.stats)
            entry = session.lineage()
            if entry is not None:
                from nubes.data import lineage

                lineage.record(self.storage, {"request_id": ctx.request_id, "app": self.name, "route": ctx.route, **entry})
        except Exception:
            log.exception("could not record lineage", route=ctx.route)
        finally:
            session.close()

    def handle_event(
        self,
        event: Event,
        *,
        request_id: str | None = None,
        deadline: float | None = None,
        platform: Platform | None = None,
    ) -> list[Any]:
        """Call every handler registered for ``event`` as ``handler(ctx, event)``; return their results.

        Raises :class:`~nubes.errors.NoHandler` if none matches, and lets a handler's exception
        propagate (after logging it) so the adapter can report the failure the provider's way
        (e.g. the message in SQS ``batchItemFailures``). One JSON log line per call.
        """
        started = time.perf_counter()
        rid = request_id or new_request_id()
        log = self.log.bind(request_id=rid)
        routes = [r for r in self.event_routes if r.matches(event)]
        if not routes:
            log.warning("no handler", event=type(event).__name__, detail=_describe(event))
            raise NoHandler(f"no handler in app {self.name!r} for {_describe(event)}; registered: "
                            + (", ".join(r.describe() for r in self.event_routes) or "none"))
        results = []
        outcome = "ok"
        inv = self._begin(rid, "event", platform, started, event=event, route=",".join(r.name for r in routes))
        token = CURRENT_IO.set(inv.io) if inv is not None else None
        try:
            for route in routes:
                ctx = Context(None, self, rid, log, deadline=deadline, route=route.name, event=event, platform=platform,
                              options=route.options)
                try:
                    result = route.handler(ctx, event)
                    if hasattr(result, "__await__"):
                        result = _run(result)
                finally:
                    self._finish(ctx, log)
                results.append(result)
        except Exception:
            outcome = "error"
            log.exception("event handler failed", event=type(event).__name__, detail=_describe(event))
            raise
        finally:
            if token is not None:
                CURRENT_IO.reset(token)
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            fields = self._end(inv, 200 if outcome == "ok" else 500, duration_ms, None, log) if inv is not None else {}
            log.info(
                "invocation",
                event=type(event).__name__,
                detail=_describe(event),
                handlers=[r.name for r in routes],
                outcome=outcome,
                duration_ms=duration_ms,
                **fields,
            )
        return results

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


def _nothing(ctx: Context, event: Event) -> None:  # placeholder until the decorator binds the handler
    return None


def _describe(event: Event) -> str:
    from nubes.core.events import Message, ObjectCreated, Scheduled

    if isinstance(event, ObjectCreated):
        return f"object created {event.url}"
    if isinstance(event, Message):
        return f"message {event.id} on queue {event.queue or '?'}"
    if isinstance(event, Scheduled):
        return f"schedule {event.name!r} at {event.time.isoformat()}"
    return repr(event)


def problem_response(exc: HTTPError, request: Request, request_id: str) -> Response:
    """An RFC 9457 ``application/problem+json`` response for ``exc``."""
    body = exc.problem()
    body["instance"] = request.path
    body["request_id"] = request_id
    response = Response(encoding.dumps(body), exc.status, exc.headers, "application/problem+json")
    return response


def _run(awaitable: Any) -> Any:
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


def _catalog_route(ctx: Context) -> dict[str, Any]:
    from nubes.data.catalog_report import describe_catalog

    return {"app": ctx.app.name, "datasets": describe_catalog(ctx.app)}


def _models_route(ctx: Context) -> dict[str, Any]:
    from nubes.ml.serving import list_models

    return list_models(ctx)


def _model_route(ctx: Context, name: str) -> dict[str, Any]:
    from nubes.ml.serving import describe_model

    return describe_model(ctx, name)


def _predict_route(ctx: Context, name: str, version: int | None = None, alias: str | None = None) -> dict[str, Any]:
    from nubes.ml.serving import predict

    return predict(ctx, name, version, alias)
