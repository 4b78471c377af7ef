"""Lineage: what each invocation read and wrote, kept in the app's home store and queryable later.

One JSON object per invocation that touched a dataset, at
``_nubes/lineage/day=YYYY-MM-DD/<time>-<request id>.json`` (a new key each time, so concurrent
invocations never overwrite each other). Each holds the request id, route, time, and for every
dataset read or written the store, object keys, etags and bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nubes.storage.base import ObjectStore

PREFIX = "_nubes/lineage/"


def record(store: ObjectStore, entry: dict[str, Any]) -> str:
    """Store one invocation's lineage ``entry``; return its key."""
    now = datetime.now(timezone.utc)
    entry = {"time": now.isoformat(), **entry}
    key = f"{PREFIX}day={now:%Y-%m-%d}/{now:%H%M%S%f}-{entry.get('request_id', 'unknown')}.json"
    store.put(key, json.dumps(entry, default=str).encode(), content_type="application/json", if_none_match=True)
    return key


def history(store: ObjectStore, dataset: str | None = None, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Lineage entries, newest first, optionally only those that read or wrote ``dataset``."""
    keys = sorted((o.key for o in store.list(PREFIX) if o.key.endswith(".json")), reverse=True)
    found = 0
    for key in keys:
        entry = json.loads(store.get(key))
        if dataset is not None and not any(x.get("dataset") == dataset for x in entry.get("reads", []) + entry.get("writes", [])):
            continue
        yield entry
        found += 1
        if limit is not None and found >= limit:
            return
