"""Generated SQL against POST /_nubes/sql: whatever the text, the answer is a 200 or a 4xx problem, never a
500 (a query the engine cannot run is the caller's problem to fix, and the answer must say why)."""

from __future__ import annotations

import io
import uuid
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nubes
import nubes.storage
from nubes.data.sql_endpoint import SqlEndpoint
from nubes.testing import Client

COLUMNS = {"sales": ["id", "region", "amount", "day", "tags"], "regions": ["region", "name"]}
SCALAR = {  # name: arity
    "abs": 1, "round": 2, "upper": 1, "lower": 1, "length": 1, "substr": 3, "concat": 2, "coalesce": 2, "greatest": 2,
    "least": 2, "nullif": 2, "typeof": 1, "md5": 1, "hash": 1, "trim": 1, "replace": 3, "split_part": 3, "repeat": 2,
    "regexp_matches": 2, "regexp_replace": 3, "strftime": 2, "date_trunc": 2, "list_value": 2, "len": 1, "unnest": 1,
    "left": 2, "right": 2, "lpad": 3, "range": 2, "array_length": 1, "list_sort": 1, "to_json": 1, "struct_pack": 1,
    "string_split": 2, "current_setting": 1, "getenv": 1, "read_csv": 1, "version": 0, "random": 0, "sqrt": 1, "ln": 1,
}
AGGREGATE = ["count", "sum", "avg", "min", "max", "string_agg", "list", "median", "mode", "stddev", "approx_count_distinct",
             "histogram", "arg_max", "bool_and"]
TYPES = ["INTEGER", "BIGINT", "DOUBLE", "VARCHAR", "DATE", "TIMESTAMP", "DECIMAL(10,2)", "BOOLEAN", "INTEGER[]", "BLOB", "JSON",
         "UTINYINT", "HUGEINT", "INTERVAL", "UUID", "MAP(VARCHAR, INTEGER)"]
OPERATORS = ["+", "-", "*", "/", "//", "%", "||", "=", "<>", "<", ">=", "AND", "OR", "LIKE", "IS DISTINCT FROM", "^", "&", "<<"]


def _literals() -> st.SearchStrategy[str]:
    text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12).map(lambda s: "'" + s.replace("'", "''") + "'")
    return st.one_of(
        st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=True, allow_infinity=True).map(lambda f: f"'{f}'::DOUBLE"),
        text, st.sampled_from(["NULL", "true", "false", "DATE '2024-02-29'", "TIMESTAMP '2024-01-01 10:00:00'", "[1, 2, 3]",
                               "{'a': 1}", "INTERVAL 3 DAY", "MAP([1], ['x'])", "'2024-13-45'::DATE", "-0.0", "1e308 * 10",
                               "9223372036854775807 + 1", "'%Y-%m'", "'month'", "'[a-z]+'", "2147483647::INTEGER + 1"]))


def _expressions(columns: list[str]) -> st.SearchStrategy[str]:
    leaves = st.one_of(st.sampled_from(columns), _literals())

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(OPERATORS), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.sampled_from(sorted(SCALAR)).flatmap(
                lambda f: st.lists(inner, min_size=SCALAR[f], max_size=SCALAR[f]).map(lambda a, f=f: f"{f}({', '.join(a)})")),
            st.tuples(inner, st.sampled_from(TYPES), st.sampled_from(["CAST", "TRY_CAST"])).map(lambda t: f"{t[2]}({t[0]} AS {t[1]})"),
            st.tuples(inner, inner, inner).map(lambda t: f"CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END"),
            st.tuples(inner, st.integers(-3, 3)).map(lambda t: f"({t[0]})[{t[1]}]"),
            inner.map(lambda e: f"({e} IS NULL)"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]} IN ({t[1]}, 1, 'x'))"),
        )

    return st.recursive(leaves, extend, max_leaves=6)


@st.composite
def selects(draw: st.DrawFn) -> str:
    table = draw(st.sampled_from(["sales", "regions", "range(5) t(v)", "(SELECT * FROM sales USING SAMPLE 10)"]))
    columns = COLUMNS.get(table, ["v"] if "range" in table else COLUMNS["sales"])
    exprs = _expressions(columns)
    items = draw(st.lists(st.one_of(
        exprs,
        st.tuples(st.sampled_from(AGGREGATE), exprs, st.booleans()).map(lambda t: f"{t[0]}({'DISTINCT ' if t[2] else ''}{t[1]})"),
        exprs.map(lambda e: f"row_number() OVER (ORDER BY {e})"),
        st.just("*"),
    ), min_size=1, max_size=3))
    sql = f"SELECT {'DISTINCT ' if draw(st.booleans()) else ''}{', '.join(items)} FROM {table}"
    if draw(st.booleans()) and table == "sales":
        joins = [" JOIN regions USING (region)", " s CROSS JOIN regions r", " LEFT JOIN regions r ON s.region = r.region"]
        sql += draw(st.sampled_from(joins))
    if draw(st.booleans()):
        sql += f" WHERE {draw(exprs)}"
    if draw(st.booleans()):
        sql += draw(st.sampled_from([" GROUP BY ALL", " GROUP BY 1", " GROUP BY ALL HAVING count(*) > 1"]))
    if draw(st.booleans()):
        sql += f" ORDER BY {draw(st.sampled_from(['1', 'ALL', '1 DESC NULLS FIRST', 'random()']))}"
    if draw(st.booleans()):
        sql += f" LIMIT {draw(st.integers(-1, 10**12))}"
    if draw(st.booleans()):
        sql += draw(st.sampled_from([" USING SAMPLE 3", " USING SAMPLE 50%", " USING SAMPLE 10% (bernoulli, 1)"]))
    wrap = draw(st.sampled_from(["{}", "WITH q AS ({}) SELECT * FROM q", "SELECT count(*) FROM ({})", "{} UNION ALL {}",
                                 "SELECT * FROM ({}) a, ({}) b", "FROM ({})"]))
    return wrap.replace("{}", sql)


TOKENS = ["SELECT", "FROM", "WHERE", "sales", "regions", "*", ",", "(", ")", "1", "'x'", "id", "amount", "GROUP BY", "ORDER BY",
          "LIMIT", "USING SAMPLE", "TABLESAMPLE", "10%", "JOIN", "ON", "=", "WITH", "AS", "UNION", ";", "--", "/*", "*/",
          "read_csv", "'/etc/passwd'", "range", "unnest", "lambda x:", "x", "[", "]", "{", "}", "::", "INTEGER", "$1", "?",
          "PIVOT", "UNPIVOT", "DESCRIBE", "SUMMARIZE", "SHOW", "QUALIFY", "WINDOW", "OVER", "PARTITION BY", "RECURSIVE",
          "VALUES", "COLUMNS(*)", "EXCLUDE", "REPLACE", "->", "->>", "@", "POSITIONAL", "ASOF", "ATTACH", "COPY", "PRAGMA"]


@pytest.fixture(scope="module")
def client() -> Client:
    uri = f"mem://fuzz-{uuid.uuid4().hex}"
    store = nubes.storage.open(uri)
    sales = pl.DataFrame({"id": list(range(1, 21)), "region": ["eu", "us", "apac", "eu"] * 5,
                          "amount": [i * 1.5 for i in range(20)], "tags": [["a", "b"][: i % 3] for i in range(20)]})
    sales = sales.with_columns(day=pl.date_range(pl.date(2024, 1, 1), pl.date(2024, 1, 20), eager=True))
    buf = io.BytesIO()
    sales.write_parquet(buf)
    store.put("sales.parquet", buf.getvalue())
    store.put("regions.csv", b"region,name\neu,Europe\nus,United States\napac,Asia Pacific\n")
    app = nubes.App("fuzz", storage=uri, auth=False, sql_endpoint=SqlEndpoint(timeout_s=2, max_rows=50, max_bytes=64_000))
    app.dataset("sales", f"{uri}/sales.parquet")
    app.dataset("regions", f"{uri}/regions.csv")
    return Client(app)


def _check(client: Client, sql: str) -> Any:
    response = client.post("/_nubes/sql", json={"sql": sql})
    assert response.status_code in (200, 400, 403, 404, 413, 422), (sql, response.status_code, response.text[:500])
    if response.status_code == 200:
        body = response.json()
        assert body["row_count"] == len(body["rows"]) <= 50 and len(response.content) <= 64_000
    else:
        assert response.headers["content-type"].startswith("application/problem+json"), sql
        assert response.json()["detail"]
    return response


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sql=selects())
def test_generated_selects_never_fail_the_server(client: Client, sql: str) -> None:
    _check(client, sql)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=14))
def test_token_soup_never_fails_the_server(client: Client, tokens: list[str]) -> None:
    _check(client, " ".join(tokens))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=80).filter(str.strip))
def test_any_text_never_fails_the_server(client: Client, text: str) -> None:
    _check(client, text)


@pytest.mark.parametrize("depth", [200, 400, 990])
@pytest.mark.parametrize("shape", ["abs({})", "[{}]", "(1 + {})", "NOT ({})", "(SELECT {})"])
def test_deep_nesting_is_a_400_not_a_500(client: Client, shape: str, depth: int) -> None:
    """Nesting within DuckDB's expression depth still nests its parse tree deeper than Python's JSON reader goes.

    A 200-deep list type can exceed the endpoint's memory bound under DuckDB 2 (a 422 naming the limit).
    """
    text = "true" if shape.startswith("NOT") else "1"
    for _ in range(depth):
        text = shape.replace("{}", text)
    response = _check(client, "SELECT " + text)
    assert response.status_code in (200, 400) or (response.status_code == 422 and "memory" in response.json()["detail"])
