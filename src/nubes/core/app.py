"""The cloud-agnostic application: routes, dispatch, errors as problem documents, one log line per call."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from nubes.core import encoding
from nubes.core.binding import bind, signature_params
from nubes.core.context import Context
from nubes.core.errors import ConfigError, HTTPError, StorageError
from nubes.core.logs import BoundLog, logger
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.core.routing import PathTemplate, Route, Router, _Options

if TYPE_CHECKING:
    from nubes.storage.base import ObjectStore

F = TypeVar("F", bound=Callable[..., Any])

INTERNAL_PREFIX = "/_nubes/"
DEFAULT_STORAGE = "file://.nubes"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class App:
    """A nubes application: the same object runs locally, on AWS Lambda, Cloud Functions and Azure.

    ``storage`` is the URI of the app's home store, where it keeps its own state (default:
    ``NUBES_STORAGE`` from the environment, else ``file://.nubes`` under the working directory).
    ``openapi=False`` removes ``GET /_nubes/openapi.json``.
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
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("App needs a name, e.g. nubes.App('sales')")
        self.name = name
        self.title = title or name
        self.version = version
        self.description = description
        self.router = Router()
        self._storage_uri = storage
        self._storage: ObjectStore | None = None
        self._lock = threading.Lock()
        self.log = BoundLog(logger(), app=name)
        if openapi:
            self._internal("/_nubes/openapi.json", ["GET"], _openapi_route, summary="This API as OpenAPI 3.1")

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

    # -- dispatch --------------------------------------------------------------------------
    def handle(self, request: Request, *, request_id: str | None = None, deadline: float | None = None) -> Response:
        """Answer one request. Never raises: every failure becomes a problem+json response."""
        started = time.perf_counter()
        rid = request_id or os.urandom(16).hex()
        route: Route | None = None
        log = self.log.bind(request_id=rid)
        try:
            try:
                route, values = self.router.match(request.method, request.raw_path)
                ctx = Context(request, self, rid, log, deadline=deadline, route=route.path)
                kwargs = bind(route.params, request, values)
                result = route.handler(ctx, **kwargs)
                if hasattr(result, "__await__"):
                    result = _run(result)
                query_format = not any(p.name == "format" and p.source == "query" for p in route.params)
                response = encoding.encode(result, request, query_format=query_format)
            except _Options as opt:
                response = Response(b"", 204, {"allow": opt.allow})
            except HTTPError as exc:
                response = problem_response(exc, request, rid)
            except StorageError as exc:
                status = exc.http_status
                if status >= 500:
                    log.exception("storage error", route=route.path if route else None)
                response = problem_response(HTTPError(status, str(exc)), request, rid)
        except Exception:
            log.exception("unhandled exception", route=route.path if route else None, path=request.path)
            response = problem_response(
                HTTPError(500, f"the server failed to answer; quote request id {rid} when reporting this"),
                request,
                rid,
            )
        response.headers["x-nubes-request-id"] = rid
        if request.method == "HEAD":
            response.headers.setdefault("content-length", str(len(response.body)))
            response.body = b""
        log.info(
            "invocation",
            method=request.method,
            path=request.path,
            route=route.path if route else None,
            status=response.status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return response

    def openapi(self) -> dict[str, Any]:
        """This app's routes as an OpenAPI 3.1 document."""
        from nubes.core.openapi import document

        return document(self)

    def __repr__(self) -> str:
        return f"<nubes.App {self.name!r} routes={len(self.routes)}>"


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
