"""CloudEvents (from Eventarc) as nubes events: Cloud Storage ``finalized`` and Pub/Sub ``messagePublished``.

:func:`event_from_cloud_event` is the one entry point; every malformed or unsupported payload raises
:class:`~nubes.errors.UnknownEvent` (the adapter logs and acknowledges it, see :mod:`.functions`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from nubes.core.events import Event, Message, ObjectCreated, Scheduled
from nubes.core.request import is_text
from nubes.errors import UnknownEvent

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
SUPPORTED_EVENT_TYPES: tuple[str, ...] = (STORAGE_FINALIZED, PUBSUB_PUBLISHED)
SCHEDULE_ATTRIBUTE = "nubes-schedule"
"""The Pub/Sub message attribute that marks a Cloud Scheduler message; its value is the schedule name."""


# -- events -------------------------------------------------------------------------------------
def event_from_cloud_event(cloud_event: Any) -> Event:
    """The nubes event for a CloudEvent (a ``cloudevents`` object or its structured-mode dict).

    Raises :class:`~nubes.errors.UnknownEvent` for a type nubes does not handle or a malformed payload.
    """
    attributes, data = _split_cloud_event(cloud_event)
    kind = attributes.get("type")
    if kind == STORAGE_FINALIZED:
        return _object_created(attributes, _json_data(data, kind))
    if kind == PUBSUB_PUBLISHED:
        return _pubsub_event(attributes, _json_data(data, kind))
    raise UnknownEvent(
        f"cannot handle CloudEvent type {kind!r} (source {attributes.get('source')!r}); "
        f"nubes on Cloud Functions handles {', '.join(SUPPORTED_EVENT_TYPES)}"
    )


def cloud_event_id(cloud_event: Any) -> str | None:
    """The CloudEvent's ``id`` attribute (None if absent); :class:`~nubes.errors.UnknownEvent` if malformed."""
    attributes, _ = _split_cloud_event(cloud_event)
    return _text(attributes.get("id"), "id") or None


def cloud_event_from_flask(request: Any) -> Any:
    """The CloudEvent in a request (binary or structured mode, or a legacy background event the framework converts)."""
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http

    try:
        return from_http(request.headers, request.get_data())
    except (GenericException, ValueError, TypeError) as exc:
        try:
            from functions_framework.event_conversion import background_event_to_cloud_event

            return background_event_to_cloud_event(request)
        except Exception:
            raise UnknownEvent(f"the request carries no CloudEvent ({exc}); expected one of {', '.join(SUPPORTED_EVENT_TYPES)}") from None


def _split_cloud_event(cloud_event: Any) -> tuple[dict[str, Any], Any]:
    if hasattr(cloud_event, "get_attributes") and hasattr(cloud_event, "data"):
        return dict(cloud_event.get_attributes()), cloud_event.data
    if isinstance(cloud_event, Mapping):
        attributes = {k: v for k, v in cloud_event.items() if k not in ("data", "data_base64")}
        if "data_base64" in cloud_event:
            try:
                return attributes, base64.b64decode(cloud_event["data_base64"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise UnknownEvent("the CloudEvent's data_base64 is not base64") from None
        return attributes, cloud_event.get("data")
    raise UnknownEvent(f"expected a CloudEvent, got {type(cloud_event).__name__}")


def _json_data(data: Any, kind: str) -> Mapping[str, Any]:
    if isinstance(data, (bytes, bytearray, str)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            raise UnknownEvent(f"{kind} event data is not JSON (or nested too deeply)") from None
    if not isinstance(data, Mapping):
        raise UnknownEvent(f"{kind} event data is {type(data).__name__}, expected a JSON object")
    return data


def _object_created(attributes: Mapping[str, Any], data: Mapping[str, Any]) -> ObjectCreated:
    bucket = _text(data.get("bucket"), "data.bucket") or _after(attributes.get("source"), "/buckets/")
    key = _text(data.get("name"), "data.name") or _text(attributes.get("subject"), "subject").removeprefix("objects/")
    if not bucket or not key or "/" in bucket:
        raise UnknownEvent(f"{STORAGE_FINALIZED} event names no bucket or object (source {attributes.get('source')!r})")
    raw_size = data.get("size")
    try:
        size = int(raw_size) if raw_size not in (None, "") and not isinstance(raw_size, bool) else None
    except (TypeError, ValueError, OverflowError):
        raise UnknownEvent(f"{STORAGE_FINALIZED} event has a non-numeric size {raw_size!r:.40}") from None
    if size is not None and size < 0:
        raise UnknownEvent(f"{STORAGE_FINALIZED} event has a negative size")
    generation = data.get("generation")
    if generation not in (None, "") and (isinstance(generation, bool) or not isinstance(generation, (str, int))):
        raise UnknownEvent(f"{STORAGE_FINALIZED} event field data.generation must be a number or a string")
    etag = _text(generation if isinstance(generation, str) else str(generation), "data.generation") if generation not in (None, "") \
        else (_text(data.get("etag"), "data.etag") or None)
    when = parse_time(data.get("timeCreated")) or parse_time(attributes.get("time"))
    return ObjectCreated(store=f"gs://{bucket}", key=key, size=size, etag=etag, time=when)


def _pubsub_event(attributes: Mapping[str, Any], data: Mapping[str, Any]) -> Message | Scheduled:
    message = data.get("message")
    if not isinstance(message, Mapping):
        raise UnknownEvent(f"{PUBSUB_PUBLISHED} event has no message object")
    raw_attrs = message.get("attributes") or {}
    if not isinstance(raw_attrs, Mapping):
        raise UnknownEvent(f"{PUBSUB_PUBLISHED} message attributes must be an object")
    attrs = {_text(k, "message.attributes"): _text(v, "message.attributes") for k, v in raw_attrs.items()}
    published = parse_time(message.get("publishTime") or message.get("publish_time")) or parse_time(attributes.get("time"))
    if SCHEDULE_ATTRIBUTE in attrs:
        return Scheduled(attrs[SCHEDULE_ATTRIBUTE], published or datetime.now(UTC))
    try:
        body = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise UnknownEvent(f"{PUBSUB_PUBLISHED} message data is not base64") from None
    message_id = message.get("messageId") or message.get("message_id") or attributes.get("id") or ""
    if isinstance(message_id, bool) or not isinstance(message_id, (str, int)):
        raise UnknownEvent(f"{PUBSUB_PUBLISHED} message id must be a string")
    queue = _after(attributes.get("source"), "/topics/") or _after(data.get("subscription"), "/subscriptions/") or ""
    return Message(id=_text(str(message_id), "message.messageId"), body=body, attributes=attrs, queue=queue)


def _text(value: Any, where: str) -> str:
    """``value`` as text ("" if absent); :class:`~nubes.errors.UnknownEvent` if it is not a string UTF-8 can encode."""
    if value is None:
        return ""
    if is_text(value):
        return value
    raise UnknownEvent(f"event field {where} must be text")


def _after(value: Any, marker: str) -> str | None:
    """The path segment after ``marker`` in ``value`` (``//pubsub.../topics/T`` -> ``T``)."""
    _, found, rest = _text(value if isinstance(value, str) else None, marker.strip("/")).partition(marker)
    if not found:
        return None
    return rest.split("/", 1)[0] or None


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or offset, any fraction) as an aware datetime; None if absent or invalid."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        when = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
