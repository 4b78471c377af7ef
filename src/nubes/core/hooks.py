"""Invocation hooks: code that observes every invocation (metering is one), without touching dispatch.

An :class:`Invocation` is created when a request or event arrives and finished when the answer is
ready. Each hook's ``begin`` runs before the handler and ``end`` after it (for HTTP, before the
response leaves: ``end`` may add headers). ``end`` may also add ``log_fields`` to the invocation's
log line. A hook that raises is logged and ignored: hooks never fail an invocation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.events import Event, Platform
    from nubes.core.request import Request
    from nubes.core.response import Response
    from nubes.storage.base import IOStats


@dataclass
class Invocation:
    """One invocation as hooks see it. ``io`` counts the storage operations and bytes it caused."""

    app: App
    request_id: str
    kind: str  # "http" | "event"
    platform: Platform
    started: float  # time.perf_counter() at arrival
    start_time: datetime  # wall clock (UTC) at arrival
    io: IOStats
    request: Request | None = None
    event: Event | None = None
    route: str | None = None
    status: int | None = None  # HTTP status; for events 200 on success, 500 on failure
    duration_ms: float | None = None
    response: Response | None = None
    log_fields: dict[str, Any] = field(default_factory=dict)
    principal: Any = None  # the authenticated caller (nubes.core.auth.Principal), if any
    state: dict[str, Any] = field(default_factory=dict)  # per-hook scratch space


class InvocationHook(Protocol):
    def begin(self, invocation: Invocation) -> None: ...

    def end(self, invocation: Invocation) -> None: ...
