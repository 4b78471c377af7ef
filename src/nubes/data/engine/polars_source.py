"""``Bridge.scan``: a Polars LazyFrame over objects in stores, streamed, with what it read counted.

Two readers behind one Polars IO source (``polars.io.plugins.register_io_source``), which hands each
scan the columns, filter and row limit Polars' optimizer pushed down:

* **Local Parquet** (a store whose objects are files here): Polars reads the files natively and
  streams them (``collect_batches``), so a ``ctx.table`` aggregation runs in Polars' streaming engine
  at its own speed and memory. Before anything is read, the files' footers (parsed once per object
  version and kept for the warm instance) say which row groups the filter can skip and which byte
  ranges the read will take: those ranges are what metering and lineage count.
* **Everything else** (remote stores, CSV, NDJSON): DuckDB reads through the bridge's counted range
  reads, one complete query per run of row groups (Parquet: ``file_row_number`` ranges, so row groups
  the footer statistics exclude are never fetched) or per file, each turned into a Polars frame through
  the Arrow C stream interface (no pyarrow). No DuckDB query is left open between batches, so a scan
  Polars stops reading early (``head``) leaves nothing running behind it.

In both, the filter is applied to the rows read (statistics only decide what to skip) and the
projection to the columns the query asked for; memory is bounded by a row group, not the dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl
from polars.io.plugins import register_io_source

from nubes.data.engine import pruning
from nubes.data.engine.caches import Bounded
from nubes.data.engine.parquet_footer import Footer
from nubes.data.sqltext import ident
from nubes.storage.base import ObjectInfo

if TYPE_CHECKING:
    from nubes.data.engine.bridge import Bridge

MAX_QUERY_ROWS = 1 << 20  # row groups merged into one DuckDB query up to this many rows
NATIVE_BATCH_ROWS = 1 << 15  # rows per batch of a native Polars read (bounds what a scan holds at once)


@dataclass
class Part:
    """One object of a scan: where it is, its version and (Parquet) its footer."""

    alias: str
    info: ObjectInfo
    url: str  # the local path (native reads) or nubes:// URL (DuckDB reads)
    footer: Footer | None = None


def runs(footer: Footer, groups: list[int]) -> list[tuple[int, int, list[int]]]:
    """Consecutive row groups merged: ``(first row, rows, groups)`` each at most MAX_QUERY_ROWS rows."""
    starts, row = [], 0
    for group in footer.row_groups:
        starts.append(row)
        row += group.num_rows
    out: list[tuple[int, int, list[int]]] = []
    for g in groups:
        if out and out[-1][2][-1] == g - 1 and out[-1][1] + footer.row_groups[g].num_rows <= MAX_QUERY_ROWS:
            first, rows, members = out[-1]
            out[-1] = (first, rows + footer.row_groups[g].num_rows, [*members, g])
        else:
            out.append((starts[g], footer.row_groups[g].num_rows, [g]))
    return out


class _Plan:
    """What one call of the source does: columns to read, the filter, the row limit."""

    def __init__(self, schema: pl.Schema, with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None) -> None:
        self.wanted = list(with_columns) if with_columns is not None else schema.names()
        extra = [c for c in (predicate.meta.root_names() if predicate is not None else []) if c not in self.wanted]
        self.needed = self.wanted + [c for c in dict.fromkeys(extra) if c in schema]
        self.predicate = predicate
        self.left = n_rows
        self.schema = schema
        self.yielded = False
        self.tests = pruning.tests(predicate) if predicate is not None else []

    def groups(self, footer: Footer | None, columns: set[str]) -> list[int] | None:
        if footer is None:
            return None
        return pruning.keep(footer, [t for t in self.tests if t[0] in columns])

    def finish(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        """The batch as the query wants it, or None when nothing is left to yield."""
        if self.predicate is not None:
            frame = frame.filter(self.predicate)
        if frame.columns != self.wanted:
            frame = frame.select(self.wanted)
        if self.left is not None:
            frame = frame.head(self.left)
            self.left -= frame.height
        if not frame.height and self.yielded:
            return None
        self.yielded = True
        return frame

    @property
    def done(self) -> bool:
        return self.left is not None and self.left <= 0

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema={c: self.schema[c] for c in self.wanted})


def scan_local_parquet(bridge: Bridge, parts: list[Part], hive: bool, cache: Bounded[Any]) -> pl.LazyFrame:
    """Local Parquet files read natively by Polars (see the module docstring); their schema is kept in
    ``cache`` by the objects' versions."""
    paths = [p.url for p in parts]
    key = ("schema", hive, tuple((p.url, p.info.etag) for p in parts))
    schema = cache.get(key)
    if schema is None:
        schema = cache.put(key, pl.scan_parquet(paths, hive_partitioning=hive, glob=False).collect_schema())
    in_files = set().union(*(set(p.footer.row_groups[0].columns) if p.footer and p.footer.row_groups else set() for p in parts))
    hive_schema = {c: t for c, t in schema.items() if c not in in_files} if hive else None

    def source(with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None,
               batch_size: int | None) -> Iterator[pl.DataFrame]:
        plan = _Plan(schema, with_columns, predicate, n_rows)
        columns = {c for c in plan.needed if c in in_files}
        for part in parts:
            _same_version(bridge, part)
        pieces: list[tuple[pl.LazyFrame, list[tuple[Part, int, int]]]] = []  # (lazy scan, [(part, reads, bytes)])
        whole: list[tuple[Part, int, int]] = []
        for part in parts:
            footer = part.footer
            assert footer is not None
            kept = plan.groups(footer, columns) or []
            if len(kept) == len(footer.row_groups) or hive:
                everything = range(len(footer.row_groups))
                whole.append((part, 1 + _chunks(footer, columns, everything), footer.length + footer.chunk_bytes(columns, everything)))
                continue
            for first, rows, members in runs(footer, kept):
                lazy = pl.scan_parquet(part.url, glob=False, use_statistics=False).slice(first, rows)
                pieces.append((lazy, [(part, 1 + _chunks(footer, columns, members), footer.length + footer.chunk_bytes(columns, members))]))
        if whole:
            lazy = pl.scan_parquet([p.url for p, _, _ in whole], hive_partitioning=hive, hive_schema=hive_schema, glob=False,
                                   use_statistics=False)
            pieces.insert(0, (lazy, whole))
        for lazy, counted in pieces:
            for part, reads, nbytes in counted:
                bridge._access.read_elsewhere(part.alias, part.info, reads, nbytes)
            try:
                for batch in lazy.select(plan.needed).collect_batches(chunk_size=batch_size or NATIVE_BATCH_ROWS, lazy=True):
                    out = plan.finish(batch)
                    if out is not None:
                        yield out
                    if plan.done:
                        return
            except FileNotFoundError:
                for part, _, _ in counted:
                    _same_version(bridge, part)
                raise
        if not plan.yielded:
            yield plan.empty()

    return register_io_source(source, schema=schema, explain_name="nubes-parquet")


def _chunks(footer: Footer, columns: set[str], groups: range | list[int]) -> int:
    """How many column chunks (one range read each) ``columns`` have in ``groups``."""
    return sum(len(chunks) for g in groups for name, chunks in footer.row_groups[g].columns.items() if name in columns)


def _same_version(bridge: Bridge, part: Part) -> None:
    """The object is still the version the scan was planned for (one HEAD): else NotFound or PreconditionFailed,
    since a footer read for another version would point Polars at the wrong bytes."""
    from nubes.data.engine.access import uncounted
    from nubes.errors import PreconditionFailed

    store = bridge._access.stores[part.alias]
    try:
        with uncounted():
            info = store.head(part.info.key)
    finally:
        bridge._access.stats.record("head")
    if info.etag != part.info.etag or info.size != part.info.size:
        raise PreconditionFailed(f"object changed since the scan was made (was etag {part.info.etag}); run the query again",
                                 uri=store.uri, key=part.info.key)


def scan_with_engine(bridge: Bridge, parts: list[Part], fmt: str, hive: bool | None, options: dict[str, Any]) -> pl.LazyFrame:
    """Objects read by DuckDB through the bridge, one complete query per run of row groups or per file."""
    from nubes.data.formats import reader_call

    whole = reader_call([p.url for p in parts], fmt, hive=hive, options=options)  # type: ignore[arg-type]
    base = bridge.sql(f"SELECT * FROM {whole}")
    with bridge.translate_errors():
        schema = pl.DataFrame(base.limit(0)).schema

    def source(with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None,
               batch_size: int | None) -> Iterator[pl.DataFrame]:
        plan = _Plan(schema, with_columns, predicate, n_rows)
        select = ", ".join(ident(c) for c in plan.needed) or "NULL AS _nubes_empty"
        for part in parts:
            call = reader_call([part.url], fmt, hive=hive, options=options)  # type: ignore[arg-type]
            queries = [f"SELECT {select} FROM {call}"]
            if fmt == "parquet" and part.footer is not None and part.footer.row_groups:
                kept = plan.groups(part.footer, set(part.footer.row_groups[0].columns)) or []
                call = reader_call([part.url], fmt, hive=hive, options={**options, "file_row_number": True})  # type: ignore[arg-type]
                queries = [f"SELECT {select} FROM {call} WHERE file_row_number >= {first} AND file_row_number < {first + rows}"
                           for first, rows, _ in runs(part.footer, kept)]
            for query in queries:
                with bridge._cursor() as cursor, bridge.translate_errors():
                    frame = pl.DataFrame(cursor.sql(query)) if plan.needed else pl.DataFrame(cursor.sql(query)).select([])
                if plan.needed:
                    frame = frame.cast({c: schema[c] for c in frame.columns if frame.schema[c] != schema[c]}, strict=False)
                for offset in range(0, max(frame.height, 1), batch_size or MAX_QUERY_ROWS):
                    out = plan.finish(frame.slice(offset, batch_size or MAX_QUERY_ROWS))
                    if out is not None:
                        yield out
                    if plan.done:
                        return
        if not plan.yielded:
            yield plan.empty()

    return register_io_source(source, schema=schema, explain_name="nubes-engine")
