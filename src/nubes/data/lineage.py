"""Lineage: what each invocation read and wrote, journaled into the app's home store and queryable later.

Layout in the home store::

    _nubes/lineage/day=YYYY-MM-DD/<segment>-<chunk>.ndjson   batches of entries, one JSON object per line
    _nubes/lineage/day=YYYY-MM-DD/<time>-<request id>.json    one entry per object (the layout before batching;
                                                             still read)

An entry holds the request id, app, route, time, and for every dataset read or written the store,
object keys, etags and bytes. Entries go through :mod:`nubes.storage.journal`, the mechanism the
cost ledger uses, with the same policy (the metering hook sets it from where the app runs): on
local runs an on-disk spool written before the response leaves, then batched objects; on a real
cloud batches written off the request path. So lineage is as complete as the ledger, and costs one
PUT per batch instead of one per invocation.

**Granularity** (``configure(app, granularity=...)`` or ``NUBES_LINEAGE``):

* ``invocation`` (default) — one entry per invocation that touched a dataset;
* ``version`` — one entry per route and dataset version read/written (the same datasets, objects
  and etags), with ``count`` (invocations), ``first``/``last`` times, ``bytes_read`` summed and up to
  20 ``request_ids``: aggregated in each written batch, so counts add up exactly across batches;
* ``off`` — nothing is recorded.

:func:`history` reads both layouts and both granularities, newest first, including entries still
buffered by this process or spooled by live ones.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nubes.storage.journal import journal, journals, normalize_uri, register_transform

if TYPE_CHECKING:
    from nubes.storage.base import ObjectStore

PREFIX = "_nubes/lineage/"
GRANULARITIES = ("invocation", "version", "off")
SAMPLE_IDS = 20
_SETTINGS: dict[tuple[str, str], str] = {}  # (home store URI, app name) -> granularity


def configure(app: Any, *, granularity: str) -> None:
    """Set how ``app`` records lineage: ``invocation``, ``version`` or ``off`` (see the module docstring)."""
    from nubes.errors import ConfigError

    if granularity not in GRANULARITIES:
        raise ConfigError(f"lineage granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}")
    _SETTINGS[(normalize_uri(app.storage_uri), app.name)] = granularity


def granularity_of(uri: str, app_name: str | None) -> str:
    found = _SETTINGS.get((normalize_uri(uri), app_name or ""))
    if found is None:
        found = os.environ.get("NUBES_LINEAGE", "invocation").lower() or "invocation"
    return found if found in GRANULARITIES else "invocation"


def _journal(store: ObjectStore) -> Any:
    return journal(store, store.uri, PREFIX, name="lineage", transform="lineage")


def record(store: ObjectStore, entry: dict[str, Any]) -> str:
    """Journal one invocation's lineage ``entry``; returns its id. Never writes on the request path
    unless the policy says so (``flush="invocation"``)."""
    granularity = granularity_of(store.uri, entry.get("app"))
    now = datetime.now(UTC)
    entry = {"entry_id": uuid.uuid4().hex[:16], "time": now.isoformat(), **entry}
    if granularity == "off":
        return str(entry["entry_id"])
    if granularity == "version":
        entry["granularity"] = "version"
    _journal(store).append(f"day={now:%Y-%m-%d}", entry)
    return str(entry["entry_id"])


def _version_key(entry: dict[str, Any]) -> str:
    def part(items: list[dict[str, Any]]) -> list[Any]:
        return sorted([x.get("dataset"), x.get("store"), x.get("mode"),
                       sorted((o.get("key"), o.get("etag")) for o in x.get("objects", []))] for x in items)

    return json.dumps([entry.get("app"), entry.get("route"), part(entry.get("reads", [])), part(entry.get("writes", []))],
                      default=str)


def aggregate(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One batch's entries with those of ``version`` granularity folded per route and dataset version."""
    out: list[dict[str, Any]] = []
    groups: dict[str, Any] = {}
    for e in entries:
        if e.get("granularity") != "version":
            out.append(e)
            continue
        key = _version_key(e)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {**e, "count": 0, "first": e["time"], "last": e["time"], "request_ids": []}
            g.pop("request_id", None)
            out.append(g)
        g["count"] += int(e.get("count", 1))
        g["first"], g["last"] = min(g["first"], e["time"]), max(g["last"], e["time"])
        g["time"] = g["last"]
        if len(g["request_ids"]) < SAMPLE_IDS and e.get("request_id"):
            g["request_ids"].append(e["request_id"])
        if g is not e:
            for mine, theirs in zip(g.get("reads", []), e.get("reads", []), strict=False):
                mine["bytes_read"] = mine.get("bytes_read", 0) + theirs.get("bytes_read", 0)
    return out


register_transform("lineage", aggregate)


def _day(key: str) -> str:
    """The ``day=YYYY-MM-DD`` partition of a lineage key ("" when it has none)."""
    rest = key[len(PREFIX):] if key.startswith(PREFIX) else key
    return rest.split("/", 1)[0] if "/" in rest else ""


def _read(store: ObjectStore, key: str) -> list[dict[str, Any]]:
    if key.endswith(".json"):
        return [json.loads(store.get(key))]
    return [json.loads(line) for line in store.get(key).splitlines() if line.strip()]


def history(store: ObjectStore, dataset: str | None = None, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Lineage entries, newest first, optionally only those that read or wrote ``dataset`` (both layouts;
    this process's buffered entries and live spools included).

    Bounded by ``limit``: the ``day=`` partitions are walked newest first and read one day at a time,
    so objects of older days are never fetched once ``limit`` entries matched (only their keys are listed).
    """
    from nubes.storage.spool import spooled

    for j in journals(store.uri):
        if j.name == "lineage":
            j.flush()
    live: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    lineage = _journal(store)
    if lineage.spool and os.path.isdir(lineage.spool):
        lineage.replay()
        for sid, partition, e in spooled(lineage.spool):  # read before listing: a segment written meanwhile is listed
            live.setdefault(sid, []).append((partition, e))
    days: dict[str, list[str]] = {}
    stored: set[str] = set()
    for info in store.list(PREFIX):  # keys only; objects are read per day below
        if info.key.endswith((".json", ".ndjson")):
            days.setdefault(_day(info.key), []).append(info.key)
            if info.key.endswith(".ndjson"):
                stored.add(info.key.rsplit("/", 1)[-1].rsplit("-", 1)[0])
    pending: dict[str, list[dict[str, Any]]] = {}
    for sid, records in live.items():
        if sid not in stored:  # (a segment being written is skipped: its aggregated entries may be in the listing)
            for partition, e in records:
                pending.setdefault(partition, []).append(e)
    seen: set[str] = set()
    found = 0
    for day in sorted(set(days) | set(pending), reverse=True):
        entries = list(pending.get(day, []))
        for key in days.get(day, []):
            entries += _read(store, key)
        for e in sorted(entries, key=lambda x: str(x.get("time", "")), reverse=True):
            eid = e.get("entry_id")
            if eid is not None:
                if eid in seen:  # in a live spool and already in the store
                    continue
                seen.add(eid)
            if dataset is not None and not any(
                    x.get("dataset") == dataset for x in e.get("reads", []) + e.get("writes", [])):
                continue
            yield e
            found += 1
            if limit is not None and found >= limit:
                return
