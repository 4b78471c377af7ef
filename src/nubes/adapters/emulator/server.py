"""``nubes serve --emulate``: the local uvicorn server of :mod:`nubes.adapters.local`, answering
every request through an :class:`~nubes.adapters.emulator.runtime.Emulator`.

A body over the provider's front-end limit is refused with the provider's own 413 answer before
it is read (``Content-Length``) or as soon as its running total passes the limit (chunked); other
refusals (a body that stops arriving) are problem documents. The server's lifespan shutdown (or
:meth:`EmulatorServer.server_close`) stops every worker.
"""

from __future__ import annotations

from typing import Any

from nubes.adapters.emulator.runtime import Emulator
from nubes.adapters.local import LocalServer
from nubes.core.app import App, new_request_id, problem_response
from nubes.core.asgi import ASGIApp
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.errors import HTTPError


class EmulatorServer(LocalServer):
    """Serves ``emulator`` over HTTP on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, emulator: Emulator, app: App, host: str = "127.0.0.1", port: int = 8000, **kw: Any) -> None:
        self.emulator = emulator
        asgi = ASGIApp(app, max_body=emulator.provider.max_body, answer=emulator.handle, refuse=self._refused,
                       on_shutdown=emulator.close)
        super().__init__(asgi, host, port, **kw)

    def _refused(self, error: HTTPError, request: Request) -> Response:
        """The front end's answer to a request refused before it was read in full."""
        if error.status != 413:
            return problem_response(error, request, new_request_id())
        emulator = self.emulator
        emulator.log.warning("request refused by the front end", front=emulator.provider.label, method=request.method,
                             path=request.path, status=413, detail=str(error))
        return emulator.provider.answer("request_too_large")
