"""``mem://NAME/PREFIX``: an in-process object store, for tests and local emulation.

Every :class:`MemoryStore` opened on the same ``NAME`` in one process shares one bucket, so two
handles see each other's writes. Buckets live until :meth:`MemoryStore.drop` or process exit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from nubes.errors import ConfigError, NotFound, PreconditionFailed, StorageError
from nubes.storage.base import BaseStore, Data, ObjectInfo, unquote_etag

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class _Object:
    data: bytes
    etag: str
    last_modified: datetime
    content_type: str | None

    def info(self, path: str) -> ObjectInfo:
        return ObjectInfo(path, len(self.data), self.etag, self.last_modified, self.content_type)


class _Bucket:
    """One named bucket: a dict of full path -> object, guarded by a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, _Object] = {}


_BUCKETS: dict[str, _Bucket] = {}
_BUCKETS_LOCK = threading.Lock()


def _bucket(name: str) -> _Bucket:
    with _BUCKETS_LOCK:
        bucket = _BUCKETS.get(name)
        if bucket is None:
            bucket = _BUCKETS[name] = _Bucket()
        return bucket


class _Missing(Exception):
    """Raised by the primitives for a missing path; translated to NotFound with the key."""


class _Conflict(Exception):
    """Raised by the primitives when a precondition fails; translated to PreconditionFailed."""


def _read_all(data: Data) -> bytes:
    """The bytes of ``data``; a file-like object is read in chunks until EOF."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    chunks: list[bytes] = []
    while True:
        chunk = data.read(CHUNK)
        if not chunk:
            return b"".join(chunks)
        chunks.append(bytes(chunk))


class MemoryStore(BaseStore):
    """Objects held in process memory, shared by name. Thread-safe; conditional writes are atomic.

    ``etag`` is a token made for each write (128 random bits, hex; unquoted) and kept with the
    object, so reads see a stable etag and every ``put`` gets a new one, even of equal content
    (the contract only requires a new etag for different content); no content is hashed.
    ``last_modified`` is UTC.
    """

    scheme = "mem"
    retries = 1  # nothing here is transient

    def __init__(self, name: str, prefix: str = "") -> None:
        super().__init__(name, prefix)
        self._bucket = _bucket(name)

    @classmethod
    def from_uri(cls, rest: str, **options: Any) -> Self:
        """Open ``mem://NAME/PREFIX`` (``rest`` is the part after ``mem://``). Takes no options."""
        if options:
            raise ConfigError(f"mem:// storage takes no options, got: {', '.join(sorted(options))}")
        name, _, prefix = rest.partition("/")
        return cls(name, prefix)

    @classmethod
    def drop(cls, name: str) -> None:
        """Forget the bucket ``name`` and everything in it (open handles keep the old data)."""
        with _BUCKETS_LOCK:
            _BUCKETS.pop(name, None)

    # -- primitives ------------------------------------------------------------------------
    def _put(
        self, path: str, data: Data, content_type: str | None, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        content = _read_all(data)  # outside the lock: the source may be slow
        obj = _Object(content, os.urandom(16).hex(), datetime.now(UTC), content_type)
        bucket = self._bucket
        with bucket.lock:
            current = bucket.objects.get(path)
            if if_none_match and current is not None:
                raise _Conflict("an object already exists (if_none_match)")
            if if_match is not None and (current is None or current.etag != unquote_etag(if_match)):
                raise _Conflict(
                    f"the object's etag is not {if_match}" if current else "no object to match (if_match)"
                )
            bucket.objects[path] = obj
        return obj.info(path)

    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        with self._bucket.lock:
            obj = self._bucket.objects.get(path)
        if obj is None:
            raise _Missing(path)
        return obj.data[start:end]

    def _head(self, path: str) -> ObjectInfo:
        with self._bucket.lock:
            obj = self._bucket.objects.get(path)
        if obj is None:
            raise _Missing(path)
        return obj.info(path)

    def _list(self, path_prefix: str) -> Iterator[ObjectInfo]:
        with self._bucket.lock:
            items = [(p, o) for p, o in self._bucket.objects.items() if p.startswith(path_prefix)]
        items.sort(key=lambda item: item[0])  # code-point order == UTF-8 byte order
        for path, obj in items:
            yield obj.info(path)

    def _delete(self, path: str) -> None:
        with self._bucket.lock:
            self._bucket.objects.pop(path, None)

    def _delete_many(self, paths: list[str]) -> None:
        with self._bucket.lock:
            for path in paths:
                self._bucket.objects.pop(path, None)

    def _translate(self, exc: Exception, key: str | None) -> Exception | None:
        if isinstance(exc, _Missing):
            return NotFound("no such object", uri=self.uri, key=key)
        if isinstance(exc, _Conflict):
            return PreconditionFailed(f"precondition failed: {exc}", uri=self.uri, key=key)
        if isinstance(exc, MemoryError):
            return StorageError("out of memory", uri=self.uri, key=key)
        return None


__all__ = ["MemoryStore"]
