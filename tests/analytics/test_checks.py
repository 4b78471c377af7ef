"""Data quality checks: evaluated in DuckDB, only counts and <= 5 sample rows reach Python."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator

import duckdb
import pytest

from nubes import checks
from nubes.data.checks import _format_duration, _parse_duration
from nubes.data.sqltext import ident as _quote_ident
from nubes.errors import ConfigError

T = '"orders"'
NOW = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    c.execute("""
        CREATE TABLE orders AS SELECT * FROM (VALUES
            (1, 'c1', 'paid',     10.5,  TIMESTAMP '2024-06-01 10:00:00', DATE '2024-06-01'),
            (2, 'c2', 'paid',     99.0,  TIMESTAMP '2024-05-31 09:00:00', DATE '2024-05-31'),
            (3, 'c3', 'refunded', 0.0,   TIMESTAMP '2024-05-30 08:00:00', DATE '2024-05-30'),
            (4, 'c4', 'pending',  1000.0, TIMESTAMP '2024-05-29 07:00:00', DATE '2024-05-29')
        ) AS v(id, customer_id, status, amount, updated_at, day)
    """)
    c.execute("""
        CREATE TABLE bad AS SELECT * FROM (VALUES
            (1,    'c1', 'paid',    10.5,   TIMESTAMP '2024-05-01 10:00:00'),
            (2,    NULL, 'paid',    -5.0,   TIMESTAMP '2024-04-01 10:00:00'),
            (2,    'c3', 'lost',    20000.0, NULL),
            (3,    NULL, NULL,      NULL,   TIMESTAMP '2024-04-02 10:00:00'),
            (3,    'c5', 'stolen',  7.0,    TIMESTAMP '2024-04-03 10:00:00'),
            (3,    NULL, 'paid',    8.0,    TIMESTAMP '2024-04-04 10:00:00'),
            (NULL, 'c7', 'paid',    9.0,    TIMESTAMP '2024-04-05 10:00:00'),
            (NULL, 'c8', 'paid',    9.5,    TIMESTAMP '2024-04-06 10:00:00')
        ) AS v(id, customer_id, status, amount, updated_at)
    """)
    yield c
    c.close()


def clean_suite() -> list[checks.Check]:
    return [
        checks.not_null("customer_id"),
        checks.unique("id"),
        checks.unique(["customer_id", "status"]),
        checks.accepted_values("status", ["paid", "refunded", "pending"]),
        checks.in_range("amount", min=0, max=1000),
        checks.row_count(min=1, max=10),
        checks.freshness("updated_at", "24h", now=lambda: NOW),
        checks.schema({"id": "INTEGER", "customer_id": "TEXT", "amount": "DECIMAL", "updated_at": "TIMESTAMP"}),
        checks.sql("select * from {dataset} where amount < 0", name="no_negative_amounts"),
    ]


# --- clean data ------------------------------------------------------------------------------


def test_every_check_passes_on_clean_data(conn: duckdb.DuckDBPyConnection) -> None:
    results = checks.run_checks(conn, T, clean_suite())
    assert [r.passed for r in results] == [True] * len(results), [r.detail for r in results if not r.passed]
    assert all(r.sample == [] for r in results)
    by_name = {r.check: r for r in results}
    assert by_name["not_null(customer_id)"].failing == 0
    assert by_name["row_count(min=1, max=10)"].failing is None
    assert by_name["row_count(min=1, max=10)"].detail == "4 rows"


# --- each check on bad data ------------------------------------------------------------------


def test_not_null_counts_and_samples(conn: duckdb.DuckDBPyConnection) -> None:
    r = checks.not_null("customer_id").run(conn, '"bad"')
    assert (r.check, r.severity, r.passed, r.failing) == ("not_null(customer_id)", "error", False, 3)
    assert r.detail == "3 rows have NULL customer_id"
    assert len(r.sample) == 3 and all(row["customer_id"] is None for row in r.sample)
    assert set(r.sample[0]) == {"id", "customer_id", "status", "amount", "updated_at"}


def test_sample_is_capped_at_five(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE TABLE nulls AS SELECT NULL::INT AS x FROM range(50)")
    r = checks.not_null("x").run(conn, '"nulls"')
    assert r.failing == 50 and len(r.sample) == 5


def test_unique_single_and_combination(conn: duckdb.DuckDBPyConnection) -> None:
    r = checks.unique("id").run(conn, '"bad"')
    # id 2 twice + id 3 three times; the two NULL ids are ignored (SQL UNIQUE semantics)
    assert (r.passed, r.failing) == (False, 5)
    assert r.detail == "5 rows share 2 duplicated id values"
    assert r.sample == [{"id": 3, "count": 3}, {"id": 2, "count": 2}]

    combo = checks.unique(["id", "status"]).run(conn, '"bad"')
    assert combo.check == "unique(id, status)"
    # (3, NULL) ignored; (3,'stolen'), (3,'paid') distinct; (2,'paid'),(2,'lost') distinct
    assert combo.passed and combo.failing == 0

    conn.execute("INSERT INTO bad VALUES (3, 'x', 'paid', 1.0, NULL)")
    combo = checks.unique(("id", "status")).run(conn, '"bad"')
    assert (combo.passed, combo.failing, combo.sample) == (False, 2, [{"id": 3, "status": "paid", "count": 2}])


def test_accepted_values_nulls_pass(conn: duckdb.DuckDBPyConnection) -> None:
    r = checks.accepted_values("status", ["paid", "refunded", None]).run(conn, '"bad"')
    assert r.check == "accepted_values(status, ['paid', 'refunded'])"
    assert (r.passed, r.failing) == (False, 2)  # 'lost', 'stolen'; the NULL status passes
    assert sorted(row["status"] for row in r.sample) == ["lost", "stolen"]
    assert "2 rows have status not in" in r.detail


def test_accepted_values_numeric(conn: duckdb.DuckDBPyConnection) -> None:
    r = checks.accepted_values("id", [1, 2]).run(conn, '"bad"')
    assert (r.passed, r.failing) == (False, 3)


def test_in_range_inclusive_and_one_sided(conn: duckdb.DuckDBPyConnection) -> None:
    r = checks.in_range("amount", min=0, max=10000).run(conn, '"bad"')
    assert r.check == "in_range(amount, min=0, max=10000)"
    assert (r.passed, r.failing) == (False, 2)  # -5 and 20000; NULL passes
    assert sorted(row["amount"] for row in r.sample) == [-5.0, 20000.0]
    assert checks.in_range("amount", min=0).run(conn, '"bad"').failing == 1
    assert checks.in_range("amount", max=10.5).run(conn, '"bad"').failing == 1
    assert checks.in_range("amount", min=-5.0, max=20000).run(conn, '"bad"').passed  # inclusive
    dates = checks.in_range("day", min=dt.date(2024, 5, 30)).run(conn, T)
    assert (dates.failing, dates.sample[0]["day"]) == (1, dt.date(2024, 5, 29))


def test_row_count(conn: duckdb.DuckDBPyConnection) -> None:
    r = checks.row_count(max=3).run(conn, T)
    assert (r.passed, r.failing, r.detail) == (False, None, "expected at most 3 rows, found 4")
    r = checks.row_count(min=5).run(conn, T)
    assert (r.passed, r.detail) == (False, "expected at least 5 rows, found 4")
    conn.execute("CREATE TABLE empty (x INT)")
    r = checks.row_count().run(conn, '"empty"')
    assert (r.check, r.passed) == ("row_count(min=1)", False)
    assert checks.row_count(min=0, max=0).run(conn, '"empty"').passed


def test_freshness(conn: duckdb.DuckDBPyConnection) -> None:
    fresh = checks.freshness("updated_at", "24h", now=lambda: NOW).run(conn, T)
    assert fresh.passed and fresh.check == "freshness(updated_at, max_age=24h)"
    assert "2h old" in fresh.detail
    stale = checks.freshness("updated_at", dt.timedelta(days=7), now=lambda: NOW).run(conn, '"bad"')
    assert (stale.passed, stale.failing, stale.sample) == (False, None, [])
    assert stale.check == "freshness(updated_at, max_age=7d)"
    assert stale.detail == "latest updated_at is 2024-05-01 10:00:00 (31d2h old), older than 7d"
    # a naive now() is read as UTC; a DATE column is midnight UTC
    assert checks.freshness("day", "13h", now=lambda: dt.datetime(2024, 6, 1, 12)).run(conn, T).passed
    assert not checks.freshness("day", "11h", now=lambda: dt.datetime(2024, 6, 1, 12)).run(conn, T).passed


def test_freshness_timestamptz_ignores_session_timezone(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("SET TimeZone = 'America/New_York'")
    conn.execute("CREATE TABLE tz AS SELECT TIMESTAMPTZ '2024-06-01 11:30:00+00' AS ts")
    assert checks.freshness("ts", "31m", now=lambda: NOW).run(conn, '"tz"').passed
    assert not checks.freshness("ts", "29m", now=lambda: NOW).run(conn, '"tz"').passed
    assert checks.freshness("updated_at", "2h", now=lambda: NOW).run(conn, T).passed


def test_freshness_default_now_and_empty(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE TABLE recent AS SELECT now() - INTERVAL 5 MINUTE AS ts")
    assert checks.freshness("ts", "10m").run(conn, '"recent"').passed
    conn.execute("CREATE TABLE nothing AS SELECT NULL::TIMESTAMP AS ts")
    r = checks.freshness("ts", "1d").run(conn, '"nothing"')
    assert (r.passed, r.detail) == (False, "no non-NULL ts to judge freshness by")


def test_schema_synonyms_and_mismatches(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("""CREATE TABLE typed (a BIGINT, b DOUBLE, c VARCHAR, d INTEGER, e TIMESTAMPTZ,
                    f DECIMAL(10,2), g DATE, h BOOLEAN, "Mixed" SMALLINT)""")
    ok = checks.schema({"a": "int8", "b": "FLOAT8", "c": "string", "d": "int4", "e": "timestamp with time zone",
                        "f": "numeric(10, 2)", "g": "date", "h": "bool", "mixed": "INT2"}, exact=True)
    r = ok.run(conn, '"typed"')
    assert r.passed, r.detail
    assert checks.schema({"c": "TEXT", "d": "INT", "f": "DECIMAL"}).run(conn, '"typed"').passed

    bad = checks.schema({"a": "BIGINT", "c": "DOUBLE", "zz": "DATE"}, exact=True).run(conn, '"typed"')
    assert (bad.passed, bad.failing, bad.sample) == (False, None, [])
    assert "expected column c DOUBLE, found VARCHAR" in bad.detail
    assert "missing column zz (DATE)" in bad.detail
    assert "unexpected column b DOUBLE" in bad.detail

    wrong = checks.schema({"amount": "DOUBLE"}).run(conn, '"typed"')
    assert not wrong.passed
    conn.execute("CREATE TABLE s AS SELECT '1.5' AS amount")
    assert checks.schema({"amount": "DOUBLE"}).run(conn, '"s"').detail == "expected column amount DOUBLE, found VARCHAR"
    assert not checks.schema({"f": "DECIMAL(18,3)"}).run(conn, '"typed"').passed


def test_schema_unknown_type_is_a_failed_result(conn: duckdb.DuckDBPyConnection) -> None:
    [r] = checks.run_checks(conn, T, [checks.schema({"id": "NOT_A_TYPE"})])
    assert not r.passed and "unknown DuckDB type 'NOT_A_TYPE'" in r.detail


def test_sql_custom_check(conn: duckdb.DuckDBPyConnection) -> None:
    r = checks.sql("select id, amount from {dataset} where amount < 0 or amount > 1000;",
                   name="sane_amounts", severity="warn").run(conn, '"bad"')
    assert (r.check, r.severity, r.passed, r.failing) == ("sane_amounts", "warn", False, 2)
    assert sorted(r.sample, key=lambda d: d["id"]) == [{"id": 2, "amount": -5.0}, {"id": 2, "amount": 20000.0}]
    braces = checks.sql("select * from {dataset} where {'a': id}.a > 100", name="braces")
    assert braces.run(conn, T).passed


# --- run_checks isolation, results, reporting ------------------------------------------------


def test_run_checks_isolates_errors(conn: duckdb.DuckDBPyConnection) -> None:
    suite = [checks.not_null("nope"), checks.not_null("id"), checks.sql("select * from {dataset} where where", name="typo"),
             checks.in_range("status", min=0, severity="warn"), checks.row_count()]
    results = checks.run_checks(conn, T, suite)
    assert [r.passed for r in results] == [False, True, False, False, True]
    assert results[0].failing is None and "nope" in results[0].detail and results[0].detail.startswith("check errored:")
    assert results[2].check == "typo" and "check errored" in results[2].detail
    assert results[3].severity == "warn" and results[3].status == "WARN"


def test_run_checks_never_raises_on_broken_custom_check(conn: duckdb.DuckDBPyConnection) -> None:
    class Broken(checks.Check):
        def run(self, conn: duckdb.DuckDBPyConnection, relation: str) -> checks.CheckResult:
            raise RuntimeError("boom")

    class Wrong(checks.Check):
        def run(self, conn: duckdb.DuckDBPyConnection, relation: str) -> checks.CheckResult:
            return "yes"  # type: ignore[return-value]

    [a, b] = checks.run_checks(conn, T, [Broken("broken", "warn"), Wrong("wrong")])
    assert (a.check, a.severity, a.passed, a.detail) == ("broken", "warn", False, "check errored: RuntimeError: boom")
    assert not b.passed and "not CheckResult" in b.detail


def test_result_to_dict_is_json(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("""CREATE TABLE odd AS SELECT NULL::INT AS k, 1.5::DECIMAL(5,2) AS d, DATE '2024-01-02' AS day,
                    TIMESTAMPTZ '2024-01-02 03:04:05+00' AS ts, [1, 2] AS l, {'a': 'x'} AS s, 'ab'::BLOB AS b,
                    'nan'::DOUBLE AS f, uuid() AS u""")
    r = checks.not_null("k").run(conn, '"odd"')
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["status"] == "FAIL" and d["failing"] == 1
    row = d["sample"][0]
    # the one JSON rule set (nubes.core.encoding): decimals as numbers, NaN as null, bytes as base64
    assert row["d"] == 1.5 and row["day"] == "2024-01-02" and row["l"] == [1, 2] and row["s"] == {"a": "x"}
    assert row["b"] == "YWI=" and row["f"] is None
    assert row["ts"].startswith("2024-01-02T03:04:05")
    from nubes.core.encoding import dumps

    assert json.loads(dumps(r.sample)) == d["sample"]  # the same as any answer holding these values


def test_format_report() -> None:
    from rich.console import Console

    results = {
        "orders": [
            checks.CheckResult("not_null(id)", "error", True, 0, "no NULL id", []),
            checks.CheckResult("accepted_values(s, ['a'])", "warn", False, 1234, "1 row [/bold] x", []),
        ],
        "users": [checks.CheckResult("schema(id BIGINT)", "error", False, None, "missing column id", [])],
    }
    table = checks.format_report(results)
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    out = console.export_text()
    for text in ("dataset", "orders", "users", "PASS", "WARN", "FAIL", "1,234", "accepted_values(s, ['a'])",
                 "1 row [/bold] x", "missing column id"):
        assert text in out
    assert table.row_count == 3


# --- hostile input ---------------------------------------------------------------------------


def test_hostile_column_name_is_an_identifier(conn: duckdb.DuckDBPyConnection) -> None:
    col = 'weird "col"; drop table x --'
    assert _quote_ident(col) == '"weird ""col""; drop table x --"'
    conn.execute(f"CREATE TABLE x AS SELECT * FROM (VALUES (1), (NULL), (1), (5)) AS v({_quote_ident(col)})")
    suite = [checks.not_null(col), checks.unique(col), checks.accepted_values(col, [1]), checks.in_range(col, 0, 2),
             checks.schema({col: "INTEGER"}), checks.freshness(col, "1d")]
    results = checks.run_checks(conn, '"x"', suite)
    assert [r.failing for r in results[:4]] == [1, 2, 1, 1]
    assert results[0].sample == [{col: None}]
    assert results[4].passed
    assert not results[5].passed and "errored" in results[5].detail  # epoch(INTEGER): a type error, not an injection
    assert conn.execute("SELECT COUNT(*) FROM x").fetchone() == (4,)


def test_hostile_values_are_bound_parameters(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE TABLE t AS SELECT * FROM (VALUES ('a'), ('''); drop table t; --'), ('b')) AS v(s)")
    evil = "'); drop table t; --"
    r = checks.accepted_values("s", ["a", evil]).run(conn, '"t"')
    assert (r.failing, r.sample) == (1, [{"s": "b"}])
    r = checks.accepted_values("s", [evil]).run(conn, '"t"')
    assert r.failing == 2
    r = checks.in_range("s", min=evil, max="a").run(conn, '"t"')  # string bounds, bound as data
    assert r.failing == 1
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (3,)


# --- scale: nothing but counts and samples reach Python --------------------------------------


def test_two_million_rows_stay_in_duckdb() -> None:
    c = duckdb.connect()
    c.execute("""CREATE TABLE big AS SELECT range AS id,
                 CASE WHEN range % 1000 = 0 THEN NULL ELSE range % 97 END AS k,
                 CASE range % 3 WHEN 0 THEN 'a' WHEN 1 THEN 'b' ELSE 'zz' END AS s,
                 (range % 20000)::DOUBLE - 10 AS amount,
                 TIMESTAMP '2024-06-01' - to_seconds(range) AS ts
                 FROM range(2000000)""")
    suite = [checks.not_null("k"), checks.unique("id"), checks.unique(["k", "s"]), checks.accepted_values("s", ["a", "b"]),
             checks.in_range("amount", min=0, max=10000), checks.row_count(min=2_000_000, max=2_000_000),
             checks.freshness("ts", "1h", now=lambda: NOW), checks.schema({"id": "BIGINT", "amount": "DOUBLE"}),
             checks.sql("select * from {dataset} where amount < -5", name="very_negative")]
    tracemalloc.start()
    t0 = time.perf_counter()
    results = checks.run_checks(c, '"big"', suite)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    by = {r.check: r for r in results}
    assert by["not_null(k)"].failing == 2000
    assert by["unique(id)"].passed
    assert not by["unique(k, s)"].passed
    assert by["accepted_values(s, ['a', 'b'])"].failing == 666_666
    assert by["in_range(amount, min=0, max=10000)"].failing == 100 * 10 + 100 * 9989
    assert by["row_count(min=2000000, max=2000000)"].passed
    assert by["freshness(ts, max_age=1h)"].passed is False and "12h" in by["freshness(ts, max_age=1h)"].detail
    assert by["schema(id BIGINT, amount DOUBLE)"].passed
    assert by["very_negative"].failing == 5 * 100
    assert all(len(r.sample) <= 5 for r in results)
    assert peak < 20 * 1024 * 1024, f"peak Python memory {peak / 1e6:.1f} MB"
    assert elapsed < 30, f"checks took {elapsed:.1f}s"
    c.close()


# --- eager validation ------------------------------------------------------------------------


@pytest.mark.parametrize("build, message", [
    (lambda: checks.not_null("id", severity="fatal"), "severity must be 'warn' or 'error'"),
    (lambda: checks.not_null(""), "non-empty column name"),
    (lambda: checks.not_null("  "), "non-empty column name"),
    (lambda: checks.unique([]), "at least one column"),
    (lambda: checks.unique(["a", ""]), "non-empty column name"),
    (lambda: checks.unique(["a", "a"]), "twice"),
    (lambda: checks.accepted_values("s", []), "at least one non-NULL value"),
    (lambda: checks.accepted_values("s", [None]), "at least one non-NULL value"),
    (lambda: checks.accepted_values("s", "abc"), "needs a list of values"),
    (lambda: checks.in_range("x"), "needs min=, max= or both"),
    (lambda: checks.in_range("x", min=5, max=1), "min 5 is greater than max 1"),
    (lambda: checks.in_range("x", min=1, max="z"), "not comparable"),
    (lambda: checks.in_range("x", min=float("nan")), "NaN"),
    (lambda: checks.row_count(min=5, max=1), "min 5 is greater than max 1"),
    (lambda: checks.row_count(min=-1), "non-negative int"),
    (lambda: checks.row_count(min=1.5), "non-negative int"),  # type: ignore[arg-type]
    (lambda: checks.freshness("ts", "soon"), "bad duration 'soon'"),
    (lambda: checks.freshness("ts", "24"), "bad duration"),
    (lambda: checks.freshness("ts", "0h"), "bad duration"),
    (lambda: checks.freshness("ts", "1h junk"), "bad duration"),
    (lambda: checks.freshness("ts", dt.timedelta(0)), "must be positive"),
    (lambda: checks.freshness("ts", 3600), "must be a timedelta"),  # type: ignore[arg-type]
    (lambda: checks.schema({}), "non-empty mapping"),
    (lambda: checks.schema({"a": ""}), "needs a DuckDB type name"),
    (lambda: checks.schema({"a": "INT", "A": "INT"}), "twice"),
    (lambda: checks.sql("select 1", name="x"), "{dataset}"),
    (lambda: checks.sql("select * from {dataset}", name=""), "non-empty name"),
])
def test_arguments_are_validated_eagerly(build: object, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        build()  # type: ignore[operator]
    assert message in str(info.value)


def test_names_and_durations() -> None:
    assert checks.in_range("amount", min=0, max=10000).name == "in_range(amount, min=0, max=10000)"
    assert checks.in_range("day", min=dt.date(2024, 1, 1)).name == "in_range(day, min=datetime.date(2024, 1, 1))"
    assert checks.accepted_values("s", list("abcdefg")).name == "accepted_values(s, ['a', 'b', 'c', 'd', 'e', ... +2])"
    assert checks.schema({"a": "INT"}, exact=True).name == "schema(a INT, exact)"
    assert checks.not_null("x", severity="warn").severity == "warn"
    assert checks.freshness("ts", dt.timedelta(hours=36)).name == "freshness(ts, max_age=1d12h)"
    assert _parse_duration("30m") == dt.timedelta(minutes=30)
    assert _parse_duration(" 7d ") == dt.timedelta(days=7)
    assert _parse_duration("1d12h") == dt.timedelta(hours=36)
    assert _parse_duration("90s") == dt.timedelta(seconds=90)
    assert _parse_duration("1.5h") == dt.timedelta(minutes=90)
    assert _parse_duration("2w") == dt.timedelta(days=14)
    assert _parse_duration("250ms") == dt.timedelta(milliseconds=250)
    assert _format_duration(dt.timedelta(days=31, hours=2, seconds=5)) == "31d2h5s"


def test_import_is_light() -> None:
    code = "import nubes.checks, sys; print('duckdb' in sys.modules, 'polars' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["False", "False", "False"]
