"""The engine's own contracts: Parquet footers, what a native local scan reads (and proves it needs),
native SQL reads counted per session, shared views by version, SQL without Polars or fsspec, encoding."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nubes
from nubes.data import Bridge, lineage
from nubes.data.engine import parquet_footer as pf
from nubes.testing import Client


def _wide(path: Path, rows: int = 40_000, group: int = 5_000) -> Path:
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT range AS id, (range % 97)::DOUBLE AS x, 'k' || (range % 13) AS s,
                     DATE '2024-01-01' + (range // 1000)::INTEGER AS d, (hash(range) % 1000)::BIGINT AS noise
                     FROM range({rows})) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE {group}, COMPRESSION uncompressed)""")
    con.close()
    return path


def _footer(path: Path) -> pf.Footer:
    data = path.read_bytes()
    n = pf.footer_length(data[-8:])
    return pf.parse(data[-n:-8])


def test_footer_matches_duckdbs_reading_of_it(tmp_path: Path) -> None:
    path = _wide(tmp_path / "w.parquet")
    footer = _footer(path)
    meta = duckdb.sql(f"""SELECT row_group_id, path_in_schema, coalesce(dictionary_page_offset, data_page_offset),
                          total_compressed_size, stats_min_value, stats_max_value, stats_null_count
                          FROM parquet_metadata('{path}') ORDER BY ALL""").fetchall()
    groups = duckdb.sql(f"SELECT count(DISTINCT row_group_id) FROM parquet_metadata('{path}')").fetchall()[0][0]
    assert footer.num_rows == 40_000 and len(footer.row_groups) == groups > 1
    for group, column, start, length, lo, hi, nulls in meta:
        chunk = footer.row_groups[group].columns[column][0]
        assert (chunk.start, chunk.length, chunk.null_count) == (start, length, nulls)
        assert str(chunk.min) == lo and str(chunk.max).rstrip("0").rstrip(".") == hi.rstrip("0").rstrip(".")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 2000), st.integers(0, 255))
def test_any_footer_bytes_parse_or_fail_cleanly(junk: bytes, where: int, value: int) -> None:
    real = _FOOTER_BYTES
    mutated = bytearray(real)
    mutated[where % len(mutated)] = value
    for candidate in (junk, bytes(mutated), real[: where % len(real)]):
        with contextlib.suppress(pf.FooterError):
            pf.parse(candidate)


def _real_footer() -> bytes:
    buf = io.BytesIO()
    pl.DataFrame({"a": [1, 2, 3] * 50, "s": ["x", "y", "z"] * 50}).write_parquet(buf, row_group_size=40)
    data = buf.getvalue()
    n = pf.footer_length(data[-8:])
    return data[-n:-8]


_FOOTER_BYTES = _real_footer()


def test_local_scan_counts_exactly_what_it_needs(tmp_path: Path) -> None:
    """A native scan counts the footer plus the chunks of the columns and row groups it reads; corrupting
    every other byte of the file does not change its answer, so those bytes were indeed not needed."""
    path = _wide(tmp_path / "w.parquet")
    expected = pl.read_parquet(path).filter(pl.col("id").is_between(12_000, 13_999)).select(pl.col("x").sum()).item()
    footer = _footer(path)
    store = nubes.storage.open(tmp_path.as_uri())
    with Bridge(store) as bridge, bridge.measure() as m:
        query = bridge.scan("w.parquet").filter(pl.col("id").is_between(12_000, 13_999)).select(pl.col("x").sum())
        assert query.collect().item() == expected
    kept = [g for g, rg in enumerate(footer.row_groups) if rg.columns["id"][0].max >= 12_000 and rg.columns["id"][0].min <= 13_999]
    assert 0 < len(kept) < len(footer.row_groups) / 2
    needed = footer.length + footer.chunk_bytes({"id", "x"}, kept)
    assert m.bytes_read == needed + footer.length  # + the footer the bridge read once to plan the scan
    data = bytearray(path.read_bytes())
    keep = [(c.start, c.start + c.length) for g in kept for name in ("id", "x") for c in footer.row_groups[g].columns[name]]
    for i in range(4, len(data) - footer.length):
        if not any(a <= i < b for a, b in keep):
            data[i] = 0xFF
    path.write_bytes(bytes(data))
    with Bridge(nubes.storage.open(tmp_path.as_uri())) as bridge:
        scan = bridge.scan("w.parquet").filter(pl.col("id").is_between(12_000, 13_999)).select(pl.col("x").sum())
        assert scan.collect().item() == expected


def _summing_app(path: Path) -> tuple[nubes.App, Client]:
    """An app with dataset ``w`` at ``path`` and ``GET /x`` answering ``sum(x)`` through ``ctx.sql``."""
    app = nubes.App("sums", storage=f"mem://sums-{uuid.uuid4().hex}")
    app.dataset("w", path.as_uri())

    @app.get("/x")
    def total(ctx: nubes.Context) -> dict:
        return {"x": ctx.sql("SELECT sum(x) FROM w").fetchall()[0][0]}

    return app, Client(app)


def test_sql_reads_local_files_natively_and_counts_them(tmp_path: Path) -> None:
    path = _wide(tmp_path / "w.parquet")
    app, client = _summing_app(path)
    for _ in range(2):
        assert client.get("/x").json() == {"x": float(duckdb.sql(f"SELECT sum(x) FROM '{path}'").fetchall()[0][0])}
    read = next(lineage.history(app.storage, "w"))["reads"][0]
    footer = _footer(path)
    x_chunks = footer.chunk_bytes({"x"}, range(len(footer.row_groups)))
    assert x_chunks <= read["bytes_read"] <= x_chunks + 2 * footer.length + 64 * 1024
    assert read["objects"][0]["etag"]


def test_a_session_on_an_older_version_keeps_it_while_a_writer_moves_on(tmp_path: Path) -> None:
    from nubes.data.session import Session, app_database

    app = nubes.App("versions", storage=f"mem://versions-{uuid.uuid4().hex}")
    app.dataset("t", f"{tmp_path.as_uri()}/t/")
    writer = Session(app)
    writer.write("t", pl.DataFrame({"v": [1, 2]}))
    writer.close()
    old = Session(app)
    assert old.sql("SELECT sum(v) FROM t").fetchall() == [(3,)]  # uses (and pins) the shared view
    new = Session(app)
    new.write("t", pl.DataFrame({"v": [10]}))
    newer = Session(app)
    assert newer.sql("SELECT sum(v) FROM t").fetchall() == [(10,)]  # a TEMP view of its own: the shared one is in use
    assert old.sql("SELECT sum(v) FROM t").fetchall() == [(3,)]
    for s in (old, new, newer):
        s.close()
    later = Session(app)
    assert later.sql("SELECT sum(v) FROM t").fetchall() == [(10,)]  # the shared view moved to the new version
    later.close()
    assert app_database(app).sessions == 0


def test_a_sql_only_function_needs_neither_polars_nor_fsspec(tmp_path: Path) -> None:
    path = _wide(tmp_path / "w.parquet", rows=2_000, group=1_000)
    code = textwrap.dedent(f"""
        import sys
        sys.modules["polars"] = None; sys.modules["fsspec"] = None  # importing either now fails
        import nubes
        from nubes.testing import Client
        app = nubes.App("sqlonly", storage={(tmp_path / 'home').as_uri()!r})
        app.dataset("w", {path.as_uri()!r})
        @app.get("/q")
        def q(ctx):
            return ctx.sql("SELECT s, count(*) AS n, sum(id) AS total, max(d) AS last FROM w GROUP BY s ORDER BY s LIMIT 2")
        client = Client(app)
        for fmt in ("json", "ndjson", "csv"):
            r = client.get("/q", params={{"format": fmt}})
            assert r.status_code == 200, r.text
            print(r.text.strip().replace(chr(10), "|"))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    as_json, as_ndjson, as_csv = out.stdout.strip().splitlines()
    rows = json.loads(as_json)
    assert rows[0] == {"s": "k0", "n": 154, "total": sum(range(0, 2000, 13)), "last": "2024-01-02"}
    assert [json.loads(x) for x in as_ndjson.split("|")] == rows
    assert as_csv.split("|")[0] == "s,n,total,last" and as_csv.split("|")[1] == f"k0,154,{sum(range(0, 2000, 13))},2024-01-02"


def test_tables_encode_datetimes_with_t_and_integer_aggregates_as_integers(tmp_path: Path) -> None:
    app = nubes.App("enc", storage=f"mem://enc-{uuid.uuid4().hex}")
    calls: list[str] = []

    @app.get("/rel")
    def rel(ctx: nubes.Context) -> object:
        calls.append("rel")
        return ctx.sql("SELECT TIMESTAMP '2024-01-02 03:04:05' AS ts, sum(i) AS total, sum(i)::DECIMAL(38,0) AS d, "
                       "count(*) AS n, 1.5::DECIMAL(4,2) AS half FROM range(4) t(i)")

    @app.get("/frame")
    def frame(ctx: nubes.Context) -> object:
        return pl.DataFrame(ctx.sql("SELECT TIMESTAMP '2024-01-02 03:04:05' AS ts, sum(i) AS total, count(*) AS n "
                                    "FROM range(4) t(i)"))

    client = Client(app)
    expected = {"ts": "2024-01-02T03:04:05", "total": 6, "n": 4}
    assert client.get("/rel").json() == [{**expected, "d": 6, "half": 1.5}]
    assert client.get("/frame").json() == [expected]
    assert client.get("/rel", params={"format": "csv"}).text.splitlines()[1].startswith("2024-01-02T03:04:05,6,6,4,")
    assert client.get("/frame", params={"format": "csv"}).text.splitlines()[1] == "2024-01-02T03:04:05,6,4"
    assert json.loads(client.get("/frame", params={"format": "ndjson"}).text) == expected
    calls.clear()
    r = client.get("/rel", params={"format": "xlsx"})
    assert r.status_code == 422 and r.json()["errors"][0]["name"] == "format"
    assert calls == []  # refused before the handler ran


def test_row_limit_still_refuses_oversized_relations_and_frames() -> None:
    app = nubes.App("limits", storage=f"mem://limits-{uuid.uuid4().hex}", max_rows=10)

    @app.get("/many")
    def many(ctx: nubes.Context, fmt: str = "rel") -> object:
        rel = ctx.sql("SELECT * FROM range(11)")
        return rel if fmt == "rel" else pl.DataFrame(rel).lazy()

    client = Client(app)
    for fmt in ("rel", "lazy"):
        for answer in ("json", "csv", "parquet"):
            r = client.get("/many", params={"fmt": fmt, "format": answer})
            assert r.status_code == 413 and r.json()["max_rows"] == 10, (fmt, answer, r.text)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_native_scan_inside_polars_does_not_deadlock(tmp_path: Path, threads: str) -> None:
    path = _wide(tmp_path / "w.parquet")
    code = textwrap.dedent(f"""
        import polars as pl, nubes.storage as s
        from nubes.data import Bridge
        with Bridge(s.open({tmp_path.as_uri()!r})) as b:
            lf = b.scan("w.parquet")
            print(lf.group_by("s").agg(pl.col("x").sum()).join(lf.select("s").unique(), on="s").collect().height)
    """)
    env = {**os.environ, "POLARS_MAX_THREADS": threads}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "13", out.stderr[-2000:]
    assert path.exists()


def test_the_read_log_is_truncated_between_invocations_and_counts_stay_right(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nubes.data.engine import database
    from nubes.data.session import app_database

    monkeypatch.setattr(database, "LOG_TRUNCATE_SESSIONS", 3)
    path = _wide(tmp_path / "w.parquet", rows=4_000, group=1_000)
    os.utime(path, (0, 0))  # an old file: DuckDB trusts its cached footer, so every invocation reads the same
    app, client = _summing_app(path)
    client.get("/x")
    counts = []
    for _ in range(7):
        assert client.get("/x").status_code == 200
        counts.append(next(lineage.history(app.storage, "w"))["reads"][0]["bytes_read"])
    assert len(set(counts)) == 1 and counts[0] > 0, counts
    con = app_database(app)._connection()
    assert con.execute("SELECT count(*) FROM duckdb_logs()").fetchall()[0][0] < 3 * 40  # truncated every 3 sessions
