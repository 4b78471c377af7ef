"""The object-store interface every backend implements, its shared machinery, and the scheme registry.

Users see :class:`ObjectStore` (the contract) and :func:`open`. Backends subclass
:class:`BaseStore`, which owns everything that must behave identically on every backend (key
validation, prefix handling, I/O statistics, retries with backoff, error messages naming URI and
key) and asks the backend for a handful of primitives (``_put``, ``_get_range``, ``_head``,
``_list``, ``_delete``) plus a translation of its SDK's exceptions.
"""

from __future__ import annotations

import importlib
import io
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

from nubes.storage.current import CURRENT_IO
from nubes.errors import (
    BackendMissing,
    ConfigError,
    InvalidKey,
    NotFound,
    StorageError,
    StorageUnavailable,
)

Data = bytes | bytearray | memoryview | IO[bytes]
T = TypeVar("T")

MAX_KEY_BYTES = 1024


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

    * Keys are relative to the store's prefix: non-empty ``/``-separated text, at most 1,024 UTF-8
      bytes, with no leading ``/``, no empty, ``.`` or ``..`` segment and no NUL or control
      character. Anything else raises :class:`~nubes.errors.InvalidKey` before any I/O.
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


def check_key(key: str, *, uri: str = "") -> str:
    """Return ``key`` if it is a valid object key (see :class:`ObjectStore`), else raise InvalidKey."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("object keys are non-empty strings", uri=uri, key=repr(key))
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidKey("object keys may not contain NUL or control characters", uri=uri, key=repr(key))
    if key.startswith("/") or "\\" in key:
        raise InvalidKey("object keys are relative '/'-separated paths", uri=uri, key=key)
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey("object keys may not have empty, '.' or '..' segments", uri=uri, key=key)
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"object keys are at most {MAX_KEY_BYTES} UTF-8 bytes", uri=uri, key=key[:80] + "...")
    return key


class BaseStore:
    """Shared behaviour of every backend. Subclasses implement the ``_``-primitives below.

    Primitives take *full* paths (prefix joined with key) and return :class:`ObjectInfo` with full
    paths as keys; this class validates keys, strips the prefix, counts I/O, retries transient
    failures and turns foreign exceptions into :mod:`nubes.errors` via :meth:`_translate`.
    """

    scheme: str = ""
    retries: int = 3
    backoff: float = 0.1

    def __init__(self, root: str, prefix: str = "") -> None:
        self.root = root
        self.prefix = prefix.strip("/")
        self.uri = f"{self.scheme}://{root}" + (f"/{self.prefix}" if self.prefix else "")
        self.stats = IOStats()

    # -- primitives for subclasses ---------------------------------------------------------
    def _put(
        self, path: str, data: Data, content_type: str | None, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        raise NotImplementedError

    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        raise NotImplementedError

    def _head(self, path: str) -> ObjectInfo:
        raise NotImplementedError

    def _list(self, path_prefix: str) -> Iterable[ObjectInfo]:
        """Yield objects whose full path starts with ``path_prefix``, sorted by path."""
        raise NotImplementedError

    def _delete(self, path: str) -> None:
        raise NotImplementedError

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
        if not isinstance(prefix, str) or "\x00" in prefix or prefix.startswith("/"):
            raise InvalidKey("list prefixes are relative strings", uri=self.uri, key=repr(prefix))
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
        return f"{self.prefix}/{key}" if self.prefix else key

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


# -- registry by scheme ------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    target: str  # "module:Class", imported on first use
    extra: str | None  # the pip extra that installs its SDK
    sdk: str | None  # the top-level module of that SDK


_REGISTRY: dict[str, Backend] = {}


def register(scheme: str, target: str, *, extra: str | None = None, sdk: str | None = None) -> None:
    """Register ``target`` ("module:Class") as the backend for ``scheme://`` URIs, imported lazily."""
    _REGISTRY[scheme] = Backend(target, extra, sdk)


def registered() -> dict[str, Backend]:
    return dict(_REGISTRY)


def open(uri: str, **options: Any) -> ObjectStore:  # noqa: A001 - mirrors fsspec.open / builtins.open
    """Open the object store at ``uri``; the backend is chosen by its scheme.

    ``file://PATH`` (relative to the working directory unless absolute: ``file:///abs``),
    ``mem://NAME``, ``s3://BUCKET/PREFIX``, ``gs://BUCKET/PREFIX``, ``az://CONTAINER/PREFIX``.
    ``options`` go to the backend and override the SDK's environment configuration.
    """
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(
            f"storage URI {uri!r} has no scheme; use one of "
            + ", ".join(f"{s}://" for s in sorted(_REGISTRY))
            + " (for a local folder: file://PATH)"
        )
    scheme, rest = uri.split("://", 1)
    backend = _REGISTRY.get(scheme.lower())
    if backend is None:
        raise ConfigError(
            f"no storage backend for scheme '{scheme}://' in {uri!r}; known: "
            + ", ".join(f"{s}://" for s in sorted(_REGISTRY))
        )
    module_name, _, attr = backend.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if backend.sdk and exc.name and exc.name.split(".")[0] == backend.sdk.split(".")[0]:
            raise BackendMissing(
                f"{scheme}:// storage needs the {backend.sdk} package: pip install 'nubes[{backend.extra}]'"
            ) from exc
        raise
    cls = getattr(module, attr)
    return cls.from_uri(rest, **options)


register("mem", "nubes.storage.memory:MemoryStore")
register("file", "nubes.storage.local:LocalStore")
register("s3", "nubes.storage.s3:S3Store", extra="aws", sdk="boto3")
register("gs", "nubes.storage.gcs:GCSStore", extra="gcp", sdk="google.cloud.storage")
register("az", "nubes.storage.azure:AzureBlobStore", extra="azure", sdk="azure.storage.blob")
