"""Bytes fetched and time per query through the storage bridge, against DuckDB reading the local file.

Generates a 20-column Parquet file (1M rows by default), stores it in ``file://`` and ``mem://`` stores
and runs (a) a one-column aggregate, (b) a full scan, (c) a filter on the sorted column and (d) the
one-column aggregate through the Polars LazyFrame path. Each bridge run uses a fresh Bridge (cold
caches); the time is the best of ``--repeat`` runs. Raw DuckDB bytes are the ``rchar`` delta of
``/proc/self/io`` (Linux; "n/a" elsewhere).

    .venv/bin/python bench/storage_bytes.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

import nubes.storage as storage
from nubes.data import Bridge
from nubes.storage.base import ObjectStore

COLUMNS = 20
QUERIES: dict[str, str] = {
    "one-column sum": "SELECT sum(c7) FROM {src}",
    # every column, aggregated in DuckDB so that converting rows to Python does not dominate the time
    "full scan": "SELECT " + ", ".join(f"sum(c{i})" for i in range(COLUMNS)) + " FROM {src}",
    "filter sorted c0": "SELECT sum(c3) FROM {src} WHERE c0 < 10000",
}


def _rchar() -> int | None:
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def generate(path: Path, rows: int) -> None:
    cols = ["range AS c0"] + [
        f"(hash(range * {i}) % 1000000)::BIGINT AS c{i}" if i % 2 else f"(hash(range + {i}) % 100000)::DOUBLE AS c{i}"
        for i in range(1, COLUMNS)
    ]
    con = duckdb.connect()
    con.sql(f"COPY (SELECT {', '.join(cols)} FROM range({rows})) TO '{path}' (FORMAT parquet)")
    con.close()


def run(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nubes-bench-") as tmp:
        local = Path(tmp) / "wide.parquet"
        t0 = time.perf_counter()
        generate(local, args.rows)
        size = local.stat().st_size
        meta = duckdb.connect().sql(f"SELECT count(DISTINCT row_group_id) FROM parquet_metadata('{local}')").fetchall()
        print(f"file: {args.rows:,} rows x {COLUMNS} columns, {size / 1e6:.1f} MB, {meta[0][0]} row groups "
              f"(generated in {time.perf_counter() - t0:.1f}s); {os.cpu_count()} CPUs, best of {args.repeat}\n")

        (Path(tmp) / "store").mkdir()
        stores: dict[str, ObjectStore] = {
            "file://": storage.open(f"file://{Path(tmp) / 'store'}"),
            "mem://": storage.open("mem://nubes-bench"),
        }
        for store in stores.values():
            with open(local, "rb") as f:
                store.put("bench/wide.parquet", f)

        rows: list[tuple[str, str, str, str, str]] = []
        for name, template in QUERIES.items():
            con = duckdb.connect()
            query = template.format(src=f"read_parquet('{local}')")
            before = _rchar()
            con.sql(query).fetchall()
            after = _rchar()
            seconds = run(lambda con=con, query=query: con.sql(query).fetchall(), args.repeat)
            raw = "n/a" if before is None or after is None else f"{(after - before) / 1e6:.2f}"
            rows.append((name, "duckdb local file", raw, "-", f"{seconds * 1000:.0f}"))
            for label, store in stores.items():
                measured: list[tuple[int, int]] = []

                def once(store: Any = store, template: str = template, measured: list[tuple[int, int]] = measured) -> None:
                    with Bridge(store) as br, br.measure() as m:
                        br.sql(template.format(src=br.read_sql("bench/wide.parquet"))).fetchall()
                    measured.append((m.bytes_read, m.requests))

                seconds = run(once, args.repeat)
                fetched, requests = measured[-1]
                rows.append((name, f"bridge {label}", f"{fetched / 1e6:.2f}", str(requests), f"{seconds * 1000:.0f}"))
        for label, store in stores.items():
            measured = []

            def polars_once(store: Any = store, measured: list[tuple[int, int]] = measured) -> None:
                with Bridge(store) as br, br.measure() as m:
                    br.scan("bench/wide.parquet").select(pl.col("c7").sum()).collect()
                measured.append((m.bytes_read, m.requests))

            seconds = run(polars_once, args.repeat)
            fetched, requests = measured[-1]
            rows.append(("one-column sum", f"polars scan {label}", f"{fetched / 1e6:.2f}", str(requests), f"{seconds * 1000:.0f}"))
        storage.open("mem://nubes-bench").delete("bench/wide.parquet")

        header = ("query", "path", "MB fetched", "requests", "ms")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
        line = lambda r: "  ".join(str(v).ljust(w) if i < 2 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))  # noqa: E731
        print(line(header))
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print(line(r))
        print(f"\nfile size {size / 1e6:.2f} MB; 'MB fetched' for the bridge is Bridge.measure().bytes_read "
              "(bytes returned by store.get_range), for local DuckDB the process's rchar delta.")


if __name__ == "__main__":
    main()
