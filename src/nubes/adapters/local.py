"""Serving an app over HTTP on this machine, for development: stdlib HTTP/1.1 server, one thread a connection.

This adapter is the plain local path (no provider emulation): a socket request becomes a
:class:`~nubes.Request`, :meth:`App.handle` answers it, and the :class:`~nubes.Response` goes back
as is. Bodies sent with ``Content-Length`` or ``Transfer-Encoding: chunked`` are both read; a body
over ``max_body`` bytes is refused with 413 before it is read.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from nubes.core.app import App, problem_response
from nubes.errors import HTTPError
from nubes.core.request import Request
from nubes.core.response import Response

DEFAULT_MAX_BODY = 100 * 1024 * 1024


class _BadBody(Exception):
    def __init__(self, error: HTTPError) -> None:
        self.error = error


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nubes"
    disable_nagle_algorithm = True  # headers and body are separate writes: without this, keep-alive waits 40 ms
    server: NubesHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # the app logs one JSON line per call
        pass

    def _read_body(self) -> bytes:
        limit = self.server.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadBody(HTTPError(400, "malformed chunked body")) from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > limit:
                    raise _BadBody(HTTPError(413, f"request body is over the {limit:,}-byte limit"))
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            raise _BadBody(HTTPError(400, f"invalid Content-Length {raw!r}")) from None
        if length > limit:
            raise _BadBody(HTTPError(413, f"request body of {length:,} bytes is over the {limit:,}-byte limit"))
        return self.rfile.read(length)

    def _handle(self) -> None:
        target = self.path
        if not target.startswith("/"):
            parts = urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = list(self.headers.items())
        try:
            body = self._read_body()
        except _BadBody as bad:
            self.close_connection = True
            self._send(self._refused(bad.error, target, headers))
            return
        self._send(self._answer(Request(self.command, target, headers=headers, body=body)))

    def _answer(self, request: Request) -> Response:
        """The response to a request read in full (subclasses answer another way: the emulator)."""
        return self.server.app.handle(request)

    def _refused(self, error: HTTPError, target: str, headers: list[tuple[str, str]]) -> Response:
        """The response to a request whose body was refused before it was read (size, framing)."""
        return problem_response(error, Request(self.command, target, headers=headers), "-")

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.multi_items():
            if name not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        length = response.headers.get("content-length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and response.status not in (204, 304):
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class NubesHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one app. ``url`` is where it listens."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 8000, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread (for tests and tours); stop with :meth:`shutdown`."""
        thread = threading.Thread(target=self.serve_forever, name="nubes-serve", daemon=True)
        thread.start()
        return thread


def make_server(app: App, host: str = "127.0.0.1", port: int = 8000, **kw: Any) -> NubesHTTPServer:
    """A server for ``app`` bound to ``host:port`` (port 0 picks a free one); call ``serve_forever``."""
    return NubesHTTPServer(app, host, port, **kw)
