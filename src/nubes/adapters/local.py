"""Serving an app over HTTP on this machine (``nubes serve``): the app's ASGI application under uvicorn.

uvicorn parses HTTP/1.1 and owns connections: request-line, header and framing validation
(``Content-Length`` must be digits and agree with any repeat, ``Transfer-Encoding`` must be
``chunked``, not both), keep-alive and its timeout. :mod:`nubes.core.asgi` adds the body limit
(``max_body``, 100 MB by default, refused with 413 while the body streams in) and the body
timeouts, and runs handlers in a thread pool. :func:`protocol_class` bounds what uvicorn leaves
open: a request head (request line and headers) must arrive within ``header_timeout`` seconds (10)
and hold at most ``max_head`` bytes (64 KiB, else 431). Nagle's algorithm is off on every
connection (see :func:`_listen`).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from typing import Any

import uvicorn

from nubes.core.app import App
from nubes.core.asgi import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_READ_TIMEOUT, ASGIApp

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_HEAD = 64 * 1024
_TOO_LARGE = b"the request line and headers are over the server's size limit\n"
HEAD_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                  b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE), _TOO_LARGE))
DEFAULT_KEEP_ALIVE = 5

__all__ = ["DEFAULT_HEADER_TIMEOUT", "DEFAULT_MAX_BODY", "DEFAULT_MAX_HEAD", "LocalServer", "make_server", "protocol_class"]


def protocol_class(header_timeout: float = DEFAULT_HEADER_TIMEOUT, max_head: int = DEFAULT_MAX_HEAD) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (httptools when installed, else h11) with bounds on each request's
    head (request line and headers), which uvicorn leaves open with httptools: a connection whose
    head is not complete ``header_timeout`` seconds after the connection opened or the previous
    response was sent is closed, and one whose head passes ``max_head`` bytes gets 431 and is closed."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class HeadLimits(base):  # type: ignore[misc]
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            waiting = cycle is None or cycle.response_complete  # these bytes start the next request's head
            super().data_received(data)
            if self.cycle is not cycle:  # a head was parsed: the app (and its body limits) has the request
                self._disarm()
                self._head_bytes = 0
            elif waiting:
                self._head_bytes += len(data)
                if self._head_bytes > max_head and not self.transport.is_closing():
                    self.transport.write(HEAD_TOO_LARGE)
                    self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(header_timeout, self._expire)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _expire(self) -> None:
            self._head_timer = None
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()

    return HeadLimits


def _stopped(signum: int, frame: Any) -> None:
    """The handler uvicorn hands a stopping signal back to after its graceful shutdown: nothing left to do."""


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``. Created with ``IPPROTO_TCP`` and ``TCP_NODELAY`` (inherited
    by accepted connections): asyncio turns Nagle off only on sockets it sees as TCP, and with Nagle on
    a keep-alive client waits ~40 ms for the delayed ACK between a response's header and body writes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


class LocalServer:
    """``asgi`` served by uvicorn on ``host:port`` (port 0 picks a free one), bound at construction
    (an ``OSError`` says why not). :meth:`serve_forever` runs in this thread until SIGINT/SIGTERM or
    :meth:`shutdown`; :meth:`start_background` in a daemon thread. ``url`` is where it listens."""

    def __init__(self, asgi: ASGIApp, host: str = "127.0.0.1", port: int = 8000, *,
                 header_timeout: float = DEFAULT_HEADER_TIMEOUT, max_head: int = DEFAULT_MAX_HEAD,
                 keep_alive: int = DEFAULT_KEEP_ALIVE) -> None:
        self.asgi = asgi
        self.socket = _listen(host, port)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            asgi, interface="asgi3", lifespan="on", http=protocol_class(header_timeout, max_head), ws="none",
            log_config=None, access_log=False, proxy_headers=False, server_header=False,
            timeout_keep_alive=keep_alive, timeout_graceful_shutdown=30,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def serve_forever(self) -> None:
        """Serve until SIGINT or SIGTERM (in the main thread) or :meth:`shutdown`; then finish the
        requests in flight, run the lifespan shutdown and return."""
        handled = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
        # uvicorn re-raises the stopping signal to the handler it found once it has shut down: make that a no-op
        previous = {sig: signal.signal(sig, _stopped) for sig in handled}
        try:
            self.server.run(sockets=[self.socket])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread (for tests and tours), ready when this returns; stop with :meth:`shutdown`."""
        thread = threading.Thread(target=self.serve_forever, name="nubes-serve", daemon=True)
        thread.start()
        while not self.server.started and thread.is_alive():
            thread.join(0.01)
        self._thread = thread
        return thread

    def shutdown(self) -> None:
        """Stop serving (from another thread) and wait for the server to finish."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(60)

    def server_close(self) -> None:
        """Release the listening socket and the handler threads (after :meth:`shutdown` or serving)."""
        self.socket.close()
        self.asgi.close()


def make_server(app: App, host: str = "127.0.0.1", port: int = 8000, *, max_body: int = DEFAULT_MAX_BODY,
                body_timeout: float = DEFAULT_BODY_TIMEOUT, read_timeout: float = DEFAULT_READ_TIMEOUT,
                **kw: Any) -> LocalServer:
    """A server for ``app`` bound to ``host:port`` (port 0 picks a free one); call ``serve_forever``.

    Each server has its own :class:`~nubes.core.asgi.ASGIApp` with these limits (``app.asgi`` has the
    defaults); ``kw`` goes to :class:`LocalServer` (``header_timeout``, ``keep_alive``).
    """
    asgi = ASGIApp(app, max_body=max_body, body_timeout=body_timeout, read_timeout=read_timeout)
    return LocalServer(asgi, host, port, **kw)
