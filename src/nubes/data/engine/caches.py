"""The engine's caches: byte ranges and object metadata within a bridge, and bounded caches a warm
instance keeps across invocations (each entry keyed or validated by an object's etag)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from nubes.storage.base import ObjectInfo

V = TypeVar("V")


class RangeCache:
    """A bounded LRU of fetched byte ranges keyed by (alias, key, etag), so that a range DuckDB reads
    twice in one query (at bind and at execution: a Parquet footer, a CSV/JSON sample) is fetched once.

    Only ranges up to ``max_range`` bytes are kept: those are the ones read twice (footers, metadata,
    samples); column chunks are read once, and copying them into the cache only cost time."""

    def __init__(self, capacity: int, max_range: int = 1024 * 1024) -> None:
        self.capacity = capacity
        self.max_range = min(max_range, capacity // 2)
        self._entries: OrderedDict[tuple[str, str, str, int, int], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._hits = 0
        self._bytes = 0

    def get(self, obj: tuple[str, str, str], start: int, end: int) -> bytes | None:
        with self._lock:
            for (a, k, e, s, t), data in reversed(self._entries.items()):
                if (a, k, e) == obj and s <= start and end <= t:
                    self._entries.move_to_end((a, k, e, s, t))
                    self._hits += 1
                    self._bytes += end - start
                    return data[start - s : end - s]
        return None

    def put(self, obj: tuple[str, str, str], start: int, data: bytes) -> None:
        if not self.capacity or len(data) > self.max_range:
            return
        with self._lock:
            entry = (*obj, start, start + len(data))
            if entry in self._entries:
                return
            self._entries[entry] = data
            self._size += len(data)
            while self._size > self.capacity:
                _, old = self._entries.popitem(last=False)
                self._size -= len(old)

    def forget(self, alias: str, key: str) -> None:
        with self._lock:
            for entry in [e for e in self._entries if e[0] == alias and e[1] == key]:
                self._size -= len(self._entries.pop(entry))

    def counters(self) -> tuple[int, int]:
        with self._lock:
            return self._hits, self._bytes


class InfoCache:
    """ObjectInfo by (alias, key) for ``ttl`` seconds, so one query's repeated size/mtime questions cost one HEAD."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: dict[tuple[str, str], tuple[float, ObjectInfo]] = {}
        self._lock = threading.Lock()

    def get(self, alias: str, key: str) -> ObjectInfo | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            item = self._items.get((alias, key))
            if item is None or time.monotonic() - item[0] > self.ttl:
                return None
            return item[1]

    def put(self, alias: str, info: ObjectInfo) -> None:
        if self.ttl > 0:
            with self._lock:
                if len(self._items) > 100_000:
                    self._items.clear()
                self._items[(alias, info.key)] = (time.monotonic(), info)

    def forget(self, alias: str, key: str) -> None:
        with self._lock:
            self._items.pop((alias, key), None)


class Bounded(Generic[V]):
    """A thread-safe LRU of at most ``capacity`` entries, each optionally valid for ``ttl`` seconds.

    Used by a warm instance for what is worth keeping across invocations: Parquet footers by
    (store, key, etag), the datasets a SQL text names, listings of glob/prefix datasets (``ttl``)."""

    def __init__(self, capacity: int, ttl: float | None = None) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if self.ttl is not None and time.monotonic() - item[0] > self.ttl:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: Hashable, value: V) -> V:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        found = self.get(key)
        return found if found is not None else self.put(key, make())

    def drop(self, match: Callable[[Hashable], bool]) -> None:
        with self._lock:
            for key in [k for k in self._items if match(k)]:
                del self._items[key]
