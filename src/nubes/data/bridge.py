"""The bridge from object storage to analytics: DuckDB and Polars reading any backend by range reads.

A :class:`Bridge` wraps one or more :class:`~nubes.storage.base.ObjectStore` under aliases and
registers an fsspec filesystem (protocol ``nubes``) on a DuckDB connection, so that
``read_parquet('nubes://ALIAS/KEY')``, ``read_csv``, ``read_json`` and globs (``*``, ``**``, hive
``year=2024/`` folders) work on every backend. DuckDB asks only for the byte ranges it needs: for
Parquet the footer plus the column chunks of the projected columns in the row groups its
statistics do not prune, so a one-column query on a wide file reads a fraction of it.

Polars gets results through the Arrow C stream interface (no pyarrow): :meth:`Bridge.scan` returns a
``LazyFrame`` whose projection, row limit and (translatable) filters are pushed into DuckDB, which
does the range reads. ``polars.scan_parquet`` on a file-like object was measured to read the whole
object, so it is not used.

Writes (:meth:`Bridge.write`) serialize to a temporary file first and then make one streaming
``store.put``: a failing serialization writes nothing and readers see the old object or the new one.

Every storage request the bridge makes is counted in :attr:`Bridge.stats`; :meth:`Bridge.measure`
gives the requests and bytes of a block of work (used by metering).

duckdb, polars and fsspec are imported only when this module is imported; ``import nubes.storage``
does not import it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import io
import itertools
import json
import operator
import os
import re
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb
import polars as pl
from fsspec import AbstractFileSystem

from nubes.errors import ConfigError, NotFound, PreconditionFailed, StorageError
from nubes.storage.base import CURRENT_IO, IOStats, ObjectInfo, ObjectStore, RangeReader, check_key

PROTOCOL = "nubes"
Format = Literal["parquet", "csv", "ndjson"]

_EXTENSIONS: dict[str, Format] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "ndjson",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
_COMPRESSION = (".gz", ".zst", ".zstd")
_CONTENT_TYPES: dict[str, str] = {
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv",
    "ndjson": "application/x-ndjson",
}
_ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")
_GLOB_MAGIC = re.compile(r"[*?\[]")
_NO_FILES = re.compile(r'No files found that match the pattern "([^"]+)"')


def infer_format(key: str) -> Format:
    """The format of ``key`` from its extension (``.parquet``/``.pq``, ``.csv``/``.tsv``,
    ``.json``/``.ndjson``/``.jsonl``, each optionally followed by ``.gz``/``.zst``); else ConfigError."""
    name = key.rsplit("/", 1)[-1].lower()
    for suffix in _COMPRESSION:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    ext = os.path.splitext(name)[1]
    fmt = _EXTENSIONS.get(ext)
    if fmt is None:
        raise ConfigError(
            f"cannot tell the format of {key!r} from its extension; pass format='parquet', 'csv' or 'ndjson'"
        )
    return fmt


def _check_format(fmt: str) -> Format:
    if fmt not in ("parquet", "csv", "ndjson"):
        raise ConfigError(f"unknown format {fmt!r}; use 'parquet', 'csv' or 'ndjson'")
    return fmt  # type: ignore[return-value]


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_sql_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_sql_literal(str(k))}: {_sql_literal(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot pass {type(value).__name__} {value!r} as a DuckDB reader option")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- measurement --------------------------------------------------------------------------------
@dataclass
class Measurement:
    """Storage requests and bytes caused through one bridge during a ``measure()`` block.

    Live while the block runs, frozen when it ends. ``bytes_read`` is what was fetched from
    storage (range-cache hits are not fetched and appear only in ``cache_hits``/``bytes_cached``).
    """

    ops: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    bytes_written: int = 0
    cache_hits: int = 0
    bytes_cached: int = 0
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        """Total storage requests (GET, HEAD, LIST, PUT, ...)."""
        return sum(self.ops.values())


class _Meter:
    def __init__(self, stats: IOStats, cache: _RangeCache) -> None:
        self._stats = stats
        self._cache = cache
        self._start = stats.snapshot()
        self._cache_start = cache.counters()
        self._t0 = time.perf_counter()
        self._frozen: Measurement | None = None

    def current(self) -> Measurement:
        if self._frozen is not None:
            return self._frozen
        now = self._stats.snapshot()
        hits, cached = self._cache.counters()
        ops = {k: v - self._start["ops"].get(k, 0) for k, v in now["ops"].items()}
        return Measurement(
            ops={k: v for k, v in ops.items() if v},
            bytes_read=now["bytes_read"] - self._start["bytes_read"],
            bytes_written=now["bytes_written"] - self._start["bytes_written"],
            cache_hits=hits - self._cache_start[0],
            bytes_cached=cached - self._cache_start[1],
            seconds=time.perf_counter() - self._t0,
        )

    def freeze(self) -> None:
        self._frozen = self.current()


class MeasurementHandle:
    """What ``with bridge.measure() as m`` yields: attributes of :class:`Measurement`, live until the block ends."""

    def __init__(self, meter: _Meter) -> None:
        self._meter = meter

    def result(self) -> Measurement:
        return self._meter.current()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._meter.current(), name)

    def __repr__(self) -> str:
        return f"<MeasurementHandle {self._meter.current()!r}>"


# -- caches -------------------------------------------------------------------------------------
class _RangeCache:
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


class _InfoCache:
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


# -- the filesystem DuckDB sees -----------------------------------------------------------------
@contextlib.contextmanager
def _uncounted() -> Iterator[None]:
    """Store calls made for DuckDB are counted once, in the bridge's stats, not also in the invocation's
    (DuckDB calls back from its own threads, where the invocation's counter is not set anyway)."""
    token = CURRENT_IO.set(None)
    try:
        yield
    finally:
        CURRENT_IO.reset(token)


class _Core:
    """State shared by a bridge and its filesystem: stores, counters, caches and recent storage errors."""

    def __init__(self, stores: dict[str, ObjectStore], metadata_ttl: float, cache_bytes: int, prefix: str = "") -> None:
        self.stores = stores
        self.prefix = prefix  # "" on a bridge's own database; "TOKEN." for a session of a shared Database
        self.stats = IOStats()
        self.infos = _InfoCache(metadata_ttl)
        self.ranges = _RangeCache(cache_bytes)
        self._errors: list[tuple[int, StorageError]] = []
        self._seq = itertools.count(1)
        self._last = 0
        self._lock = threading.Lock()
        self.touched: dict[tuple[str, str], dict[str, Any]] = {}  # (alias, key) -> etag, size, bytes read

    def host(self, alias: str) -> str:
        """The first part of ``nubes://HOST/KEY`` for the store ``alias``."""
        return self.prefix + alias

    def touch(self, alias: str, info: ObjectInfo, read: int = 0) -> None:
        with self._lock:
            entry = self.touched.setdefault((alias, info.key), {"etag": info.etag, "size": info.size, "bytes_read": 0})
            entry["etag"] = info.etag
            entry["bytes_read"] += read

    # errors raised inside DuckDB callbacks, so the boundary can re-raise the nubes error
    def note(self, exc: StorageError) -> None:
        with self._lock:
            self._last = next(self._seq)
            self._errors.append((self._last, exc))
            del self._errors[:-32]

    def mark(self) -> int:
        with self._lock:
            return self._last

    def errors_since(self, mark: int) -> list[StorageError]:
        with self._lock:
            return [e for n, e in self._errors if n > mark]

    # counted store calls
    def head(self, alias: str, key: str) -> ObjectInfo:
        info = self.infos.get(alias, key)
        if info is not None:
            return info
        store = self.stores[alias]
        try:
            with _uncounted():
                info = store.head(key)
        finally:
            self.stats.record("head")
        self.infos.put(alias, info)
        return info

    def list(self, alias: str, prefix: str) -> list[ObjectInfo]:
        self.stats.record("list")
        with _uncounted():
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
        with _uncounted():
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


class _ObjectFile(RangeReader):
    """A read-only seekable file over one object version: every ``read(n)`` is one exact range request
    (no read-ahead: DuckDB already asks for whole column chunks / large CSV buffers), through the
    bridge's counted, cached ranges; a storage error is noted so the DuckDB boundary can re-raise it."""

    def __init__(self, core: _Core, alias: str, info: ObjectInfo) -> None:
        super().__init__(None, info.key, info.size, name=f"{PROTOCOL}://{core.host(alias)}/{info.key}")
        self._core = core
        self._alias = alias
        self._info = info

    def _fetch(self, start: int, end: int) -> bytes:
        try:
            return self._core.get_range(self._alias, self._info, start, end)
        except StorageError as exc:
            self._core.note(exc)
            raise


class NubesFileSystem(AbstractFileSystem):
    """fsspec filesystem over object stores: ``nubes://ALIAS/KEY`` is ``KEY`` in the store named ``ALIAS``.

    Read-only (writes go through :meth:`Bridge.write`, which is atomic). Folders are implied by ``/``
    in keys. ``ls``/``find``/``glob`` make one ``store.list`` call per listed prefix; ``info``,
    ``size`` and ``modified`` one HEAD, cached for the bridge's ``metadata_ttl``. Missing objects
    raise :class:`~nubes.errors.NotFound` (a ``FileNotFoundError``).

    A bridge's own filesystem serves its stores as ``nubes://ALIAS/``. The one filesystem of a shared
    :class:`Database` serves every open session bridge as ``nubes://TOKEN.ALIAS/`` and sends each request
    to that session's stores, counters and caches, so concurrent sessions are metered apart.
    """

    protocol = PROTOCOL
    root_marker = ""
    cachable = False
    async_impl = False

    def __init__(self, core: _Core | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._core = core
        self._sessions: dict[str, _Core] = {}  # shared database: TOKEN -> the session bridge's core
        self._lock = threading.Lock()

    def _bind(self, token: str, core: _Core) -> None:
        with self._lock:
            self._sessions = {**self._sessions, token: core}  # copy on write: lookups take no lock

    def _unbind(self, token: str) -> None:
        with self._lock:
            self._sessions = {t: c for t, c in self._sessions.items() if t != token}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:  # type: ignore[override]
        if isinstance(path, (list, tuple)):
            return [cls._strip_protocol(p) for p in path]  # type: ignore[return-value]
        path = str(path)
        if path.startswith(PROTOCOL + "://"):
            path = path[len(PROTOCOL) + 3 :]
        return path.strip("/")

    def _split(self, path: str) -> tuple[_Core, str, str]:
        path = self._strip_protocol(path)
        host, _, key = path.partition("/")
        core, alias = self._core, host
        if core is None:
            token, dot, alias = host.partition(".")
            core = self._sessions.get(token) if dot else None
            if core is None:
                raise ConfigError(f"{PROTOCOL}://{host}/ is not a store of an open session on this database: {PROTOCOL}://{path}")
        if alias not in core.stores:
            known = ", ".join(f"{PROTOCOL}://{core.host(a)}/" for a in sorted(core.stores))
            raise ConfigError(f"no store named {alias!r} in this bridge (known: {known}): {PROTOCOL}://{path}")
        return core, alias, key

    @staticmethod
    def _file_entry(core: _Core, alias: str, info: ObjectInfo) -> dict[str, Any]:
        return {
            "name": f"{core.host(alias)}/{info.key}",
            "size": info.size,
            "type": "file",
            "etag": info.etag,
            "mtime": info.last_modified,
        }

    @staticmethod
    def _guard(core: _Core, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except StorageError as exc:
            core.note(exc)
            raise

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        core, alias, key = self._split(path)
        try:
            return self._info(core, alias, key)
        except NotFound:
            raise  # a probe (isfile, exists, glob); DuckDB reports a real miss itself, translated at the boundary
        except StorageError as exc:
            core.note(exc)
            raise

    def _info(self, core: _Core, alias: str, key: str) -> dict[str, Any]:
        if not key:
            return {"name": core.host(alias), "size": 0, "type": "directory"}
        try:
            return self._file_entry(core, alias, core.head(alias, key))
        except NotFound as missing:
            if core.list(alias, key + "/"):
                return {"name": f"{core.host(alias)}/{key}", "size": 0, "type": "directory"}
            raise missing from None

    def exists(self, path: str, **kwargs: Any) -> bool:
        """True if ``path`` is an object or a non-empty folder; a miss is not noted as an error."""
        core, alias, key = self._split(path)
        try:
            self._info(core, alias, key)
        except NotFound:
            return False
        except StorageError as exc:
            core.note(exc)
            raise
        return True

    def size(self, path: str) -> int:
        return int(self.info(path)["size"])

    def modified(self, path: str) -> Any:
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(path)
        return info["mtime"]

    def ukey(self, path: str) -> str:
        return str(self.info(path).get("etag", ""))

    def _entries(self, core: _Core, alias: str, key: str) -> list[ObjectInfo]:
        prefix = key + "/" if key else ""
        return [i for i in self._guard(core, core.list, alias, prefix) if i.key.startswith(prefix)]

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        core, alias, key = self._split(path)
        host = core.host(alias)
        prefix = key + "/" if key else ""
        out: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for info in self._entries(core, alias, key):
            rest = info.key[len(prefix) :]
            if "/" in rest:
                d = prefix + rest.split("/", 1)[0]
                if d not in dirs:
                    dirs.add(d)
                    out.append({"name": f"{host}/{d}", "size": 0, "type": "directory"})
            else:
                out.append(self._file_entry(core, alias, info))
        if not out:
            if not key:
                return []
            out = [self.info(path)]  # a file, or NotFound
            if out[0]["type"] != "file":
                out = []
        return out if detail else [o["name"] for o in out]

    def find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False, **kwargs: Any
    ) -> Any:
        core, alias, key = self._split(path)
        host = core.host(alias)
        prefix = key + "/" if key else ""
        found: dict[str, dict[str, Any]] = {}
        for info in self._entries(core, alias, key):
            parts = info.key[len(prefix) :].split("/")
            if maxdepth is not None and len(parts) > maxdepth:
                if withdirs:
                    for depth in range(1, maxdepth + 1):
                        d = prefix + "/".join(parts[:depth])
                        found.setdefault(f"{host}/{d}", {"name": f"{host}/{d}", "size": 0, "type": "directory"})
                continue
            if withdirs:
                for depth in range(1, len(parts)):
                    d = prefix + "/".join(parts[:depth])
                    found.setdefault(f"{host}/{d}", {"name": f"{host}/{d}", "size": 0, "type": "directory"})
            entry = self._file_entry(core, alias, info)
            found[entry["name"]] = entry
        if not found and key:
            try:
                entry = self.info(path)
            except FileNotFoundError:
                entry = None
            if entry is not None and entry["type"] == "file":
                found[entry["name"]] = entry
        names = sorted(found)
        return {n: found[n] for n in names} if detail else names

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            raise PermissionError(
                f"{PROTOCOL}:// is read-only for DuckDB; write results with Bridge.write (atomic): {path}"
            )
        core, alias, key = self._split(path)
        info = self._guard(core, core.head, alias, key)
        return _ObjectFile(core, alias, info)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:  # no fsspec read-ahead/text layers
        if "b" not in mode:
            return io.TextIOWrapper(io.BufferedReader(self._open(path, "rb")), encoding=kwargs.get("encoding"))
        return self._open(path, mode)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        f = self._open(path)
        size = f.size
        s = 0 if start is None else (start if start >= 0 else max(0, size + start))
        e = size if end is None else (end if end >= 0 else max(0, size + end))
        f.seek(s)
        return f.read(max(0, e - s))

    def _rm(self, path: str) -> None:
        raise PermissionError(f"{PROTOCOL}:// is read-only for DuckDB: {path}")

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        raise PermissionError(f"{PROTOCOL}:// is read-only for DuckDB: {path}")


# -- the public bridge --------------------------------------------------------------------------
class Bridge:
    """DuckDB and Polars over object stores, with range reads, atomic writes and per-block metering.

    ``stores`` is one store (alias ``"data"``) or a mapping ``alias -> store``; DuckDB sees the object
    ``KEY`` of store ``ALIAS`` as ``nubes://ALIAS/KEY`` (see :meth:`path`). ``connection`` lets the
    filesystem be registered on an existing DuckDB connection instead of a new in-memory one (its
    database must not already have a ``nubes`` filesystem).

    ``metadata_ttl`` (seconds) bounds how long a HEAD/LIST answer is reused; ``cache_bytes`` bounds the
    range cache that keeps a byte range DuckDB reads twice (bind, then execution) from being fetched
    twice. Both are keyed by the object's etag and dropped on :meth:`write`; an object replaced by
    another writer is seen after at most ``metadata_ttl``. ``0`` disables either cache.

    ``database`` (or :meth:`Database.session`) makes a *session* bridge on a shared :class:`Database`
    instead: its connection is a cursor of the database (its own TEMP views and settings of session
    scope), its objects are ``nubes://TOKEN.ALIAS/KEY`` (:meth:`path` gives them), and its counters,
    caches and lineage are its own. Closing it closes the cursor, not the database.

    Thread safety: the bridge's counters and caches are thread-safe, but a DuckDB connection runs one
    statement at a time: for concurrent queries use one bridge each (they may share stores). The
    Polars scans of one bridge (:meth:`scan`) each run on a cursor of their own, so a join of two
    scans (which Polars reads at the same time) works.
    """

    def __init__(
        self,
        stores: ObjectStore | Mapping[str, ObjectStore],
        *,
        connection: duckdb.DuckDBPyConnection | None = None,
        database: Database | None = None,
        metadata_ttl: float = 2.0,
        cache_bytes: int = 32 * 1024 * 1024,
        spool_dir: str | None = None,
    ) -> None:
        if isinstance(stores, Mapping):
            named = dict(stores)
        else:
            named = {"data": stores}
        if not named:
            raise ConfigError("a Bridge needs at least one store")
        for alias, store in named.items():
            if not isinstance(alias, str) or not _ALIAS.match(alias):
                raise ConfigError(f"store alias {alias!r} must be letters, digits, '_' or '-'")
            if not isinstance(store, ObjectStore):
                raise ConfigError(f"store {alias!r} is a {type(store).__name__}, not an ObjectStore")
        self.spool_dir = spool_dir
        self._closed = False
        self._cursor_lock = threading.Lock()
        self._streams: weakref.WeakSet[Any] = weakref.WeakSet()
        self._database = database
        if database is not None:
            if connection is not None:
                raise ConfigError("pass a Bridge either connection= or database=, not both")
            token, self._con = database._open()
            self._token = token
            self._core = _Core(named, metadata_ttl, cache_bytes, prefix=token + ".")
            self.fs = database.fs
            self._own = True
            self.fs._bind(token, self._core)
            self._unbind = weakref.finalize(self, self.fs._unbind, token)  # also if never closed
            return
        self._core = _Core(named, metadata_ttl, cache_bytes)
        self.fs = NubesFileSystem(self._core)
        self._own = connection is None
        self._con = connection if connection is not None else _new_connection()
        if self._con.filesystem_is_registered(PROTOCOL):
            raise ConfigError(
                f"this DuckDB database already has a {PROTOCOL}:// filesystem; use one Bridge per connection"
            )
        self._con.register_filesystem(self.fs)

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def stores(self) -> dict[str, ObjectStore]:
        """The stores by alias."""
        return dict(self._core.stores)

    @property
    def stats(self) -> IOStats:
        """Requests and bytes this bridge caused (reads by DuckDB/Polars and writes); ``store.stats`` also sees them."""
        return self._core.stats

    def attach(self, alias: str, store: ObjectStore) -> None:
        """Make ``store`` readable as ``nubes://ALIAS/...`` on this bridge from now on."""
        if not isinstance(alias, str) or not _ALIAS.match(alias):
            raise ConfigError(f"store alias {alias!r} must be letters, digits, '_' or '-'")
        if alias in self._core.stores and self._core.stores[alias] is not store:
            raise ConfigError(f"this bridge already has a store named {alias!r}")
        self._core.stores[alias] = store

    def objects_read(self) -> list[dict[str, Any]]:
        """Every object whose bytes this bridge read: store URI, key, etag, size and bytes fetched (lineage)."""
        with self._core._lock:
            items = sorted(self._core.touched.items())
        return [
            {"store": self._core.stores[alias].uri, "key": key, **entry}
            for (alias, key), entry in items
        ]

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection on which ``nubes://`` paths are readable.

        Errors of statements run on it directly are DuckDB's own; wrap them in :meth:`translate_errors`
        to get :mod:`nubes.errors` (``NotFound`` with the store URI and key).
        """
        return self._con

    def close(self) -> None:
        """Unregister the filesystem (and close the connection if the bridge opened it).

        A session bridge of a :class:`Database` closes its cursor (dropping its TEMP views) and stops
        serving its ``nubes://TOKEN.ALIAS/`` paths; the database stays open."""
        if self._closed:
            return
        self._closed = True
        self._close_streams()
        if self._database is not None:
            with contextlib.suppress(Exception):
                self._con.close()
            self._unbind()
            return
        with contextlib.suppress(Exception):
            self._con.unregister_filesystem(PROTOCOL)
        if self._own:
            self._con.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _alias(self, store: str | None) -> str:
        if store is None:
            if len(self._core.stores) == 1:
                return next(iter(self._core.stores))
            raise ConfigError(f"this bridge has several stores ({', '.join(sorted(self._core.stores))}); pass store=")
        if store not in self._core.stores:
            raise ConfigError(f"no store named {store!r} in this bridge (known: {', '.join(sorted(self._core.stores))})")
        return store

    def path(self, key: str, *, store: str | None = None) -> str:
        """The URL DuckDB reads ``key`` (or a glob such as ``year=*/*.parquet``) at: ``nubes://ALIAS/KEY``."""
        if not isinstance(key, str) or not key or key.startswith("/"):
            raise ConfigError(f"keys and globs are relative, non-empty strings, not {key!r}")
        return f"{PROTOCOL}://{self._core.host(self._alias(store))}/{key}"

    @contextlib.contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn DuckDB errors caused by storage into :mod:`nubes.errors` at this boundary.

        A glob or key that matches nothing becomes ``NotFound`` (``key`` is the key or glob); a storage
        error raised inside a DuckDB callback (NotFound, AccessDenied, StorageUnavailable ...) is
        re-raised as itself, chained to the DuckDB error. Other errors pass through unchanged.
        """
        mark = self._core.mark()
        try:
            yield
        except duckdb.Error as exc:
            translated = self._translate(exc, mark)
            if translated is None:
                raise
            raise translated from exc

    def _translate(self, exc: BaseException, mark: int) -> StorageError | None:
        noted = self._core.errors_since(mark)
        if noted:
            return noted[-1]
        match = _NO_FILES.search(str(exc))
        if match:
            url = match.group(1)
            rest = url[len(PROTOCOL) + 3 :] if url.startswith(PROTOCOL + "://") else None
            if rest is not None and rest.startswith(self._core.prefix):
                alias, _, key = rest[len(self._core.prefix) :].partition("/")
                store = self._core.stores.get(alias)
                if store is not None:
                    return NotFound("no object matches", uri=store.uri, key=key)
        return None

    # -- reading -------------------------------------------------------------------------------
    def read_sql(
        self,
        source: str | Sequence[str],
        *,
        format: str | None = None,  # noqa: A002
        store: str | None = None,
        hive_partitioning: bool | None = None,
        **options: Any,
    ) -> str:
        """The DuckDB table-function call reading ``source`` (a key, a glob or a list of them) — for use in SQL."""
        sources = [source] if isinstance(source, str) else list(source)
        if not sources:
            raise ConfigError("nothing to read: pass a key, a glob or a list of them")
        fmt = _check_format(format) if format is not None else infer_format(sources[0])
        urls = [self.path(s, store=store) for s in sources]
        function = {"parquet": "read_parquet", "csv": "read_csv", "ndjson": "read_json"}[fmt]
        if fmt == "ndjson":
            options.setdefault("format", "newline_delimited")
        if hive_partitioning is not None:
            options["hive_partitioning"] = hive_partitioning
        target = _sql_literal(urls[0]) if len(urls) == 1 else _sql_literal(urls)
        args = "".join(f", {name} = {_sql_literal(value)}" for name, value in options.items())
        return f"{function}({target}{args})"

    def read(
        self,
        source: str | Sequence[str],
        *,
        format: str | None = None,  # noqa: A002
        store: str | None = None,
        hive_partitioning: bool | None = None,
        **options: Any,
    ) -> duckdb.DuckDBPyRelation:
        """A lazy DuckDB relation over ``source`` (key, glob or list), format from the extension unless given.

        ``options`` are passed to ``read_parquet``/``read_csv``/``read_json``. Binding reads only metadata
        (a Parquet footer, a CSV/JSON sample); a missing key or a glob matching nothing raises NotFound here.
        """
        call = self.read_sql(source, format=format, store=store, hive_partitioning=hive_partitioning, **options)
        return self.sql(f"SELECT * FROM {call}")

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> duckdb.DuckDBPyRelation:
        """Run or bind ``query`` on the bridge's connection, translating storage errors at bind time."""
        with self.translate_errors():
            return self._con.sql(query, params=params) if params is not None else self._con.sql(query)

    def query(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run ``query`` to the end and return a Polars DataFrame (Arrow C stream, no pyarrow)."""
        with self.translate_errors():
            relation = self._con.sql(query, params=params) if params is not None else self._con.sql(query)
            return pl.DataFrame(relation)

    def _track(self, generator: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        """A scan's batches, remembered: Polars may stop reading them early (``head``) and even go on
        prefetching on its own thread after ``collect`` returned, leaving a DuckDB query running on a cursor;
        :meth:`close` (and interpreter exit) waits for the batch in flight and closes what is left."""
        stream = _Batches(generator)
        self._streams.add(stream)
        _OPEN_STREAMS.add(stream)
        return stream

    def _close_streams(self) -> None:
        for stream in list(self._streams):
            stream.close()

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the bridge's connection for one statement, closed after: it shares the database and
        its ``nubes://`` filesystem, so several may run at the same time (a connection refuses a second call)."""
        with self._cursor_lock:
            cursor = self._con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def scan(
        self,
        source: str | Sequence[str],
        *,
        format: str | None = None,  # noqa: A002
        store: str | None = None,
        hive_partitioning: bool | None = None,
        **options: Any,
    ) -> pl.LazyFrame:
        """A Polars LazyFrame over ``source`` read by DuckDB.

        Polars' projection, ``head``/``limit`` and filters it can express in SQL are pushed into DuckDB,
        so only the needed column chunks and row groups are fetched; other filters are applied by Polars
        afterwards. Each collect runs one DuckDB query and materializes its (already projected and
        filtered) result before yielding batches. The schema is read now: a missing source raises NotFound.
        """
        call = self.read_sql(source, format=format, store=store, hive_partitioning=hive_partitioning, **options)
        base = self.sql(f"SELECT * FROM {call}")
        with self.translate_errors():
            schema = pl.DataFrame(base.limit(0)).schema
            engine_types = dict(zip(base.columns, map(str, base.types), strict=True))
        return _scan_source(self, call, schema, engine_types)

    # -- writing -------------------------------------------------------------------------------
    def write(
        self,
        key: str,
        data: duckdb.DuckDBPyRelation | pl.DataFrame | pl.LazyFrame | str,
        *,
        format: str | None = None,  # noqa: A002
        store: str | None = None,
        if_none_match: bool = False,
        if_match: str | None = None,
        **options: Any,
    ) -> ObjectInfo:
        """Serialize ``data`` and store it at ``key`` atomically; return the new object's info.

        ``data`` is a DuckDB relation, a Polars DataFrame/LazyFrame (sunk streaming) or a SQL query run
        on the bridge's connection. It is written to a temporary file in ``spool_dir`` first (never held
        whole in memory by the bridge), then sent with one streaming ``store.put``: if serialization fails
        nothing is written, and readers see the old object or the new one. ``format`` defaults to the
        key's extension. ``options`` go to the writer (DuckDB ``COPY`` options or Polars ``write_*``).
        """
        alias = self._alias(store)
        target = self._core.stores[alias]
        check_key(key, uri=target.uri)
        fmt = _check_format(format) if format is not None else infer_format(key)
        suffix = {"parquet": ".parquet", "csv": ".csv", "ndjson": ".ndjson"}[fmt]
        with tempfile.TemporaryDirectory(prefix="nubes-write-", dir=self.spool_dir) as tmp:
            spool = os.path.join(tmp, "data" + suffix)
            with self.translate_errors():
                _serialize(self._con, data, spool, fmt, options)
            if not os.path.exists(spool):
                raise StorageError("serialization produced no file; nothing written", uri=target.uri, key=key)
            with open(spool, "rb") as f:
                try:
                    info = target.put(
                        key, f, content_type=_CONTENT_TYPES[fmt], if_none_match=if_none_match, if_match=if_match
                    )
                finally:
                    self._core.forget(alias, key)
        self._core.stats.record("put", written=info.size)
        return info

    # -- metering ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def measure(self) -> Iterator[MeasurementHandle]:
        """Count the storage requests and bytes this bridge causes inside the block.

        Counts every request made through this bridge from any thread (DuckDB reads on its own threads)
        while the block runs, including other queries running at the same time on the same bridge, and
        nothing done through other bridges or directly on the stores. For exact per-query figures run
        one query at a time per bridge. Range-cache hits are not counted as bytes read.
        """
        meter = _Meter(self._core.stats, self._core.ranges)
        handle = MeasurementHandle(meter)
        try:
            yield handle
        finally:
            meter.freeze()


class Database:
    """One in-memory DuckDB database shared by many session bridges (one per invocation of a warm instance).

    Opening a DuckDB database costs tens of milliseconds; a cursor of an open one well under one. A
    ``Database`` is opened once (lazily, on the first :meth:`session`) with one ``nubes://`` filesystem;
    every :meth:`session` is a :class:`Bridge` on a new cursor whose stores are served under a token
    of its own (``nubes://TOKEN.ALIAS/KEY``), so its requests, bytes, range cache and ``objects_read``
    are exactly its own even while other sessions run on other threads. TEMP views and session-scoped
    settings are per cursor; tables created in the database itself outlive the session (use TEMP).

    Never lock its configuration (``lock_configuration``, ``enable_external_access``): it is shared. A
    sandbox that must lock its connection uses a :class:`Bridge` with a database of its own.
    """

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self.fs = NubesFileSystem()
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._salt = os.urandom(3).hex()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = _new_connection()
            con.register_filesystem(self.fs)
            self._con = con
        return self._con

    def _open(self) -> tuple[str, duckdb.DuckDBPyConnection]:
        with self._lock:  # a connection serves one call at a time, cursor() included
            cursor = self._connection().cursor()
            token = f"s{self._salt}{next(self._tokens):x}"
        return token, cursor

    def session(self, stores: ObjectStore | Mapping[str, ObjectStore], **kwargs: Any) -> Bridge:
        """A :class:`Bridge` over ``stores`` on a new cursor of this database (close it when done)."""
        return Bridge(stores, database=self, **kwargs)

    @property
    def sessions(self) -> int:
        """Session bridges open now."""
        return len(self.fs._sessions)

    def close(self) -> None:
        """Close the database (open session bridges stop working)."""
        with self._lock:
            if self._con is not None:
                with contextlib.suppress(Exception):
                    self._con.close()
                self._con = None


def connect(
    stores: ObjectStore | Mapping[str, ObjectStore], **kwargs: Any
) -> duckdb.DuckDBPyConnection:
    """A new DuckDB connection on which ``nubes://ALIAS/KEY`` reads the given stores (see :class:`Bridge`)."""
    return Bridge(stores, **kwargs).duckdb()


def _new_connection() -> duckdb.DuckDBPyConnection:
    # Extensions are never downloaded; parquet and json are built in. DuckDB's external file cache
    # is keyed by path and mtime (second resolution), which could mix two versions of an object.
    return duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "enable_external_file_cache": False,
        }
    )


def _serialize(
    con: duckdb.DuckDBPyConnection,
    data: duckdb.DuckDBPyRelation | pl.DataFrame | pl.LazyFrame | str,
    path: str,
    fmt: Format,
    options: dict[str, Any],
) -> None:
    if isinstance(data, str):
        data = con.sql(data)
    if isinstance(data, pl.LazyFrame):
        sink = {"parquet": data.sink_parquet, "csv": data.sink_csv, "ndjson": data.sink_ndjson}[fmt]
        sink(path, **options)
    elif isinstance(data, pl.DataFrame):
        writer = {"parquet": data.write_parquet, "csv": data.write_csv, "ndjson": data.write_ndjson}[fmt]
        writer(path, **options)
    elif isinstance(data, duckdb.DuckDBPyRelation):
        copy = {"parquet": "parquet", "csv": "csv", "ndjson": "json"}[fmt]
        args = ", ".join([f"FORMAT {copy}"] + [f"{name} {_sql_literal(value)}" for name, value in options.items()])
        view = f"__nubes_write_{threading.get_ident()}_{time.monotonic_ns()}"
        data.query(view, f"COPY (SELECT * FROM {_ident(view)}) TO {_sql_literal(path)} ({args})")
    else:
        raise ConfigError(
            f"cannot write a {type(data).__name__}; pass a DuckDB relation, a Polars DataFrame/LazyFrame or SQL"
        )


# -- the Polars IO source -----------------------------------------------------------------------
try:  # DuckDB's own Polars-expression-to-SQL translation; without it filters run in Polars
    from duckdb.polars_io import (  # type: ignore[attr-defined]
        _conjuncts,
        _expression_from_tree,
        _stands_for,
        _strip_dynamic_predicates,
        _tree_to_sql_expression,
    )

    _PUSHDOWN = True
except ImportError:  # pragma: no cover - depends on the DuckDB version
    _PUSHDOWN = False

_STREAMING = False  # True: yield DuckDB's record batches as they come. Off: a scan Polars stopped reading early
# could abort the process at exit ("FATAL: exception not rethrown", seen in CI), so results are
# materialized first (more memory, never a crash).
_OPEN_STREAMS: weakref.WeakSet[Any] = weakref.WeakSet()


@atexit.register
def _close_open_streams() -> None:
    # A scan Polars stopped reading early is a suspended generator holding a running DuckDB query; finalized
    # during interpreter shutdown (after DuckDB's threads are gone) it would crash the process.
    for stream in list(_OPEN_STREAMS):
        with contextlib.suppress(Exception):
            stream.close()


_BETWEEN_OPS = {"Both": ("GtEq", "LtEq"), "Left": ("GtEq", "Lt"), "Right": ("Gt", "LtEq"), "None": ("Gt", "Lt")}


def _rewrite_between(tree: Any) -> Any:
    """``is_between(lo, hi, closed=...)`` rewritten as two comparisons joined by ``and`` (DuckDB's translator
    has no IsBetween), anywhere in a serialized Polars expression tree; other nodes are kept as they are."""
    if isinstance(tree, list):
        return [_rewrite_between(t) for t in tree]
    if not isinstance(tree, dict):
        return tree
    function = tree.get("Function") if len(tree) == 1 else None
    if isinstance(function, dict):
        kind = function.get("function")
        between = kind.get("Boolean", {}).get("IsBetween") if isinstance(kind, dict) and isinstance(kind.get("Boolean"), dict) else None
        inputs = function.get("input")
        if isinstance(between, dict) and isinstance(inputs, list) and len(inputs) == 3:
            ops = _BETWEEN_OPS.get(str(between.get("closed")))
            if ops is not None:
                expr, lo, hi = (_rewrite_between(i) for i in inputs)
                return {"BinaryExpr": {
                    "left": {"BinaryExpr": {"left": expr, "op": ops[0], "right": lo}},
                    "op": "And",
                    "right": {"BinaryExpr": {"left": expr, "op": ops[1], "right": hi}},
                }}
    return {k: _rewrite_between(v) for k, v in tree.items()}


def _scan_source(bridge: Bridge, call: str, schema: pl.Schema, engine_types: dict[str, str]) -> pl.LazyFrame:
    from polars.io.plugins import register_io_source

    comparable = (
        {name: dtype for name, dtype in schema.items() if _stands_for(dtype, engine_types.get(name, ""))}
        if _PUSHDOWN
        else {}
    )

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:  # returns a generator; Polars may stop reading it before its end
        columns = ", ".join(_ident(c) for c in with_columns) if with_columns is not None else "*"
        where: str | None = None
        fallback: pl.Expr | None = None
        if predicate is not None:
            fallback = predicate
            if _PUSHDOWN:
                tree = json.loads(predicate.meta.serialize(format="json"))
                real, had_dynamic = _strip_dynamic_predicates(tree)
                fallback = None
                if real is not None:
                    conjuncts = _conjuncts(_rewrite_between(real))
                    pushed = [e for e in (_tree_to_sql_expression(c, comparable) for c in conjuncts) if e is not None]
                    if pushed:
                        where = str(functools.reduce(operator.and_, pushed))
                    if len(pushed) < len(conjuncts):
                        fallback = _expression_from_tree(real) if had_dynamic else predicate
        # Columns the fallback filter needs but the projection dropped are read too, then dropped again.
        needed = list(with_columns) if with_columns is not None else None
        if fallback is not None and needed is not None:
            extra = [c for c in fallback.meta.root_names() if c not in needed]
            if extra:
                columns = ", ".join(_ident(c) for c in [*needed, *extra])
        sql = f"SELECT {columns} FROM {call}"
        if where is not None:
            sql += f" WHERE {where}"
        if n_rows is not None and fallback is None:
            sql += f" LIMIT {int(n_rows)}"
        if _STREAMING:
            return bridge._track(_stream_batches(bridge, sql, fallback, n_rows, needed, schema))
        return _materialized(bridge, sql, fallback, n_rows, needed, batch_size)

    return register_io_source(source, schema=schema, explain_name="nubes")


def _materialized(
    bridge: Bridge, sql: str, fallback: pl.Expr | None, n_rows: int | None, needed: list[str] | None, batch_size: int | None
) -> Iterator[pl.DataFrame]:
    """Run ``sql`` to the end into one DataFrame, then yield it in slices (``_STREAMING = False``)."""
    with bridge._cursor() as cursor, bridge.translate_errors():  # scans of one bridge may run at once
        frame = pl.DataFrame(cursor.sql(sql))
    if fallback is not None:
        frame = frame.filter(fallback)
        if n_rows is not None:
            frame = frame.head(n_rows)
        if needed is not None:
            frame = frame.select(needed)
    step = batch_size or 100_000
    if frame.height == 0:
        yield frame
        return
    for offset in range(0, frame.height, step):
        yield frame.slice(offset, step)


class _Batches:
    """An iterator over a scan generator that another thread may close: ``close`` waits for the batch in
    flight, then ends the generator (closing its DuckDB stream and cursor); later reads just end."""

    def __init__(self, generator: Iterator[pl.DataFrame]) -> None:
        self._generator = generator
        self._lock = threading.Lock()
        self._done = False

    def __iter__(self) -> _Batches:
        return self

    def __next__(self) -> pl.DataFrame:
        with self._lock:
            if self._done:
                raise StopIteration
            try:
                return next(self._generator)
            except BaseException:
                self._done = True
                raise

    def close(self) -> None:
        with self._lock:
            self._done = True
            with contextlib.suppress(Exception):
                self._generator.close()  # type: ignore[attr-defined]


def _stream_batches(
    bridge: Bridge, sql: str, fallback: pl.Expr | None, n_rows: int | None, needed: list[str] | None, schema: pl.Schema
) -> Iterator[pl.DataFrame]:
    """Run ``sql`` on a cursor of its own and yield its Arrow record batches as they come (no pyarrow)."""
    left = n_rows
    yielded = False
    with bridge._cursor() as cursor, bridge.translate_errors():  # scans of one bridge may run at once
        for frame in _arrow_batches(cursor.sql(sql)):
            if fallback is not None:
                frame = frame.filter(fallback)
                if needed is not None:
                    frame = frame.select(needed)
            if left is not None:
                frame = frame.head(left)
                left -= frame.height
            if frame.height or not yielded:
                yield frame
                yielded = True
            if left is not None and left <= 0:
                break
    if not yielded:
        yield pl.DataFrame(schema={c: schema[c] for c in (needed if needed is not None else schema.names())})


# -- Arrow C stream, one record batch at a time (without pyarrow) ---------------------------------------
# ``pl.DataFrame(relation)`` reads a whole Arrow C stream; to hand Polars one record batch at a time the
# stream's ``get_next`` is called here (ctypes), and each batch goes to Polars as a struct array through
# the Arrow PyCapsule protocol (``__arrow_c_array__``), which moves its buffers: nothing is copied.
class _ArrowSchema(ctypes.Structure):
    _fields_ = [("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
                ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64), ("children", ctypes.c_void_p),
                ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p)]


class _ArrowArray(ctypes.Structure):
    _fields_ = [("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
                ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64), ("buffers", ctypes.c_void_p),
                ("children", ctypes.c_void_p), ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p),
                ("private_data", ctypes.c_void_p)]


class _ArrowArrayStream(ctypes.Structure):
    pass


_ArrowArrayStream._fields_ = [
    ("get_schema", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_ArrowArrayStream), ctypes.POINTER(_ArrowSchema))),
    ("get_next", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_ArrowArrayStream), ctypes.POINTER(_ArrowArray))),
    ("get_last_error", ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.POINTER(_ArrowArrayStream))),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowArrayStream))),
    ("private_data", ctypes.c_void_p),
]
_release_schema = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowSchema))
_release_array = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowArray))
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.restype = ctypes.py_object
_new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class _RecordBatch:
    """One Arrow record batch (schema + struct array) offered through ``__arrow_c_array__``."""

    def __init__(self, schema: _ArrowSchema, array: _ArrowArray) -> None:
        self.schema = schema
        self.array = array

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]:
        # no capsule destructors: release() below frees whatever the consumer did not move out
        return (_new_capsule(ctypes.addressof(self.schema), b"arrow_schema", None),
                _new_capsule(ctypes.addressof(self.array), b"arrow_array", None))

    def release(self) -> None:
        if self.schema.release:
            _release_schema(self.schema.release)(ctypes.byref(self.schema))
        if self.array.release:
            _release_array(self.array.release)(ctypes.byref(self.array))


def _stream_error(stream: _ArrowArrayStream, pointer: Any) -> duckdb.Error:
    message = stream.get_last_error(pointer)
    return duckdb.Error(message.decode(errors="replace") if message else "the Arrow stream failed")


def _arrow_batches(relation: Any) -> Iterator[pl.DataFrame]:
    """Polars DataFrames, one per record batch of ``relation.__arrow_c_stream__()``, read as they are produced."""
    capsule = relation.__arrow_c_stream__()
    stream = _ArrowArrayStream.from_address(_capsule_pointer(capsule, b"arrow_array_stream"))
    pointer = ctypes.pointer(stream)
    try:
        while True:
            array = _ArrowArray()
            if stream.get_next(pointer, ctypes.byref(array)) != 0:
                raise _stream_error(stream, pointer)
            if not array.release:  # the end of the stream
                return
            batch = _RecordBatch(_ArrowSchema(), array)
            try:
                if stream.get_schema(pointer, ctypes.byref(batch.schema)) != 0:
                    raise _stream_error(stream, pointer)
                frame = pl.Series(batch).struct.unnest()
            finally:
                batch.release()
            yield frame
    finally:
        del capsule  # its destructor releases the stream (and ends the query behind it)


__all__ = [
    "PROTOCOL",
    "Bridge",
    "Database",
    "Measurement",
    "MeasurementHandle",
    "NubesFileSystem",
    "connect",
    "infer_format",
]
