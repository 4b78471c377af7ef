"""Warm ``ctx.sql`` / ``ctx.table`` routes against hand-written DuckDB / Polars on the same files, in one run.

For each size and shape (see ``analytics_data.py``: ``group-by`` is the issue's metric, 3 of 12 columns
of ``facts``), three callables run interleaved ``--repeat`` times (rotating which goes first, after one
untimed warm-up each) in ONE process:

* nubes: one warm ``App`` (created once) answering ``GET /sql/<shape>/<size>`` (``ctx.sql``) or
  ``GET /table/<shape>/<size>`` (``ctx.table``) through ``nubes.testing.Client``, with nubes' defaults:
  metering on, the JSON log line, lineage in a ``file://`` home store, JSON encoding of the answer;
* raw DuckDB on ONE warm connection (``read_parquet`` on the local file), rows -> JSON records;
* raw Polars ``pl.scan_parquet(path)`` + the same query + ``collect()`` -> ``write_json()``.

``ctx.sql`` rows compare against DuckDB (goal <= 1.10x), ``ctx.table`` rows against Polars (goal <= 1.20x).
Ratios are of medians; ``r(min)`` is best run / best run. ``fetched`` is what the invocation read from
storage (its lineage record) against the size of the objects read; every answer is checked against the
raw one. ``--backends s3`` adds the same routes over ``s3://`` on a moto_server started here (its raw
baseline is the local file: DuckDB's httpfs cannot be installed on this machine).

    python bench/analytics.py [--sizes 1M] [--repeat 15] [--backends file[,s3]] [--data DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analytics_data import (
    SHAPES,
    SIZES,
    WarmDuckDB,
    filter_bounds,
    generate,
    make_app,
    quiet_log,
    raw_polars,
    same,
)

GOALS = {"ctx.sql": 1.10, "ctx.table": 1.20}


def alternate(fns: list[Callable[[], Any]], repeat: int) -> list[list[float]]:
    """Run every fn ``repeat`` times, interleaved, rotating which goes first; the times of each."""
    times: list[list[float]] = [[] for _ in fns]
    for run in range(repeat):
        order = list(range(len(fns)))
        shift = run % len(fns)
        for i in order[shift:] + order[:shift]:
            gc.collect()
            t0 = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - t0)
    return times


@dataclass
class Row:
    size: str
    backend: str
    shape: str
    api: str
    nubes_ms: float
    raw_ms: float
    raw_label: str
    min_ratio: float
    fetched: int
    total: int
    ok: bool
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.nubes_ms / self.raw_ms


def lineage_read(app: Any, request_id: str) -> tuple[int, int]:
    from nubes.data import lineage

    for entry in lineage.history(app.storage, limit=5):
        if entry.get("request_id") == request_id:
            read = sum(r["bytes_read"] for r in entry["reads"])
            total = sum(o["size"] for r in entry["reads"] for o in r["objects"])
            return read, total
    return 0, 0


def measure(client: Any, app: Any, backend: str, size: str, shape: str, api: str, paths: dict[str, Path],
            warm: WarmDuckDB, repeat: int) -> Row:
    key = size.lower()
    facts, dims = paths[f"facts_{key}"], paths["dims"]
    lo, hi = filter_bounds(SIZES[size])
    route = f"/{'sql' if api == 'ctx.sql' else 'table'}/{shape}/{key}"
    params = {"lo": lo, "hi": hi} if shape == "filter" else {}
    if api == "ctx.sql":
        label = "duckdb"

        def raw() -> bytes:
            return warm(shape, facts, dims, lo, hi)
    else:
        label = "polars"

        def raw() -> bytes:
            return raw_polars(shape, facts, dims, lo, hi)

    def nubes_call() -> Any:
        response = client.get(route, params=params)
        if response.status_code != 200:
            raise RuntimeError(f"{route}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    expected = json.loads(raw())
    response = nubes_call()  # warm-up, checked and measured for bytes
    ok = same(response.json(), expected)
    fetched, total = lineage_read(app, response.headers["x-nubes-request-id"])
    times = alternate([nubes_call, raw], repeat)
    note = "" if ok else f"ANSWER DIFFERS: nubes {response.text[:100]} raw {json.dumps(expected)[:100]}"
    return Row(size, backend, shape, api, statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000, label,
               min(times[0]) / min(times[1]), fetched, total, ok, note)


@contextlib.contextmanager
def s3_uri(paths: dict[str, Path]) -> Iterator[str]:
    """A bucket on a moto_server started for the block, holding the files."""
    from nubes import storage
    from nubes.testing.servers.moto import MotoServer

    with MotoServer() as server, server.environment():
        bucket = f"nubes-bench-{os.getpid()}"
        server.create_bucket(bucket)
        store = storage.open(f"s3://{bucket}")
        for path in paths.values():
            with open(path, "rb") as f:
                store.put(path.name, f)
        yield f"s3://{bucket}"


def print_table(rows: list[Row]) -> None:
    head = (f"{'size':<4} {'backend':<7} {'shape':<8} {'api':<9} {'nubes ms':>8} {'raw ms':>7} {'(raw)':<6} {'ratio':>6} "
            f"{'goal':>5} {'':<4} {'r(min)':>6} {'fetched MB':>10} {'of MB':>6} {'answer':<6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        goal = GOALS[r.api]
        verdict = "ok" if r.ratio <= goal else "MISS"
        print(f"{r.size:<4} {r.backend:<7} {r.shape:<8} {r.api:<9} {r.nubes_ms:8.2f} {r.raw_ms:7.2f} {r.raw_label:<6} "
              f"{r.ratio:5.2f}x {goal:4.2f}x {verdict:<4} {r.min_ratio:5.2f}x {r.fetched / 1e6:10.2f} {r.total / 1e6:6.1f} "
              f"{'same' if r.ok else 'DIFF':<6} {r.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M", help="comma-separated, of: " + ", ".join(SIZES))
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per measurement (median reported)")
    parser.add_argument("--backends", default="file", help="comma-separated, of: file, s3")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated, of: " + ", ".join(SHAPES))
    parser.add_argument("--data", help="folder for the generated files (kept; default: a temporary folder)")
    args = parser.parse_args()
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if set(sizes) - set(SIZES) or set(shapes) - set(SHAPES):
        parser.error("unknown size or shape")
    import duckdb
    import polars as pl

    quiet_log()
    with tempfile.TemporaryDirectory(prefix="nubes-bench-") as tmp_name:
        tmp = Path(tmp_name)
        paths = generate(Path(args.data) if args.data else tmp / "data", sizes)
        print(f"nubes analytics bench: {os.cpu_count()} CPUs, duckdb {duckdb.__version__}, polars {pl.__version__}, "
              f"Python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f}; median of {args.repeat} interleaved runs")
        for _name, path in paths.items():
            print(f"  {path.name}: {path.stat().st_size / 1e6:.1f} MB")
        warm = WarmDuckDB()
        rows: list[Row] = []
        names = list(paths)
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        for backend in backends:
            with contextlib.ExitStack() as stack:
                base = next(iter(paths.values())).parent.as_uri() if backend == "file" else stack.enter_context(s3_uri(paths))
                app = make_app(tmp / f"home-{backend}", base, names, name=f"bench-{backend}")
                from nubes.testing import Client

                client = Client(app)
                for size in sizes:
                    for api in ("ctx.sql", "ctx.table"):
                        for shape in shapes:
                            print(f"  {size} {backend} {shape} {api}", file=sys.stderr, flush=True)
                            rows.append(measure(client, app, backend, size, shape, api, paths, warm,
                                                args.repeat if backend == "file" else min(args.repeat, 3)))
        print()
        print_table(rows)
        print()
        print("raw = DuckDB on one warm connection (ctx.sql rows) / pl.scan_parquet(...).collect() (ctx.table rows) on the "
              "local file, each with JSON encoding of its answer; s3:// rows compare with the same local-file runs.")
        print("nubes = a warm App via nubes.testing.Client with its defaults: metering on, log line, lineage in a file:// home.")
        misses = [r for r in rows if r.ratio > GOALS[r.api]]
        print(f"goals: {len(rows) - len(misses)}/{len(rows)} rows within; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
