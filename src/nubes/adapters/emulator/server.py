"""``nubes serve --emulate``: the stdlib HTTP/1.1 server of :mod:`nubes.adapters.local`, answering
every request through an :class:`~nubes.adapters.emulator.runtime.Emulator`.

Bodies over the provider's front-end limit are refused with the provider's 413 before they are
read (``Content-Length``) or as soon as the running total passes it (chunked).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from nubes.adapters.emulator.runtime import Emulator
from nubes.adapters.local import NubesHTTPServer, _BadBody, _Handler
from nubes.core.app import App, problem_response
from nubes.core.request import Request


class _EmulatedHandler(_Handler):
    server: EmulatorServer

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
            if bad.error.status == 413:
                emulator = self.server.emulator
                emulator.log.warning("request refused by the front end", front=emulator.provider.label,
                                     method=self.command, path=target.split("?", 1)[0], status=413, detail=str(bad.error))
                self._send(emulator.provider.answer("request_too_large"))
            else:
                self._send(problem_response(bad.error, Request(self.command, target, headers=headers), "-"))
            return
        request = Request(self.command, target, headers=headers, body=body)
        self._send(self.server.emulator.handle(request))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class EmulatorServer(NubesHTTPServer):
    """Serves ``emulator`` over HTTP on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, emulator: Emulator, app: App, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.emulator = emulator
        super().__init__(app, host, port, max_body=emulator.provider.max_body)
        self.RequestHandlerClass = _EmulatedHandler

    def server_close(self) -> None:
        super().server_close()
        self.emulator.close()
