"""Query time and bytes fetched through ``ctx.sql`` / ``ctx.table`` against raw DuckDB / Polars on the same files.

Generates (deterministically, with DuckDB ``COPY ... FROM range()``) a 20-column ``facts`` Parquet file
(ints, doubles, strings, dates, a boolean; ``id`` sorted so a range filter skips row groups; row groups of
100k rows) at 1M and 10M rows, and a 1,000-row ``dims`` file for the join. Then, for each size and each
backend -- ``file://`` (the temp dir) and ``s3://`` on a ``moto_server`` started and stopped here -- it
times four query shapes:

* ``group-by``  -- ``GROUP BY category`` (20 groups) over 3 of the 20 columns;
* ``filter``    -- ``WHERE id BETWEEN $lo AND $hi`` (10,000 rows of the sorted key: one or two row groups);
* ``one-col``   -- ``sum(amount)``: one of the twenty columns (goal: fetch under 15% of the file);
* ``join``      -- facts JOIN dims on ``dim_id``, grouped by the dims' ``segment``.

Each shape runs (a) through nubes: one ``App`` per backend (a warm instance: created once, invoked many
times) with the datasets declared, one route per shape returning ``ctx.sql(...)`` and one returning the
same query as a ``ctx.table(...)`` Polars LazyFrame, invoked with ``nubes.testing.Client`` so routing,
binding, the analytics session, JSON encoding, the log line (formatted, written to /dev/null) and the
lineage record are all in the time; results are small (aggregates) so encoding does not dominate;
(b) raw DuckDB: a fresh ``duckdb.connect()`` + ``read_parquet`` on the local file, fetchall, and also the
same on ONE connection kept across calls ("warm", what a warm function without nubes would do);
(c) raw Polars ``scan_parquet(...).collect()`` on the local file for the ``ctx.table`` variants.

For ``s3://``, DuckDB's httpfs extension cannot be installed here (extensions are not downloadable from
this machine), so the raw comparison is the same local-file run, and also a boto3 ``get_object`` of the
whole object(s) into a temp file + the same raw query on it (what a handler without range reads does).

Times are the median of ``--repeat`` runs (``--s3-repeat`` on s3://) after one untimed warm-up per shape;
nubes and raw runs alternate (rotating which goes first). The ratio is nubes / raw (goal: <= 1.10);
``r(min)`` is best run / best run, a check on a noisy machine. ``fetched`` is what nubes read from storage
in one invocation (the lineage record it wrote: ``reads[*].bytes_read``, cross-checked against the store's
``stats`` delta) against the size of the objects the query reads. Every nubes answer is checked against
the raw answer.

moto_server serves a ranged GET by copying the whole object first, so each range request on an object
costs time proportional to the object's size (measured and printed: ~60 ms on the 1M file, ~0.4 s on the
10M file). nubes' range reads (one request per column chunk per row group) therefore measure moto, not
S3, and at 10M rows a single invocation takes minutes: ``s3://`` at 10M runs only with ``--s3-10m``.

The home store (``storage=``, where lineage goes) is ``mem://``; the cost of one lineage record there
(and, for comparison, in a ``file://`` home store, the default kind) is measured separately and printed.

    .venv/bin/python bench/analytics.py [--sizes 1M,10M] [--repeat 7] [--s3-repeat 3] [--backends file,s3]
        [--s3-10m] [--profile]

``--profile`` profiles one invocation of every shape that misses the 10% goal on ``file://`` (largest
size run): wall time of nubes' main steps (timed on every thread) and cProfile's top functions.
Needs boto3 and ``moto[server]`` for ``s3``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import logging
import math
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

import nubes
from nubes.data import lineage
from nubes.core.logs import JsonFormatter
from nubes.testing import Client

SIZES = {"1M": 1_000_000, "10M": 10_000_000}
ROW_GROUP = 100_000
FILTER_ROWS = 10_000
ONE_COLUMN_GOAL = 0.15
RATIO_GOAL = 1.10
BUCKET = f"nubes-bench-{os.getpid()}"

# -- data --------------------------------------------------------------------------------------------
# 20 columns; hash(range, k) is deterministic, so the files are the same on every run.
FACTS_COLUMNS = """
    range::BIGINT AS id,
    (DATE '2020-01-01' + (range // {per_day})::INTEGER) AS event_date,
    (hash(range, 1) % 200000)::INTEGER AS customer_id,
    (hash(range, 2) % 1000)::INTEGER AS dim_id,
    (hash(range, 3) % 50 + 1)::INTEGER AS qty,
    (hash(range, 4) % 1000000)::BIGINT AS order_code,
    (hash(range, 5) % 100)::SMALLINT AS store_no,
    'cat_' || lpad((hash(range, 6) % 20)::VARCHAR, 2, '0') AS category,
    ['north', 'south', 'east', 'west', 'central', 'apac', 'emea', 'latam'][(hash(range, 7) % 8 + 1)::INTEGER] AS region,
    ['new', 'paid', 'shipped', 'returned'][(hash(range, 8) % 4 + 1)::INTEGER] AS status,
    'sku-' || (hash(range, 9) % 50000)::VARCHAR AS sku,
    round((hash(range, 10) % 1000000) / 100.0, 2)::DOUBLE AS amount,
    round((hash(range, 11) % 100000) / 100.0, 2)::DOUBLE AS price,
    ((hash(range, 12) % 30) / 100.0)::DOUBLE AS discount,
    (hash(range, 13) % 1000000)::DOUBLE / 1000000.0 AS score,
    ((hash(range, 14) % 180000) / 1000.0 - 90.0)::DOUBLE AS lat,
    ((hash(range, 15) % 360000) / 1000.0 - 180.0)::DOUBLE AS lon,
    (hash(range, 16) % 5000)::DOUBLE / 10.0 AS weight,
    (DATE '2020-01-01' + (range // {per_day})::INTEGER + (hash(range, 17) % 14)::INTEGER) AS ship_date,
    (hash(range, 18) % 2 = 0) AS is_member
"""
DIMS_COLUMNS = """
    range::INTEGER AS dim_id,
    ['consumer', 'smb', 'enterprise', 'public', 'partner'][(range % 5 + 1)::INTEGER] AS segment,
    'dim-' || range::VARCHAR AS dim_name,
    (hash(range, 99) % 100)::DOUBLE / 100.0 AS dim_weight
"""


def generate(folder: Path, sizes: list[str]) -> dict[str, Path]:
    """Write ``facts_<size>.parquet`` for each size and ``dims.parquet``; return name -> path."""
    paths = {}
    con = duckdb.connect()
    try:
        for size in sizes:
            rows = SIZES[size]
            path = folder / f"facts_{size.lower()}.parquet"
            cols = FACTS_COLUMNS.format(per_day=max(1, rows // 1500))
            con.execute(f"COPY (SELECT {cols} FROM range({rows})) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP})")
            paths[f"facts_{size.lower()}"] = path
        path = folder / "dims.parquet"
        con.execute(f"COPY (SELECT {DIMS_COLUMNS} FROM range(1000)) TO '{path}' (FORMAT parquet)")
        paths["dims"] = path
    finally:
        con.close()
    return paths


# -- query shapes ------------------------------------------------------------------------------------
SQL = {
    "group-by": "SELECT category, count(*) AS n, sum(amount) AS amount, avg(price) AS avg_price "
    "FROM {facts} GROUP BY category ORDER BY category",
    "filter": "SELECT count(*) AS n, sum(amount) AS amount, min(event_date) AS first_day "
    "FROM {facts} WHERE id BETWEEN $lo AND $hi",
    "one-col": "SELECT sum(amount) AS amount FROM {facts}",
    "join": "SELECT d.segment, count(*) AS n, sum(f.amount) AS amount "
    "FROM {facts} AS f JOIN {dims} AS d ON f.dim_id = d.dim_id GROUP BY d.segment ORDER BY d.segment",
}
SHAPES = list(SQL)


def polars_query(shape: str, facts: pl.LazyFrame, dims: Callable[[], pl.LazyFrame], lo: int, hi: int) -> pl.LazyFrame:
    """The same four shapes on LazyFrames (``dims`` is called only by the join)."""
    if shape == "group-by":
        return (
            facts.group_by("category")
            .agg(pl.len().alias("n"), pl.col("amount").sum().alias("amount"), pl.col("price").mean().alias("avg_price"))
            .sort("category")
        )
    if shape == "filter":
        return facts.filter(pl.col("id").is_between(lo, hi)).select(
            pl.len().alias("n"), pl.col("amount").sum().alias("amount"), pl.col("event_date").min().alias("first_day")
        )
    if shape == "one-col":
        return facts.select(pl.col("amount").sum().alias("amount"))
    if shape == "join":
        return (
            facts.join(dims(), on="dim_id")
            .group_by("segment")
            .agg(pl.len().alias("n"), pl.col("amount").sum().alias("amount"))
            .sort("segment")
        )
    raise ValueError(shape)


def filter_bounds(rows: int) -> tuple[int, int]:
    lo = rows // 2 + 12_345
    return lo, lo + FILTER_ROWS - 1


# -- the nubes app -----------------------------------------------------------------------------------
def make_app(backend: str, base_uri: str, paths: dict[str, Path]) -> nubes.App:
    """One warm instance: datasets declared once, a route per (API, shape); ``size`` is a path parameter."""
    app = nubes.App(f"bench-{backend}", storage=f"mem://bench-home-{backend}-{os.getpid()}", openapi=False)
    for name, path in paths.items():
        app.dataset(name, f"{base_uri}/{path.name}", format="parquet")
    sizes = {n.split("_", 1)[1] for n in paths if n.startswith("facts_")}

    def facts_name(size: str) -> str:
        if size not in sizes:
            raise nubes.HTTPError(404, f"no facts dataset of size {size!r}")
        return f"facts_{size}"

    def sql_route(shape: str) -> None:
        query = SQL[shape]

        @app.get(f"/sql/{shape}/{{size}}", name=f"sql-{shape}")
        def handler(ctx: Any, size: str, lo: int = 0, hi: int = 0) -> Any:
            text = query.format(facts=facts_name(size), dims="dims")
            return ctx.sql(text, lo=lo, hi=hi) if shape == "filter" else ctx.sql(text)

    def polars_route(shape: str) -> None:
        @app.get(f"/polars/{shape}/{{size}}", name=f"polars-{shape}")
        def handler(ctx: Any, size: str, lo: int = 0, hi: int = 0) -> Any:
            return polars_query(shape, ctx.table(facts_name(size)), lambda: ctx.table("dims"), lo, hi)

    for shape in SHAPES:
        sql_route(shape)
        polars_route(shape)

    @app.get("/noop")
    def noop(ctx: Any) -> Any:
        return {"ok": True}

    @app.get("/select1")
    def select1(ctx: Any) -> Any:
        return ctx.sql("SELECT 1 AS one")

    return app


# -- raw runs ----------------------------------------------------------------------------------------
def raw_duckdb(shape: str, facts: Path, dims: Path, lo: int, hi: int) -> list[tuple[Any, ...]]:
    """What a handler without nubes would do: a fresh connection, read_parquet on the local file."""
    text = SQL[shape].format(facts=f"read_parquet('{facts}')", dims=f"read_parquet('{dims}')")
    con = duckdb.connect()
    try:
        if shape == "filter":
            return con.execute(text, {"lo": lo, "hi": hi}).fetchall()
        return con.execute(text).fetchall()
    finally:
        con.close()


class WarmDuckDB:
    """Raw DuckDB the way a warm function without nubes would keep it: one connection, reused by every call."""

    def __init__(self) -> None:
        self.con = duckdb.connect()

    def __call__(self, shape: str, facts: Path, dims: Path, lo: int, hi: int) -> list[tuple[Any, ...]]:
        text = SQL[shape].format(facts=f"read_parquet('{facts}')", dims=f"read_parquet('{dims}')")
        if shape == "filter":
            return self.con.execute(text, {"lo": lo, "hi": hi}).fetchall()
        return self.con.execute(text).fetchall()


def raw_duckdb_frame(shape: str, facts: Path, dims: Path, lo: int, hi: int) -> pl.DataFrame:
    text = SQL[shape].format(facts=f"read_parquet('{facts}')", dims=f"read_parquet('{dims}')")
    con = duckdb.connect()
    try:
        return pl.DataFrame(con.sql(text, params={"lo": lo, "hi": hi}) if shape == "filter" else con.sql(text))
    finally:
        con.close()


def raw_polars(shape: str, facts: Path, dims: Path, lo: int, hi: int) -> pl.DataFrame:
    return polars_query(shape, pl.scan_parquet(facts), lambda: pl.scan_parquet(dims), lo, hi).collect()


# -- measurement helpers -----------------------------------------------------------------------------
def as_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """A frame the way nubes encodes it (JSON records), for comparing answers."""
    return json.loads(frame.write_json())


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def alternate(fns: list[Callable[[], Any]], repeat: int) -> list[list[float]]:
    """Run every fn ``repeat`` times, interleaved, rotating which goes first; return the times of each."""
    times: list[list[float]] = [[] for _ in fns]
    for run in range(repeat):
        order = list(range(len(fns)))
        shift = run % len(fns)
        order = order[shift:] + order[:shift]
        for i in order:
            gc.collect()
            times[i].append(timed(fns[i])[0])
    return times


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


@dataclass
class Row:
    size: str
    backend: str
    shape: str
    api: str
    nubes_ms: float
    raw_ms: float
    raw_label: str
    download_ms: float | None = None  # s3: boto3 whole-object GET + the raw query
    warm_ms: float | None = None  # ctx.sql rows: raw DuckDB on one connection reused across calls
    min_ratio: float = math.nan  # best nubes run / best raw run (less sensitive to a noisy machine than medians)
    fetched: int = 0
    total: int = 0
    requests: int = 0
    ok: bool = True
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.nubes_ms / self.raw_ms

    @property
    def fraction(self) -> float:
        return self.fetched / self.total if self.total else float("nan")


@dataclass
class Backend:
    name: str
    base_uri: str
    download: Callable[[list[str], Path], None] | None = None  # s3 only: GET whole objects into a folder
    request_ms: dict[str, float] = field(default_factory=dict)  # s3 only: moto's time for a 1-byte ranged GET, by object
    notes: list[str] = field(default_factory=list)


# -- one backend -------------------------------------------------------------------------------------
class Errors(logging.Handler):
    """Keeps the exception of each failed invocation by request id (the app logs it; the log goes to /dev/null)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.by_request: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "nubes", None) or {}
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            self.by_request[str(fields.get("request_id"))] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"


ERRORS = Errors()


class RouteFailed(RuntimeError):
    pass


class NubesCall:
    """Invoke a route and read what the invocation fetched (its lineage record, the stores' stats)."""

    def __init__(self, app: nubes.App, client: Client) -> None:
        self.app = app
        self.client = client

    def __call__(self, path: str, params: dict[str, Any]) -> Any:
        response = self.client.get(path, params=params)
        if response.status_code != 200:
            rid = response.headers.get("x-nubes-request-id", "")
            cause = ERRORS.by_request.get(rid) or response.text[:300]
            raise RouteFailed(f"HTTP {response.status_code} ({cause})")
        return response

    def fetched(self, response: Any) -> tuple[int, int]:
        """(bytes read, total size of the objects read) by the invocation that answered ``response``."""
        entry = next(lineage.history(self.app.storage, limit=1))
        rid = response.headers.get("x-nubes-request-id")
        if entry.get("request_id") != rid:
            raise RuntimeError(f"the newest lineage record is {entry.get('request_id')}, not this invocation's {rid}")
        read = sum(r["bytes_read"] for r in entry["reads"])
        total = sum(o["size"] for r in entry["reads"] for o in r["objects"])
        return read, total


def store_stats(app: nubes.App) -> dict[str, Any]:
    """Bytes read and requests (all but PUT) of the data stores the app has opened (not its home store)."""
    out: dict[str, Any] = {"bytes_read": 0, "requests": 0}
    for store in list(app._stores.values()):
        if store is app.storage:
            continue
        snap = store.stats.snapshot()
        out["bytes_read"] += snap["bytes_read"]
        out["requests"] += sum(n for op, n in snap["ops"].items() if op != "put")
    return out


def measure(
    call: NubesCall,
    backend: Backend,
    size: str,
    shape: str,
    api: str,
    paths: dict[str, Path],
    scratch: Path | None,
    repeat: int,
    warm: WarmDuckDB | None,
) -> Row:
    key = size.lower()
    facts, dims = paths[f"facts_{key}"], paths["dims"]
    lo, hi = filter_bounds(SIZES[size])
    route = f"/{'sql' if api == 'ctx.sql' else 'polars'}/{shape}/{key}"
    params = {"lo": lo, "hi": hi} if shape == "filter" else {}
    if api == "ctx.sql":
        expected = as_records(raw_duckdb_frame(shape, facts, dims, lo, hi))
        label, raw_fn = "duckdb", raw_duckdb
    else:
        expected = as_records(raw_polars(shape, facts, dims, lo, hi))
        label, raw_fn = "polars", raw_polars

    def raw() -> Any:
        return raw_fn(shape, facts, dims, lo, hi)

    row = Row(size=size, backend=backend.name, shape=shape, api=api, nubes_ms=math.nan, raw_ms=math.nan, raw_label=label)
    # The warm-up call (untimed) is also the one measured for bytes and checked against the raw answer: every
    # invocation opens a new analytics session (no range cache survives it), so its reads are those of any call.
    before = store_stats(call.app)
    try:
        response = call(route, params)
    except RouteFailed as exc:
        row.raw_ms = median_ms(alternate([raw], repeat)[0])
        row.ok = False
        row.note = f"nubes FAILED: {exc}"
        return row
    after = store_stats(call.app)
    row.fetched, row.total = call.fetched(response)
    row.requests = after["requests"] - before["requests"]
    stats_bytes = after["bytes_read"] - before["bytes_read"]
    row.ok = same(response.json(), expected)
    notes = [] if row.ok else [f"ANSWER DIFFERS: nubes {response.text[:120]} raw {json.dumps(expected)[:120]}"]
    if stats_bytes != row.fetched:
        notes.append(f"store stats say {stats_bytes:,} B read")

    fns: list[Callable[[], Any]] = [lambda: call(route, params), raw]
    if warm is not None and api == "ctx.sql":
        warm(shape, facts, dims, lo, hi)  # warm-up
        fns.append(lambda: warm(shape, facts, dims, lo, hi))
    if backend.download is not None and scratch is not None:
        names = [facts.name] + ([dims.name] if shape == "join" else [])
        download = backend.download

        def download_then_raw() -> Any:
            download(names, scratch)
            return raw_fn(shape, scratch / facts.name, scratch / dims.name, lo, hi)

        download_then_raw()  # warm-up
        fns.append(download_then_raw)
    times = alternate(fns, repeat)
    row.nubes_ms, row.raw_ms = median_ms(times[0]), median_ms(times[1])
    row.min_ratio = min(times[0]) / min(times[1])
    extra = times[2:]
    if warm is not None and api == "ctx.sql":
        row.warm_ms = median_ms(extra.pop(0))
    if extra:
        row.download_ms = median_ms(extra.pop(0))
    if facts.name in backend.request_ms:
        floor = row.requests * backend.request_ms[facts.name]
        notes.append(f"reqs x moto's {backend.request_ms[facts.name]:.0f} ms/request = {floor:.0f} ms")
    row.note = "; ".join(notes)
    return row


def run_backend(
    backend: Backend, paths: dict[str, Path], sizes: list[str], repeat: int, progress: Callable[[str], None]
) -> list[Row]:
    """Every shape through one warm App for this backend (created once, invoked many times)."""
    app = make_app(backend.name, backend.base_uri, paths)
    call = NubesCall(app, Client(app))
    warm = WarmDuckDB()
    rows: list[Row] = []
    for size in sizes:
        scratch: Path | None = None
        if backend.download is not None:
            scratch = Path(tempfile.mkdtemp(prefix="nubes-bench-dl-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        try:
            for api in ("ctx.sql", "ctx.table"):
                for shape in SHAPES:
                    progress(f"{size} {backend.name} {shape} {api}")
                    rows.append(measure(call, backend, size, shape, api, paths, scratch, repeat, warm))
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
    return rows


def overheads(app_paths: dict[str, Path], repeat: int) -> list[tuple[str, float, float]]:
    """Fixed per-invocation costs on a warm file:// instance: an empty route, ctx.sql('SELECT 1')."""
    folder = next(iter(app_paths.values())).parent
    app = make_app("overhead", folder.as_uri(), app_paths)
    client = Client(app)
    n = max(repeat * 10, 50)
    client.get("/noop")
    client.get("/select1")

    def raw_select1() -> Any:
        con = duckdb.connect()
        try:
            return con.execute("SELECT 1 AS one").fetchall()
        finally:
            con.close()

    noop = alternate([lambda: client.get("/noop")], n)[0]
    sel, raw = alternate([lambda: client.get("/select1"), raw_select1], n)
    return [
        ("empty route (routing, binding, JSON, log line)", median_ms(noop), 0.0),
        ("ctx.sql('SELECT 1') (session, connection, parse, encode)", median_ms(sel), median_ms(raw)),
    ]


def lineage_cost(tmp: Path, repeat: int) -> list[tuple[str, float, int]]:
    """Median time of one lineage record (a typical entry) in a mem:// and in a file:// home store."""
    from nubes import storage

    entry = {
        "request_id": "0" * 32,
        "app": "bench",
        "route": "/sql/one-col/{size}",
        "reads": [
            {
                "dataset": "facts_1m",
                "store": "s3://bucket",
                "objects": [{"key": "facts_1m.parquet", "etag": '"0123456789abcdef0123456789abcdef-7"', "size": 55_395_539,
                             "bytes_read": 5_600_000}],
                "bytes_read": 5_600_000,
            }
        ],
        "writes": [],
    }
    size = len(json.dumps({"time": "2026-01-01T00:00:00.000000+00:00", **entry}).encode())
    out = []
    for label, uri in (("mem:// home (this bench)", f"mem://bench-lineage-{os.getpid()}"),
                       ("file:// home (the default kind)", (tmp / "home").as_uri())):
        store = storage.open(uri)
        times = []
        for i in range(max(repeat * 20, 100)):
            e = {**entry, "request_id": f"{i:032x}"}
            times.append(timed(lambda e=e, store=store: lineage.record(store, e))[0])
        out.append((label, median_ms(times), size))
    return out


# -- s3 on moto --------------------------------------------------------------------------------------
@contextlib.contextmanager
def moto_backend(paths: dict[str, Path], progress: Callable[[str], None]) -> Iterator[Backend]:
    """Start moto_server, upload the files, point the AWS SDK at it for the block; stop it after."""
    from nubes.testing.servers.moto import MotoServer

    server = MotoServer()
    # keep large objects in moto's memory (its default spills objects over ~5 MB to temp files)
    saved = os.environ.get("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE")
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(4 * 1024**3)
    try:
        server.start()
    finally:
        if saved is None:
            os.environ.pop("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", None)
        else:
            os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = saved
    try:
        with server.environment():
            import boto3

            env = server.env()
            client = boto3.client(
                "s3",
                endpoint_url=env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3"),
                region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            )
            client.create_bucket(Bucket=BUCKET)
            for path in paths.values():
                progress(f"upload {path.name} to moto")
                with path.open("rb") as f:
                    client.put_object(Bucket=BUCKET, Key=path.name, Body=f)

            def download(names: list[str], folder: Path) -> None:
                for name in names:
                    body = client.get_object(Bucket=BUCKET, Key=name)["Body"]
                    with (folder / name).open("wb") as out:
                        shutil.copyfileobj(body, out, 8 * 1024 * 1024)

            backend = Backend("s3", f"s3://{BUCKET}", download)
            for name, path in paths.items():
                if not name.startswith("facts_"):
                    continue
                lat = []
                for _ in range(5):
                    t = timed(lambda key=path.name: client.get_object(Bucket=BUCKET, Key=key, Range="bytes=0-0")["Body"].read())[0]
                    lat.append(t)
                backend.request_ms[path.name] = median_ms(lat)
                backend.notes.append(
                    f"moto_server answers a 1-byte ranged GET of {path.name} ({path.stat().st_size / 1e6:.0f} MB) in "
                    f"{median_ms(lat):.0f} ms (median of 5): it copies the whole object for every ranged GET, so on s3:// "
                    "the time of nubes' range reads is mostly moto's (see the note column); real S3 has no such cost."
                )
            try:
                yield backend
            finally:
                client.close()
    finally:
        server.stop()


# -- profiling ---------------------------------------------------------------------------------------
def profile_invocation(app: nubes.App, route: str, params: dict[str, Any], top: int = 10) -> str:
    """Where one invocation's time goes: wall time of nubes' main steps (timed by wrappers, on every thread,
    since DuckDB runs the storage callbacks and Polars the IO source on their own threads), then cProfile's
    top functions by self time (main thread only: DuckDB's and Polars' execution show as the C call waiting)."""
    import importlib

    steps = [  # (module, attribute path, label); missing ones (the code moved) are skipped
        ("nubes.data.bridge", "_new_connection", "new DuckDB connection (bridge.py _new_connection)"),
        ("nubes.data.sqlparse", "shape", "parse the query for dataset names (sqlparse.py shape)"),
        ("nubes.data.session", "Session.view", "resolve + CREATE VIEW, binds read_parquet (analytics.py Session.view)"),
        ("nubes.data.bridge", "Bridge.scan", "ctx.table: bind + schema (bridge.py Bridge.scan)"),
        ("nubes.data.bridge", "Bridge.query", "Polars IO source: DuckDB query -> DataFrame (bridge.py Bridge.query)"),
        ("nubes.core.encoding", "encode", "encode the answer, runs the lazy query (encoding.py encode)"),
        ("nubes.data.bridge", "_Core.get_range", "  storage range reads, summed over DuckDB's threads (bridge.py _Core.get_range)"),
        ("nubes.data.bridge", "_Core.head", "  storage HEADs, summed over threads (bridge.py _Core.head)"),
        ("nubes.data.lineage", "record", "lineage record (lineage.py record)"),
        ("nubes.data.bridge", "Bridge.close", "close the DuckDB connection (bridge.py Bridge.close)"),
    ]
    client = Client(app)
    client.get(route, params=params)  # warm
    spent: dict[str, list[float]] = {}
    lock = threading.Lock()
    patched: list[tuple[Any, str, Any]] = []

    def wrap(label: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                with lock:
                    spent.setdefault(label, []).append(time.perf_counter() - t0)

        return wrapper

    for module_name, path, label in steps:
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for part in parents:
                owner = getattr(owner, part)
            original = getattr(owner, attr)
        except (ImportError, AttributeError):
            continue
        patched.append((owner, attr, original))
        setattr(owner, attr, wrap(label, original))
    profiler = cProfile.Profile()
    try:
        t0 = time.perf_counter()
        profiler.enable()
        response = client.get(route, params=params)
        profiler.disable()
        wall = time.perf_counter() - t0
    finally:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)
    lines = [f"  GET {route} {params or ''} -> {response.status_code}: {wall * 1000:.1f} ms wall"]
    for _, _, label in steps:
        if label in spent:
            total = sum(spent[label])
            lines.append(f"    {label:<78} {total * 1000:8.1f} ms {total / wall:6.1%}  ({len(spent[label])} calls)")
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = sorted(
        ((tt, ct, nc, filename, line, fn) for (filename, line, fn), (cc, nc, tt, ct, callers)
         in stats.stats.items()),  # type: ignore[attr-defined]
        reverse=True,
    )
    lines.append(f"    cProfile, main thread, top {top} by self time:")
    for tt, ct, nc, filename, line, fn in rows[:top]:
        where = filename
        for marker in ("/site-packages/", "/src/"):
            if marker in where:
                where = where.split(marker, 1)[1]
        lines.append(f"    {tt * 1000:8.1f} ms {tt / wall:6.1%}  {where}:{line} {fn} ({nc} calls)")
    return "\n".join(lines)


# -- output ------------------------------------------------------------------------------------------
def mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def print_table(rows: list[Row]) -> None:
    def opt(ms: float | None, nubes_ms: float) -> str:
        return f"{ms:8.1f} {nubes_ms / ms:5.2f}x" if ms is not None and not math.isnan(nubes_ms) else f"{'-':>8} {'-':>6}"

    head = (f"{'size':<4} {'backend':<7} {'shape':<8} {'api':<9} {'nubes ms':>8} {'raw ms':>7} {'(raw)':<6} {'ratio':>6} "
            f"{'<=1.10':<6} {'r(min)':>6} {'warm ms':>8} {'ratio':>6} {'dl+raw':>8} {'ratio':>6} {'fetched MB':>10} {'of MB':>6} {'%':>6} "
            f"{'<15%':<5} {'reqs':>4} {'answer':<6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        failed = math.isnan(r.nubes_ms)
        goal = "ok" if r.ratio <= RATIO_GOAL else "MISS"
        one = ("ok" if r.fraction < ONE_COLUMN_GOAL else "MISS") if r.shape == "one-col" and not failed else ""
        nubes_ms = f"{'-':>8}" if failed else f"{r.nubes_ms:8.1f}"
        ratio = f"{'-':>6}" if failed else f"{r.ratio:5.2f}x"
        fetched = (f"{'-':>10} {'-':>6} {'-':>6}" if failed else f"{mb(r.fetched):>10} {mb(r.total):>6} {r.fraction:6.1%}")
        reqs = f"{'-':>4}" if failed else f"{r.requests:4}"
        minr = f"{'-':>6}" if failed else f"{r.min_ratio:5.2f}x"
        answer = "-" if failed else ("same" if r.ok else "DIFF")
        print(
            f"{r.size:<4} {r.backend:<7} {r.shape:<8} {r.api:<9} {nubes_ms} {r.raw_ms:7.1f} {r.raw_label:<6} {ratio} {goal:<6} {minr} "
            f"{opt(r.warm_ms, r.nubes_ms)} {opt(r.download_ms, r.nubes_ms)} {fetched} {one:<5} {reqs} {answer:<6} {r.note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M", help="comma-separated, of: " + ", ".join(SIZES))
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per measurement (median reported)")
    parser.add_argument("--backends", default="file,s3", help="comma-separated, of: file, s3")
    parser.add_argument("--s3-repeat", type=int, default=3, help="timed runs per s3:// measurement (moto is slow)")
    parser.add_argument("--s3-10m", action="store_true", help="also run s3:// at 10M rows (minutes per invocation on moto)")
    parser.add_argument("--profile", action="store_true", help="cProfile one invocation of each shape missing the 10%% goal")
    args = parser.parse_args()
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; use {', '.join(SIZES)}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(backends) - {"file", "s3"}:
        parser.error("backends are file and s3")

    # one JSON log line per invocation is part of the path: formatted as usual, written to /dev/null
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives for the run
    handler = logging.StreamHandler(devnull)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("nubes")
    log.addHandler(handler)
    log.addHandler(ERRORS)
    log.setLevel(logging.INFO)
    log.propagate = False

    started = time.perf_counter()

    def progress(what: str) -> None:
        print(f"  [{time.perf_counter() - started:6.1f}s] {what}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="nubes-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        data.mkdir()
        t0 = time.perf_counter()
        paths = generate(data, sizes)
        gen_s = time.perf_counter() - t0
        con = duckdb.connect()
        print(f"nubes analytics bench: {os.cpu_count()} CPUs, duckdb {duckdb.__version__}, polars {pl.__version__}, "
              f"Python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f} at start")
        print(f"  median of {args.repeat} runs (s3://: {min(args.repeat, args.s3_repeat)}) after 1 warm-up per shape; "
              f"data generated in {gen_s:.1f}s")
        for path in paths.values():
            groups, cols, nrows = con.execute(
                f"SELECT count(DISTINCT row_group_id), count(DISTINCT path_in_schema), "
                f"(SELECT count(*) FROM read_parquet('{path}')) FROM parquet_metadata('{path}')"
            ).fetchone()
            print(f"  {path.name}: {nrows:,} rows x {cols} columns, {path.stat().st_size / 1e6:.1f} MB, {groups} row groups")
        con.close()

        rows: list[Row] = []
        notes: list[str] = []
        if "file" in backends:
            rows += run_backend(Backend("file", data.as_uri()), paths, sizes, args.repeat, progress)
        if "s3" in backends:
            s3_sizes = [s for s in sizes if s != "10M" or args.s3_10m]
            s3_paths = {n: p for n, p in paths.items() if not n.startswith("facts_") or n.split("_", 1)[1].upper() in s3_sizes}
            if "10M" in sizes and "10M" not in s3_sizes:
                notes.append("s3:// at 10M rows skipped (pass --s3-10m): moto's per-request cost on the 550 MB object "
                             "makes one invocation take minutes; nubes issues the same range reads as on file:// (10M file rows).")
            if s3_sizes:
                with moto_backend(s3_paths, progress) as backend:
                    rows += run_backend(backend, s3_paths, s3_sizes, min(args.repeat, args.s3_repeat), progress)
                    notes += backend.notes
        for r in rows:  # a ctx.table filter reading far more than the same filter in SQL was not pushed down
            twin = next((t for t in rows if (t.size, t.backend, t.shape, t.api) == (r.size, r.backend, "filter", "ctx.sql")), None)
            if r.shape == "filter" and r.api == "ctx.table" and twin and twin.total and r.fetched > 2 * twin.fetched:
                r.note = "; ".join(x for x in (f"filter not pushed into the scan (ctx.sql reads {twin.fraction:.1%})", r.note) if x)
        progress("overheads")
        fixed = overheads(paths, args.repeat)
        costs = lineage_cost(tmp, args.repeat)

        print()
        print_table(rows)
        print()
        print("raw    = a fresh duckdb.connect() + read_parquet on the local file, fetchall (ctx.sql rows); polars.scan_parquet "
              "on the local file, collect (ctx.table rows).")
        print("         For s3:// it is the same local-file run: DuckDB's httpfs extension cannot be installed on this machine "
              "(no extension download), so raw DuckDB cannot read s3:// here.")
        print("warm   = raw DuckDB on ONE connection kept across calls (what a warm function without nubes would do); "
              "nubes keeps one database per warm app and takes a cursor per invocation, but reads through Python range reads.")
        print("dl+raw = s3:// only: boto3 get_object of the whole object(s) into a temp file on /dev/shm + the same raw query.")
        print("ratio  = nubes / that baseline, medians (goal: nubes / raw <= 1.10); r(min) = best nubes run / best raw run. fetched = bytes nubes read from storage in one "
              "invocation (its lineage record, reads[*].bytes_read; equal to the store's stats delta unless noted);")
        print("         of = size of the objects the query reads; reqs = storage requests (HEAD + ranged GETs) in that "
              "invocation; answer = nubes' JSON equals the raw answer.")
        print("         fetched varies between runs for multi-column shapes: DuckDB's Parquet prefetch sometimes reads a "
              "row group's needed column chunks as one range that spans the columns between them (one-col is stable).")
        one = [r for r in rows if r.shape == "one-col"]
        if one:
            print(f"one-column goal (< {ONE_COLUMN_GOAL:.0%} of the file): "
                  + ", ".join(f"{r.size} {r.backend} {r.api} {r.fraction:.1%}" for r in one))
        misses = [r for r in rows if not r.ratio <= RATIO_GOAL]
        print(f"10% goal: {len(rows) - len(misses)}/{len(rows)} rows within; misses: "
              + (", ".join(f"{r.size} {r.backend} {r.shape} {r.api} " + ("FAILED" if math.isnan(r.ratio) else f"{r.ratio:.2f}x")
                         for r in misses) or "none"))
        for note in notes:
            print("note: " + note)
        print()
        print("fixed per-invocation costs (warm file:// instance):")
        for label, ms, raw_ms in fixed:
            print(f"  {label:<58} {ms:7.2f} ms" + (f"   raw duckdb.connect()+SELECT 1: {raw_ms:.2f} ms" if raw_ms else ""))
        print("lineage record per invocation (one JSON object, put if-none-match):")
        for label, ms, size in costs:
            print(f"  {label:<58} {ms:7.3f} ms   ({size} bytes)")

        if args.profile:
            biggest = sizes[-1]
            targets = [r for r in rows if r.backend == "file" and r.size == biggest and r.ratio > RATIO_GOAL]  # nan: failed
            if targets:
                print()
                print(f"profiles (file://, {biggest}, one invocation each; cProfile sees the main thread only, so "
                      "DuckDB's execution shows as the C call that waits for it):")
                app = make_app("profile", data.as_uri(), paths)
                lo, hi = filter_bounds(SIZES[biggest])
                for r in targets:
                    route = f"/{'sql' if r.api == 'ctx.sql' else 'polars'}/{r.shape}/{biggest.lower()}"
                    print(profile_invocation(app, route, {"lo": lo, "hi": hi} if r.shape == "filter" else {}))
        print(f"\ntotal bench time {time.perf_counter() - started:.0f}s; load average {os.getloadavg()[0]:.1f} at the end "
              "(other processes share this machine: medians of a few runs move by +-30%, see ratio(min))")


if __name__ == "__main__":
    main()
