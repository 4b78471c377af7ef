"""The object-store interface every backend implements and its shared machinery.

Users see :class:`ObjectStore` (the contract, a structural protocol) and
:func:`nubes.storage.open`. Backends subclass :class:`BaseStore`, the declared backend interface
(an ABC): it owns everything that must behave identically on every backend (key validation,
prefix handling, I/O statistics, retries with backoff, error messages naming URI and key) and
asks the backend for :meth:`BaseStore.from_uri` (how the registry opens it) and a handful of
primitives (``_put``, ``_get_range``, ``_head``, ``_list``, ``_delete``) plus a translation of its
SDK's exceptions. Every backend passes :mod:`nubes.testing.storage_contract`.
"""

from __future__ import annotations

import io
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Protocol, Self, TypeVar, runtime_checkable

from nubes.errors import InvalidKey, NotFound, StorageError, StorageUnavailable
from nubes.storage.current import CURRENT_IO
from nubes.storage.keys import MAX_KEY_BYTES, check_key, check_prefix

Data = bytes | bytearray | memoryview | IO[bytes]
T = TypeVar("T")


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object. ``key`` is relative to the store's prefix.

    ``etag`` is opaque: equal etags mean the same stored version; every successful ``put`` of
    different content yields a different etag. ``last_modified`` is timezone-aware (UTC).
    """

    key: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str | None = None


@runtime_checkable
class ObjectStore(Protocol):
    """A flat namespace of immutable-once-written objects under one URI prefix.

    Contract (every backend passes :mod:`nubes.testing.storage_contract`):

    * Keys are relative to the store's prefix and follow one rule set on every backend
      (:func:`~nubes.storage.keys.check_key`): non-empty ``/``-separated text UTF-8 can encode, at
      most 1,024 UTF-8 bytes, with no leading ``/``, no backslash, no empty, ``.``, ``..`` or
      ``.nubes-internal`` segment, no segment over 255 UTF-8 bytes and no NUL or control character.
      Anything else raises :class:`~nubes.errors.InvalidKey` before any I/O (so does a ``list``
      prefix that is not relative text).
    * ``put`` replaces the object whole and atomically: readers see the old object or the new one,
      never a part. ``data`` is bytes or a binary file-like object, which is streamed (multipart,
      resumable or block upload) rather than read whole into memory. ``if_none_match=True`` writes
      only if no object exists at the key; ``if_match=etag`` only if the current object has that
      etag; otherwise :class:`~nubes.errors.PreconditionFailed` and nothing is written.
    * ``get``/``get_range``/``head``/``open`` of a missing key raise :class:`~nubes.errors.NotFound`.
      ``get_range(key, start, end)`` returns ``data[start:end]`` (``end`` exclusive, ``None`` for
      the end of the object; a range past the end is cut short, as a slice is).
    * ``open(key)`` returns a seekable, read-only binary file that fetches ranges lazily.
    * ``list(prefix)`` yields every object whose key starts with ``prefix`` (a plain string prefix,
      not a directory), across all pages, sorted by key.
    * ``delete`` of a missing key is not an error; ``delete_many`` deletes in as few calls as the
      service allows.
    * ``url(key)`` is the native URI of the object (``s3://bucket/prefix/key``, ``file:///...``).
    * Transient failures are retried with backoff a bounded number of times, then raise
      :class:`~nubes.errors.StorageUnavailable`. No operation hangs forever.
    * ``stats`` counts operations and bytes moved by this store handle.
    """

    uri: str
    stats: IOStats

    def put(
        self,
        key: str,
        data: Data,
        *,
        content_type: str | None = None,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo: ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, end: int | None) -> bytes: ...

    def open(self, key: str) -> IO[bytes]: ...

    def head(self, key: str) -> ObjectInfo: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def delete_many(self, keys: Iterable[str]) -> None: ...

    def url(self, key: str) -> str: ...


@dataclass
class IOStats:
    """Operations and bytes moved (through one store handle, or by one invocation); thread-safe."""

    ops: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    bytes_written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, op: str, *, read: int = 0, written: int = 0, count: int = 1) -> None:
        with self._lock:
            if count:
                self.ops[op] = self.ops.get(op, 0) + count
            self.bytes_read += read
            self.bytes_written += written
        invocation = CURRENT_IO.get()
        if invocation is not None and invocation is not self:
            invocation.record(op, read=read, written=written, count=count)

    def merge(self, other: IOStats) -> None:
        """Add ``other``'s counts to these (and to the current invocation's, like :meth:`record`)."""
        snap = other.snapshot()
        for op, count in snap["ops"].items():
            self.record(op, count=count)
        if snap["bytes_read"] or snap["bytes_written"]:
            self.record("bytes", read=snap["bytes_read"], written=snap["bytes_written"], count=0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"ops": dict(self.ops), "bytes_read": self.bytes_read, "bytes_written": self.bytes_written}


class BaseStore(ABC):
    """The backend interface: subclasses implement :meth:`from_uri` and the ``_``-primitives below.

    Primitives take *full* paths (prefix joined with a key already checked by
    :func:`~nubes.storage.keys.check_key`) and return :class:`ObjectInfo` with full paths as keys;
    this class validates keys, strips the prefix, counts I/O, retries transient failures and turns
    foreign exceptions into :mod:`nubes.errors` via :meth:`_translate`. A backend is registered
    with :func:`nubes.storage.register` and must pass :mod:`nubes.testing.storage_contract`.
    """

    scheme: str = ""
    retries: int = 3
    backoff: float = 0.1
    max_path_bytes: int | None = None
    """The service's limit on prefix + key in UTF-8 bytes (cloud stores: 1,024), checked before any I/O."""

    def __init__(self, root: str, prefix: str = "") -> None:
        self.root = root
        self.prefix = prefix.strip("/")
        self.uri = f"{self.scheme}://{root}" + (f"/{self.prefix}" if self.prefix else "")
        self.stats = IOStats()

    # -- what a backend implements ---------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_uri(cls, rest: str, **options: Any) -> Self:
        """Open the store at ``SCHEME://rest`` (``rest`` is the URI after ``://``) with backend ``options``.

        Called by :func:`nubes.storage.open`; unknown options and malformed URIs raise
        :class:`~nubes.errors.ConfigError` naming the fix. ``from_uri(store.uri.split("://", 1)[1])``
        opens another handle on the same place.
        """

    @abstractmethod
    def _put(
        self, path: str, data: Data, content_type: str | None, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        """Write ``data`` whole and atomically at ``path``, honouring the two preconditions."""

    @abstractmethod
    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        """``data[start:end]`` of the object (``0 <= start < end`` or ``end`` None)."""

    @abstractmethod
    def _head(self, path: str) -> ObjectInfo:
        """The object's info; a missing object raises something :meth:`_translate` makes NotFound."""

    @abstractmethod
    def _list(self, path_prefix: str) -> Iterable[ObjectInfo]:
        """Yield objects whose full path starts with ``path_prefix``, sorted by path."""

    @abstractmethod
    def _delete(self, path: str) -> None:
        """Delete the object at ``path``; a missing one is not an error."""

    def _delete_many(self, paths: list[str]) -> None:
        for path in paths:
            self._delete(path)

    def _translate(self, exc: Exception, key: str | None) -> Exception | None:
        """Map an SDK exception to a nubes error (or ``None`` to let it propagate unchanged)."""
        return None

    def _is_transient(self, exc: Exception) -> bool:
        """True if retrying the same call may succeed (timeouts, throttling, 5xx, reset connections)."""
        return isinstance(exc, (ConnectionError, TimeoutError))

    # -- the public contract ---------------------------------------------------------------
    def put(
        self,
        key: str,
        data: Data,
        *,
        content_type: str | None = None,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        path = self._path(key)
        start = _position(data)

        def attempt() -> ObjectInfo:
            if start is not None and not isinstance(data, (bytes, bytearray, memoryview)):
                data.seek(start)  # a retried streaming put sends the data again from the start
            return self._put(path, data, content_type, if_none_match, if_match)

        info = self._call(key, attempt, retry=_rewindable(data))
        self.stats.record("put", written=info.size)
        return self._relative(info)

    def get(self, key: str) -> bytes:
        return self.get_range(key, 0, None)

    def get_range(self, key: str, start: int, end: int | None) -> bytes:
        path = self._path(key)
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"get_range takes non-negative offsets, not {start}..{end}")
        if end is not None and end <= start:
            self.head(key)  # a missing key is still NotFound
            return b""
        data = self._call(key, lambda: self._get_range(path, start, end))
        self.stats.record("get", read=len(data))
        return data

    def open(self, key: str) -> IO[bytes]:
        info = self.head(key)
        return io.BufferedReader(RangeReader(self, key, info.size), buffer_size=RangeReader.block_size)

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        info = self._call(key, lambda: self._head(path))
        self.stats.record("head")
        return self._relative(info)

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except NotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix, uri=self.uri)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        self.stats.record("list")
        items: Iterator[ObjectInfo] | None = None
        last: str | None = None

        def step() -> ObjectInfo | None:
            # A listing that fails mid-way is restarted and resumes after the last key yielded
            # (listings are sorted); retrying ``next`` on a dead generator would end it silently.
            nonlocal items
            try:
                if items is None:
                    items = iter(self._list(full))
                while True:
                    info = next(items, None)
                    if info is None or last is None or info.key > last:
                        return info
            except BaseException:
                items = None
                raise

        while True:
            info = self._call(prefix or None, step)
            if info is None:
                return
            last = info.key
            yield self._relative(info)

    def delete(self, key: str) -> None:
        path = self._path(key)
        self._call(key, lambda: self._delete(path))
        self.stats.record("delete")

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        paths = [self._path(k) for k in keys]
        if paths:
            self._call(None, lambda: self._delete_many(paths))
            self.stats.record("delete_many")

    def url(self, key: str) -> str:
        return f"{self.scheme}://{self.root}/{self._path(key)}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"

    # -- helpers ---------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        check_key(key, uri=self.uri)
        if not self.prefix:
            return key
        path = f"{self.prefix}/{key}"
        if self.max_path_bytes is not None and len(path.encode("utf-8")) > self.max_path_bytes:
            raise InvalidKey(
                f"the store's prefix and the key are at most {self.max_path_bytes} UTF-8 bytes together", uri=self.uri, key=key
            )
        return path

    def _relative(self, info: ObjectInfo) -> ObjectInfo:
        if self.prefix and info.key.startswith(self.prefix + "/"):
            return ObjectInfo(info.key[len(self.prefix) + 1 :], info.size, info.etag, info.last_modified, info.content_type)
        return info

    def _call(self, key: str | None, fn: Callable[[], T], *, retry: bool = True) -> T:
        attempts = self.retries if retry else 1
        for attempt in range(attempts):
            try:
                return fn()
            except StorageError:
                raise
            except Exception as exc:  # translated below; nothing foreign escapes
                if self._is_transient(exc):
                    if attempt + 1 < attempts:
                        time.sleep(self.backoff * (2**attempt))
                        continue
                    raise StorageUnavailable(
                        f"storage did not answer after {attempts} attempts ({type(exc).__name__}: {exc})",
                        uri=self.uri,
                        key=key,
                    ) from exc
                translated = self._translate(exc, key)
                if translated is None:
                    raise
                raise translated from exc
        raise AssertionError("unreachable")


class RangeReader(io.RawIOBase):
    """A seekable read-only raw file over one object, fetching only the ranges asked for.

    Every ``read(n)`` is one range request of at most ``n`` bytes (:meth:`_fetch`); subclasses
    change where ranges come from by overriding :meth:`_fetch` (the analytics bridge does).
    """

    block_size = 256 * 1024

    def __init__(self, store: ObjectStore | None, key: str, size: int, *, name: str | None = None) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._size = size
        self._pos = 0
        self.name = name if name is not None else store.url(key)  # type: ignore[union-attr]

    def _fetch(self, start: int, end: int) -> bytes:
        return self._store.get_range(self._key, start, end)  # type: ignore[union-attr]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        if end <= self._pos:
            return b""
        data = self._fetch(self._pos, end)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    @property
    def size(self) -> int:
        return self._size


def unquote_etag(etag: str) -> str:
    """An etag as stored: accepts it quoted (as HTTP sends it) or bare."""
    return etag[1:-1] if len(etag) >= 2 and etag[0] == etag[-1] == '"' else etag


def _position(data: Data) -> int | None:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return 0
    try:
        return data.tell() if data.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def _rewindable(data: Data) -> bool:
    """A put may be retried only if its data can be sent again from the start."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return True
    try:
        return bool(data.seekable())
    except (AttributeError, ValueError):
        return False


__all__ = [
    "CURRENT_IO",
    "MAX_KEY_BYTES",
    "BaseStore",
    "Data",
    "IOStats",
    "ObjectInfo",
    "ObjectStore",
    "RangeReader",
    "check_key",
    "unquote_etag",
]
