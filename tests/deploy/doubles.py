"""What the GCP and Azure doubles share: a JSON-over-HTTP(S) server on 127.0.0.1 whose every request
goes to one ``handle(verb, path, body) -> (status, answer)``."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

Handle = Callable[[str, str, bytes, dict[str, str]], tuple[int, Any]]


def json_handler(handle: Handle) -> type[BaseHTTPRequestHandler]:
    """A request handler answering every verb with ``handle``'s JSON (no body for 204)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, answer = handle(self.command, self.path, body, dict(self.headers))
            data = json.dumps(answer).encode() if status != 204 else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
