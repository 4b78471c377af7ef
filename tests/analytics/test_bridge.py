"""The storage -> analytics bridge: DuckDB and Polars over mem:// and file:// with range reads."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import nubes.storage as storage
from nubes.data.engine.bridge import Bridge, connect
from nubes.data.engine.filesystem import NubesFileSystem
from nubes.data.formats import infer_format
from nubes.errors import AccessDenied, ConfigError, NotFound
from nubes.storage.base import ObjectStore
from nubes.storage.memory import MemoryStore

ROWS = 200_000
ROW_GROUP = 20_000
COLUMNS = 20


@pytest.fixture(params=["mem", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "mem":
        name = f"bridge-{uuid.uuid4().hex}"
        yield storage.open(f"mem://{name}/pre/fix")
        MemoryStore.drop(name)
    else:
        root = tmp_path / "store"
        root.mkdir()
        yield storage.open(f"file://{root}")


@pytest.fixture
def bridge(store: ObjectStore) -> Iterator[Bridge]:
    with Bridge(store) as b:
        yield b


def _local(tmp_path: Path, name: str, select: str, options: str = "") -> Path:
    path = tmp_path / name
    con = duckdb.connect()
    con.sql(f"COPY ({select}) TO '{path}' {options}")
    con.close()
    return path


def _upload(store: ObjectStore, key: str, path: Path) -> None:
    with open(path, "rb") as f:
        store.put(key, f)


SAMPLE = (
    "SELECT range AS id, range % 7 AS k, (range * 1.5)::DOUBLE AS x, 'name-' || range AS s, "
    "DATE '2024-01-01' + (range % 300)::INTEGER AS d FROM range(5000)"
)


@pytest.fixture(scope="module")
def wide_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 columns x 200k rows in 10 row groups; c0 is sorted, the others pseudo-random."""
    path = tmp_path_factory.mktemp("wide") / "wide.parquet"
    cols = ["range AS c0"] + [
        f"(hash(range * {i}) % 1000000)::BIGINT AS c{i}" if i % 2 else f"(hash(range + {i}) % 100000)::DOUBLE AS c{i}"
        for i in range(1, COLUMNS)
    ]
    con = duckdb.connect()
    con.sql(
        f"COPY (SELECT {', '.join(cols)} FROM range({ROWS})) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP})"
    )
    con.close()
    return path


# -- reading: same answers as DuckDB on a local file --------------------------------------------------
@pytest.mark.parametrize(
    ("key", "options", "reader"),
    [
        ("t/sample.parquet", "(FORMAT parquet)", "read_parquet"),
        ("t/sample.csv", "(FORMAT csv)", "read_csv"),
        ("t/sample.ndjson", "(FORMAT json)", "read_json"),
        ("t/sample.jsonl", "(FORMAT json)", "read_json"),
    ],
)
def test_formats_match_local_duckdb(
    bridge: Bridge, store: ObjectStore, tmp_path: Path, key: str, options: str, reader: str
) -> None:
    local = _local(tmp_path, key.rsplit("/", 1)[1], SAMPLE, options)
    _upload(store, key, local)
    query = "SELECT k, count(*), sum(id), min(s), max(d), sum(x) FROM {} GROUP BY k ORDER BY k"
    expected = duckdb.connect().sql(query.format(f"{reader}('{local}')")).fetchall()
    assert bridge.sql(query.format(bridge.read_sql(key))).fetchall() == expected
    assert bridge.read(key).order("id").fetchall() == duckdb.connect().sql(
        f"SELECT * FROM {reader}('{local}') ORDER BY id"
    ).fetchall()
    # the URL form works in hand-written SQL too
    assert bridge.duckdb().sql(f"SELECT count(*) FROM {reader}('{bridge.path(key)}')").fetchall()[0] == (5000,)


def test_glob_over_several_files(bridge: Bridge, store: ObjectStore, tmp_path: Path) -> None:
    for i in range(4):
        _upload(store, f"parts/p{i}.parquet", _local(tmp_path, f"p{i}.parquet", f"SELECT range + {i * 100} AS v FROM range(100)"))
    _upload(store, "parts/notes.csv", _local(tmp_path, "n.csv", "SELECT 1 AS v"))
    assert bridge.read("parts/*.parquet").aggregate("count(*), sum(v)").fetchall()[0] == (400, sum(range(400)))
    assert bridge.read("**/*.parquet").aggregate("count(*)").fetchall()[0] == (400,)
    assert bridge.read(["parts/p0.parquet", "parts/p3.parquet"]).aggregate("count(*)").fetchall()[0] == (200,)


def test_hive_partitions(bridge: Bridge, store: ObjectStore, tmp_path: Path) -> None:
    for year in (2023, 2024):
        for month in (1, 2, 3):
            local = _local(tmp_path, f"{year}-{month}.parquet", f"SELECT range AS v FROM range({year - 2000 + month})")
            _upload(store, f"events/year={year}/month={month}/part-0.parquet", local)
    rel = bridge.read("events/*/*/*.parquet", hive_partitioning=True)
    assert set(rel.columns) == {"v", "year", "month"}
    rows = bridge.sql(
        f"SELECT year, month, count(*) FROM {bridge.read_sql('events/**/*.parquet', hive_partitioning=True)} "
        "WHERE year = 2024 GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert rows == [(2024, 1, 25), (2024, 2, 26), (2024, 3, 27)]


def test_two_stores_in_one_query(tmp_path: Path) -> None:
    a, b = f"bridge-a-{uuid.uuid4().hex}", f"bridge-b-{uuid.uuid4().hex}"
    left, right = storage.open(f"mem://{a}"), storage.open(f"mem://{b}")
    _upload(left, "l.parquet", _local(tmp_path, "l.parquet", "SELECT range AS id, range * 2 AS x FROM range(10)"))
    _upload(right, "r.csv", _local(tmp_path, "r.csv", "SELECT range AS id, 'n' || range AS n FROM range(5)"))
    with Bridge({"left": left, "right": right}) as br:
        rows = br.sql(
            f"SELECT sum(x) FROM {br.read_sql('l.parquet', store='left')} JOIN "
            f"{br.read_sql('r.csv', store='right')} USING (id)"
        ).fetchall()[0]
        assert rows == (20,)
        with pytest.raises(ConfigError):
            br.path("l.parquet")  # ambiguous without store=
    MemoryStore.drop(a)
    MemoryStore.drop(b)


def test_connect_returns_a_ready_connection(store: ObjectStore, tmp_path: Path) -> None:
    _upload(store, "c.parquet", _local(tmp_path, "c.parquet", "SELECT 42 AS answer"))
    con = connect({"s": store})
    assert con.sql("SELECT answer FROM 'nubes://s/c.parquet'").fetchall()[0] == (42,)


# -- range reads ---------------------------------------------------------------------------------------
def test_one_column_of_twenty_reads_a_fraction(store: ObjectStore, wide_file: Path) -> None:
    _upload(store, "wide/w.parquet", wide_file)
    size = wide_file.stat().st_size
    expected = duckdb.connect().sql(f"SELECT sum(c7) FROM '{wide_file}'").fetchall()[0]
    before = store.stats.bytes_read
    with Bridge(store) as br, br.measure() as m:
        assert br.read("wide/w.parquet").aggregate("sum(c7)").fetchall()[0] == expected
    fetched = store.stats.bytes_read - before
    assert fetched == m.bytes_read
    assert 0 < fetched < 0.15 * size, f"read {fetched} of {size} bytes"


def test_filter_on_sorted_column_skips_row_groups(store: ObjectStore, wide_file: Path) -> None:
    _upload(store, "wide/w.parquet", wide_file)
    with Bridge(store, cache_bytes=0) as br:
        with br.measure() as whole:
            br.read("wide/w.parquet").aggregate("sum(c3)").fetchall()[0]
        with br.measure() as pruned:
            got = br.sql(f"SELECT sum(c3) FROM {br.read_sql('wide/w.parquet')} WHERE c0 < 1000").fetchall()[0]
    expected = duckdb.connect().sql(f"SELECT sum(c3) FROM '{wide_file}' WHERE c0 < 1000").fetchall()[0]
    assert got == expected
    # one row group of ten for c0 and c3, plus the footer
    assert pruned.bytes_read < 0.4 * whole.bytes_read, (pruned.result(), whole.result())


def test_repeated_ranges_are_fetched_once_per_query(store: ObjectStore, tmp_path: Path) -> None:
    _upload(store, "r.csv", _local(tmp_path, "r.csv", SAMPLE))
    size = store.head("r.csv").size
    with Bridge(store) as br, br.measure() as m:
        br.read("r.csv").aggregate("count(*)").fetchall()[0]
    assert m.bytes_read == size  # DuckDB samples at bind and reads again at execution; storage sees one GET
    assert m.cache_hits >= 1
    with Bridge(store, cache_bytes=0) as br, br.measure() as m:
        br.read("r.csv").aggregate("count(*)").fetchall()[0]
    assert m.bytes_read >= size


# -- Polars ----------------------------------------------------------------------------------------------
def test_polars_scan_matches_and_pushes_down(store: ObjectStore, wide_file: Path) -> None:
    _upload(store, "wide/w.parquet", wide_file)
    size = wide_file.stat().st_size
    with Bridge(store) as br:
        lf = br.scan("wide/w.parquet")
        assert isinstance(lf, pl.LazyFrame)
        assert lf.collect_schema().names() == [f"c{i}" for i in range(COLUMNS)]
    local = pl.scan_parquet(wide_file)
    with Bridge(store) as br, br.measure() as m:
        got = br.scan("wide/w.parquet").select(pl.col("c5").sum()).collect()
    assert_frame_equal(got, local.select(pl.col("c5").sum()).collect())
    assert m.bytes_read < 0.15 * size
    with Bridge(store) as br:
        query = lambda lf: lf.filter(pl.col("c0").is_between(10, 20)).select("c0", "c2").sort("c0")  # noqa: E731
        assert_frame_equal(query(br.scan("wide/w.parquet")).collect(), query(local).collect())
        # a filter DuckDB cannot express is applied by Polars, even on a column not selected
        odd = lambda lf: lf.filter(pl.col("c1").cast(pl.String).str.ends_with("1")).select("c0").head(5)  # noqa: E731
        assert_frame_equal(odd(br.scan("wide/w.parquet")).collect(), odd(local).collect())
        assert br.scan("wide/w.parquet").head(3).collect().height == 3


@pytest.mark.parametrize("key", ["p/s.csv", "p/s.ndjson", "p/s.parquet"])
def test_polars_scan_formats(bridge: Bridge, store: ObjectStore, tmp_path: Path, key: str) -> None:
    fmt = infer_format(key)
    local = _local(tmp_path, key.rsplit("/", 1)[1], SAMPLE, f"(FORMAT {'json' if fmt == 'ndjson' else fmt})")
    _upload(store, key, local)
    expected = pl.DataFrame(duckdb.connect().sql(f"SELECT * FROM '{local}' ORDER BY id"))
    assert_frame_equal(bridge.scan(key).sort("id").collect(), expected)


# -- writing ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["parquet", "csv", "ndjson"])
@pytest.mark.parametrize("kind", ["relation", "dataframe", "lazyframe", "sql"])
def test_write_round_trips(bridge: Bridge, store: ObjectStore, fmt: str, kind: str) -> None:
    frame = pl.DataFrame({"id": list(range(1000)), "name": [f"n{i}" for i in range(1000)], "x": [i / 4 for i in range(1000)]})
    data: object = {
        "relation": bridge.sql("SELECT range AS id, 'n' || range AS name, range / 4 AS x FROM range(1000)"),
        "dataframe": frame,
        "lazyframe": frame.lazy(),
        "sql": "SELECT range AS id, 'n' || range AS name, range / 4 AS x FROM range(1000)",
    }[kind]
    key = f"out/result.{ {'parquet': 'parquet', 'csv': 'csv', 'ndjson': 'ndjson'}[fmt] }".replace(" ", "")
    with bridge.measure() as m:
        info = bridge.write(key, data)  # type: ignore[arg-type]
    assert info.key == key and info.size == store.head(key).size > 0
    assert m.bytes_written == info.size and m.ops.get("put") == 1
    back = bridge.scan(key).sort("id").collect()
    assert back["id"].to_list() == list(range(1000))
    assert back["name"].to_list() == frame["name"].to_list()
    assert back["x"].to_list() == frame["x"].to_list()


def test_write_replaces_and_readers_of_same_bridge_see_new(bridge: Bridge, store: ObjectStore) -> None:
    bridge.write("v.parquet", "SELECT 1 AS v")
    assert bridge.read("v.parquet").fetchall() == [(1,)]
    bridge.write("v.parquet", "SELECT range AS v FROM range(2, 5)")
    assert bridge.read("v.parquet").fetchall() == [(2,), (3,), (4,)]


def test_failing_serialization_writes_nothing(bridge: Bridge, store: ObjectStore) -> None:
    failing = "SELECT CASE WHEN range > 50000 THEN error('boom') ELSE range END AS v FROM range(100000)"
    with pytest.raises(duckdb.Error, match="boom"):
        bridge.write("bad.parquet", failing)
    assert not store.exists("bad.parquet")
    bridge.write("keep.csv", "SELECT 1 AS v")
    old = store.get("keep.csv")
    broken = pl.LazyFrame({"a": [1, 2]}).select(pl.col("a").map_batches(lambda s: 1 / 0, return_dtype=pl.Int64))
    with pytest.raises(Exception, match="division"):
        bridge.write("keep.csv", broken)
    assert store.get("keep.csv") == old  # the old object is intact
    assert [i.key for i in store.list("")] == ["keep.csv"]


def test_concurrent_readers_see_old_or_new(bridge: Bridge, store: ObjectStore) -> None:
    old = pl.DataFrame({"v": list(range(20_000))})
    new = pl.DataFrame({"v": list(range(5))})
    bridge.write("flip.csv", old)
    versions = {store.get("flip.csv")}
    bridge.write("flip.csv", new)
    versions.add(store.get("flip.csv"))
    stop = threading.Event()
    seen: list[bytes] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(store.get("flip.csv"))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(20):
        bridge.write("flip.csv", old if i % 2 else new)
    stop.set()
    for t in readers:
        t.join()
    assert seen and set(seen) <= versions


def test_write_conditions_and_bad_input(bridge: Bridge, store: ObjectStore) -> None:
    from nubes.errors import PreconditionFailed

    first = bridge.write("c.parquet", "SELECT 1 AS v", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        bridge.write("c.parquet", "SELECT 2 AS v", if_none_match=True)
    bridge.write("c.parquet", "SELECT 3 AS v", if_match=first.etag)
    assert bridge.read("c.parquet").fetchall() == [(3,)]
    with pytest.raises(ConfigError):
        bridge.write("c.bin", "SELECT 1")
    with pytest.raises(ConfigError):
        bridge.write("c.parquet", 42)  # type: ignore[arg-type]
    bridge.write("c.bin", "SELECT 1 AS v", format="csv")
    assert bridge.read("c.bin", format="csv").fetchall() == [(1,)]


# -- errors ----------------------------------------------------------------------------------------------
def test_missing_object_is_not_found(bridge: Bridge, store: ObjectStore) -> None:
    for call, in_duckdb in (
        (lambda: bridge.read("nope/missing.parquet"), True),
        (lambda: bridge.scan("nope/missing.csv"), False),  # scans find their objects before any engine runs
        (lambda: bridge.scan("nope/*.parquet"), False),
        (lambda: bridge.read("nope/*.parquet"), True),
        (lambda: bridge.query(f"SELECT * FROM {bridge.read_sql('nope/missing.ndjson')}"), True),
    ):
        with pytest.raises(NotFound) as info:
            call()
        assert info.value.key is not None and info.value.key.startswith("nope/")
        assert info.value.uri == store.uri
        assert isinstance(info.value.__cause__, duckdb.Error) == in_duckdb


def test_object_deleted_after_bind_is_not_found(store: ObjectStore, tmp_path: Path) -> None:
    _upload(store, "gone.parquet", _local(tmp_path, "g.parquet", "SELECT 1 AS v"))
    with Bridge(store, metadata_ttl=0, cache_bytes=0) as br:
        rel = br.read("gone.parquet")
        store.delete("gone.parquet")
        with pytest.raises(NotFound), br.translate_errors():
            rel.fetchall()


class _Forbidden(MemoryStore):
    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        raise PermissionError("forbidden")

    def _translate(self, exc: Exception, key: str | None) -> Exception | None:
        if isinstance(exc, PermissionError):
            return AccessDenied("access denied", uri=self.uri, key=key)
        return super()._translate(exc, key)


def test_storage_errors_inside_duckdb_surface_as_nubes_errors(tmp_path: Path) -> None:
    name = f"bridge-forbidden-{uuid.uuid4().hex}"
    store = _Forbidden(name)
    _upload(store, "secret.parquet", _local(tmp_path, "s.parquet", "SELECT 1 AS v"))
    with Bridge(store) as br:
        with pytest.raises(AccessDenied) as info:
            br.query(f"SELECT * FROM {br.read_sql('secret.parquet')}")
        assert info.value.key == "secret.parquet"
    MemoryStore.drop(name)


def test_read_only_for_duckdb(bridge: Bridge) -> None:
    with pytest.raises(duckdb.Error):
        bridge.duckdb().sql(f"COPY (SELECT 1) TO '{bridge.path('x.csv')}'")


# -- small pieces ----------------------------------------------------------------------------------------
def test_infer_format() -> None:
    assert infer_format("a/b.parquet") == infer_format("x.PQ") == "parquet"
    assert infer_format("a.csv") == infer_format("a.csv.gz") == infer_format("a.tsv") == "csv"
    assert infer_format("a.json") == infer_format("a.ndjson") == infer_format("a.jsonl.zst") == "ndjson"
    with pytest.raises(ConfigError):
        infer_format("year=*/*")


def test_filesystem_listing(bridge: Bridge, store: ObjectStore) -> None:
    for key in ("d/a.csv", "d/sub/b.csv", "d/sub/deeper/c.csv", "e.csv"):
        store.put(key, b"v\n1\n")
    fs: NubesFileSystem = bridge.fs
    assert fs.ls("nubes://data/d", detail=False) == ["data/d/a.csv", "data/d/sub"]
    assert fs.info("nubes://data/d/sub")["type"] == "directory"
    assert fs.info("nubes://data/e.csv")["size"] == 4
    assert fs.find("nubes://data/d") == ["data/d/a.csv", "data/d/sub/b.csv", "data/d/sub/deeper/c.csv"]
    assert fs.glob("nubes://data/d/*/*.csv") == ["data/d/sub/b.csv"]
    assert fs.exists("nubes://data/d/a.csv") and not fs.exists("nubes://data/d/zzz.csv")
    with pytest.raises(NotFound):
        fs.info("nubes://data/d/zzz.csv")
    assert fs.cat_file("nubes://data/e.csv", 2) == b"1\n"


def test_measure_counts_only_this_bridge(store: ObjectStore, tmp_path: Path) -> None:
    _upload(store, "m.parquet", _local(tmp_path, "m.parquet", "SELECT range AS v FROM range(1000)"))
    with Bridge(store) as br, br.measure() as m:
        store.get("m.parquet")  # not through the bridge
        br.read("m.parquet").aggregate("sum(v)").fetchall()[0]
    assert 0 < m.bytes_read < store.head("m.parquet").size * 2
    assert m.requests == sum(m.ops.values()) >= 2
    frozen = m.result()
    with Bridge(store) as br:
        br.read("m.parquet").fetchall()
    assert m.result() == frozen


def test_importing_storage_does_not_import_engines() -> None:
    code = (
        "import sys, nubes.storage; "
        "bad = [m for m in ('duckdb', 'polars', 'fsspec', 'pyarrow') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bridge_needs_stores() -> None:
    with pytest.raises(ConfigError):
        Bridge({})
    with pytest.raises(ConfigError):
        Bridge({"bad alias": storage.open("mem://x")})
    with pytest.raises(ConfigError):
        Bridge(object())  # type: ignore[arg-type]


# -- concurrent scans, is_between, range cache ------------------------------------------------------------
def test_two_scans_of_one_bridge_can_be_joined(store: ObjectStore, tmp_path: Path) -> None:
    """Polars reads both sides of a join at the same time; each scan runs on a cursor of its own."""
    _upload(store, "j/a.parquet", _local(tmp_path, "a.parquet", SAMPLE, "(FORMAT parquet)"))
    _upload(store, "j/b.csv", _local(tmp_path, "b.csv", "SELECT range AS k, 'k' || range AS label FROM range(7)"))
    with Bridge(store) as br:
        got = (
            br.scan("j/a.parquet").join(br.scan("j/b.csv"), on="k").group_by("label").agg(pl.len().alias("n"))
            .sort("label").collect()
        )
    local = pl.scan_parquet(tmp_path / "a.parquet").join(pl.scan_csv(tmp_path / "b.csv"), on="k")
    assert_frame_equal(got, local.group_by("label").agg(pl.len().alias("n")).sort("label").collect(), check_dtypes=False)


@pytest.mark.parametrize("closed", ["both", "left", "right", "none"])
def test_is_between_is_pushed_into_the_scan(store: ObjectStore, wide_file: Path, closed: str) -> None:
    _upload(store, "wide/w.parquet", wide_file)
    local = pl.scan_parquet(wide_file)
    query = lambda lf: lf.filter(pl.col("c0").is_between(100_000, 100_010, closed=closed)).select("c0", "c3")  # noqa: E731
    with Bridge(store, cache_bytes=0) as br:
        with br.measure() as whole:
            br.scan("wide/w.parquet").select("c0", "c3").collect()
        with br.measure() as pruned:
            got = query(br.scan("wide/w.parquet")).collect()
    assert_frame_equal(got.sort("c0"), query(local).collect().sort("c0"))
    assert got.height == {"both": 11, "left": 10, "right": 10, "none": 9}[closed]
    # one row group of ten (plus the footer), as the same filter in SQL
    assert pruned.bytes_read < 0.3 * whole.bytes_read, (pruned.result(), whole.result())


def test_is_between_with_a_column_bound_or_under_not_stays_correct(store: ObjectStore, wide_file: Path) -> None:
    _upload(store, "wide/w.parquet", wide_file)
    local = pl.scan_parquet(wide_file)
    queries = [
        lambda lf: lf.filter(pl.col("c0").is_between(pl.col("c0") - 1, 15)).select("c0"),
        lambda lf: lf.filter(~pl.col("c0").is_between(5, ROWS - 5)).select("c0"),
        lambda lf: lf.filter(pl.col("c0").is_between(10, 20) | (pl.col("c0") == 99)).select("c0"),
    ]
    with Bridge(store) as br:
        for query in queries:
            assert_frame_equal(query(br.scan("wide/w.parquet")).collect().sort("c0"), query(local).collect().sort("c0"))


def test_range_cache_keeps_only_small_ranges() -> None:
    from nubes.data.engine.caches import RangeCache

    cache = RangeCache(32 * 1024 * 1024)
    cache.put(("a", "k", "e"), 0, b"x" * 1024)
    cache.put(("a", "k", "e"), 4096, b"y" * (2 * 1024 * 1024))  # a column chunk: read once, not kept
    assert cache.get(("a", "k", "e"), 10, 20) == b"x" * 10
    assert cache.get(("a", "k", "e"), 4096, 4100) is None


# -- a shared database: one per warm instance, a session bridge per invocation -------------------------
def test_sessions_share_one_database_but_not_views_or_paths(store: ObjectStore, tmp_path: Path) -> None:
    from nubes.data.engine import Database

    _upload(store, "s.csv", _local(tmp_path, "s.csv", SAMPLE))
    database = Database()
    try:
        a, b = database.session(store), database.session(store)
        assert database.sessions == 2
        assert a.path("s.csv") != b.path("s.csv") and a.path("s.csv").endswith(".data/s.csv")
        a.duckdb().execute(f"CREATE TEMP VIEW v AS SELECT * FROM {a.read_sql('s.csv')}")
        assert a.sql("SELECT count(*) FROM v").fetchall() == [(5000,)]
        with pytest.raises(duckdb.CatalogException):
            b.sql("SELECT count(*) FROM v")  # TEMP views are the session's own
        assert b.read("s.csv").aggregate("count(*)").fetchall() == [(5000,)]
        assert a.stats.bytes_read > 0 and b.stats.bytes_read > 0
        gone = a.path("s.csv")
        a.close()
        a.close()  # idempotent
        assert database.sessions == 1
        with pytest.raises(duckdb.Error, match="not a store of an open session"):
            b.sql(f"SELECT count(*) FROM read_csv('{gone}')").fetchall()  # a closed session's paths are gone
        with pytest.raises(NotFound):
            b.read("missing.csv")  # errors still translate on a session bridge
        b.close()
        assert database.sessions == 0
    finally:
        database.close()


def test_concurrent_sessions_are_metered_apart(store: ObjectStore, tmp_path: Path) -> None:
    """Sessions on threads run at the same time on one database; each counts only its own reads."""
    from concurrent.futures import ThreadPoolExecutor

    from nubes.data.engine import Database

    for i in range(4):
        _upload(store, f"c/{i}.parquet", _local(tmp_path, f"{i}.parquet", f"SELECT range AS v FROM range({(i + 1) * 20_000})"))
    expected = {}
    for i in range(4):  # what each query reads through a bridge of its own
        with Bridge(store) as br:
            br.read(f"c/{i}.parquet").aggregate("sum(v)").fetchall()
            expected[i] = (br.stats.snapshot(), br.objects_read())
    database = Database()

    def run(i: int) -> tuple[int, dict, list]:
        with database.session(store) as br:
            total = br.read(f"c/{i}.parquet").aggregate("sum(v)").fetchall()[0][0]
            return total, br.stats.snapshot(), br.objects_read()

    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(run, [i % 4 for i in range(24)]))
    finally:
        database.close()
    for n, (total, snap, objects) in enumerate(results):
        i = n % 4
        rows = (i + 1) * 20_000
        assert total == rows * (rows - 1) // 2
        assert snap == expected[i][0] and objects == expected[i][1]
        assert [o["key"] for o in objects] == [f"c/{i}.parquet"]


# -- streaming scans ---------------------------------------------------------------------------------------
def test_scans_stream_batches_and_stop_early(store: ObjectStore, wide_file: Path) -> None:
    """Batches reach Polars as DuckDB makes them; a head() after a filter Polars applies stops reading."""
    _upload(store, "wide/w.parquet", wide_file)
    local = pl.scan_parquet(wide_file)
    odd = lambda lf: lf.filter(pl.col("c1").cast(pl.String).str.ends_with("1")).select("c0", "c1").head(3)  # noqa: E731
    with Bridge(store) as br:
        batches = list(br.scan("wide/w.parquet").select("c0", "c5").collect_batches(chunk_size=ROW_GROUP))
        assert len(batches) > 1 and sum(b.height for b in batches) == ROWS
        assert_frame_equal(pl.concat(batches).sort("c0"), local.select("c0", "c5").collect())
        assert_frame_equal(odd(br.scan("wide/w.parquet")).collect(), odd(local).collect())
        # the connection is free for more work, whatever Polars left unread
        assert br.read("wide/w.parquet").aggregate("count(*)").fetchall() == [(ROWS,)]
        assert br.scan("wide/w.parquet").select(pl.len()).collect().item() == ROWS
        empty = br.scan("wide/w.parquet").filter(pl.col("c0") < 0).select("c0", "c2").collect()
        assert empty.height == 0 and empty.columns == ["c0", "c2"]


def test_a_scan_left_unfinished_does_not_outlive_its_bridge(tmp_path: Path, wide_file: Path) -> None:
    """Closing the bridge (and the process exiting) with a scan Polars stopped reading is clean."""
    code = (
        "import polars as pl, nubes.storage as s\n"
        "from nubes.data.engine import Bridge, Database\n"
        f"store = s.open('file://{tmp_path}')\n"
        "db = Database()\n"
        "for i in range(6):\n"
        "    br = db.session(store) if i % 2 else Bridge(store)\n"
        "    with br:\n"
        "        br.scan('w.parquet').filter(pl.col('c1').cast(pl.String).str.ends_with('1')).head(2).collect()\n"
        "db.close()\n"
        "db2 = Database()\n"
        "br = db2.session(store)\n"
        "br.scan('w.parquet').filter(pl.col('c1').cast(pl.String).str.ends_with('1')).head(2).collect()\n"
        "print('ok')\n"  # exits with that scan (and its bridge) left open
    )
    (tmp_path / "w.parquet").write_bytes(wide_file.read_bytes())
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_storage_errors_during_a_streamed_scan_are_nubes_errors(store: ObjectStore, wide_file: Path) -> None:
    _upload(store, "wide/w.parquet", wide_file)
    with Bridge(store) as br:
        lf = br.scan("wide/w.parquet").select("c3")
        store.delete("wide/w.parquet")
        with pytest.raises(NotFound):
            lf.collect()
