"""Queries, writes, checks and lineage for one invocation: what ``ctx.sql``, ``ctx.table`` and ``ctx.write`` do.

A :class:`Session` is opened on the first analytics call of an invocation and closed when the
invocation ends. It holds a :class:`~nubes.data.engine.bridge.Bridge` over the stores the invocation
touches. The bridge is a session of the app's shared DuckDB database (:func:`app_database`: opened
once per warm instance, a cursor per invocation); ``private=True`` gives a session a fresh database of
its own instead (the SQL endpoint's sandbox, which locks its configuration).

What a warm instance keeps so that an invocation pays only for its own work (each bounded, and each
validated by the data's version):

* the datasets a SQL text names (DuckDB's parser, once per text);
* a dataset's view, shared by the sessions that resolved the same version of it (local files are
  read by DuckDB natively, counted per session from DuckDB's own log);
* Parquet footers by object etag; check results by dataset version (``app.check_cache``);
* listings of glob and plain-prefix datasets for :data:`LISTING_TTL_S` seconds (a new object under a
  glob or prefix is seen within that bound), and manifests of written datasets by the manifest's etag.
  Single-object datasets and manifests are checked (one HEAD) on every invocation, so a new version of
  them is seen at once.

A dataset's ``error`` checks are enforced once per version; what was read and written is the
invocation's lineage.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nubes.data.catalog import Dataset, Resolved, resolve
from nubes.data.sqltext import ident, literal
from nubes.data.writes import SUPERSEDED_GRACE_S, DatasetWriter
from nubes.errors import HTTPError

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from nubes.core.app import App
    from nubes.data.checks import CheckResult
    from nubes.data.engine.bridge import Bridge
    from nubes.data.engine.database import Database
    from nubes.storage.base import ObjectStore

__all__ = ["LISTING_TTL_S", "SUPERSEDED_GRACE_S", "CheckCache", "Session", "app_database"]

LISTING_TTL_S = 2.0
_DATABASES: weakref.WeakKeyDictionary[Any, Database] = weakref.WeakKeyDictionary()
_DATABASES_LOCK = threading.Lock()


def app_database(app: App) -> Database:
    """The app's shared DuckDB database (see :class:`~nubes.data.engine.database.Database`), made on first use."""
    database = _DATABASES.get(app)
    if database is None:
        from nubes.data.engine.caches import Bounded
        from nubes.data.engine.database import Database

        with _DATABASES_LOCK:
            database = _DATABASES.get(app)
            if database is None:
                database = _DATABASES[app] = Database()
                database.listings = Bounded(1024, ttl=LISTING_TTL_S)  # type: ignore[attr-defined]
                database.manifests = Bounded(1024)  # type: ignore[attr-defined]
    return database


class CheckCache:
    """Check results per (dataset, version fingerprint), shared by the invocations of a warm instance."""

    def __init__(self, capacity: int = 256) -> None:
        self._results: dict[tuple[str, Any], list[CheckResult]] = {}
        self._lock = threading.Lock()
        self._capacity = capacity

    def get(self, key: tuple[str, Any]) -> list[CheckResult] | None:
        with self._lock:
            return self._results.get(key)

    def put(self, key: tuple[str, Any], results: list[CheckResult]) -> None:
        with self._lock:
            if len(self._results) >= self._capacity:
                self._results.pop(next(iter(self._results)))
            self._results[key] = results


class Session(DatasetWriter):
    """One invocation's analytics state. Not thread-safe: one per invocation.

    ``private=True``: a DuckDB database of its own (closed with the session) instead of a cursor of the
    app's shared one, for a caller that changes database-wide settings (the SQL endpoint's sandbox)."""

    def __init__(self, app: App, *, enforce_checks: bool = True, private: bool = False) -> None:
        self.app = app
        self.enforce_checks = enforce_checks
        self.private = private
        self._bridge: Bridge | None = None
        self._aliases: dict[str, str] = {}  # store URI -> bridge alias
        self._views: dict[str, Resolved] = {}  # datasets resolved (read) by this session
        self._created: set[str] = set()  # ... of which a view is usable on the session's connection
        self._pinned: set[str] = set()  # ... of which that view is the database's shared one
        self.writes: list[dict[str, Any]] = []

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def database(self) -> Database | None:
        """The shared database this session is a cursor of (None for a private session)."""
        return None if self.private else app_database(self.app)

    @property
    def bridge(self) -> Bridge:
        if self._bridge is None:
            from nubes.data.engine.bridge import Bridge

            stores = {"home": self.app.storage}
            self._bridge = Bridge(stores) if self.private else app_database(self.app).session(stores)
            self._aliases[self.app.storage.uri] = "home"
        return self._bridge

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        return self.bridge.duckdb()

    def alias(self, store: ObjectStore) -> str:
        bridge = self.bridge
        if store.uri not in self._aliases:
            alias = f"s{len(self._aliases)}"
            bridge.attach(alias, store)
            self._aliases[store.uri] = alias
        return self._aliases[store.uri]

    def close(self) -> None:
        database = self.database if self._pinned else None
        for name in self._pinned:
            database.unpin_view(name)  # type: ignore[union-attr]
        self._pinned.clear()
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    # -- reading -----------------------------------------------------------------------------
    def view(self, name: str) -> Resolved:
        """Create (once) the view for catalog dataset ``name`` and return what it resolved to."""
        resolved = self.resolve(name)
        self._create_view(name, resolved)
        return resolved

    def resolve(self, name: str, *, view: bool = False) -> Resolved:
        """Resolve catalog dataset ``name`` once per session (its exact objects now) and enforce its error checks."""
        if name in self._views:
            return self._views[name]
        dataset = self.app.catalog.get(name)
        store = self.app.open_store(dataset.store_uri)
        database = self.database
        resolved = resolve(dataset, store, listings=getattr(database, "listings", None),
                           manifests=getattr(database, "manifests", None))
        self._views[name] = resolved
        if view:
            self._create_view(name, resolved)
        if dataset.checks:
            self._enforce(dataset, resolved)
        return resolved

    def _create_view(self, name: str, resolved: Resolved) -> None:
        if name in self._created:
            return
        source, native = self._source(resolved)
        database = self.database
        with self.bridge.translate_errors():
            if native and database is not None and name not in self._pinned:
                shared = f"CREATE OR REPLACE VIEW main.{ident(name)} AS SELECT * FROM {source}"
                if database.pin_view(self.connection, name, (resolved.fingerprint, source), shared):
                    self._pinned.add(name)
                    self._created.add(name)
                    return
            self.connection.execute(f"CREATE OR REPLACE TEMP VIEW {ident(name)} AS SELECT * FROM {source}")
        self._created.add(name)

    def _source(self, resolved: Resolved) -> tuple[str, bool]:
        """The reader call over ``resolved``'s objects, and whether DuckDB reads them natively (local files)."""
        from nubes.data.formats import READERS

        alias = self.alias(resolved.store)
        paths = [self.bridge.native_path(o, store=alias) for o in resolved.objects]
        native = all(p is not None for p in paths)
        urls = paths if native else [self.bridge.path(o.key, store=alias) for o in resolved.objects]
        fmt, hive = self._layout(resolved)
        options = [", hive_partitioning = true"] if hive else []
        if fmt == "ndjson":
            options.append(", format = 'newline_delimited'")
        return f"{READERS[fmt]}({literal(urls)}{''.join(options)})", native

    @staticmethod
    def _layout(resolved: Resolved) -> tuple[Any, bool]:
        manifest = resolved.manifest or {}
        dataset = resolved.dataset
        hive = dataset.partitioning == "hive" or bool(manifest.get("partition_by"))
        return manifest.get("format", dataset.format), hive

    def referenced(self, query: str) -> list[str]:
        """Catalog datasets that ``query`` names (DuckDB's parser decides, once per text; CTE names are not tables)."""
        from nubes.data.sqlparse import NotASelect, shape

        database = self.database
        names = database.queries.get(query) if database is not None else None
        if names is None:
            try:
                names = frozenset(shape(self.connection, query).tables)
            except NotASelect:  # not a SELECT or a syntax error: DuckDB reports it when the query runs
                names = frozenset()
            if database is not None:
                database.queries.put(query, names)
        return sorted(n for n in names if n in self.app.catalog)

    def sql(self, query: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> duckdb.DuckDBPyRelation:
        for name in self.referenced(query):
            self.view(name)
        relation: duckdb.DuckDBPyRelation = self.bridge.sql(query, params if params else None)
        return relation

    def table(self, name: str) -> pl.LazyFrame:
        resolved = self.resolve(name)
        fmt, hive = self._layout(resolved)
        return self.bridge.scan([o.key for o in resolved.objects], format=fmt, store=self.alias(resolved.store),
                                hive_partitioning=hive or None)

    def _enforce(self, dataset: Dataset, resolved: Resolved) -> None:
        results = self.check(dataset, resolved)
        failing = [r for r in results if not r.passed and r.severity == "error"]
        if failing and self.enforce_checks:
            raise HTTPError(
                409,
                f"dataset {dataset.name!r} fails {len(failing)} error check(s): " + "; ".join(f"{r.check}: {r.detail}" for r in failing),
                title="Data Quality Check Failed",
                dataset=dataset.name,
                checks=[r.to_dict() for r in failing],
            )

    def check(self, dataset: Dataset, resolved: Resolved | None = None) -> list[CheckResult]:
        """Run (or reuse the cached results of) ``dataset``'s checks on its current version."""
        from nubes.data.checks import run_checks

        if resolved is None:
            resolved = self.view(dataset.name)
        key = (dataset.name, resolved.fingerprint)
        cached: list[CheckResult] | None = self.app.check_cache.get(key)
        if cached is not None:
            return cached
        self._create_view(dataset.name, resolved)
        results = run_checks(self.connection, ident(dataset.name), dataset.checks)
        self.app.check_cache.put(key, results)
        return results

    def _written(self, dataset: Dataset, store: ObjectStore) -> None:
        self._views.pop(dataset.name, None)
        self._created.discard(dataset.name)
        database = self.database
        if database is not None:
            database.listings.drop(lambda key: key[0] == store.uri)  # type: ignore[attr-defined]

    # -- lineage -----------------------------------------------------------------------------
    def lineage(self) -> dict[str, Any] | None:
        """What this invocation read and wrote, or None if it touched no dataset."""
        reads = []
        touched = {(o["store"], o["key"]): o for o in (self._bridge.objects_read() if self._bridge else [])}
        for name, resolved in self._views.items():
            objects: list[dict[str, Any]] = []
            for o in resolved.objects:
                entry = touched.get((resolved.store.uri, o.key))
                objects.append({"key": o.key, "etag": o.etag, "size": o.size,
                                "bytes_read": entry["bytes_read"] if entry else 0})
            reads.append({"dataset": name, "store": resolved.store.uri, "objects": objects,
                          "bytes_read": sum(x["bytes_read"] for x in objects)})
        if not reads and not self.writes:
            return None
        return {"reads": reads, "writes": self.writes}

    def account(self, request_id: str, route: str | None) -> None:
        """Count this session's storage reads in the invocation's I/O stats and record its lineage."""
        from nubes.storage.current import CURRENT_IO

        io = CURRENT_IO.get()
        if io is not None and self._bridge is not None:
            io.merge(self._bridge.stats)
        entry = self.lineage()
        if entry is not None:
            from nubes.data import lineage

            lineage.record(self.app.storage, {"request_id": request_id, "app": self.app.name, "route": route, **entry})
