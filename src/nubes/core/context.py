"""The per-invocation context handed to every handler as its first argument."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nubes.core.logs import BoundLog
from nubes.core.request import Request

if TYPE_CHECKING:
    from collections.abc import Callable

    from nubes.core.app import App
    from nubes.core.auth import Principal
    from nubes.core.events import Event, Platform
    from nubes.core.job_runs import JobRun
    from nubes.storage.base import ObjectStore


class Context:
    """What a handler knows about its invocation.

    ``request`` (the :class:`~nubes.Request`; None for an event), ``event`` (the
    :class:`~nubes.ObjectCreated` / :class:`~nubes.Message` / :class:`~nubes.Scheduled` being handled;
    None for HTTP), ``platform`` (where this runs: provider, memory, cold start), ``app``, ``request_id`` (unique per invocation;
    the provider's id when a cloud adapter supplies one), ``log`` (structured log lines tagged
    with the request id), ``storage`` (the app's home object store), ``started`` (monotonic
    seconds), ``deadline`` (monotonic seconds by which the provider stops the invocation, or None)
    ``state`` (a dict for the handler's own use during this invocation) and ``principal`` (the
authenticated caller, :class:`~nubes.core.auth.Principal`, or None).

    Extensions add attributes (the default ones: ``ctx.sql``, ``ctx.table``, ``ctx.write`` from
    :mod:`nubes.data`, ``ctx.models`` from :mod:`nubes.ml`); see :mod:`nubes.core.extensions`.
    """

    __slots__ = (
        "_extension_state",
        "_finishers",
        "app",
        "deadline",
        "event",
        "job",
        "log",
        "options",
        "platform",
        "principal",
        "request",
        "request_id",
        "route",
        "started",
        "state",
    )

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
        platform: Platform | None = None,
        options: dict[str, Any] | None = None,
        principal: Principal | None = None,
        job: JobRun | None = None,
    ) -> None:
        self.request = request
        self.event = event
        if platform is None:
            from nubes.core.events import LOCAL as platform
        self.platform = platform
        self.app = app
        self.request_id = request_id
        self.log = log
        self.started = time.monotonic()
        self.deadline = deadline
        self.state: dict[str, Any] = {}
        self.route = route
        self.options = options or {}
        self.principal = principal
        self.job = job
        self._extension_state: dict[str, Any] | None = None
        self._finishers: list[Callable[[Context], None]] | None = None

    @property
    def storage(self) -> ObjectStore:
        """The app's home store (``App(storage=...)``, ``NUBES_STORAGE``, else ``file://.nubes``)."""
        return self.app.storage

    @property
    def extension_state(self) -> dict[str, Any]:
        """Per-invocation state of the extensions, by key (created on first use)."""
        if self._extension_state is None:
            self._extension_state = {}
        return self._extension_state

    def on_finish(self, callback: Callable[[Context], None]) -> None:
        """Call ``callback(ctx)`` when the invocation ends, before its hooks' ``end`` (last registered, first called)."""
        if self._finishers is None:
            self._finishers = []
        self._finishers.append(callback)

    def progress(self, value: float | None = None, message: str | None = None) -> None:
        """Report a job's progress (``value`` from 0 to 1, a ``message``): polling callers see it in the
        job document. Outside a job (``@app.job``) it does nothing, so one handler serves both."""
        if self.job is not None:
            self.job.progress(value, message)

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: say where extension attributes come from
        raise AttributeError(
            f"ctx has no attribute {name!r}; extension attributes (ctx.sql, ctx.models ...) exist only when the app "
            f"includes that extension (included: {', '.join(self.app.extensions) or 'none'})"
        )

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None when there is none."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def __repr__(self) -> str:
        what = f"{self.request.method} {self.request.path}" if self.request else type(self.event).__name__
        return f"<Context {self.request_id} {what}>"
