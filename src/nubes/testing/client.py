"""An in-process test client with httpx-style calls; no sockets, no server."""

from __future__ import annotations

import json as _json
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import urlencode

from nubes.core.app import App
from nubes.core.datastructures import Headers, Pairs
from nubes.core.request import Request
from nubes.core.response import Response


class ClientResponse:
    """What the client got back: ``status_code``, case-insensitive ``headers``, ``content``, ``text``, ``json()``."""

    def __init__(self, response: Response, request: Request) -> None:
        self.status_code = response.status
        self.headers: Headers = Headers(response.headers.multi_items())
        self.content = response.body
        self.request = request
        self.reason_phrase = response.reason

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.content)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def __repr__(self) -> str:
        return f"<ClientResponse [{self.status_code} {self.reason_phrase}]>"


class Client:
    """Call an app in-process the way an HTTP client would.

    ``Client(app).get("/items/3", params={"q": "x"}, headers={...})``; ``post``/``put``/``patch``
    take ``json=`` (encoded, with Content-Type), ``content=`` (raw bytes or text) or ``data=``
    (a form, url-encoded). ``cookies=`` adds a Cookie header.

    ``emulate="aws"|"gcp"|"azure"`` answers as that provider would, by the same path as
    ``nubes serve --emulate``: the provider's payload is built (AWS: ``aws_event`` http, rest, alb
    or url), the deployed adapter called, the provider's answer returned, its request and response
    limits and error answers included. By default that runs in this process (fast; an overrun of
    ``timeout`` is reported once the handler returns but not stopped, ``memory`` is not enforced);
    ``isolate=True`` runs it in up to ``workers`` worker processes that stop an overrunning handler
    and enforce ``memory`` (MB, resident). Close the client (or use ``with``) to stop them.
    ``request_limit`` overrides the front end's request limit in bytes. Jobs (``@app.job``) are
    delivered as the emulated cloud delivers them, each attempt bounded by ``job_timeout`` (default:
    the cloud's timeout for a job), retried after the cloud's delays (``job_retry_delay`` overrides them).
    """

    def __init__(
        self,
        app: App,
        *,
        headers: Mapping[str, str] | None = None,
        emulate: str | None = None,
        aws_event: str | None = None,
        timeout: float | None = None,
        memory: int | None = None,
        isolate: bool = False,
        workers: int = 1,
        request_limit: int | None = None,
        job_timeout: float | None = None,
        job_retry_delay: float | None = None,
    ) -> None:
        if not isinstance(app, App):
            raise TypeError(f"Client needs a nubes.App, not {type(app).__name__}")
        self.app = app
        self.headers = dict(headers or {})
        self.emulator = None
        if emulate is not None:
            from nubes.adapters.emulator import Emulator

            self.emulator = Emulator(app, emulate, aws_event=aws_event, timeout=timeout, memory=memory,
                                     workers=workers, isolate=isolate, request_limit=request_limit,
                                     job_timeout=job_timeout, job_retry_delay=job_retry_delay)

    def close(self) -> None:
        """Stop the emulator's worker processes, if any."""
        if self.emulator is not None:
            self.emulator.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Pairs = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> ClientResponse:
        pairs: list[tuple[str, str]] = [(k.lower(), str(v)) for k, v in {**self.headers, **(headers or {})}.items()]
        names = {k for k, _ in pairs}
        body: bytes = b""
        if json is not None:
            from nubes.core.encoding import dumps

            body = dumps(json)
            if "content-type" not in names:
                pairs.append(("content-type", "application/json"))
        elif data is not None:
            body = urlencode(data, doseq=True).encode()
            if "content-type" not in names:
                pairs.append(("content-type", "application/x-www-form-urlencoded"))
        elif content is not None:
            body = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        if cookies:
            pairs.append(("cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
        if body and "content-length" not in names:
            pairs.append(("content-length", str(len(body))))
        if "host" not in names:
            pairs.append(("host", "testserver"))
        request = Request(method, path, query=params, headers=pairs, body=body)
        handled = self.emulator.handle(request) if self.emulator is not None else self.app.handle(request)
        return ClientResponse(handled, request)

    def get(self, path: str, **kw: Any) -> ClientResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> ClientResponse:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> ClientResponse:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> ClientResponse:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> ClientResponse:
        return self.request("DELETE", path, **kw)

    def head(self, path: str, **kw: Any) -> ClientResponse:
        return self.request("HEAD", path, **kw)

    def options(self, path: str, **kw: Any) -> ClientResponse:
        return self.request("OPTIONS", path, **kw)
