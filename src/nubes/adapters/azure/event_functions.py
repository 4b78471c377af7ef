"""The Azure FunctionApp's event functions: blob triggers per bound container, queue triggers per bound
queue, the jobs queue, timers; and the conversion of the worker's objects into nubes events.
Part of :mod:`nubes.adapters.azure.functions` (see its docstring), which registers them."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import azure.functions as func

from nubes.core.app import App
from nubes.core.events import EventRoute, Message, ObjectCreated, Scheduled
from nubes.errors import ConfigError, NoHandler, UnknownEvent

if TYPE_CHECKING:
    from nubes.adapters.azure.functions import _Runtime

_QUEUE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_TIMESPAN = re.compile(r"^\d{1,2}:\d{2}:\d{2}$")


def _request_id(context: func.Context | None) -> str | None:
    rid = getattr(context, "invocation_id", None)
    return str(rid) if rid else None


# -- blob triggers --------------------------------------------------------------------------------
class _BlobPlan:
    """One container's trigger: its ``path`` and the store the app's home is in, if it is here."""

    def __init__(self, container: str) -> None:
        self.container = container
        self.prefixes: list[str] = []
        self.home_path: str | None = None  # the home store's path inside this container ("" = root)

    @property
    def path(self) -> str:
        common = os.path.commonprefix(self.prefixes) if self.prefixes else ""
        escaped = common.replace("{", "{{").replace("}", "}}")
        return f"{self.container}/{escaped}{{name}}"


def _split_az(uri: str) -> tuple[str, str]:
    """``az://container/path`` -> (container, 'path/' or '')."""
    rest = uri.split("://", 1)[1].split("?", 1)[0]
    container, _, path = rest.partition("/")
    path = path.strip("/")
    return container, (path + "/" if path else "")


def _is_az(uri: str | None) -> bool:
    return bool(uri) and str(uri).lower().startswith("az://")


def _blob_plans(app: App) -> dict[str, _BlobPlan]:
    from nubes.core import triggers

    plans: dict[str, _BlobPlan] = {}
    home = app.storage_uri
    bound = triggers.read(app, "azure")
    for route in app.event_routes:
        if route.kind != "object_created":
            continue
        if route.source is not None:
            store = bound.source_uri(route.source)
            if store is None:
                app.log.warning("azure: on_object_created source is not bound; not bound to a blob trigger (bind it under "
                                "[deploy.azure.sources] in nubes.toml)", route=route.name, source=route.source)
                continue
        else:
            store = route.store or (home if _is_az(home) else None)
        if store is None:
            app.log.warning("azure: on_object_created route with no store and a home store that is not az://; "
                            "not bound to a blob trigger", route=route.name, home=home)
            continue
        if not _is_az(store):
            app.log.warning("azure: on_object_created route watches a store on another cloud; not bound here",
                            route=route.name, store=store)
            continue
        container, path = _split_az(store)
        if not container:
            raise ConfigError(f"on_object_created route {route.name}: store {store!r} names no container; "
                              "use az://CONTAINER[/PREFIX]")
        plan = plans.setdefault(container, _BlobPlan(container))
        plan.prefixes.append(path + route.prefix)
        if _is_az(home):
            home_container, home_path = _split_az(home)
            if home_container == container:
                plan.home_path = home_path
    return plans


def object_created_event(blob: func.InputStream, *, home_store: str | None = None) -> ObjectCreated:
    """The :class:`ObjectCreated` for a blob trigger's ``InputStream``.

    ``store`` is ``az://CONTAINER`` with the full blob name as ``key``, except for blobs under the
    app's home store (``home_store``, an ``az://`` URI), which get that store and a key relative to it.
    """
    name = blob.name or ""
    container, _, key = name.partition("/")
    if not container or not key:
        raise UnknownEvent(f"blob trigger input named {name!r}; expected CONTAINER/BLOB_NAME (the BlobTrigger metadata)")
    props = blob.blob_properties or {}
    size = blob.length
    if size is None:
        raw = _prop(props, "ContentLength", "Length")
        size = int(raw) if raw not in (None, "") else None
    etag = _prop(props, "ETag", "Etag")
    modified = _parse_time(_prop(props, "LastModified"))
    store = f"az://{container}"
    if home_store and _is_az(home_store):
        home_container, home_path = _split_az(home_store)
        if home_container == container and key.startswith(home_path) and home_path:
            store, key = home_store.split("?", 1)[0].rstrip("/"), key[len(home_path):]
    return ObjectCreated(store=store, key=key, size=size,
                         etag='"' + str(etag).strip('"') + '"' if etag else None, time=modified)


def _prop(props: Any, *names: str) -> Any:
    if not isinstance(props, dict):
        return None
    lowered = {str(k).lower(): v for k, v in props.items()}
    for name in names:
        if lowered.get(name.lower()) not in (None, ""):
            return lowered[name.lower()]
    return None


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _blob_function(app: App, runtime: _Runtime, plan: _BlobPlan) -> Callable[..., None]:
    home = app.storage_uri if plan.home_path else None

    def on_blob(blob: func.InputStream, context: func.Context) -> None:
        event = object_created_event(blob, home_store=home)
        try:
            app.handle_event(event, request_id=_request_id(context), deadline=runtime.deadline(False),
                             platform=runtime.platform())
        except NoHandler:
            # The trigger watches the routes' common prefix, so blobs between their prefixes reach us;
            # handle_event logged it, and raising would make Azure retry and then poison the blob.
            return

    return on_blob


# -- queue triggers -------------------------------------------------------------------------------
def _queue_of(route: EventRoute, bound: Any) -> str:
    """The Storage queue ``route`` listens to: its logical name's binding, else the name itself."""
    queue = route.queue
    if queue in (None, "*"):
        raise ConfigError(
            f"on_message route {route.name} listens to any queue, but an Azure queue trigger binds one named "
            "queue; name it: @app.on_message('orders')")
    real = bound.queue_name(queue)
    if not _QUEUE_NAME.match(real):
        raise ConfigError(f"on_message route {route.name}: {real!r} is not a valid Azure Storage queue name "
                          "(3-63 lower-case letters, digits and single hyphens); bind the logical name "
                          f"{queue!r} to one under [deploy.azure.queues] in nubes.toml")
    return str(real)


def message_event(msg: func.QueueMessage, *, queue: str) -> Message:
    """The :class:`Message` for a queue trigger's ``QueueMessage`` (metadata as string attributes)."""
    attributes: dict[str, str] = {}
    for attr, key in (("dequeue_count", "dequeue_count"), ("insertion_time", "insertion_time"),
                      ("expiration_time", "expiration_time"), ("time_next_visible", "time_next_visible"),
                      ("pop_receipt", "pop_receipt")):
        value = getattr(msg, attr, None)
        if value is not None:
            attributes[key] = value.isoformat() if isinstance(value, datetime) else str(value)
    return Message(id=str(msg.id or ""), body=msg.get_body() or b"", attributes=attributes, queue=queue)


def _queue_function(app: App, runtime: _Runtime, queue: str) -> Callable[..., None]:
    def on_message(msg: func.QueueMessage, context: func.Context) -> None:
        app.handle_event(message_event(msg, queue=queue), request_id=_request_id(context),
                         deadline=runtime.deadline(False), platform=runtime.platform())

    return on_message


def _jobs_function(app: App, runtime: _Runtime) -> Callable[..., None]:
    from nubes.adapters.azure.jobs import run_delivery

    def on_job(msg: func.QueueMessage, context: func.Context) -> None:
        run_delivery(app, msg.get_body() or b"", request_id=_request_id(context), deadline=runtime.deadline(False),
                     platform=runtime.platform())

    return on_job


# -- timer triggers -------------------------------------------------------------------------------
def _cron_of(schedule: str, routes: list[EventRoute]) -> str:
    crons = {r.cron for r in routes if r.cron}
    missing = [r.name for r in routes if not r.cron]
    if missing:
        raise ConfigError(
            f"on_schedule {schedule!r} ({', '.join(missing)}) has no cron; an Azure timer is declared with its "
            "schedule: @app.on_schedule('nightly', cron='0 0 2 * * *') (six fields: sec min hour day month weekday)")
    if len(crons) > 1:
        raise ConfigError(f"on_schedule {schedule!r} is registered with different crons {sorted(crons)}; "
                          "one schedule name fires on one timetable")
    cron = crons.pop().strip()
    if not (len(cron.split()) == 6 or _TIMESPAN.match(cron) or (cron.startswith("%") and cron.endswith("%"))):
        raise ConfigError(f"on_schedule {schedule!r}: cron {cron!r} is not a six-field NCRONTAB expression "
                          "(sec min hour day month weekday), e.g. '0 */5 * * * *'")
    return cron


def scheduled_event(timer: func.TimerRequest, *, name: str) -> Scheduled:
    """The :class:`Scheduled` for a timer trigger: due at ``ScheduleStatus.Next`` if that is not in
    the future (the occurrence now firing, also when past due), else now (UTC)."""
    now = datetime.now(UTC)
    status = getattr(timer, "schedule_status", None) or {}
    due = _parse_time(status.get("Next")) if isinstance(status, dict) else None
    return Scheduled(name=name, time=due if due is not None and due <= now else now)


def _timer_function(app: App, runtime: _Runtime, schedule: str) -> Callable[..., None]:
    def on_timer(timer: func.TimerRequest, context: func.Context) -> None:
        app.handle_event(scheduled_event(timer, name=schedule), request_id=_request_id(context),
                         deadline=runtime.deadline(False), platform=runtime.platform())

    return on_timer


def _group(app: App, kind: str, key: Callable[[EventRoute], str]) -> dict[str, list[EventRoute]]:
    groups: dict[str, list[EventRoute]] = {}
    for route in app.event_routes:
        if route.kind == kind:
            groups.setdefault(key(route), []).append(route)
    return groups
