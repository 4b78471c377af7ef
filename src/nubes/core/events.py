"""Non-HTTP events an app reacts to, in cloud-neutral form, and where each invocation runs.

Adapters translate provider payloads into these (S3 / GCS / Azure Blob object creation into
:class:`ObjectCreated`, SQS / Pub/Sub / Storage Queue messages into :class:`Message`, EventBridge /
Cloud Scheduler / Azure timers into :class:`Scheduled`) and call :meth:`nubes.App.handle_event`,
which calls every matching handler as ``handler(ctx, event)``.
"""

from __future__ import annotations

import functools
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
    source: str | None = None
    """The logical source (``on_object_created(source=...)``) the event came through, once matched."""

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
    source: str | None = None
    """The logical queue name (``on_message("orders")``) the message matched, when it was bound."""

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

_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


@functools.cache
def machine_architecture() -> str:
    """This machine's architecture as :attr:`Platform.architecture` spells it (``x86_64``, ``arm64``;
    another machine type lower-case, as the OS names it). The one mapping every adapter uses."""
    import platform

    machine = platform.machine().lower()
    return _MACHINES.get(machine, machine)


@dataclass
class EventRoute:
    """A registered event handler: what it listens to and the function to call."""

    kind: EventKind
    handler: Callable[..., Any]
    name: str
    prefix: str = ""  # object_created: key prefix
    store: str | None = None  # object_created: an explicit store URI filter
    source: str | None = None  # object_created: the logical source (None with no store: the home store)
    queue: str | None = None  # message: logical queue name (None: any queue)
    schedule: str | None = None  # schedule: the rule/job/timer name
    cron: str | None = None  # schedule: when it fires (deploy and Azure timers use it)
    options: dict[str, Any] = field(default_factory=dict)

    def matches(self, event: Event, bindings: Any = None) -> bool:
        """Whether this route takes ``event`` (under ``bindings``, see :mod:`nubes.core.triggers`)."""
        return self.match(event, bindings) is not None

    def match(self, event: Event, bindings: Any = None) -> Event | None:
        """The event as this route's handler gets it (re-based on its source), or None."""
        from nubes.core import triggers

        if bindings is None:
            bindings = triggers.Bindings(None, {}, {}, "")
        return triggers.match(self, event, bindings)

    def describe(self, bindings: Any = None) -> str:
        from nubes.core import triggers

        return triggers.describe(self, bindings if bindings is not None else triggers.Bindings(None, {}, {}, ""))
