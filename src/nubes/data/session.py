"""Queries, writes, checks and lineage for one invocation: what ``ctx.sql``, ``ctx.table`` and ``ctx.write`` do.

A :class:`Session` is opened on the first analytics call of an invocation and closed when the
invocation ends. It holds a :class:`~nubes.data.bridge.Bridge` over the stores the invocation
touches, so every read is a range read through ``nubes.storage``. The bridge is a session of the app's
shared DuckDB database (:func:`app_database`: opened once per warm instance, a cursor per invocation,
its own ``nubes://`` paths, counters and TEMP views), so an invocation does not pay for opening a
database; ``private=True`` gives a session a fresh database of its own instead (the SQL endpoint's
sandbox, which locks its configuration). Catalog
datasets become views on first reference (only the ones a query names), each over the exact list of
objects the dataset has now; their ``error`` checks are evaluated once per dataset version and cached
for the warm instance. What was read and written is the invocation's lineage.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from nubes.data.catalog import MANIFEST, Dataset, Resolved, infer_format, make_dataset, resolve, split_uri
from nubes.errors import ConfigError, HTTPError, PreconditionFailed

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from nubes.core.app import App
    from nubes.data.checks import CheckResult
    from nubes.storage.base import ObjectStore
    from nubes.data.bridge import Bridge, Database

_DATABASES: weakref.WeakKeyDictionary[Any, Database] = weakref.WeakKeyDictionary()
_DATABASES_LOCK = threading.Lock()


def app_database(app: App) -> Database:
    """The app's shared DuckDB database (see :class:`~nubes.data.bridge.Database`), made on first use."""
    database = _DATABASES.get(app)
    if database is None:
        from nubes.data.bridge import Database

        with _DATABASES_LOCK:
            database = _DATABASES.get(app)
            if database is None:
                database = _DATABASES[app] = Database()
    return database


SUPERSEDED_GRACE_S = 900.0  # longer than any provider's maximum invocation time (Lambda: 900 s)
_READERS = {"parquet": "read_parquet", "csv": "read_csv", "ndjson": "read_json"}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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


class Session:
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
        self._created: set[str] = set()  # ... of which a SQL view exists on the session's connection
        self.writes: list[dict[str, Any]] = []

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def bridge(self) -> Bridge:
        if self._bridge is None:
            from nubes.data.bridge import Bridge

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
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    # -- reading -----------------------------------------------------------------------------
    def view(self, name: str) -> Resolved:
        """Create (once) the view for catalog dataset ``name`` and return what it resolved to."""
        if name in self._views:
            self._create_view(name, self._views[name])
            return self._views[name]
        return self.resolve(name, view=True)

    def resolve(self, name: str, *, view: bool = False) -> Resolved:
        """Resolve catalog dataset ``name`` once (its exact objects now) and enforce its error checks.

        The SQL view is made only when asked (``view``) or when checks must run (not cached for this
        version): ``ctx.table`` reads the objects directly and does not need one."""
        if name in self._views:
            return self._views[name]
        dataset = self.app.catalog.get(name)
        store = self.app.open_store(dataset.store_uri)
        resolved = resolve(dataset, store)
        if view:
            self._create_view(name, resolved)
        self._views[name] = resolved
        if dataset.checks:
            self._enforce(dataset, resolved)
        return resolved

    def _create_view(self, name: str, resolved: Resolved) -> None:
        if name in self._created:
            return
        source = self.source_sql(resolved)
        with self.bridge.translate_errors():
            self.connection.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT * FROM {source}").fetchall()
        self._created.add(name)

    def source_sql(self, resolved: Resolved) -> str:
        alias = self.alias(resolved.store)
        files = ", ".join(_sql_string(self.bridge.path(o.key, store=alias)) for o in resolved.objects)
        dataset = resolved.dataset
        fmt = (resolved.manifest or {}).get("format", dataset.format)
        options = []
        hive = dataset.partitioning == "hive" or bool((resolved.manifest or {}).get("partition_by"))
        if hive:
            options.append("hive_partitioning = true")
        if fmt == "ndjson":
            options.append("format = 'newline_delimited'")
        return f"{_READERS[fmt]}([{files}]{''.join(', ' + o for o in options)})"

    def referenced(self, query: str) -> list[str]:
        """Catalog datasets that ``query`` names (DuckDB's parser decides; CTE names are not tables)."""
        from nubes.data.sqlparse import NotASelect, shape

        try:
            names = shape(self.connection, query).tables
        except NotASelect:  # not a SELECT or a syntax error: DuckDB reports it when the query runs
            return []
        return sorted(n for n in names if n in self.app.catalog)

    def sql(self, query: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> duckdb.DuckDBPyRelation:
        for name in self.referenced(query):
            self.view(name)
        return self.bridge.sql(query, params if params else None)

    def table(self, name: str) -> pl.LazyFrame:
        resolved = self.resolve(name)
        dataset = resolved.dataset
        alias = self.alias(resolved.store)
        fmt = (resolved.manifest or {}).get("format", dataset.format)
        hive = dataset.partitioning == "hive" or bool((resolved.manifest or {}).get("partition_by"))
        return self.bridge.scan([o.key for o in resolved.objects], format=fmt, store=alias, hive_partitioning=hive or None)

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
            resolved = self.view(dataset.name) if dataset.name not in self._views else self._views[dataset.name]
        key = (dataset.name, resolved.fingerprint)
        cached = self.app.check_cache.get(key)
        if cached is not None:
            return cached
        self._create_view(dataset.name, resolved)
        results = run_checks(self.connection, quote_ident(dataset.name), dataset.checks)
        self.app.check_cache.put(key, results)
        return results

    # -- writing -----------------------------------------------------------------------------
    def write(
        self,
        target: str,
        frame: Any,
        *,
        format: str = "parquet",  # noqa: A002
        partition_by: Sequence[str] | str | None = None,
        mode: str = "overwrite",
    ) -> Dataset:
        """Write ``frame`` to a catalog dataset or a URI, atomically; register or update the dataset."""
        if mode not in ("overwrite", "append"):
            raise ConfigError(f"ctx.write mode must be 'overwrite' or 'append', not {mode!r}")
        if isinstance(partition_by, str):
            partition_by = [partition_by]
        if target in self.app.catalog:
            dataset = self.app.catalog.get(target)
        elif "://" in target:
            name = target.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
            dataset = make_dataset(name if name.isidentifier() else "dataset", target, format=format)
        else:
            raise ConfigError(f"ctx.write target {target!r} is neither a catalog dataset nor a storage URI")
        store = self.app.open_store(dataset.store_uri)
        if dataset.pattern is not None and not dataset.is_glob:
            if partition_by or mode == "append":
                raise ConfigError(
                    f"dataset {dataset.name!r} is the single object {dataset.uri}; partition_by and mode='append' "
                    "need a prefix dataset (a URI ending with '/')"
                )
            info = self.bridge.write(dataset.pattern, frame, format=dataset.format, store=self.alias(store))
            keys = [(info.key, info.etag, info.size)]
        else:
            keys = self._write_version(store, dataset, frame, list(partition_by or ()), mode)
        self.writes.append({"dataset": dataset.name, "store": store.uri,
                            "objects": [{"key": k, "etag": e, "size": s} for k, e, s in keys], "mode": mode})
        self._views.pop(dataset.name, None)
        self._created.discard(dataset.name)
        if dataset.name not in self.app.catalog:
            self.app.catalog.add(dataset)
        return dataset

    def _spool(self, frame: Any, fmt: str, partition_by: list[str], out: str) -> None:
        """Serialize ``frame`` into files under folder ``out`` (hive ``col=value/`` folders when partitioned).

        DuckDB relations and SQL text stream through DuckDB's COPY; Polars/Arrow frames are written by
        Polars (DuckDB cannot read a Polars frame without pyarrow).
        """
        import os

        from nubes.core.encoding import is_table, to_polars

        if isinstance(frame, str):
            frame = self.sql(frame)
        if not is_table(frame):
            raise ConfigError(f"ctx.write takes a Polars frame, a DuckDB relation, an Arrow table or SQL, not {type(frame).__name__}")
        os.makedirs(out, exist_ok=True)
        if type(frame).__name__ == "DuckDBPyRelation":
            options = {"parquet": "FORMAT parquet", "csv": "FORMAT csv, HEADER true", "ndjson": "FORMAT json"}[fmt]
            if partition_by:
                options += ", PARTITION_BY (" + ", ".join(quote_ident(c) for c in partition_by) + "), FILENAME_PATTERN 'part-{i}'"
                target = out
            else:
                target = os.path.join(out, f"part-0.{fmt}")
            with self.bridge.translate_errors():
                self.connection.execute(f"COPY ({frame.sql_query()}) TO {_sql_string(target)} ({options})").fetchall()
            return
        import polars as pl

        df = to_polars(frame)
        missing = [c for c in partition_by if c not in df.columns]
        if missing:
            raise ConfigError(f"ctx.write partition_by column(s) {missing} are not in the frame (columns: {df.columns})")
        groups = df.partition_by(partition_by, as_dict=True, include_key=False) if partition_by else {(): df}
        for values, part in groups.items():
            folder = os.path.join(out, *(f"{c}={_hive_value(v)}" for c, v in zip(partition_by, values)))
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"part-0.{fmt}")
            if fmt == "parquet":
                part.write_parquet(path)
            elif fmt == "csv":
                part.write_csv(path)
            else:
                part.write_ndjson(path)
        del pl

    def _write_version(
        self, store: ObjectStore, dataset: Dataset, frame: Any, partition_by: list[str], mode: str
    ) -> list[tuple[str, str, int]]:
        """Write a new version's files under ``v<time>-<id>/``, then swap the manifest with a conditional put.

        Readers follow the manifest, so they see the previous version until the swap and the new one
        after: never a mix. Concurrent writers retry the swap (append keeps both; overwrite: last wins).
        Files a version replaced stay readable for ``SUPERSEDED_GRACE_S`` (so a reader that resolved
        the old manifest can finish) and are deleted by the first write after that.
        """
        import os
        import tempfile

        from nubes.errors import NotFound

        fmt = dataset.format
        version = datetime.now(timezone.utc).strftime("v%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]
        written: list[tuple[str, str, int]] = []
        with tempfile.TemporaryDirectory(prefix="nubes-ds-") as tmp:
            self._spool(frame, fmt, partition_by, tmp)
            for root, _, files in sorted(os.walk(tmp)):
                for file in sorted(files):
                    path = os.path.join(root, file)
                    key = f"{version}/" + os.path.relpath(path, tmp).replace(os.sep, "/")
                    with open(path, "rb") as f:
                        info = store.put(key, f)
                    written.append((info.key, info.etag, info.size))
        for attempt in range(20):
            try:
                etag: str | None = store.head(MANIFEST).etag
                previous: dict[str, Any] | None = json.loads(store.get(MANIFEST))
            except NotFound:
                previous, etag = None, None
            now = datetime.now(timezone.utc)
            files = [k for k, _, _ in written]
            retired = list((previous or {}).get("retired", []))
            if mode == "append" and previous:
                files = list(previous.get("files", [])) + files
            elif previous:
                keep = set(files)
                retired.append({"files": [k for k in previous.get("files", []) if k not in keep], "at": now.isoformat()})
            expired = [r for r in retired if (now - datetime.fromisoformat(r["at"])).total_seconds() > SUPERSEDED_GRACE_S]
            manifest = {
                "format": fmt,
                "partition_by": partition_by or list((previous or {}).get("partition_by") or []),
                "files": files,
                "version": version,
                "written_at": now.isoformat(),
                "retired": [r for r in retired if r not in expired],
            }
            body = json.dumps(manifest, indent=1).encode()
            try:
                if etag is None:
                    store.put(MANIFEST, body, content_type="application/json", if_none_match=True)
                else:
                    store.put(MANIFEST, body, content_type="application/json", if_match=etag)
            except PreconditionFailed:
                time.sleep(0.005 * (attempt + 1))
                continue
            garbage = [k for r in expired for k in r["files"]]
            if garbage:
                try:
                    store.delete_many(garbage)
                except Exception:  # only garbage: readers follow the manifest
                    self.app.log.warning("could not delete superseded files", dataset=dataset.name, count=len(garbage))
            return written
        raise PreconditionFailed(
            f"dataset {dataset.name!r}: the manifest kept changing under concurrent writers", uri=store.uri, key=MANIFEST
        )

    # -- lineage -----------------------------------------------------------------------------
    def lineage(self) -> dict[str, Any] | None:
        """What this invocation read and wrote, or None if it touched no dataset."""
        reads = []
        touched = {(o["store"], o["key"]): o for o in (self._bridge.objects_read() if self._bridge else [])}
        for name, resolved in self._views.items():
            objects = []
            for o in resolved.objects:
                entry = touched.get((resolved.store.uri, o.key))
                objects.append({"key": o.key, "etag": o.etag, "size": o.size,
                                "bytes_read": entry["bytes_read"] if entry else 0})
            reads.append({"dataset": name, "store": resolved.store.uri, "objects": objects,
                          "bytes_read": sum(x["bytes_read"] for x in objects)})
        if not reads and not self.writes:
            return None
        return {"reads": reads, "writes": self.writes}


def _hive_value(value: Any) -> str:
    from urllib.parse import quote

    return "__HIVE_DEFAULT_PARTITION__" if value is None else quote(str(value), safe="")
