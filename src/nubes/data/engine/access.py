"""Counted, cached access to the stores of one bridge: what every read by DuckDB or Polars goes through.

:class:`StoreAccess` holds a bridge's stores by alias, its counters (:class:`~nubes.storage.base.IOStats`),
its caches (object metadata, small byte ranges) and what it read (for lineage). Store errors raised
inside an engine callback are noted here so the boundary can re-raise the nubes error.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from typing import Any

from nubes.data.engine.caches import InfoCache, RangeCache
from nubes.errors import PreconditionFailed, StorageError
from nubes.storage.base import IOStats, ObjectInfo, ObjectStore
from nubes.storage.current import CURRENT_IO


@contextlib.contextmanager
def uncounted() -> Iterator[None]:
    """Store calls made for an engine are counted once, in the bridge's stats, not also in the invocation's
    (engines call back from their own threads, where the invocation's counter is not set anyway)."""
    token = CURRENT_IO.set(None)
    try:
        yield
    finally:
        CURRENT_IO.reset(token)


class EngineStats(IOStats):
    """A bridge's counters. Never forwarded to the invocation's counter as they are recorded (an engine
    may call back on the invocation's own thread, where that counter is set): the session that owns the
    bridge merges them into the invocation once, when it ends."""

    def record(self, op: str, *, read: int = 0, written: int = 0, count: int = 1) -> None:
        with uncounted():
            super().record(op, read=read, written=written, count=count)


class StoreAccess:
    """State shared by a bridge and its filesystem: stores, counters, caches and recent storage errors."""

    def __init__(self, stores: dict[str, ObjectStore], metadata_ttl: float, cache_bytes: int, prefix: str = "") -> None:
        self.stores = stores
        self.prefix = prefix  # "" on a bridge's own database; "TOKEN." for a session of a shared Database
        self.stats: IOStats = EngineStats()
        self.infos = InfoCache(metadata_ttl)
        self.ranges = RangeCache(cache_bytes)
        self._errors: list[tuple[int, StorageError]] = []
        self._seq = itertools.count(1)
        self._last = 0
        self.lock = threading.Lock()
        self.touched: dict[tuple[str, str], dict[str, Any]] = {}  # (alias, key) -> etag, size, bytes read

    def host(self, alias: str) -> str:
        """The first part of ``nubes://HOST/KEY`` for the store ``alias``."""
        return self.prefix + alias

    def touch(self, alias: str, info: ObjectInfo, read: int = 0) -> None:
        with self.lock:
            entry = self.touched.setdefault((alias, info.key), {"etag": info.etag, "size": info.size, "bytes_read": 0})
            entry["etag"] = info.etag
            entry["bytes_read"] += read

    def read_elsewhere(self, alias: str, info: ObjectInfo, reads: int, nbytes: int) -> None:
        """Count ``reads`` range reads of ``nbytes`` made by an engine directly (not through this object)."""
        if reads:
            self.stats.record("get", read=nbytes, count=reads)
        self.touch(alias, info, nbytes)

    # errors raised inside engine callbacks, so the boundary can re-raise the nubes error
    def note(self, exc: StorageError) -> None:
        with self.lock:
            self._last = next(self._seq)
            self._errors.append((self._last, exc))
            del self._errors[:-32]

    def mark(self) -> int:
        with self.lock:
            return self._last

    def errors_since(self, mark: int) -> list[StorageError]:
        with self.lock:
            return [e for n, e in self._errors if n > mark]

    # counted store calls
    def head(self, alias: str, key: str) -> ObjectInfo:
        info = self.infos.get(alias, key)
        if info is not None:
            return info
        store = self.stores[alias]
        try:
            with uncounted():
                info = store.head(key)
        finally:
            self.stats.record("head")
        self.infos.put(alias, info)
        return info

    def list(self, alias: str, prefix: str) -> list[ObjectInfo]:
        self.stats.record("list")
        with uncounted():
            items = list(self.stores[alias].list(prefix))
        for info in items:
            self.infos.put(alias, info)
        return items

    def get_range(self, alias: str, info: ObjectInfo, start: int, end: int) -> bytes:
        obj = (alias, info.key, info.etag)
        data = self.ranges.get(obj, start, end)
        if data is not None:
            self.touch(alias, info)
            return data
        with uncounted():
            data = self.stores[alias].get_range(info.key, start, end)
        self.stats.record("get", read=len(data))
        self.touch(alias, info, len(data))
        if len(data) != end - start:  # the object shrank since its HEAD: its versions would be mixed
            store = self.stores[alias]
            self.forget(alias, info.key)
            raise PreconditionFailed(
                f"object changed while being read (was etag {info.etag}, {info.size} bytes); run the query again",
                uri=store.uri,
                key=info.key,
            )
        self.ranges.put(obj, start, data)
        return data

    def forget(self, alias: str, key: str) -> None:
        self.infos.forget(alias, key)
        self.ranges.forget(alias, key)
