"""Library behaviour the engine relies on that is not a stable public API, pinned to the versions installed.

When DuckDB or Polars is upgraded, these fail loudly; re-check each use they name, then update PINNED.

* Polars ``Expr.meta.serialize(format="json")``: its layout is not promised; ``engine/pruning.py`` reads
  it to skip row groups (an unrecognised layout skips nothing: slower, never wrong).
* Polars ``LazyFrame.collect_batches``: marked unstable; ``engine/polars_source.py`` streams local
  Parquet through it.
* DuckDB's ``FileSystem`` log entries (``duckdb_logs()``, ``duckdb_log_contexts()``, the message JSON
  with ``op``/``path``/``bytes``): ``engine/database.py`` counts native reads per session from them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from nubes.data.engine import pruning
from nubes.data.engine.parquet_footer import Chunk, Footer, RowGroup

PINNED = {"polars": "2.1.0", "duckdb": "2.0.1"}


def test_library_versions_are_the_pinned_ones() -> None:
    installed = {"polars": pl.__version__, "duckdb": duckdb.__version__}
    assert installed == PINNED, (
        f"DuckDB/Polars changed ({installed}, pinned {PINNED}): re-check the uses listed in this module's "
        "docstring against the new versions, then update PINNED"
    )


def _footer(lo: object, hi: object, nulls: int = 0, rows: int = 10) -> Footer:
    return Footer(100, rows, [RowGroup(rows, {"c": [Chunk(4, 10, lo, hi, nulls)]})])


@pytest.mark.parametrize(("expr", "kept", "skipped"), [
    (pl.col("c") == 5, (1, 9), (6, 9)),
    (pl.col("c") != 5, (1, 9), (5, 5)),
    (pl.col("c") < 5, (4, 9), (5, 9)),
    (pl.col("c") <= 5, (5, 9), (6, 9)),
    (pl.col("c") > 5, (1, 6), (1, 5)),
    (pl.col("c") >= 5, (1, 5), (1, 4)),
    (pl.lit(5) < pl.col("c"), (1, 6), (1, 5)),
    (pl.col("c").is_between(3, 4), (4, 9), (5, 9)),
    (pl.col("c").is_between(3, 4, closed="left"), (1, 3), (4, 9)),
    (pl.col("c") > 2.5, (1, 3), (1, 2)),
    (pl.col("c") == "m", ("a", "z"), ("n", "z")),
    (pl.col("c") >= dt.date(2024, 3, 1), (dt.date(2024, 1, 1), dt.date(2024, 3, 1)), (dt.date(2024, 1, 1), dt.date(2024, 2, 29))),
    ((pl.col("c") > 1) & (pl.col("c") < 3), (2, 2), (3, 9)),
])
def test_polars_predicate_layout_is_read(expr: pl.Expr, kept: tuple[object, object], skipped: tuple[object, object]) -> None:
    found = pruning.tests(expr)
    assert found, f"{expr} serializes as {expr.meta.serialize(format='json')}: the layout pruning reads changed"
    assert pruning.keep(_footer(*kept), found) == [0]
    assert pruning.keep(_footer(*skipped), found) == []


def test_null_tests_and_unknown_forms() -> None:
    assert pruning.keep(_footer(1, 2, nulls=0), pruning.tests(pl.col("c").is_null())) == []
    assert pruning.keep(_footer(1, 2, nulls=10), pruning.tests(pl.col("c").is_not_null())) == []
    assert pruning.keep(_footer(1, 2, nulls=3), pruning.tests(pl.col("c").is_null())) == [0]
    # not recognised: nothing is skipped (the filter still runs on the rows read)
    for expr in (pl.col("c").is_in([100]), pl.col("c") == pl.col("d"), (pl.col("c") * 2) > 100, pl.col("c").cast(pl.String) == "x"):
        assert pruning.keep(_footer(1, 2), pruning.tests(expr)) == [0]
    # statistics of another type than the literal prove nothing
    assert pruning.keep(_footer("a", "b"), pruning.tests(pl.col("c") > 5)) == [0]


def test_collect_batches_streams_a_scan(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    pl.DataFrame({"x": list(range(10_000))}).write_parquet(path, row_group_size=1_000)
    batches = list(pl.scan_parquet(path).slice(2_000, 3_000).collect_batches(chunk_size=1_000, lazy=True))
    assert sum(b.height for b in batches) == 3_000 and batches[0]["x"][0] == 2_000


def test_duckdb_logs_each_local_read_with_its_connection(tmp_path: Path) -> None:
    path = tmp_path / "l.parquet"
    pl.DataFrame({"x": list(range(1000))}).write_parquet(path)
    con = duckdb.connect()
    con.execute("CALL enable_logging('FileSystem')")
    cursor = con.cursor()
    cursor.execute(f"SELECT sum(x) FROM read_parquet('{path}')").fetchall()
    rows = cursor.execute(
        "SELECT c.connection_id = current_connection_id(), l.message FROM duckdb_logs() AS l "
        "JOIN duckdb_log_contexts() AS c ON l.context_id = c.context_id WHERE l.type = 'FileSystem'").fetchall()
    reads = [json.loads(m) for mine, m in rows if mine]
    assert any(r["op"] == "READ" and r["path"] == str(path) and int(r["bytes"]) > 0 for r in reads), rows
