"""The per-invocation context handed to every handler as its first argument."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nubes.core.events import LOCAL, Event, Platform
from nubes.core.logs import BoundLog
from nubes.core.request import Request

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.storage.base import ObjectStore


class Context:
    """What a handler knows about its invocation.

    ``request`` (the :class:`~nubes.Request`; None for an event), ``event`` (the
    :class:`~nubes.ObjectCreated` / :class:`~nubes.Message` / :class:`~nubes.Scheduled` being handled;
    None for HTTP), ``platform`` (where this runs: provider, memory, cold start), ``app``, ``request_id`` (unique per invocation;
    the provider's id when a cloud adapter supplies one), ``log`` (structured log lines tagged
    with the request id), ``storage`` (the app's home object store), ``started`` (monotonic
    seconds), ``deadline`` (monotonic seconds by which the provider stops the invocation, or None)
    and ``state`` (a dict for the handler's own use during this invocation).
    """

    __slots__ = ("request", "event", "platform", "app", "request_id", "log", "started", "deadline", "state", "route")

    def __init__(
        self,
        request: Request | None,
        app: App,
        request_id: str,
        log: BoundLog,
        *,
        deadline: float | None = None,
        route: str | None = None,
        event: Event | None = None,
        platform: Platform = LOCAL,
    ) -> None:
        self.request = request
        self.event = event
        self.platform = platform
        self.app = app
        self.request_id = request_id
        self.log = log
        self.started = time.monotonic()
        self.deadline = deadline
        self.state: dict[str, Any] = {}
        self.route = route

    @property
    def storage(self) -> ObjectStore:
        """The app's home store (``App(storage=...)``, ``NUBES_STORAGE``, else ``file://.nubes``)."""
        return self.app.storage

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None when there is none."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def __repr__(self) -> str:
        what = f"{self.request.method} {self.request.path}" if self.request else type(self.event).__name__
        return f"<Context {self.request_id} {what}>"
