"""``nubes serve --emulate``: the stdlib HTTP/1.1 server of :mod:`nubes.adapters.local`, answering
every request through an :class:`~nubes.adapters.emulator.runtime.Emulator`.

Bodies over the provider's front-end limit are refused with the provider's 413 before they are
read (``Content-Length``) or as soon as the running total passes it (chunked).
"""

from __future__ import annotations

from nubes.adapters.emulator.runtime import Emulator
from nubes.adapters.local import NubesHTTPServer, _Handler
from nubes.core.app import App
from nubes.errors import HTTPError
from nubes.core.request import Request
from nubes.core.response import Response


class _EmulatedHandler(_Handler):
    server: EmulatorServer

    def _answer(self, request: Request) -> Response:
        return self.server.emulator.handle(request)

    def _refused(self, error: HTTPError, target: str, headers: list[tuple[str, str]]) -> Response:
        if error.status != 413:
            return super()._refused(error, target, headers)
        emulator = self.server.emulator
        emulator.log.warning("request refused by the front end", front=emulator.provider.label,
                             method=self.command, path=target.split("?", 1)[0], status=413, detail=str(error))
        return emulator.provider.answer("request_too_large")


class EmulatorServer(NubesHTTPServer):
    """Serves ``emulator`` over HTTP on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, emulator: Emulator, app: App, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.emulator = emulator
        super().__init__(app, host, port, max_body=emulator.provider.max_body)
        self.RequestHandlerClass = _EmulatedHandler

    def server_close(self) -> None:
        super().server_close()
        self.emulator.close()
