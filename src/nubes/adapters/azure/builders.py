"""Azure Functions invocation objects as the Python worker builds them, from nubes objects.

The Functions host hands the worker an HTTP request as maps, and this module reproduces that:
header names lower-cased, repeated headers joined with ``,``, ``params`` one ``,``-joined value per
query key (empty values dropped), the raw query kept in ``url``. :func:`from_http_response` runs the
worker's own response converter, so what a test sees is what the host would be given: one value per
header name and each ``Set-Cookie`` through ``http.cookies.SimpleCookie``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import azure.functions as func
from azure.functions.http import HttpResponseConverter
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from nubes.core.request import Request
from nubes.core.response import Response

__all__ = [
    "DEFAULT_BASE_URL",
    "blob_input_stream",
    "from_http_response",
    "invocation_context",
    "queue_message",
    "timer_request",
    "to_http_request",
]

DEFAULT_BASE_URL = "http://localhost:7071"  # where Core Tools serves a function app
AZURITE_BLOB = "http://127.0.0.1:10000/devstoreaccount1"


def to_http_request(request: Request, *, base_url: str = DEFAULT_BASE_URL, route_prefix: str = "") -> func.HttpRequest:
    """The ``func.HttpRequest`` the worker would build for ``request`` sent to ``base_url``."""
    prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
    raw_path = quote(request.raw_path, safe="/%!$&'()*+,;=:@-._~")
    url = base_url.rstrip("/") + prefix + raw_path + (f"?{request.query_string}" if request.query_string else "")
    headers: dict[str, str] = {}
    if "host" not in request.headers:
        headers["host"] = urlsplit(base_url).netloc
    for name, value in request.headers.multi_items():
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    if request.body and "content-length" not in headers:
        headers["content-length"] = str(len(request.body))
    params: dict[str, str] = {}
    for key, value in parse_qsl(request.query_string, keep_blank_values=True):
        if value:
            params[key] = f"{params[key]},{value}" if key in params else value
    route_path = unquote(raw_path.lstrip("/"))
    return func.HttpRequest(
        request.method,
        url,
        headers=headers,
        params=params,
        route_params={"path": route_path} if route_path else {},
        body=request.body,
    )


def from_http_response(resp: func.HttpResponse) -> Response:
    """The nubes :class:`Response` the host would send for ``resp`` (after the worker's converter)."""
    copy = func.HttpResponse(resp.get_body(), status_code=resp.status_code, mimetype=resp.mimetype,
                             charset=resp.charset)
    for name, value in resp.headers.items():
        copy.headers.add(name, value)
    datum = HttpResponseConverter.encode(copy, expected_type=None).value
    headers: list[tuple[str, str]] = [(name, h.value) for name, h in datum["headers"].items()]
    for cookie in datum["cookies"] or []:
        for morsel in cookie.values():
            headers.append(("set-cookie", morsel.OutputString()))
    return Response(datum["body"].value or b"", int(datum["status_code"].value), headers)


class _Context(func.Context):
    """A ``func.Context`` as the worker passes to functions that declare ``context``."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def thread_local_storage(self) -> Any:
        import threading

        return threading.local()

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


def invocation_context(invocation_id: str | None = None, *, function_name: str = "nubes_http",
                       function_directory: str = "/home/site/wwwroot") -> func.Context:
    """A ``func.Context`` with ``invocation_id`` (a fresh UUID by default)."""
    return _Context(invocation_id or str(uuid.uuid4()), function_name, function_directory)


def blob_input_stream(
    container: str,
    name: str,
    data: bytes = b"",
    *,
    etag: str | None = '"0x8DC0000000000000"',
    content_type: str = "application/octet-stream",
    last_modified: datetime | None = None,
    base_url: str = AZURITE_BLOB,
) -> func.InputStream:
    """The ``func.InputStream`` a blob trigger gets for blob ``name`` in ``container``.

    ``name`` is the worker's ``BlobTrigger`` metadata (``CONTAINER/NAME``); ``blob_properties`` has
    the host's property names (``ContentLength``, ``ETag``, ``LastModified``, ``ContentType``).
    """
    modified = last_modified or datetime.now(UTC)
    props: dict[str, Any] = {"ContentLength": len(data), "ContentType": content_type,
                             "LastModified": modified.isoformat(), "BlobType": "BlockBlob"}
    if etag is not None:
        props["ETag"] = etag
    return func.blob.InputStream(
        data=data,
        name=f"{container}/{name}",
        uri=f"{base_url.rstrip('/')}/{container}/{quote(name)}",
        length=len(data),
        blob_properties=props,
        metadata={},
    )


def queue_message(body: bytes | str, *, id: str | None = None, dequeue_count: int = 1,
                  pop_receipt: str | None = "AgAAAAMAAAAAAAAA") -> func.QueueMessage:
    """The ``func.QueueMessage`` a queue trigger gets (with the worker's metadata fields)."""
    now = datetime.now(UTC)
    return QueueMessage(  # type: ignore[no-untyped-call]
        id=id or str(uuid.uuid4()),
        body=body,
        dequeue_count=dequeue_count,
        insertion_time=now,
        expiration_time=now + timedelta(days=7),
        time_next_visible=now + timedelta(seconds=30),
        pop_receipt=pop_receipt,
    )


def timer_request(*, past_due: bool = False, last: datetime | None = None, next: datetime | None = None,
                  ) -> func.TimerRequest:
    """The ``func.TimerRequest`` a timer trigger gets; ``last`` / ``next`` fill ``schedule_status``."""
    status: dict[str, str] = {}
    if last is not None:
        status["Last"] = last.isoformat()
    if next is not None:
        status["Next"] = next.isoformat()
    if status:
        status["LastUpdated"] = datetime.now(UTC).isoformat()
    return TimerRequest(past_due=past_due, schedule_status=status or None, schedule={"AdjustForDST": True})
