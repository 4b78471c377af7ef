"""Non-HTTP events an app reacts to, in cloud-neutral form, and where each invocation runs.

Adapters translate provider payloads into these (S3 / GCS / Azure Blob object creation into
:class:`ObjectCreated`, SQS / Pub/Sub / Storage Queue messages into :class:`Message`, EventBridge /
Cloud Scheduler / Azure timers into :class:`Scheduled`) and call :meth:`nubes.App.handle_event`,
which calls every matching handler as ``handler(ctx, event)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

EventKind = Literal["object_created", "message", "schedule"]


@dataclass(frozen=True)
class ObjectCreated:
    """An object was written: ``store`` is the store URI (``s3://bucket``), ``key`` the object key within it."""

    store: str
    key: str
    size: int | None = None
    etag: str | None = None
    time: datetime | None = None

    @property
    def url(self) -> str:
        return f"{self.store.rstrip('/')}/{self.key}"


@dataclass(frozen=True)
class Message:
    """One queue message: provider ``id``, raw ``body`` bytes and string ``attributes``; ``queue`` is its queue name."""

    id: str
    body: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    queue: str = ""

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass(frozen=True)
class Scheduled:
    """A scheduled trigger fired: ``name`` is the rule / job / timer name, ``time`` when it was due."""

    name: str
    time: datetime


Event = ObjectCreated | Message | Scheduled


@dataclass(frozen=True)
class Platform:
    """Where an invocation runs, as its adapter knows it (``provider`` is local, aws, gcp or azure)."""

    provider: str = "local"
    function_name: str | None = None
    memory_mb: int | None = None
    region: str | None = None
    architecture: str | None = None
    cold_start: bool = False
    emulated: bool = False
    front: str | None = None  # how the HTTP request reached the function, as its cloud names it (aws: http|rest|url|alb)


LOCAL = Platform()


@dataclass
class EventRoute:
    """A registered event handler: what it listens to and the function to call."""

    kind: EventKind
    handler: Callable[..., Any]
    name: str
    prefix: str = ""  # object_created: key prefix
    store: str | None = None  # object_created: the store URI (None: any store)
    queue: str | None = None  # message: queue name (None: any queue)
    schedule: str | None = None  # schedule: the rule/job/timer name
    cron: str | None = None  # schedule: when it fires (deploy and Azure timers use it)
    options: dict[str, Any] = field(default_factory=dict)

    def matches(self, event: Event) -> bool:
        if isinstance(event, ObjectCreated):
            if self.kind != "object_created":
                return False
            if self.store is None:
                return event.key.startswith(self.prefix)
            return event.url.startswith(self.store.rstrip("/") + "/" + self.prefix)
        if isinstance(event, Message):
            return self.kind == "message" and (self.queue in (None, "*") or self.queue == event.queue)
        return self.kind == "schedule" and self.schedule == event.name

    def describe(self) -> str:
        what = {"object_created": f"prefix={self.prefix!r}", "message": f"queue={self.queue!r}", "schedule": f"name={self.schedule!r}"}
        return f"{self.kind}({what[self.kind]}) -> {self.name}"
