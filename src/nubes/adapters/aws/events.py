"""Non-HTTP event sources of Lambda, one small class each: S3 notifications, SQS batches and
EventBridge scheduled rules. Each has ``infer(event)`` and is called as ``source(app, event, inv)``.

* S3: each ``ObjectCreated:*`` record becomes :class:`~nubes.ObjectCreated` (``store="s3://bucket"``,
  the key URL-decoded: S3 writes a space as ``+``), handled one record at a time. Other records
  (``ObjectRemoved`` ...) are skipped with a warning. A handler's exception propagates, so Lambda
  retries the (asynchronous) invocation. Returns None.
* SQS: each record becomes :class:`~nubes.Message` and is handled on its own; the ids of the
  messages whose handler raised come back as ``{"batchItemFailures": [{"itemIdentifier": id}]}``,
  which Lambda honours only with ``ReportBatchItemFailures`` on the event source mapping. On a FIFO
  queue the messages after a failure are not handled and reported as failed too, to keep the order.
* Schedule: an EventBridge ``Scheduled Event`` becomes :class:`~nubes.Scheduled` named after the
  rule (the last part of ``resources[0]``). Returns None; a handler's exception propagates.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import unquote_plus

from nubes.adapters.aws.context import Invocation
from nubes.core.app import App
from nubes.core.events import Message, ObjectCreated, Scheduled

Event = Mapping[str, Any]


def parse_time(value: str | None) -> datetime | None:
    """An AWS ISO-8601 timestamp (``1970-01-01T00:00:00.000Z``) as an aware datetime."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _records_from(event: Event, source: str) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and isinstance(records[0], Mapping) and records[0].get("eventSource") == source


class S3ObjectCreated:
    """S3 event notifications (``Records[].eventSource == "aws:s3"``)."""

    name: ClassVar[str] = "S3 ObjectCreated notification"

    @staticmethod
    def infer(event: Event) -> bool:
        return _records_from(event, "aws:s3")

    @staticmethod
    def event(record: Mapping[str, Any]) -> ObjectCreated:
        s3 = record["s3"]
        obj = s3["object"]
        return ObjectCreated(
            store=f"s3://{s3['bucket']['name']}",
            key=unquote_plus(obj["key"]),
            size=obj.get("size"),
            etag=obj.get("eTag"),
            time=parse_time(record.get("eventTime")),
        )

    def __call__(self, app: App, event: Event, inv: Invocation) -> None:
        for record in event["Records"]:
            kind = record.get("eventName", "")
            if not kind.startswith("ObjectCreated:"):
                app.log.bind(request_id=inv.request_id).warning("S3 record skipped: not ObjectCreated", event_name=kind)
                continue
            app.handle_event(self.event(record), request_id=inv.request_id, deadline=inv.deadline, platform=inv.platform)


class SqsBatch:
    """SQS batches (``Records[].eventSource == "aws:sqs"``), with partial batch failure reporting."""

    name: ClassVar[str] = "SQS messages"

    @staticmethod
    def infer(event: Event) -> bool:
        return _records_from(event, "aws:sqs")

    @staticmethod
    def message(record: Mapping[str, Any]) -> Message:
        """The record as a Message: string message attributes, then SQS's system attributes (which win)."""
        attributes: dict[str, str] = {}
        for name, attr in (record.get("messageAttributes") or {}).items():
            value = attr.get("stringValue") if isinstance(attr, Mapping) else None
            if value is not None:
                attributes[name] = value
        attributes.update(record.get("attributes") or {})
        body = record.get("body") or ""
        return Message(
            id=record["messageId"],
            body=body.encode("utf-8"),
            attributes=attributes,
            queue=(record.get("eventSourceARN") or "").rsplit(":", 1)[-1],
        )

    def __call__(self, app: App, event: Event, inv: Invocation) -> dict[str, list[dict[str, str]]]:
        failures: list[dict[str, str]] = []
        for record in event["Records"]:
            ident = record["messageId"]
            if failures and (record.get("eventSourceARN") or "").endswith(".fifo"):
                failures.append({"itemIdentifier": ident})  # FIFO: keep the order, retry the rest
                continue
            try:
                app.handle_event(self.message(record), request_id=inv.request_id, deadline=inv.deadline, platform=inv.platform)
            except Exception:  # logged by App.handle_event; reported to SQS for this message only
                failures.append({"itemIdentifier": ident})
        return {"batchItemFailures": failures}


class EventBridgeSchedule:
    """EventBridge scheduled rules (``detail-type: Scheduled Event``)."""

    name: ClassVar[str] = "EventBridge Scheduled Event"

    @staticmethod
    def infer(event: Event) -> bool:
        return event.get("detail-type") == "Scheduled Event" and bool(event.get("resources"))

    @staticmethod
    def event(event: Event) -> Scheduled:
        rule = str(event["resources"][0]).rsplit("/", 1)[-1]
        return Scheduled(name=rule, time=parse_time(event.get("time")) or datetime.now().astimezone())

    def __call__(self, app: App, event: Event, inv: Invocation) -> None:
        app.handle_event(self.event(event), request_id=inv.request_id, deadline=inv.deadline, platform=inv.platform)
