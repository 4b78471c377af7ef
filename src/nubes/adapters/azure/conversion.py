"""What the Azure Functions worker hands a nubes function app, as nubes objects, and back.

* HTTP: :func:`to_nubes_request` (path and raw query from the request's URL; what
  :class:`~nubes.Request` refuses raises its 400 :class:`~nubes.errors.HTTPError`) and
  :func:`to_func_response` (repeated headers joined, each ``Set-Cookie`` kept).
* Triggers: :func:`object_created_event` (a blob's ``InputStream``), :func:`message_event`
  (a ``QueueMessage``), :func:`scheduled_event` (a ``TimerRequest``); an input that cannot be read
  raises :class:`~nubes.errors.UnknownEvent` naming what is wrong.
"""

from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from nubes.adapters.naming import split_uri
from nubes.core.events import Message, ObjectCreated, Scheduled
from nubes.core.request import Request, is_text
from nubes.core.response import Response
from nubes.errors import UnknownEvent

__all__ = ["message_event", "object_created_event", "scheduled_event", "to_func_response", "to_nubes_request"]


def to_nubes_request(req: func.HttpRequest, *, route_prefix: str = "") -> Request:
    """The nubes :class:`Request` for an Azure ``HttpRequest`` (path and raw query from its URL)."""
    parts = urlsplit(req.url)
    path = parts.path or "/"
    prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix):] or "/"
    headers = [(str(k), str(v)) for k, v in req.headers.items()]
    try:
        method = req.method
    except AttributeError:  # HttpRequest(method=None): its property calls None.upper()
        method = None
    return Request(method, path, query=parts.query, headers=headers, body=req.get_body() or b"",
                   scheme=parts.scheme or "https")


def to_func_response(response: Response, *, log: Any = None) -> func.HttpResponse:
    """An Azure ``HttpResponse`` carrying every header of ``response``.

    The worker sends response headers as a map, so repeats of one header are joined with ``, ``
    here (RFC 9110 list syntax); each ``Set-Cookie`` stays separate (the worker sends them as cookies).
    """
    content_type = response.headers.get("content-type")
    mimetype, charset = _split_content_type(content_type)
    out = func.HttpResponse(response.body, status_code=response.status, mimetype=mimetype, charset=charset)
    grouped: dict[str, list[str]] = {}
    for name, value in response.headers.multi_items():
        grouped.setdefault(name, []).append(value)
    for name, values in grouped.items():
        if name == "set-cookie":
            for value in values:
                if _parses(value):
                    out.headers.add("Set-Cookie", value)
                elif log is not None:
                    log.warning("azure: the worker cannot parse this Set-Cookie (http.cookies); not sent",
                                cookie=value.split("=", 1)[0][:40])
        else:
            out.headers.add(name, ", ".join(values))
    return out


def _parses(set_cookie: str) -> bool:
    """Whether the worker's ``SimpleCookie(value)`` keeps this cookie (it drops what it cannot parse)."""
    try:
        return bool(SimpleCookie(set_cookie))
    except CookieError:
        return False


def _split_content_type(value: str | None) -> tuple[str, str]:
    if not value:
        return "application/octet-stream", "utf-8"
    mimetype, *params = (p.strip() for p in value.split(";"))
    charset = "utf-8"
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val:
            charset = val.strip().strip('"')
    return mimetype or "application/octet-stream", charset


# -- trigger inputs ---------------------------------------------------------------------------
def _is_az(uri: str | None) -> bool:
    return bool(uri) and str(uri).lower().startswith("az://")


def object_created_event(blob: func.InputStream, *, home_store: str | None = None) -> ObjectCreated:
    """The :class:`ObjectCreated` for a blob trigger's ``InputStream``.

    ``store`` is ``az://CONTAINER`` with the full blob name as ``key``, except for blobs under the
    app's home store (``home_store``, an ``az://`` URI), which get that store and a key relative to it.
    """
    name = blob.name or ""
    container, _, key = name.partition("/") if isinstance(name, str) else ("", "", "")
    if not container or not key or not is_text(name):
        raise UnknownEvent(f"blob trigger input named {name!r:.200}; expected CONTAINER/BLOB_NAME (the BlobTrigger metadata)")
    props = getattr(blob, "blob_properties", None) or {}
    size = blob.length
    if size is None:
        size = _prop(props, "ContentLength", "Length")
    if size is not None:
        try:
            size = int(size)
        except (TypeError, ValueError, OverflowError):
            raise UnknownEvent(f"blob {name!r:.200} has a length that is not a number: {size!r:.40}") from None
        if size < 0:
            raise UnknownEvent(f"blob {name!r:.200} has a negative length")
    etag = _prop(props, "ETag", "Etag")
    modified = _parse_time(_prop(props, "LastModified"))
    store = f"az://{container}"
    if home_store and _is_az(home_store):
        _, home_container, home_path = split_uri(home_store)
        if home_container == container and key.startswith(home_path) and home_path:
            store, key = home_store.split("?", 1)[0].rstrip("/"), key[len(home_path):]
    return ObjectCreated(store=store, key=key, size=size,
                         etag='"' + str(etag).strip('"') + '"' if etag else None, time=modified)


def _prop(props: Any, *names: str) -> Any:
    if not isinstance(props, dict):
        return None
    lowered = {str(k).lower(): v for k, v in props.items()}
    for name in names:
        if lowered.get(name.lower()) not in (None, ""):
            return lowered[name.lower()]
    return None


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def message_event(msg: func.QueueMessage, *, queue: str) -> Message:
    """The :class:`Message` for a queue trigger's ``QueueMessage`` (metadata as string attributes)."""
    attributes: dict[str, str] = {}
    for attr, key in (("dequeue_count", "dequeue_count"), ("insertion_time", "insertion_time"),
                      ("expiration_time", "expiration_time"), ("time_next_visible", "time_next_visible"),
                      ("pop_receipt", "pop_receipt")):
        value = getattr(msg, attr, None)
        if value is not None:
            attributes[key] = value.isoformat() if isinstance(value, datetime) else str(value)
    body = msg.get_body() or b""
    if not isinstance(body, (bytes, bytearray)):
        raise UnknownEvent(f"queue message body is {type(body).__name__}, not bytes")
    return Message(id=str(msg.id or ""), body=bytes(body), attributes=attributes, queue=queue)


def scheduled_event(timer: func.TimerRequest, *, name: str) -> Scheduled:
    """The :class:`Scheduled` for a timer trigger: due at ``ScheduleStatus.Next`` if that is not in
    the future (the occurrence now firing, also when past due), else now (UTC)."""
    now = datetime.now(UTC)
    status = getattr(timer, "schedule_status", None) or {}
    due = _parse_time(status.get("Next")) if isinstance(status, dict) else None
    return Scheduled(name=name, time=due if due is not None and due <= now else now)
