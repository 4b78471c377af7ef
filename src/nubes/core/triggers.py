"""Portable trigger bindings: the logical sources and queues handlers name, bound per cloud.

Handlers name what they listen to, not a cloud resource::

    @app.on_object_created(prefix="raw/", source="landing")
    @app.on_message("orders")

and ``nubes.toml`` binds the names for each cloud (the deploy commands read the same tables)::

    [deploy.aws.sources]
    landing = "s3://acme-landing/in"
    [deploy.aws.queues]
    orders = "orders-prod"            # an SQS queue; gcp: a Pub/Sub topic; azure: a Storage queue

A deployed function also gets them as ``NUBES_SOURCES`` / ``NUBES_QUEUES`` (JSON objects, which win
over the file). Each cloud checks its own naming rules (``binding_problems`` of the cloud object).

Matching (:func:`match`), for an event arriving on platform ``P``:

* ``source="landing"``: the event's object must lie under the URI bound to ``landing`` for ``P``; the
  handler gets the event re-based on that URI (``store`` the source URI, ``key`` relative to it,
  ``source="landing"``), so the same key reaches the handler on every cloud. An event that already
  names its logical source (``nubes emit --source``) matches by name.
* no source and no ``store``: the home store is the source: an object under the home store's URI
  reaches the handler re-based on it; one elsewhere in the home store's bucket (where ``nubes deploy``
  binds such handlers) with its key in the bucket; other buckets do not match. When the home store is
  on another kind of storage than the event (a ``file://`` home while running locally or under
  emulation), the handler takes events of any bucket by key prefix, as they arrive.
* ``store="s3://bucket/path"``: an explicit URI filter; the event is passed as the cloud named it.
* ``on_message("orders")``: the queue bound to ``orders`` for ``P`` (the name itself when unbound);
  the message keeps the cloud's queue name and gets ``source="orders"``. ``on_message()`` takes any queue.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nubes.errors import ConfigError

if TYPE_CHECKING:
    from nubes.core.events import Event, EventRoute, Platform

LOGICAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_SOURCES = "NUBES_SOURCES"
ENV_QUEUES = "NUBES_QUEUES"


@dataclass(frozen=True)
class Bindings:
    """The logical names bound on one cloud: ``sources`` (name -> store URI), ``queues`` (name ->
    the cloud's queue/topic name), the ``home`` store URI, and where they were read (``origin``)."""

    cloud: str | None
    sources: Mapping[str, str]
    queues: Mapping[str, str]
    home: str
    origin: str = "nubes.toml"

    def source_uri(self, name: str) -> str | None:
        return self.sources.get(name)

    def queue_name(self, name: str) -> str:
        return self.queues.get(name, name)

    def where(self, table: str) -> str:
        return f"[deploy.{self.cloud}.{table}]" if self.cloud else f"[deploy.CLOUD.{table}]"


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a valid logical source/queue name, else ConfigError naming the rule."""
    if not isinstance(name, str) or not LOGICAL_NAME.match(name):
        raise ConfigError(f"{kind} {name!r}: a logical name is 1-63 letters, digits, '_', '.' or '-' (first a letter or digit)")
    return name


def _json_table(value: str | None, var: str) -> dict[str, str]:
    if not value:
        return {}
    try:
        table = json.loads(value)
    except ValueError:
        raise ConfigError(f"{var} is not JSON; set it to an object such as {{\"landing\": \"s3://bucket/in\"}}") from None
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise ConfigError(f"{var} must be a JSON object of names to strings")
    return table


def _table(section: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = section.get(key, {})
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where} must be a table of names to strings, e.g. landing = \"s3://bucket/in\"")
    return {str(k): v for k, v in value.items()}


_CACHE: dict[tuple[Any, ...], Bindings] = {}
_LOCK = threading.Lock()


def read(app: Any, cloud: str | None) -> Bindings:
    """The bindings of ``app`` on ``cloud`` (None: running locally, nothing bound), checked by the cloud.

    Read once per (app, cloud, environment) and cached; raises :class:`ConfigError` naming the fix.
    """
    from nubes.core import clouds

    if cloud is not None and not clouds.is_cloud(cloud):
        cloud = None
    env_sources, env_queues = os.environ.get(ENV_SOURCES), os.environ.get(ENV_QUEUES)
    key = (id(app), cloud, app.storage_uri, env_sources, env_queues, os.environ.get("NUBES_CONFIG"))
    found = _CACHE.get(key)
    if found is not None:
        return found
    sources: dict[str, str] = {}
    queues: dict[str, str] = {}
    origin = "nubes.toml"
    if cloud is not None:
        from nubes.core import config

        section = config.section(f"deploy.{cloud}", app.root)
        path = config.project_file(app.root)
        origin = str(path) if path else origin
        sources = _table(section, "sources", f"{origin} [deploy.{cloud}.sources]")
        queues = _table(section, "queues", f"{origin} [deploy.{cloud}.queues]")
        sources.update(_json_table(env_sources, ENV_SOURCES))
        queues.update(_json_table(env_queues, ENV_QUEUES))
        for name in (*sources, *queues):
            check_name("binding", name)
        problems = list(clouds.get(cloud).binding_problems(sources, queues))
        if problems:
            raise ConfigError(f"trigger bindings for {cloud} ({origin}, {ENV_SOURCES}/{ENV_QUEUES}):\n"
                              + "\n".join(f"  - {p}" for p in problems))
    found = Bindings(cloud, sources, queues, app.storage_uri, origin)
    with _LOCK:
        if len(_CACHE) > 256:
            _CACHE.clear()
        _CACHE[key] = found
    return found


def for_platform(app: Any, platform: Platform | None) -> Bindings:
    return read(app, platform.provider if platform is not None else None)


# -- matching -------------------------------------------------------------------------------------
def _root(uri: str) -> str:
    """A store URI without its query string or trailing '/' (``az://c/p?x=1`` -> ``az://c/p``)."""
    return uri.split("?", 1)[0].rstrip("/")


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def relative_key(url: str, uri: str) -> str | None:
    """The key of object ``url`` relative to store ``uri``, or None when it is not under it."""
    root = _root(uri)
    if "://" not in root:
        return None
    return url[len(root) + 1:] if url.startswith(root + "/") else None


def match(route: EventRoute, event: Event, bindings: Bindings) -> Event | None:
    """The event as ``route``'s handler gets it, or None when the route does not take it (see the
    module docstring)."""
    from nubes.core.events import Message, ObjectCreated

    if isinstance(event, ObjectCreated):
        if route.kind != "object_created":
            return None
        if route.store is not None:
            return event if event.url.startswith(_root(route.store) + "/" + route.prefix) else None
        if event.source is not None:  # the emitter named the logical source
            wanted = route.source or "home"
            return event if event.source == wanted and event.key.startswith(route.prefix) else None
        if route.source is not None:
            uri = bindings.source_uri(route.source)
            if uri is None:
                return None
            key = relative_key(event.url, uri)
            if key is None or not key.startswith(route.prefix):
                return None
            return dataclasses.replace(event, store=_root(uri), key=key, source=route.source)
        home = bindings.home
        if _scheme(home) != _scheme(event.store):
            return event if event.key.startswith(route.prefix) else None
        key = relative_key(event.url, home)
        if key is None:  # elsewhere in the home store's bucket: the key as it arrives (how deploy binds it)
            bucket = _root(home).split("://", 1)[1].split("/", 1)[0]
            same_bucket = _root(event.store).split("://", 1)[1].split("/", 1)[0] == bucket
            return event if same_bucket and event.key.startswith(route.prefix) else None
        if not key.startswith(route.prefix):
            return None
        return event if _root(event.store) == _root(home) else dataclasses.replace(event, store=_root(home), key=key)
    if isinstance(event, Message):
        if route.kind != "message":
            return None
        if route.queue in (None, "*"):
            return event
        if event.source is not None:
            return event if event.source == route.queue else None
        if event.queue != bindings.queue_name(route.queue):
            return None
        return dataclasses.replace(event, source=route.queue)
    return event if route.kind == "schedule" and route.schedule == event.name else None


def describe(route: EventRoute, bindings: Bindings) -> str:
    """What ``route`` compares an event against, with its binding: for the NoHandler message and listings."""
    return f"{filter_of(route, bindings)} -> {route.name}"


def filter_of(route: EventRoute, bindings: Bindings) -> str:
    if route.kind == "object_created":
        prefix = f", prefix {route.prefix!r}" if route.prefix else ""
        if route.store is not None:
            return f"object created in store {route.store}{prefix}"
        if route.source is not None:
            uri = bindings.source_uri(route.source)
            bound = f"= {uri}" if uri else f"not bound here: add {route.source} = \"<bucket URI>\" under {bindings.where('sources')}"
            return f"object created in source {route.source!r} ({bound}){prefix}"
        return f"object created in the home store {bindings.home}{prefix}"
    if route.kind == "message":
        if route.queue in (None, "*"):
            return "message on any queue"
        real = bindings.queue_name(route.queue)
        bound = f" (= {real})" if real != route.queue else ""
        return f"message on queue {route.queue!r}{bound}"
    return f"schedule {route.schedule!r}" + (f" (cron {route.cron!r})" if route.cron else "")


def listing(app: Any) -> list[dict[str, Any]]:
    """Every event handler of ``app`` with what it listens to and, per cloud, what that is bound to
    (for ``nubes routes`` and the OpenAPI document's ``x-nubes-events``). An app with no event
    handlers loads no cloud adapter: ``[]`` at once."""
    if not app.event_routes:
        return []
    from nubes.core import clouds

    per_cloud: dict[str, Bindings | str] = {}
    for name in clouds.names():
        try:
            per_cloud[name] = read(app, name)
        except ConfigError as exc:
            per_cloud[name] = str(exc)
    rows: list[dict[str, Any]] = []
    for route in app.event_routes:
        row: dict[str, Any] = {"kind": route.kind, "handler": route.name}
        if route.kind == "object_created":
            row.update(prefix=route.prefix, source=route.source or ("home" if route.store is None else None), store=route.store)
        elif route.kind == "message":
            row["queue"] = route.queue
        else:
            row.update(schedule=route.schedule, cron=route.cron)
        bound: dict[str, str | None] = {}
        for cloud, found in per_cloud.items():
            if isinstance(found, str):
                bound[cloud] = f"error: {found}"
            elif route.kind == "object_created" and route.source is not None:
                bound[cloud] = found.source_uri(route.source)
            elif route.kind == "message" and route.queue not in (None, "*"):
                bound[cloud] = found.queue_name(str(route.queue))
        if bound:
            row["bindings"] = bound
        row["summary"] = (route.handler.__doc__ or "").strip().split("\n", 1)[0]
        rows.append(row)
    return rows
