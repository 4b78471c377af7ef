"""Atomic writes of datasets: what ``ctx.write`` does (mixed into :class:`~nubes.data.session.Session`).

A single-object dataset is replaced whole (:meth:`Bridge.write <nubes.data.engine.bridge.Bridge.write>`).
A prefix dataset gets a new version of files under ``v<time>-<id>/``, then its ``_manifest.json`` is
swapped with a conditional put: readers follow the manifest, so they see the previous version or the
new one, never a mix. Files a version replaced stay readable for :data:`SUPERSEDED_GRACE_S`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nubes.data.catalog import MANIFEST, Dataset, make_dataset
from nubes.data.sqltext import ident, literal
from nubes.errors import ConfigError, PreconditionFailed

if TYPE_CHECKING:
    import duckdb

    from nubes.core.app import App
    from nubes.data.catalog import Resolved
    from nubes.data.engine.bridge import Bridge
    from nubes.storage.base import ObjectStore

SUPERSEDED_GRACE_S = 900.0  # longer than any provider's maximum invocation time (Lambda: 900 s)


class DatasetWriter:
    """``write`` for a session: needs ``app``, ``bridge``, ``connection``, ``alias``, ``sql`` and ``writes``."""

    app: App
    writes: list[dict[str, Any]]
    _views: dict[str, Resolved]

    @property
    def bridge(self) -> Bridge:
        raise NotImplementedError

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def alias(self, store: ObjectStore) -> str:
        raise NotImplementedError

    def sql(self, query: str, params: Any = None) -> duckdb.DuckDBPyRelation:
        raise NotImplementedError

    def _written(self, dataset: Dataset, store: ObjectStore) -> None:
        """Hook: ``dataset`` in ``store`` has a new version (caches of it are stale)."""

    def write(
        self,
        target: str,
        frame: Any,
        *,
        format: str = "parquet",
        partition_by: Sequence[str] | str | None = None,
        mode: str = "overwrite",
    ) -> Dataset:
        """Write ``frame`` to a catalog dataset or a URI, atomically; register or update the dataset."""
        if mode not in ("overwrite", "append"):
            raise ConfigError(f"ctx.write mode must be 'overwrite' or 'append', not {mode!r}")
        if isinstance(partition_by, str):
            partition_by = [partition_by]
        dataset: Dataset
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
        self._written(dataset, store)
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
                options += ", PARTITION_BY (" + ", ".join(ident(c) for c in partition_by) + "), FILENAME_PATTERN 'part-{i}'"
                target = out
            else:
                target = os.path.join(out, f"part-0.{fmt}")
            # Through a view of the relation, not its SQL text: a relation from ctx.sql(..., name=value)
            # keeps its bound parameters only in the relation itself.
            view = f"__nubes_write_{os.urandom(6).hex()}"
            with self.bridge.translate_errors():
                frame.create_view(view, replace=False)
                try:
                    self.connection.execute(f"COPY (SELECT * FROM {ident(view)}) TO {literal(target)} ({options})").fetchall()
                finally:
                    self.connection.execute(f"DROP VIEW IF EXISTS {ident(view)}")
            return
        import polars as pl

        df = to_polars(frame)
        missing = [c for c in partition_by if c not in df.columns]
        if missing:
            raise ConfigError(f"ctx.write partition_by column(s) {missing} are not in the frame (columns: {df.columns})")
        groups = df.partition_by(partition_by, as_dict=True, include_key=False) if partition_by else {(): df}
        for values, part in groups.items():
            folder = os.path.join(out, *(f"{c}={_hive_value(v)}" for c, v in zip(partition_by, values, strict=False)))
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

        from nubes.storage.swap import read_with_etag, swap

        fmt = dataset.format
        version = datetime.now(UTC).strftime("v%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]
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
            content, etag = read_with_etag(store, MANIFEST)
            previous: dict[str, Any] | None = json.loads(content) if content is not None else None
            now = datetime.now(UTC)
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
                swap(store, MANIFEST, body, etag)
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


def _hive_value(value: Any) -> str:
    from urllib.parse import quote

    return "__HIVE_DEFAULT_PARTITION__" if value is None else quote(str(value), safe="")
