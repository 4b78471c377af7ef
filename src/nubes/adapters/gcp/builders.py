"""Google Cloud Functions payloads for tests: Flask requests and CloudEvents shaped like the real ones.

``to_flask_request`` / ``from_flask_response`` cross between nubes and the functions-framework's
Flask objects (through werkzeug's ``EnvironBuilder``, so the WSGI environ is what a server builds).
The CloudEvent builders follow what Eventarc delivers to Cloud Functions 2nd gen:

* ``storage_finalized_event``: ``google.cloud.storage.object.v1.finalized``, source
  ``//storage.googleapis.com/projects/_/buckets/BUCKET``, subject ``objects/NAME``, the ``bucket``
  extension attribute, and the object resource as data (int64 fields as JSON strings, as the
  JSON API sends them).
* ``pubsub_event``: ``google.cloud.pubsub.topic.v1.messagePublished``, source
  ``//pubsub.googleapis.com/projects/PROJECT/topics/TOPIC``, data ``{"message": {...},
  "subscription": "projects/PROJECT/subscriptions/SUB"}`` with base64 ``data`` and both spellings
  of ``messageId`` / ``publishTime``, as the push payload carries them.
* ``scheduler_event`` / ``scheduler_request``: Cloud Scheduler by the nubes convention
  (see :mod:`nubes.adapters.gcp.functions`).

Send a CloudEvent over HTTP with ``cloudevents.conversion.to_binary(event)`` or ``to_structured(event)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import flask
from cloudevents.http import CloudEvent
from werkzeug.test import EnvironBuilder

from nubes.adapters.gcp.functions import PUBSUB_PUBLISHED, SCHEDULE_ATTRIBUTE, SCHEDULE_PATH, STORAGE_FINALIZED
from nubes.core.request import Request
from nubes.core.response import Response

DEFAULT_PROJECT = "nubes-test"
DEFAULT_REGION = "us-central1"


def to_flask_request(request: Request) -> flask.Request:
    """The Flask request a functions-framework target would get for ``request``.

    Raw path and raw query string are kept as sent; a repeated header arrives as one
    comma-joined value, as every WSGI server delivers it.
    """
    headers = request.headers.multi_items()
    host = request.headers.get("host") or "localhost"
    builder = EnvironBuilder(
        path=request.raw_path,
        base_url=f"{request.scheme}://{host}",
        query_string=request.query_string,
        method=request.method,
        headers=[(k, v) for k, v in headers if k.lower() != "host"],
        data=request.body,
    )
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    return flask.Request(environ)


def from_flask_response(response: Any) -> Response:
    """The nubes :class:`~nubes.Response` for a Flask / werkzeug response (or a test client's)."""
    return Response(response.get_data(), response.status_code, list(response.headers.items()))


def storage_finalized_event(
    bucket: str,
    name: str,
    size: int | None = None,
    generation: int | str | None = None,
    *,
    data: bytes | None = None,
    content_type: str = "application/octet-stream",
    metageneration: int = 1,
    time: datetime | None = None,
    event_id: str | None = None,
) -> CloudEvent:
    """A ``google.cloud.storage.object.v1.finalized`` CloudEvent for ``gs://bucket/name``.

    ``size`` defaults to ``len(data)`` (or 0); ``data`` also fills ``md5Hash``; ``generation``
    defaults to a microsecond timestamp, as GCS's are.
    """
    when = _utc(time)
    if size is None:
        size = len(data) if data is not None else 0
    gen = int(generation) if generation is not None else int(when.timestamp() * 1_000_000)
    stamp = _rfc3339(when)
    quoted = quote(name, safe="")
    obj: dict[str, Any] = {
        "kind": "storage#object",
        "id": f"{bucket}/{name}/{gen}",
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{quoted}",
        "name": name,
        "bucket": bucket,
        "generation": str(gen),
        "metageneration": str(metageneration),
        "contentType": content_type,
        "timeCreated": stamp,
        "updated": stamp,
        "storageClass": "STANDARD",
        "timeStorageClassUpdated": stamp,
        "size": str(size),
        "mediaLink": f"https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/{quoted}?generation={gen}&alt=media",
        "etag": _gcs_etag(gen, metageneration),
    }
    if data is not None:
        obj["md5Hash"] = base64.b64encode(hashlib.md5(data).digest()).decode("ascii")
    attributes = {
        "specversion": "1.0",
        "id": event_id or _numeric_id(),
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "type": STORAGE_FINALIZED,
        "subject": f"objects/{name}",
        "time": stamp,
        "datacontenttype": "application/json",
        "bucket": bucket,
    }
    return CloudEvent(attributes, obj)


def pubsub_event(
    data: bytes | str | Mapping[str, Any] = b"",
    attributes: Mapping[str, str] | None = None,
    subscription: str | None = None,
    *,
    topic: str = "nubes-topic",
    project: str = DEFAULT_PROJECT,
    message_id: str | None = None,
    publish_time: datetime | None = None,
) -> CloudEvent:
    """A ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent for one message on ``topic``.

    ``data`` is the message payload (a mapping is sent as JSON); ``subscription`` a short name or
    ``projects/P/subscriptions/S`` (default: a generated Eventarc-style name).
    """
    if isinstance(data, Mapping):
        payload = json.dumps(data).encode("utf-8")
    elif isinstance(data, str):
        payload = data.encode("utf-8")
    else:
        payload = bytes(data)
    mid = message_id or _numeric_id()
    stamp = _rfc3339(_utc(publish_time))
    message: dict[str, Any] = {
        "data": base64.b64encode(payload).decode("ascii"),
        "messageId": mid,
        "message_id": mid,
        "publishTime": stamp,
        "publish_time": stamp,
    }
    if attributes:
        message["attributes"] = {str(k): str(v) for k, v in attributes.items()}
    sub = subscription or f"eventarc-{DEFAULT_REGION}-nubes-{random.randrange(1000):03d}-sub-{random.randrange(1000):03d}"
    if not sub.startswith("projects/"):
        sub = f"projects/{project}/subscriptions/{sub}"
    ce_attributes = {
        "specversion": "1.0",
        "id": mid,
        "source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
        "type": PUBSUB_PUBLISHED,
        "time": stamp,
        "datacontenttype": "application/json",
    }
    return CloudEvent(ce_attributes, {"message": message, "subscription": sub})


def scheduler_event(name: str, *, time: datetime | None = None, topic: str = "nubes-schedules", body: bytes = b"{}") -> CloudEvent:
    """The Pub/Sub CloudEvent a Cloud Scheduler job ``name`` publishes by the nubes convention (attribute ``nubes-schedule``)."""
    return pubsub_event(body, {SCHEDULE_ATTRIBUTE: name}, topic=topic, publish_time=time)


def scheduler_request(name: str, *, time: datetime | None = None, project: str = DEFAULT_PROJECT) -> Request:
    """The ``POST /_nubes/schedule/NAME`` a Cloud Scheduler HTTP job sends (with its ``X-CloudScheduler*`` headers)."""
    headers = [
        ("user-agent", "Google-Cloud-Scheduler"),
        ("x-cloudscheduler", "true"),
        ("x-cloudscheduler-jobname", name),
        ("x-cloudscheduler-scheduletime", _rfc3339(_utc(time))),
        ("content-type", "application/octet-stream"),
    ]
    return Request("POST", SCHEDULE_PATH + quote(name, safe=""), headers=headers, scheme="https")


def _utc(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(UTC)
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _numeric_id() -> str:
    return str(random.randrange(10**15, 10**16))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _gcs_etag(generation: int, metageneration: int) -> str:
    """GCS's object etag: base64 of the protobuf varints (1: generation, 2: metageneration)."""
    return base64.b64encode(b"\x08" + _varint(generation) + b"\x10" + _varint(metageneration)).decode("ascii")


__all__ = [
    "from_flask_response",
    "pubsub_event",
    "scheduler_event",
    "scheduler_request",
    "storage_finalized_event",
    "to_flask_request",
]
