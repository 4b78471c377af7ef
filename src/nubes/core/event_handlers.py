"""Event handlers of an app: registering them (``on_object_created``, ``on_message``, ``on_schedule``)
and calling them (:meth:`EventHandlers.handle_event`), as a part of :class:`nubes.App`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from nubes.errors import ConfigError, NoHandler
from nubes.storage.current import CURRENT_IO

if TYPE_CHECKING:
    from nubes.core.context import Context
    from nubes.core.events import Event, EventRoute, Platform

F = TypeVar("F", bound=Callable[..., Any])


class EventHandlers:
    """The event side of :class:`nubes.App` (it provides ``event_routes``, ``hooks`` and the rest)."""

    event_routes: list[EventRoute]
    name: str
    log: Any
    context_class: type[Context]
    _begin: Callable[..., Any]
    _end: Callable[..., dict[str, Any]]
    _finish: Callable[..., None]

    def on_object_created(self, prefix: str = "", *, source: str | None = None, store: str | None = None,
                          **options: Any) -> Callable[[F], F]:
        """Call the decorated ``handler(ctx, event: ObjectCreated)`` when an object whose key starts
        with ``prefix`` is created in the logical ``source`` (bound per cloud in ``nubes.toml``
        ``[deploy.<cloud>.sources]``; the home store when None). ``store`` (a URI such as
        ``s3://bucket/path``) filters on one store instead. See :mod:`nubes.core.triggers`."""
        from nubes.core.events import EventRoute
        from nubes.core.triggers import check_name

        if source is not None and store is not None:
            raise ConfigError(f"on_object_created(source={source!r}, store={store!r}): name a logical source "
                              "(bound per cloud in nubes.toml) or a store URI, not both")
        if source is not None:
            check_name("on_object_created source", source)
        if store is not None and "://" not in str(store):
            raise ConfigError(f"on_object_created(store={store!r}): a store is a URI such as s3://bucket/path; "
                              "for a name bound per cloud use source=")
        return self._on(EventRoute("object_created", _nothing, "", prefix=prefix, store=store, source=source,
                                   options=options))

    def on_message(self, queue: str | None = None, **options: Any) -> Callable[[F], F]:
        """Call the decorated ``handler(ctx, message: Message)`` for each message of the logical
        ``queue`` (bound per cloud in ``nubes.toml`` ``[deploy.<cloud>.queues]`` to an SQS queue, a
        Pub/Sub topic or a Storage queue; the name itself when unbound); any queue if None."""
        from nubes.core.events import EventRoute
        from nubes.core.triggers import check_name

        if queue not in (None, "*"):
            check_name("on_message queue", str(queue))
        return self._on(EventRoute("message", _nothing, "", queue=queue, options=options))

    def on_schedule(self, name: str, *, cron: str | None = None, **options: Any) -> Callable[[F], F]:
        """Call the decorated ``handler(ctx, event: Scheduled)`` when the schedule ``name`` fires.

        ``cron`` (six-field NCRONTAB ``sec min hour day month weekday``) says when, for deployment
        and for providers whose timers are declared with the function (Azure).
        """
        if not name:
            raise ConfigError("on_schedule needs the schedule's name (the EventBridge rule / Scheduler job / timer)")
        from nubes.core.events import EventRoute

        return self._on(EventRoute("schedule", _nothing, "", schedule=name, cron=cron, options=options))

    def _on(self, route: EventRoute) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            import inspect

            where = f"{route.kind} handler {getattr(fn, '__qualname__', fn)}"
            try:
                positional = [
                    p for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                ]
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: cannot read its signature: {exc}") from None
            if len(positional) < 2:
                raise ConfigError(f"{where}: an event handler takes (ctx, event), e.g. def handler(ctx, event): ...")
            route.handler = fn
            route.name = f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', repr(fn))}"
            self.event_routes.append(route)
            return fn

        return decorator

    def handle_event(
        self,
        event: Event,
        *,
        request_id: str | None = None,
        deadline: float | None = None,
        platform: Platform | None = None,
    ) -> list[Any]:
        """Call every handler registered for ``event`` as ``handler(ctx, event)``; return their results.

        Raises :class:`~nubes.errors.NoHandler` if none matches, and lets a handler's exception
        propagate (after logging it) so the adapter can report the failure the provider's way
        (e.g. the message in SQS ``batchItemFailures``). One JSON log line per call.
        """
        started = time.perf_counter()
        from nubes.core import triggers
        from nubes.core.app import new_request_id, run_awaitable

        rid = request_id or new_request_id()
        log = self.log.bind(request_id=rid)
        bindings = triggers.for_platform(self, platform)
        matched = [(r, r.match(event, bindings)) for r in self.event_routes]
        pairs = [(r, e) for r, e in matched if e is not None]
        routes = [r for r, _ in pairs]
        if not routes:
            where = f" on {bindings.cloud}" if bindings.cloud else ""
            log.warning("no handler", event=type(event).__name__, detail=_describe(event))
            raise NoHandler(f"no handler in app {self.name!r} for {_describe(event)}{where}; compared with: "
                            + ("; ".join(triggers.describe(r, bindings) for r in self.event_routes) or "no event handlers"))
        results = []
        outcome = "ok"
        inv = self._begin(rid, "event", platform, started, event=event, route=",".join(r.name for r in routes))
        token = CURRENT_IO.set(inv.io) if inv is not None else None
        try:
            for route, seen in pairs:
                ctx = self.context_class(None, self, rid, log, deadline=deadline,  # type: ignore[arg-type]  # self is the App
                                         route=route.name, event=seen, platform=platform, options=route.options)
                try:
                    result = route.handler(ctx, seen)
                    if hasattr(result, "__await__"):
                        result = run_awaitable(result)
                finally:
                    self._finish(ctx, log)
                results.append(result)
        except Exception:
            outcome = "error"
            log.exception("event handler failed", event=type(event).__name__, detail=_describe(event))
            raise
        finally:
            if token is not None:
                CURRENT_IO.reset(token)
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            fields = self._end(inv, 200 if outcome == "ok" else 500, duration_ms, None, log) if inv is not None else {}
            log.info(
                "invocation",
                event=type(event).__name__,
                detail=_describe(event),
                handlers=[r.name for r in routes],
                outcome=outcome,
                duration_ms=duration_ms,
                **fields,
            )
        return results



def _nothing(ctx: Context, event: Event) -> None:  # placeholder until the decorator binds the handler
    return None


def _describe(event: Event) -> str:
    from nubes.core.events import Message, ObjectCreated, Scheduled

    if isinstance(event, ObjectCreated):
        return f"object created {event.url}"
    if isinstance(event, Message):
        return f"message {event.id} on queue {event.queue or '?'}"
    if isinstance(event, Scheduled):
        return f"schedule {event.name!r} at {event.time.isoformat()}"
    return repr(event)
