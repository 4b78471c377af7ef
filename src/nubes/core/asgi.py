"""An :class:`~nubes.App` as an ASGI 3 application (``app.asgi``), for any ASGI server.

``nubes serve`` runs it under uvicorn; any other ASGI 3 server works the same way
(``uvicorn myapp:app.asgi``). The server parses HTTP and owns connections, keep-alive and header
limits; this module turns one ASGI ``http`` cycle into a :class:`~nubes.Request`, answers it and
sends the :class:`~nubes.Response` back.

Contract:

* The body is read as it streams in: a ``Content-Length`` over ``max_body`` is refused before any
  of it is read (one that is not digits, or sent with ``Transfer-Encoding``, is a 400; one over 19
  digits a 413), and a
  streamed (chunked) body as soon as its running total passes ``max_body``: 413
  ``application/problem+json`` with ``Connection: close``, so no more than ``max_body`` bytes (plus
  one server read) are ever buffered. The default is 100 MB.
* Each read of the body waits at most ``read_timeout`` seconds (10) and the whole body must arrive
  within ``body_timeout`` seconds (120), else 408 and the connection is closed: a client that sends
  a short or trickling body cannot hold the request forever.
* Handlers are synchronous and may block: the answer is computed in a pool of at most ``threads``
  threads (:mod:`nubes.core.handler_pool`), never on the event loop. A client that disconnects meanwhile gets nothing; the handler
  still runs to its end (it cannot be interrupted), and its answer is dropped.
* A request :class:`~nubes.Request` refuses to represent (a method that is not an HTTP token, a path
  or header that is not text) is a 400 problem before its body is read.
* ``lifespan`` events are answered (startup; shutdown stops the pool and calls ``on_shutdown``).
  WebSocket connections are refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from nubes.core.handler_pool import DEFAULT_THREADS, ThreadPool
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.errors import HTTPError

if TYPE_CHECKING:
    from nubes.core.app import App

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY = 100 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 120.0
DEFAULT_READ_TIMEOUT = 10.0

_NO_BODY_STATUS = frozenset({204, 304})
_SKIPPED = frozenset({"content-length", "connection", "transfer-encoding"})
_CLOSE = (b"connection", b"close")


class _Refused(Exception):
    """The request was refused before it was answered (size, time): ``error`` says why."""

    def __init__(self, error: HTTPError) -> None:
        self.error = error


class ASGIApp:
    """``app`` as an ASGI 3 callable: ``await asgi(scope, receive, send)``.

    ``answer`` computes the response to a request read in full (default ``app.handle``; the
    emulator passes its own); ``refuse`` the response to a request refused before that (default:
    a problem document). ``on_shutdown`` runs at the lifespan shutdown event.
    """

    def __init__(
        self,
        app: App,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        threads: int = DEFAULT_THREADS,
        answer: Callable[[Request], Response] | None = None,
        refuse: Callable[[HTTPError, Request], Response] | None = None,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        if max_body < 0:
            raise ValueError(f"max_body must be 0 or more, not {max_body}")
        if body_timeout <= 0 or read_timeout <= 0:
            raise ValueError(f"timeouts must be positive, not body_timeout={body_timeout}, read_timeout={read_timeout}")
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.read_timeout = read_timeout
        self.answer = answer or app.handle
        self.refuse = refuse or self._problem
        self.on_shutdown = on_shutdown
        self.pool = ThreadPool(threads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})
        else:
            raise ValueError(f"nubes answers HTTP only, not ASGI {kind!r} connections")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        raw = scope.get("raw_path")
        if raw:
            target = raw.decode("latin-1")
            if not target.startswith("/"):  # absolute-form request target (proxies)
                from urllib.parse import urlsplit

                target = urlsplit(target).path or "/"
        else:
            from urllib.parse import quote

            target = quote(scope["path"])
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        query = scope["query_string"].decode("latin-1")
        try:  # before reading the body: what no HTTP request carries (a method that is no token...) is a 400 at once
            request = Request(method, target, query=query, headers=headers, scheme=scope.get("scheme") or "http")
        except HTTPError as exc:
            from nubes.core.app import new_request_id, problem_response

            await self._send(send, problem_response(exc, None, new_request_id()), method, close=True)
            return
        try:
            body = await self._body(scope, receive)
        except _Refused as refused:
            response = self._safely(self.refuse, refused.error, request)
            await self._send(send, response, method, close=True)
            return
        object.__setattr__(request, "body", body)  # Request is immutable to handlers; this module made it
        try:
            response = await self.pool.run(self.answer, request)
        except Exception:  # the answer function itself failed (App.handle never does)
            self.app.log.exception("the server could not answer", method=method, path=request.path)
            response = self._problem(HTTPError(500, "the server failed to answer"), request)
        await self._send(send, response, method)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, refused (413) as soon as it is known to pass ``max_body``, or (408)
        when a read waits over ``read_timeout`` or the whole has not arrived within ``body_timeout``."""
        limit = self.max_body
        pending = scope.get("http_version") not in ("1.0", "1.1")  # HTTP/2 and 3 frame bodies without a length
        length = chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():  # uvicorn's parsers refuse these; this guards any other server
                    raise _Refused(HTTPError(400, f"invalid Content-Length {value[:40].decode('latin-1')!r}"))
                if len(value) > 19:  # no body is that long, and int() of over 4300 digits raises
                    raise _Refused(HTTPError(413, f"Content-Length of {len(value)} digits is over the {limit:,}-byte limit"))
                declared = int(value)
                if declared > limit:
                    raise _Refused(HTTPError(413, f"request body of {declared:,} bytes is over the {limit:,}-byte limit"))
                pending = pending or declared > 0
                length = True
            elif name == b"transfer-encoding":
                pending = chunked = True
        if length and chunked:  # two framings: how a request is smuggled past a proxy that reads the other one
            raise _Refused(HTTPError(400, "a request with both Content-Length and Transfer-Encoding is refused"))
        if not pending:  # HTTP/1.1 with no length and no chunks: no body, the server already has it all
            message = await receive()
            return b"" if message["type"] == "http.disconnect" else bytes(message.get("body", b""))
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        parts: list[bytes] = []
        total = 0
        while True:
            wait = min(self.read_timeout, deadline - loop.time())
            try:
                if wait <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                raise _Refused(HTTPError(408, "the request body stopped arriving: each read waits at most "
                                              f"{self.read_timeout:g} s and the whole body {self.body_timeout:g} s")) from None
            if message["type"] == "http.disconnect":
                return b"".join(parts)
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise _Refused(HTTPError(413, f"request body is over the {limit:,}-byte limit"))
            parts.append(chunk)
            if not message.get("more_body"):
                return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _send(self, send: Send, response: Response, method: str, close: bool = False) -> None:
        status = response.status
        headers = [(_encode(name), _encode(value)) for name, value in response.headers.multi_items() if name not in _SKIPPED]
        body = response.body
        if status not in _NO_BODY_STATUS and status >= 200:
            length = response.headers.get("content-length") if method == "HEAD" else None
            headers.append((b"content-length", (length or str(len(body))).encode("latin-1")))
        if close:
            headers.append(_CLOSE)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" or status in _NO_BODY_STATUS else body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    self.close()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """Stop the handler threads (after their current call) and run ``on_shutdown``."""
        self.pool.close()
        if self.on_shutdown is not None:
            self.on_shutdown()

    def _problem(self, error: HTTPError, request: Request) -> Response:
        from nubes.core.app import new_request_id, problem_response

        return problem_response(error, request, new_request_id())

    def _safely(self, fn: Callable[[HTTPError, Request], Response], error: HTTPError, request: Request) -> Response:
        try:
            return fn(error, request)
        except Exception:
            self.app.log.exception("could not build the refusal", status=error.status)
            return self._problem(error, request)


def _encode(text: str) -> bytes:
    """A header name or value as bytes: Latin-1 where it fits (what HTTP/1.1 clients decode), else UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def asgi_of(app: App) -> ASGIApp:
    """``app.asgi``: the app's ASGI application with the default limits, made once per app."""
    made: ASGIApp | None = app.__dict__.get("_asgi")
    if made is None:
        made = app.__dict__.setdefault("_asgi", ASGIApp(app))
    return made
