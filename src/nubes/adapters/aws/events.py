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

A record or event that cannot be read (a field missing or of the wrong type, a bad timestamp) never
raises: it is logged (``unreadable event``, with an excerpt) and reported the way its source
expects. An SQS record is reported in ``batchItemFailures`` (under its ``messageId``; without one,
as ``""``, which makes Lambda retry the whole batch: nothing is lost); an S3 record or a schedule
makes the invocation return ``{"errorType": "UnknownEvent", "errorMessage": ...}`` after the readable
records were handled: a result, not an error, since retrying cannot make it readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import unquote_plus

from nubes.adapters.aws import fields
from nubes.adapters.aws.context import Invocation
from nubes.core.app import App
from nubes.core.events import Message, ObjectCreated, Scheduled
from nubes.core.logs import excerpt
from nubes.errors import UnknownEvent

Event = Mapping[str, Any]


def parse_time(value: Any, where: str = "eventTime") -> datetime | None:
    """An AWS ISO-8601 timestamp (``1970-01-01T00:00:00.000Z``) as an aware datetime; None if absent,
    :class:`~nubes.errors.UnknownEvent` if it is not one."""
    text = fields.opt_text(value, where)
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fields.bad(where, "an ISO 8601 timestamp", value) from None


def _records_from(event: Event, source: str) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and isinstance(records[0], Mapping) and records[0].get("eventSource") == source


def unreadable(app: App, inv: Invocation, source: str, detail: str, event: Any) -> dict[str, str]:
    """Log an event nubes cannot read and return the error result that reports it (no traceback)."""
    app.log.bind(request_id=inv.request_id or "-").error(
        "unreadable event", adapter="aws", source=source, detail=detail, event_excerpt=excerpt(event))
    return {"errorType": "UnknownEvent", "errorMessage": f"{source}: {detail}"}


class S3ObjectCreated:
    """S3 event notifications (``Records[].eventSource == "aws:s3"``)."""

    name: ClassVar[str] = "S3 ObjectCreated notification"

    @staticmethod
    def infer(event: Event) -> bool:
        return _records_from(event, "aws:s3")

    @staticmethod
    def event(record: Any) -> ObjectCreated:
        """The record as an ObjectCreated; :class:`~nubes.errors.UnknownEvent` if it cannot be read."""
        record = fields.mapping(record, "Records[]")
        s3 = fields.mapping(record.get("s3"), "s3")
        bucket = fields.text(fields.mapping(s3.get("bucket"), "s3.bucket").get("name"), "s3.bucket.name")
        obj = fields.mapping(s3.get("object"), "s3.object")
        key = fields.text(obj.get("key"), "s3.object.key")
        size = obj.get("size")
        if size is not None and (type(size) is not int or size < 0):
            raise fields.bad("s3.object.size", "a non-negative integer", size)
        if not bucket or "/" in bucket or not key:
            raise UnknownEvent("event field s3.bucket.name or s3.object.key is empty or not a bucket name")
        return ObjectCreated(
            store=f"s3://{bucket}",
            key=unquote_plus(key),
            size=size,
            etag=fields.opt_text(obj.get("eTag"), "s3.object.eTag"),
            time=parse_time(record.get("eventTime")),
        )

    def __call__(self, app: App, event: Event, inv: Invocation) -> dict[str, str] | None:
        problems: list[str] = []
        for index, record in enumerate(event["Records"]):
            try:
                kind = fields.text(fields.mapping(record, "Records[]").get("eventName"), "eventName")
                if not kind.startswith("ObjectCreated:"):
                    app.log.bind(request_id=inv.request_id).warning("S3 record skipped: not ObjectCreated", event_name=kind)
                    continue
                created = self.event(record)
            except UnknownEvent as exc:
                unreadable(app, inv, self.name, f"Records[{index}]: {exc}", record)
                problems.append(f"Records[{index}]: {exc}")
                continue
            app.handle_event(created, request_id=inv.request_id, deadline=inv.deadline, platform=inv.platform)
        if problems:
            return {"errorType": "UnknownEvent", "errorMessage": f"{self.name}: unreadable " + "; ".join(problems)[:1000]}
        return None


class SqsBatch:
    """SQS batches (``Records[].eventSource == "aws:sqs"``), with partial batch failure reporting."""

    name: ClassVar[str] = "SQS messages"

    @staticmethod
    def infer(event: Event) -> bool:
        return _records_from(event, "aws:sqs")

    @staticmethod
    def message(record: Any) -> Message:
        """The record as a Message: string message attributes, then SQS's system attributes (which win);
        :class:`~nubes.errors.UnknownEvent` if it cannot be read."""
        record = fields.mapping(record, "Records[]")
        attributes: dict[str, str] = {}
        for name, attr in fields.mapping(record.get("messageAttributes"), "messageAttributes").items():
            value = attr.get("stringValue") if isinstance(attr, Mapping) else None
            if value is not None:
                attributes[fields.text(name, "messageAttributes (a name)")] = fields.text(value, f"messageAttributes.{name}.stringValue")
        attributes.update(fields.text_map(record.get("attributes"), "attributes"))
        ident = fields.text(record.get("messageId"), "messageId")
        body = fields.opt_text(record.get("body"), "body") or ""
        return Message(id=ident, body=body.encode("utf-8"), attributes=attributes, queue=_arn(record).rsplit(":", 1)[-1])

    def __call__(self, app: App, event: Event, inv: Invocation) -> dict[str, list[dict[str, str]]]:
        failures: list[dict[str, str]] = []
        for index, record in enumerate(event["Records"]):
            ident = record.get("messageId") if isinstance(record, Mapping) else None
            ident = ident if isinstance(ident, str) else ""  # "" fails the whole batch: Lambda retries it all
            try:
                message = self.message(record)
            except UnknownEvent as exc:
                unreadable(app, inv, self.name, f"Records[{index}]: {exc}", record)
                failures.append({"itemIdentifier": ident})
                continue
            if failures and _arn(record).endswith(".fifo"):
                failures.append({"itemIdentifier": ident})  # FIFO: keep the order, retry the rest
                continue
            try:
                app.handle_event(message, request_id=inv.request_id, deadline=inv.deadline, platform=inv.platform)
            except Exception:  # logged by App.handle_event; reported to SQS for this message only
                failures.append({"itemIdentifier": ident})
        return {"batchItemFailures": failures}


def _arn(record: Mapping[str, Any]) -> str:
    return fields.opt_text(record.get("eventSourceARN"), "eventSourceARN") or ""


class EventBridgeSchedule:
    """EventBridge scheduled rules (``detail-type: Scheduled Event``)."""

    name: ClassVar[str] = "EventBridge Scheduled Event"

    @staticmethod
    def infer(event: Event) -> bool:
        return event.get("detail-type") == "Scheduled Event" and bool(event.get("resources"))

    @staticmethod
    def event(event: Event) -> Scheduled:
        """The schedule that fired; :class:`~nubes.errors.UnknownEvent` if the event cannot be read."""
        resources = event.get("resources")
        if not isinstance(resources, list) or not resources:
            raise fields.bad("resources", "an array of rule ARNs", resources)
        rule = fields.text(resources[0], "resources[0]").rsplit("/", 1)[-1]
        if not rule:
            raise UnknownEvent("event field resources[0] names no rule")
        return Scheduled(name=rule, time=parse_time(event.get("time"), "time") or datetime.now().astimezone())

    def __call__(self, app: App, event: Event, inv: Invocation) -> dict[str, str] | None:
        try:
            scheduled = self.event(event)
        except UnknownEvent as exc:
            return unreadable(app, inv, self.name, str(exc), event)
        app.handle_event(scheduled, request_id=inv.request_id, deadline=inv.deadline, platform=inv.platform)
        return None
