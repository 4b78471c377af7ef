"""The bridge from object storage to analytics: DuckDB and Polars reading any store, counted.

A :class:`Bridge` wraps one or more :class:`~nubes.storage.base.ObjectStore` under aliases. DuckDB
reads ``read_parquet('nubes://ALIAS/KEY')`` (also ``read_csv``, ``read_json``, globs and hive
folders) through an fsspec filesystem that fetches only the byte ranges a query needs: for Parquet
the footer plus the column chunks of the projected columns in the row groups statistics do not
prune. :meth:`Bridge.scan` is a Polars LazyFrame over the same objects (see
:mod:`~nubes.data.engine.polars_source`). :meth:`Bridge.write` serializes to a temporary file, then
makes one streaming ``store.put``: a failing serialization writes nothing, readers see the old object
or the new one. Every storage request is counted in :attr:`Bridge.stats`; :meth:`Bridge.measure`
gives the requests and bytes of a block of work, :meth:`Bridge.objects_read` what was read (lineage).

A *session* bridge (:meth:`Database.session <nubes.data.engine.database.Database.session>`) is a
cursor of a warm instance's shared database; it may also hand DuckDB local files to read natively
(:meth:`Bridge.native_path`), which its counters include (from DuckDB's log of that cursor's reads).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nubes.data.engine.access import StoreAccess, uncounted
from nubes.data.engine.caches import Bounded
from nubes.data.engine.database import Database, new_connection
from nubes.data.engine.measure import MeasurementHandle, Meter
from nubes.data.formats import CONTENT_TYPES, COPY_FORMATS, SUFFIXES, Format, check_format, infer_format, reader_call
from nubes.data.sqltext import ident, literal
from nubes.errors import ConfigError, NotFound, StorageError
from nubes.storage.base import IOStats, ObjectInfo, ObjectStore, check_key

if TYPE_CHECKING:
    import polars as pl
    from duckdb import DuckDBPyConnection, DuckDBPyRelation

    from nubes.data.engine.filesystem import NubesFileSystem
    from nubes.data.engine.parquet_footer import Footer

PROTOCOL = "nubes"
_ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")
_NO_FILES = re.compile(r'No files found that match the pattern "([^"]+)"')


def local_path(store: ObjectStore, key: str) -> str | None:
    """The file holding ``key`` when ``store`` keeps its objects as local files (``file://``), else None."""
    url = store.url(key)
    return url[len("file://"):] if url.startswith("file:///") else None


class Bridge:
    """DuckDB and Polars over object stores, with range reads, atomic writes and per-block metering.

    ``stores`` is one store (alias ``"data"``) or a mapping ``alias -> store``; DuckDB sees the object
    ``KEY`` of store ``ALIAS`` as ``nubes://ALIAS/KEY`` (see :meth:`path`). ``connection`` lets the
    filesystem be registered on an existing DuckDB connection instead of a new in-memory one.

    ``metadata_ttl`` (seconds) bounds how long a HEAD/LIST answer is reused; ``cache_bytes`` bounds the
    range cache that keeps a byte range DuckDB reads twice (bind, then execution) from being fetched
    twice. Both are keyed by the object's etag and dropped on :meth:`write`; an object replaced by
    another writer is seen after at most ``metadata_ttl``. ``0`` disables either cache.

    ``database`` makes a *session* bridge on a shared :class:`Database` instead: its connection is a
    cursor of the database (its own TEMP views and settings of session scope), its objects are
    ``nubes://TOKEN.ALIAS/KEY`` (:meth:`path` gives them), and its counters and caches are its own.
    Closing it closes the cursor, not the database.

    Thread safety: counters and caches are thread-safe, but a DuckDB connection runs one statement at
    a time: for concurrent queries use one bridge each. The scans of one bridge each run their
    queries on cursors of their own, so a join of two scans (which Polars reads at once) works.
    """

    def __init__(
        self,
        stores: ObjectStore | Mapping[str, ObjectStore],
        *,
        connection: DuckDBPyConnection | None = None,
        database: Database | None = None,
        metadata_ttl: float = 2.0,
        cache_bytes: int = 32 * 1024 * 1024,
        spool_dir: str | None = None,
    ) -> None:
        named = dict(stores) if isinstance(stores, Mapping) else {"data": stores}
        if not named:
            raise ConfigError("a Bridge needs at least one store")
        for alias, store in named.items():
            _check_alias(alias)
            if not isinstance(store, ObjectStore):
                raise ConfigError(f"store {alias!r} is a {type(store).__name__}, not an ObjectStore")
        self.spool_dir = spool_dir
        self._closed = False
        self._cursor_lock = threading.Lock()
        self._database = database
        self._fs: NubesFileSystem | None = None
        self._native: dict[str, tuple[str, ObjectInfo]] = {}  # local path DuckDB reads -> (alias, info)
        self._seen = 0  # DuckDB log context up to which native reads are counted
        self._dirty = False  # the connection may have run statements since native reads were last counted
        self._cursor_: DuckDBPyConnection | None = None
        if database is not None:
            if connection is not None:
                raise ConfigError("pass a Bridge either connection= or database=, not both")
            self._token = database._open()  # its cursor is opened on first use: a Polars-only session never loads DuckDB
            self._access = StoreAccess(named, metadata_ttl, cache_bytes, prefix=self._token + ".")
            self._own = True
            return
        self._access = StoreAccess(named, metadata_ttl, cache_bytes)
        self._own = connection is None
        self._cursor_ = connection if connection is not None else new_connection()
        if self._cursor_.filesystem_is_registered(PROTOCOL):
            raise ConfigError(f"this DuckDB database already has a {PROTOCOL}:// filesystem; use one Bridge per connection")
        self.fs  # noqa: B018 - a bridge of its own serves nubes://ALIAS/KEY at once (a session's, on first use)

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def _con(self) -> DuckDBPyConnection:
        if self._cursor_ is None:
            if self._closed:
                raise ConfigError("this bridge is closed")
            assert self._database is not None
            self._cursor_ = self._database._cursor()
        return self._cursor_

    @property
    def fs(self) -> NubesFileSystem:
        """The ``nubes://`` fsspec filesystem DuckDB reads this bridge's stores through (made on first use)."""
        if self._fs is None:
            if self._database is not None:
                fs = self._database.fs
                fs._bind(self._token, self._access)
                import weakref

                weakref.finalize(self, fs._unbind, self._token)  # also if never closed
            else:
                from nubes.data.engine.filesystem import NubesFileSystem

                fs = NubesFileSystem(self._access)
                self._con.register_filesystem(fs)
            self._fs = fs
        return self._fs

    @property
    def stores(self) -> dict[str, ObjectStore]:
        """The stores by alias."""
        return dict(self._access.stores)

    @property
    def stats(self) -> IOStats:
        """Requests and bytes this bridge caused (reads by DuckDB/Polars and writes); ``store.stats`` also sees them."""
        self._collect()
        return self._access.stats

    def attach(self, alias: str, store: ObjectStore) -> None:
        """Make ``store`` readable as ``nubes://ALIAS/...`` on this bridge from now on."""
        _check_alias(alias)
        if alias in self._access.stores and self._access.stores[alias] is not store:
            raise ConfigError(f"this bridge already has a store named {alias!r}")
        self._access.stores[alias] = store

    def objects_read(self) -> list[dict[str, Any]]:
        """Every object whose bytes this bridge read: store URI, key, etag, size and bytes fetched (lineage)."""
        self._collect()
        with self._access.lock:
            items = sorted(self._access.touched.items())
        return [{"store": self._access.stores[alias].uri, "key": key, **entry} for (alias, key), entry in items]

    def duckdb(self) -> DuckDBPyConnection:
        """The DuckDB connection on which this bridge's objects are readable (errors of statements run on it
        directly are DuckDB's own; wrap them in :meth:`translate_errors` to get :mod:`nubes.errors`).

        A session bridge's objects are at the paths :meth:`path` and :meth:`native_path` give."""
        self._dirty = True
        return self._con

    def close(self) -> None:
        """Unregister the filesystem (and close the connection if the bridge opened it); a session bridge
        closes its cursor (dropping its TEMP views) and stops serving its paths; the database stays open."""
        if self._closed:
            return
        self._collect()
        self._closed = True
        if self._database is not None:
            if self._cursor_ is not None:
                with contextlib.suppress(Exception):
                    self._cursor_.close()
            if self._fs is not None:
                self._fs._unbind(self._token)
            self._database._closed(self._token)
            return
        if self._fs is not None:
            with contextlib.suppress(Exception):
                self._con.unregister_filesystem(PROTOCOL)
        if self._own:
            self._con.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _alias(self, store: str | None) -> str:
        stores = self._access.stores
        if store is None:
            if len(stores) == 1:
                return next(iter(stores))
            raise ConfigError(f"this bridge has several stores ({', '.join(sorted(stores))}); pass store=")
        if store not in stores:
            raise ConfigError(f"no store named {store!r} in this bridge (known: {', '.join(sorted(stores))})")
        return store

    def path(self, key: str, *, store: str | None = None) -> str:
        """The URL DuckDB reads ``key`` (or a glob such as ``year=*/*.parquet``) at: ``nubes://ALIAS/KEY``."""
        if not isinstance(key, str) or not key or key.startswith("/"):
            raise ConfigError(f"keys and globs are relative, non-empty strings, not {key!r}")
        alias = self._alias(store)
        self.fs  # noqa: B018 - DuckDB can read the path from now on
        return f"{PROTOCOL}://{self._access.host(alias)}/{key}"

    def native_path(self, info: ObjectInfo, *, store: str | None = None) -> str | None:
        """A local file DuckDB may read ``info``'s object at natively (counted like the others), or None
        when the store's objects are not local files or this bridge cannot count native reads (a bridge
        that is not a session of a :class:`Database`)."""
        alias = self._alias(store)
        if self._database is None:
            return None
        target = self._access.stores[alias]
        paths = self._database.footers  # where a key's file is does not change: resolved once per warm instance
        found = paths.get(("path", target.uri, info.key))
        path = found if found is not None else paths.put(("path", target.uri, info.key), local_path(target, info.key) or "")
        path = path or None
        if path is not None:
            self._native[path] = (alias, info)
            self._access.touch(alias, info)
        return path

    def _collect(self) -> None:
        """Add the native reads DuckDB logged for this session's cursor since the last call to its counters."""
        if not self._native or not self._dirty or self._closed or self._database is None:
            return
        with self._cursor_lock:
            self._dirty = False
            self._seen, reads = self._database.native_reads(self._token, self._con, self._seen)
        for path, (count, nbytes) in reads.items():
            owner = self._native.get(path)
            if owner is not None:
                self._access.read_elsewhere(owner[0], owner[1], count, nbytes)

    @contextlib.contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn DuckDB errors caused by storage into :mod:`nubes.errors` at this boundary: a glob or key that
        matches nothing is ``NotFound``; a storage error raised inside a DuckDB callback is re-raised as
        itself, chained to the DuckDB error. Other errors pass through unchanged."""
        import duckdb

        mark = self._access.mark()
        try:
            yield
        except duckdb.Error as exc:
            translated = self._translate(exc, mark)
            if translated is None:
                raise
            raise translated from exc

    def _translate(self, exc: BaseException, mark: int) -> StorageError | None:
        noted = self._access.errors_since(mark)
        if noted:
            return noted[-1]
        match = _NO_FILES.search(str(exc))
        if match:
            url = match.group(1)
            rest = url[len(PROTOCOL) + 3 :] if url.startswith(PROTOCOL + "://") else None
            if rest is not None and rest.startswith(self._access.prefix):
                alias, _, key = rest[len(self._access.prefix) :].partition("/")
                store = self._access.stores.get(alias)
                if store is not None:
                    return NotFound("no object matches", uri=store.uri, key=key)
        return None

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[DuckDBPyConnection]:
        """A cursor of the bridge's connection for one statement, closed after (several may run at once)."""
        with self._cursor_lock:
            cursor = self._con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    # -- reading -------------------------------------------------------------------------------
    def read_sql(self, source: str | Sequence[str], *, format: str | None = None, store: str | None = None,
                 hive_partitioning: bool | None = None, **options: Any) -> str:
        """The DuckDB table-function call reading ``source`` (a key, a glob or a list of them) — for use in SQL."""
        sources = [source] if isinstance(source, str) else list(source)
        if not sources:
            raise ConfigError("nothing to read: pass a key, a glob or a list of them")
        fmt = check_format(format) if format is not None else infer_format(sources[0])
        return reader_call([self.path(s, store=store) for s in sources], fmt, hive=hive_partitioning, options=options)

    def read(self, source: str | Sequence[str], *, format: str | None = None, store: str | None = None,
             hive_partitioning: bool | None = None, **options: Any) -> DuckDBPyRelation:
        """A lazy DuckDB relation over ``source`` (key, glob or list), format from the extension unless given.

        ``options`` go to ``read_parquet``/``read_csv``/``read_json``. Binding reads only metadata; a missing
        key or a glob matching nothing raises NotFound here."""
        call = self.read_sql(source, format=format, store=store, hive_partitioning=hive_partitioning, **options)
        return self.sql(f"SELECT * FROM {call}")

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> DuckDBPyRelation:
        """Run or bind ``query`` on the bridge's connection, translating storage errors at bind time."""
        self._dirty = True
        with self.translate_errors():
            return self._con.sql(query, params=params) if params is not None else self._con.sql(query)

    def query(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run ``query`` to the end and return a Polars DataFrame (Arrow C stream, no pyarrow)."""
        import polars as pl

        with self.translate_errors():
            return pl.DataFrame(self.sql(query, params))

    def footer(self, alias: str, info: ObjectInfo) -> Footer | None:
        """The Parquet footer of ``info``'s object (fetched through the counted reads; kept for the warm
        instance by store, key and etag), or None if it cannot be read as one."""
        from nubes.data.engine import parquet_footer as pf

        cache = self._cache
        key = (self._access.stores[alias].uri, info.key, info.etag)
        found = cache.get(key)
        if found is not None:
            return found if isinstance(found, pf.Footer) else None
        try:
            if info.size < 12:
                raise pf.FooterError("too small for Parquet")
            length = pf.footer_length(self._access.get_range(alias, info, info.size - 8, info.size))
            if length > info.size - 4:
                raise pf.FooterError("footer longer than the file")
            footer: Any = pf.parse(self._access.get_range(alias, info, info.size - length, info.size - 8))
        except pf.FooterError:
            footer = False
        cache.put(key, footer)
        return footer or None

    def scan(self, source: str | Sequence[str], *, format: str | None = None, store: str | None = None,
             hive_partitioning: bool | None = None, **options: Any) -> pl.LazyFrame:
        """A Polars LazyFrame over ``source`` (keys, globs or a list; the objects are found now, so a missing
        source raises NotFound here). Projection, ``head`` and the filter's row-group skipping are pushed into
        the reads; local Parquet is read by Polars natively, everything else by DuckDB in bounded batches."""
        from nubes.data.engine import polars_source as ps

        alias = self._alias(store)
        sources = [source] if isinstance(source, str) else list(source)
        if not sources:
            raise ConfigError("nothing to read: pass a key, a glob or a list of them")
        fmt = check_format(format) if format is not None else infer_format(sources[0])
        infos = self._objects(alias, sources)
        target = self._access.stores[alias]
        locals_ = [local_path(target, i.key) for i in infos] if fmt == "parquet" and not options else []
        if locals_ and all(locals_):
            footers = [self.footer(alias, i) for i in infos]
            if all(footers):
                parts = [ps.Part(alias, i, p, f) for i, p, f in zip(infos, locals_, footers, strict=True)]  # type: ignore[arg-type]
                return ps.scan_local_parquet(self, parts, bool(hive_partitioning), self._cache)
        parts = [ps.Part(alias, i, self.path(i.key, store=alias), self.footer(alias, i) if fmt == "parquet" else None)
                 for i in infos]
        return ps.scan_with_engine(self, parts, fmt, hive_partitioning, options)

    @property
    def _cache(self) -> Bounded[Any]:
        """Footers and schemas by object version: the warm instance's (a Database's), else this process's."""
        return self._database.footers if self._database is not None else _FOOTERS

    def _objects(self, alias: str, sources: list[str]) -> list[ObjectInfo]:
        """The objects ``sources`` name now (a glob is listed); NotFound when one names nothing."""
        from nubes.data.catalog import glob_regex

        out: list[ObjectInfo] = []
        for source in sources:
            check = source.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
            if check != source:
                regex = glob_regex(source)
                found = [i for i in self._access.list(alias, check) if regex.fullmatch(i.key)]
                if not found:
                    raise NotFound("no object matches", uri=self._access.stores[alias].uri, key=source)
                out.extend(found)
            else:
                out.append(self._access.head(alias, source))
        return out

    # -- writing -------------------------------------------------------------------------------
    def write(self, key: str, data: Any, *, format: str | None = None, store: str | None = None,
              if_none_match: bool = False, if_match: str | None = None, **options: Any) -> ObjectInfo:
        """Serialize ``data`` and store it at ``key`` atomically; return the new object's info.

        ``data`` is a DuckDB relation, a Polars DataFrame/LazyFrame (sunk streaming) or a SQL query run on
        the bridge's connection. It is written to a temporary file in ``spool_dir`` first (never held whole
        in memory by the bridge), then sent with one streaming ``store.put``: if serialization fails nothing
        is written, and readers see the old object or the new one. ``format`` defaults to the key's
        extension. ``options`` go to the writer (DuckDB ``COPY`` options or Polars ``write_*``)."""
        alias = self._alias(store)
        target = self._access.stores[alias]
        check_key(key, uri=target.uri)
        fmt = check_format(format) if format is not None else infer_format(key)
        with tempfile.TemporaryDirectory(prefix="nubes-write-", dir=self.spool_dir) as tmp:
            spool = os.path.join(tmp, "data" + SUFFIXES[fmt])
            with self.translate_errors():
                serialize(self._con, data, spool, fmt, options)
            if not os.path.exists(spool):
                raise StorageError("serialization produced no file; nothing written", uri=target.uri, key=key)
            with open(spool, "rb") as f:
                try:
                    with uncounted():  # counted once below, in the bridge's counters (merged by the session)
                        info = target.put(key, f, content_type=CONTENT_TYPES[fmt], if_none_match=if_none_match, if_match=if_match)
                finally:
                    self._access.forget(alias, key)
        self._access.stats.record("put", written=info.size)
        return info

    # -- metering ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def measure(self) -> Iterator[MeasurementHandle]:
        """Count the storage requests and bytes this bridge causes inside the block (from any thread, other
        queries on the same bridge included; nothing done through other bridges). Range-cache hits are not
        counted as bytes read."""
        meter = Meter(self._access.stats, self._access.ranges.counters, self._collect)
        handle = MeasurementHandle(meter)
        try:
            yield handle
        finally:
            meter.freeze()


_FOOTERS: Bounded[Any] = Bounded(256)  # footers read by bridges that are not sessions of a Database


def _check_alias(alias: Any) -> None:
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise ConfigError(f"store alias {alias!r} must be letters, digits, '_' or '-'")


def serialize(con: DuckDBPyConnection, data: Any, path: str, fmt: Format, options: dict[str, Any]) -> None:
    """Write ``data`` (SQL text, a DuckDB relation, a Polars DataFrame or LazyFrame) to the file ``path``."""
    import duckdb

    if isinstance(data, str):
        data = con.sql(data)
    kind = f"{type(data).__module__.split('.', 1)[0]}.{type(data).__name__}"
    if kind == "polars.LazyFrame":
        getattr(data, {"parquet": "sink_parquet", "csv": "sink_csv", "ndjson": "sink_ndjson"}[fmt])(path, **options)
    elif kind == "polars.DataFrame":
        getattr(data, {"parquet": "write_parquet", "csv": "write_csv", "ndjson": "write_ndjson"}[fmt])(path, **options)
    elif isinstance(data, duckdb.DuckDBPyRelation):
        args = ", ".join([f"FORMAT {COPY_FORMATS[fmt]}"] + [f"{name} {literal(value)}" for name, value in options.items()])
        view = f"__nubes_write_{threading.get_ident()}_{time.monotonic_ns()}"
        data.query(view, f"COPY (SELECT * FROM {ident(view)}) TO {literal(path)} ({args})")
    else:
        raise ConfigError(f"cannot write a {type(data).__name__}; pass a DuckDB relation, a Polars DataFrame/LazyFrame or SQL")


def connect(stores: ObjectStore | Mapping[str, ObjectStore], **kwargs: Any) -> DuckDBPyConnection:
    """A new DuckDB connection on which ``nubes://ALIAS/KEY`` reads the given stores (see :class:`Bridge`)."""
    return Bridge(stores, **kwargs).duckdb()
