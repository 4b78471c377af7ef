"""POST /_nubes/sql: read-only SQL over the catalog in a locked DuckDB database."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import nubes
import nubes.storage
from nubes.core.encoding import dumps
from nubes.data import Bridge, lineage
from nubes.data.sql_endpoint import (
    Refused,
    Sandbox,
    SqlEndpoint,
    denied_function,
    validate,
)
from nubes.errors import HTTPError
from nubes.testing import Client

SALES = pl.DataFrame(
    {
        "id": list(range(1, 41)),
        "region": ["eu", "us", "apac", "eu"] * 10,
        "amount": [round(i * 1.25, 2) for i in range(1, 41)],
        "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 7) for i in range(40)],
    }
)
REGIONS_CSV = b"region,name\neu,Europe\nus,United States\napac,Asia Pacific\n"


def _parquet(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[nubes.App, duckdb.DuckDBPyConnection]]:
    """An app with a Parquet dataset (two files under a prefix) and a CSV one, plus a plain DuckDB
    connection over local copies of the same bytes to compare answers with."""
    uri = f"mem://lab-{uuid.uuid4().hex}"
    store = nubes.storage.open(uri)
    parts = [SALES.slice(0, 25), SALES.slice(25)]
    for i, part in enumerate(parts):
        store.put(f"sales/part-{i}.parquet", _parquet(part))
    store.put("regions.csv", REGIONS_CSV)
    store.put("secret/keys.csv", b"k\nhunter2\n")
    app = nubes.App("lab", storage=uri, sql_endpoint=SqlEndpoint(timeout_s=0.5, max_timeout_s=2.0, max_rows=30))
    app.dataset("sales", f"{uri}/sales/")
    app.dataset("regions", f"{uri}/regions.csv")

    local = tmp_path_factory.mktemp("reference")
    for i, part in enumerate(parts):
        (local / f"part-{i}.parquet").write_bytes(_parquet(part))
    (local / "regions.csv").write_bytes(REGIONS_CSV)
    ref = duckdb.connect()
    ref.execute(f"CREATE VIEW sales AS SELECT * FROM read_parquet(['{local / 'part-0.parquet'}', '{local / 'part-1.parquet'}'])")
    ref.execute(f"CREATE VIEW regions AS SELECT * FROM read_csv('{local / 'regions.csv'}')")
    yield app, ref
    ref.close()


@pytest.fixture
def client(lab: tuple[nubes.App, duckdb.DuckDBPyConnection]) -> Client:
    return Client(lab[0])


def _sql(client: Client, sql: str, **extra: Any) -> Any:
    return client.post("/_nubes/sql", json={"sql": sql, **extra})


def _expected(ref: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    rel = ref.sql(sql)
    return json.loads(dumps([dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]))


# -- answers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM sales ORDER BY id",
        "SELECT region, count(*) AS n, sum(amount) AS total, min(day) AS first FROM sales GROUP BY region ORDER BY region",
        "SELECT r.name, sum(s.amount) AS total FROM sales s JOIN regions r USING (region) GROUP BY r.name ORDER BY total DESC",
        "WITH big AS (SELECT * FROM sales WHERE amount > 30) SELECT region, count(*) AS n FROM big GROUP BY ALL ORDER BY 1",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT n FROM t ORDER BY n",
        "SELECT id, sum(amount) OVER (PARTITION BY region ORDER BY id) AS running FROM sales ORDER BY id",
        "SELECT * FROM regions WHERE region IN (SELECT region FROM sales WHERE amount > 45) ORDER BY region",
        "FROM sales SELECT day, amount WHERE region = 'us' ORDER BY day, amount",
        "SELECT range AS n, n * n AS sq FROM range(5) ORDER BY n",
        "SELECT upper(region) AS r, list_transform([1, 2], lambda x: x * id) AS l FROM sales WHERE id <= 2 ORDER BY id",
        "SELECT 1 AS one /* ; DROP TABLE sales */",
        "select * from SALES where ID = 3",  # identifiers are case-insensitive, as in DuckDB
    ],
)
def test_results_match_duckdb_on_the_same_data(client: Client, lab: tuple[nubes.App, Any], sql: str) -> None:
    response = _sql(client, sql)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = _expected(lab[1], sql)
    assert body["rows"] == expected[:30]  # the endpoint's max_rows
    assert body["row_count"] == len(body["rows"])
    assert body["truncated"] is (len(expected) > 30)


def test_answer_shape(client: Client) -> None:
    body = _sql(client, "SELECT id, region, amount, day FROM sales WHERE id = 1").json()
    assert body["columns"] == [
        {"name": "id", "type": "BIGINT"},
        {"name": "region", "type": "VARCHAR"},
        {"name": "amount", "type": "DOUBLE"},
        {"name": "day", "type": "DATE"},
    ]
    assert body["rows"] == [{"id": 1, "region": "eu", "amount": 1.25, "day": "2024-01-01"}]
    assert body["datasets"] == ["sales"]
    assert body["bytes_read"] > 0
    assert isinstance(body["elapsed_ms"], float) and body["elapsed_ms"] >= 0
    assert body["limit"] == 30


def test_values_are_encoded_like_the_rest_of_nubes(client: Client) -> None:
    body = _sql(
        client,
        "SELECT 12.50::DECIMAL(10,2) AS d, 'nan'::DOUBLE AS nan, DATE '2024-02-29' AS day, "
        "TIMESTAMP '2024-01-01 10:00:00' AS ts, INTERVAL 90 MINUTE AS i, [1, 2] AS l, {'x': 1} AS s, "
        "MAP([1, 2], ['a', 'b']) AS m, 'abc'::BLOB AS b, NULL AS nothing",
    ).json()
    assert body["rows"] == [
        {"d": 12.5, "nan": None, "day": "2024-02-29", "ts": "2024-01-01T10:00:00", "i": 5400.0, "l": [1, 2],
         "s": {"x": 1}, "m": {"1": "a", "2": "b"}, "b": "YWJj", "nothing": None}
    ]


def test_repeated_column_names_stay_distinct(client: Client) -> None:
    body = _sql(client, "SELECT * FROM sales s JOIN regions r ON s.region = r.region WHERE s.id = 1").json()
    assert [c["name"] for c in body["columns"]] == ["id", "region", "amount", "day", "region_1", "name"]
    assert body["rows"] == [{"id": 1, "region": "eu", "amount": 1.25, "day": "2024-01-01", "region_1": "eu", "name": "Europe"}]


def test_describe_and_summarize_of_a_dataset_are_allowed(client: Client) -> None:
    described = _sql(client, "DESCRIBE sales").json()
    assert [r["column_name"] for r in described["rows"]] == ["id", "region", "amount", "day"]
    summary = _sql(client, "SUMMARIZE SELECT amount FROM sales").json()
    assert summary["rows"][0]["count"] == 40


# -- limits -------------------------------------------------------------------------------------------
def test_limit_truncates_and_says_so(client: Client) -> None:
    body = _sql(client, "SELECT id FROM sales ORDER BY id", limit=5).json()
    assert [r["id"] for r in body["rows"]] == [1, 2, 3, 4, 5]
    assert body["truncated"] is True and body["row_count"] == 5 and body["limit"] == 5
    exact = _sql(client, "SELECT id FROM sales WHERE id <= 5", limit=5).json()
    assert exact["truncated"] is False and exact["row_count"] == 5


def test_limit_is_capped_by_the_endpoint(client: Client) -> None:
    body = _sql(client, "SELECT id FROM sales ORDER BY id", limit=1000).json()
    assert body["limit"] == 30 and body["row_count"] == 30 and body["truncated"] is True
    default = _sql(client, "SELECT id FROM sales").json()
    assert default["limit"] == 30 and default["truncated"] is True
    zero = _sql(client, "SELECT id FROM sales", limit=0).json()
    assert zero["rows"] == [] and zero["truncated"] is True and [c["name"] for c in zero["columns"]] == ["id"]


def test_the_app_max_rows_caps_the_limit_too() -> None:
    app = nubes.App("small", storage=f"mem://lab-{uuid.uuid4().hex}", sql_endpoint=True, max_rows=3)
    body = Client(app).post("/_nubes/sql", json={"sql": "SELECT * FROM range(10)"}).json()
    assert body["limit"] == 3 and body["row_count"] == 3 and body["truncated"] is True


EXPENSIVE = "SELECT count(*) FROM range(200000) a CROSS JOIN range(200000) b WHERE a.range + b.range = 7"


def test_a_query_over_its_time_limit_is_stopped(client: Client) -> None:
    started = time.monotonic()
    response = _sql(client, EXPENSIVE)
    elapsed = time.monotonic() - started
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["title"] == "Query Timeout" and problem["timeout_s"] == 0.5
    assert "0.5 s" in problem["detail"]
    assert elapsed < 5


def test_requested_time_limits_are_capped(client: Client) -> None:
    started = time.monotonic()
    shorter = _sql(client, EXPENSIVE, timeout_s=0.1)
    assert shorter.status_code == 422 and shorter.json()["timeout_s"] == 0.1
    longer = _sql(client, EXPENSIVE, timeout_s=3600)
    assert longer.status_code == 422 and longer.json()["timeout_s"] == 2.0  # max_timeout_s
    assert time.monotonic() - started < 8


def test_the_connection_is_usable_after_a_timeout(client: Client) -> None:
    assert _sql(client, EXPENSIVE).status_code == 422
    assert _sql(client, "SELECT count(*) AS n FROM sales").json()["rows"] == [{"n": 40}]


# -- refusals -----------------------------------------------------------------------------------------
REFUSED = [
    # not a SELECT
    ("INSERT INTO sales VALUES (1, 'eu', 1.0, DATE '2024-01-01')", 403, "only SELECT statements are allowed, not INSERT"),
    ("UPDATE sales SET amount = 0", 403, "not UPDATE"),
    ("DELETE FROM sales", 403, "not DELETE"),
    ("CREATE TABLE t AS SELECT 1", 403, "not CREATE"),
    ("DROP TABLE sales", 403, "not DROP"),
    ("COPY sales TO '/tmp/nubes-leak.csv'", 403, "not COPY"),
    ("ATTACH '/tmp/nubes-leak.duckdb' AS x", 403, "not ATTACH"),
    ("DETACH x", 403, "not DETACH"),
    ("PRAGMA version", 403, "only SELECT statements are allowed"),
    ("SET threads = 1", 403, "not SET"),
    ("RESET threads", 403, "only SELECT statements are allowed"),
    ("INSTALL httpfs", 403, "only SELECT statements are allowed"),
    ("LOAD httpfs", 403, "only SELECT statements are allowed"),
    ("EXPORT DATABASE '/tmp/nubes-export'", 403, "not EXPORT"),
    ("CALL duckdb_settings()", 403, "not CALL"),
    ("EXPLAIN SELECT 1", 403, "not EXPLAIN"),
    ("PIVOT sales ON region USING sum(amount)", 403, "only SELECT statements are allowed"),
    # more than one statement, however hidden
    ("SELECT 1; DROP TABLE x", 403, "not DROP"),
    ("SELECT 1; SELECT 2", 403, "exactly one statement is allowed, not 2"),
    ("SELECT 1 --\n; DROP TABLE sales", 403, "not DROP"),
    # files, globs, URLs
    ("SELECT * FROM read_csv('/etc/passwd')", 403, "table function read_csv is not allowed"),
    ("SELECT * FROM 'data.csv'", 403, "reading files by path ('data.csv') is not allowed"),
    ("SELECT * FROM '/etc/passwd'", 403, "reading files by path"),
    ("SELECT * FROM 'nubes://home/secret/keys.csv'", 403, "reading files by path"),
    ("SELECT * FROM glob('*')", 403, "table function glob is not allowed"),
    ("SELECT * FROM read_text('/etc/hostname')", 403, "table function read_text"),
    ("SELECT (SELECT count(*) FROM read_blob('/etc/hostname'))", 403, "table function read_blob"),
    ("SELECT * FROM sales, LATERAL read_parquet('nubes://home/sales/part-0.parquet')", 403, "table function read_parquet"),
    ("SELECT * FROM parquet_metadata('nubes://home/sales/part-0.parquet')", 403, "table function parquet_metadata"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", 403, "table function sniff_csv"),
    ("DESCRIBE '/etc/passwd'", 403, "reading files by path"),
    # settings, environment, system catalog
    ("SELECT current_setting('threads')", 403, "function current_setting is not allowed"),
    ("SELECT getenv('HOME')", 403, "function getenv is not allowed"),
    ("SELECT getvariable('x')", 403, "function getvariable"),
    ("SELECT version()", 403, "function version"),
    ("SELECT pg_get_viewdef('sales')", 403, "function pg_get_viewdef"),
    ("SELECT list_transform(['threads'], lambda x: current_setting(x))", 403, "function current_setting"),
    ("SELECT sum(1) OVER (), current_database()", 403, "function current_database"),
    ("SELECT main.lower('a')", 403, "qualified function name main.lower is not allowed"),
    ("SELECT nextval('seq')", 403, "function nextval"),
    ("SELECT sleep_ms(60000)", 403, "function sleep_ms"),
    ("SELECT json_serialize_plan('SELECT 1')", 403, "function json_serialize_plan"),
    ("SELECT * FROM duckdb_settings()", 403, "table function duckdb_settings is not allowed"),
    ("SELECT * FROM duckdb_tables", 403, "unknown dataset duckdb_tables; known: regions, sales"),
    ("SELECT * FROM pg_settings", 403, "unknown dataset pg_settings"),
    ("SELECT * FROM sqlite_master", 403, "unknown dataset sqlite_master"),
    ("SELECT * FROM information_schema.tables", 403, "qualified table name information_schema.tables is not allowed"),
    ("SELECT * FROM main.sales", 403, "qualified table name main.sales is not allowed"),
    ("SELECT * FROM temp.main.sales", 403, "qualified table name temp.main.sales"),
    ("SELECT * FROM query_table('sales')", 403, "table function query_table"),
    ("SELECT * FROM query('SELECT 1')", 403, "table function query is not allowed"),
    ("SHOW TABLES", 403, "SHOW is not allowed"),
    ("SHOW ALL TABLES", 403, "SHOW is not allowed"),
    # tables that are not catalog datasets
    ("SELECT * FROM nope", 403, "unknown dataset nope; known: regions, sales"),
    ("SELECT * FROM sales JOIN orders USING (id)", 403, "unknown dataset orders"),
    # a CTE may not stand in for a system view (it would hide the reference to the real one)
    ("WITH pg_settings AS (SELECT 1) SELECT * FROM pg_settings", 403, "CTE name pg_settings is the name of a system view"),
    ("SELECT * FROM (WITH pg_settings AS (SELECT 1 AS x) SELECT * FROM pg_settings) a, pg_settings", 403, "CTE name pg_settings"),
    # unicode tricks: DuckDB has no U& escapes, and look-alike names are just unknown names
    ('SELECT * FROM U&"\\0073ales"', 400, "does not parse"),
    ('SELECT * FROM "ｓａｌｅｓ"', 403, "unknown dataset ｓａｌｅｓ"),
    ("SELECT * FROM \"re\u0430d_csv\"('/etc/passwd')", 403, "table function re\u0430d_csv is not allowed"),
    # syntax errors carry DuckDB's message
    ("SELEC 1", 400, 'syntax error at or near "SELEC"'),
    ("SELECT * FROM sales WHERE", 400, "syntax error"),
    ("-- only a comment", 400, "the query is empty"),
]


@pytest.mark.parametrize(("sql", "status", "fragment"), REFUSED, ids=[r[0][:40] for r in REFUSED])
def test_forbidden_sql_is_refused(client: Client, sql: str, status: int, fragment: str) -> None:
    response = _sql(client, sql)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert fragment in problem["detail"]
    if status == 403:
        assert problem["title"] == "SQL Refused" and problem["violations"]


def test_every_violation_is_named(client: Client) -> None:
    problem = _sql(client, "SELECT current_setting('threads') FROM read_csv('/etc/passwd'), main.sales, nope").json()
    assert problem["status"] == 403
    text = " | ".join(problem["violations"])
    for fragment in ("qualified table name main.sales", "unknown dataset nope", "table function read_csv", "function current_setting"):
        assert fragment in text


def test_nothing_was_written_by_refused_statements() -> None:
    assert not Path("/tmp/nubes-leak.csv").exists()
    assert not Path("/tmp/nubes-leak.duckdb").exists()
    assert not Path("/tmp/nubes-export").exists()


@pytest.mark.parametrize(
    ("body", "name"),
    [({}, "body.sql"), ({"sql": ""}, "body"), ({"sql": 1}, "body.sql"), ({"sql": "SELECT 1", "limit": -1}, "body"),
     ({"sql": "SELECT 1", "timeout_s": 0}, "body"), ({"sql": "SELECT 1", "rows": 1}, "body.rows"), ({"sql": "SELECT 1\x00"}, "body")],
)
def test_a_malformed_body_is_422(client: Client, body: dict[str, Any], name: str) -> None:
    response = client.post("/_nubes/sql", json=body)
    assert response.status_code == 422, response.text
    assert name in {e["name"] for e in response.json()["errors"]}


def test_errors_of_the_query_itself_are_400(client: Client) -> None:
    response = _sql(client, "SELECT no_such_column FROM sales")
    assert response.status_code == 400 and "no_such_column" in response.json()["detail"]
    assert _sql(client, "SELECT no_such_function(1)").status_code == 400
    assert _sql(client, "SELECT $1").status_code in (400, 422)
    assert _sql(client, "SELECT 'x'::INTEGER").status_code == 422


# -- on / off -----------------------------------------------------------------------------------------
def test_the_endpoint_is_absent_unless_enabled() -> None:
    app = nubes.App("plain", storage=f"mem://lab-{uuid.uuid4().hex}")
    assert Client(app).post("/_nubes/sql", json={"sql": "SELECT 1"}).status_code == 404
    assert all(r.path != "/_nubes/sql" for r in app.router.routes)


def test_only_post_is_allowed(client: Client) -> None:
    response = client.get("/_nubes/sql")
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


def test_sql_endpoint_true_means_the_defaults() -> None:
    app = nubes.App("defaults", storage=f"mem://lab-{uuid.uuid4().hex}", sql_endpoint=True)
    body = Client(app).post("/_nubes/sql", json={"sql": "SELECT 42 AS answer"}).json()
    assert body["rows"] == [{"answer": 42}] and body["limit"] == 10_000


# -- audit and lineage --------------------------------------------------------------------------------
class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append({"msg": record.getMessage(), **getattr(record, "nubes", {})})


@pytest.fixture
def audit() -> Iterator[list[dict[str, Any]]]:
    capture = _Capture()
    log = logging.getLogger("nubes")
    log.addHandler(capture)
    try:
        yield capture.entries
    finally:
        log.removeHandler(capture)


def test_every_query_is_audited(client: Client, audit: list[dict[str, Any]]) -> None:
    _sql(client, "SELECT count(*) FROM sales")
    _sql(client, "SELECT * FROM read_csv('/etc/passwd')")
    entries = [e for e in audit if e["msg"] == "sql endpoint"]
    assert len(entries) == 2
    ok, refused = entries
    assert ok["sql"] == "SELECT count(*) FROM sales" and ok["rows"] == 1 and ok["refused"] is None
    assert ok["datasets"] == ["sales"] and ok["bytes_read"] > 0 and ok["request_id"]
    assert refused["sql"] == "SELECT * FROM read_csv('/etc/passwd')" and refused["status"] == 403
    assert "table function read_csv" in refused["refused"] and "rows" not in refused


def test_reads_are_recorded_in_lineage(client: Client, lab: tuple[nubes.App, Any]) -> None:
    response = _sql(client, "SELECT count(*) FROM regions")
    rid = response.headers["x-nubes-request-id"]
    entries = [e for e in lineage.history(lab[0].storage, "regions") if e["request_id"] == rid]
    assert len(entries) == 1
    assert entries[0]["route"] == "/_nubes/sql"
    assert [r["dataset"] for r in entries[0]["reads"]] == ["regions"]


# -- layer 2 on its own: the locked connection --------------------------------------------------------
@pytest.fixture
def sandbox(lab: tuple[nubes.App, Any]) -> Iterator[Sandbox]:
    box = Sandbox(lab[0], SqlEndpoint())
    box.prepare(["sales"])
    try:
        yield box
    finally:
        box.close()


def test_the_locked_connection_reads_its_views(sandbox: Sandbox) -> None:
    assert sandbox.connection.sql("SELECT count(*) FROM sales").fetchall() == [(40,)]
    # exactly the dataset's objects (the prefix dataset is its own store, under its own alias)
    assert [u.rsplit("/", 1)[-1] for u in sandbox.allowed] == ["part-0.parquet", "part-1.parquet"]
    assert all(u.startswith("nubes://") and "/sales/" not in u for u in sandbox.allowed)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_csv('nubes://home/secret/keys.csv')",  # same store, not a referenced dataset
        "SELECT * FROM read_csv('nubes://home/regions.csv')",  # a catalog dataset the query did not name
        "SELECT * FROM read_parquet('{sales}/*.parquet')",  # a glob, even over allowed objects
        "SELECT * FROM read_parquet('{sales}/../regions.csv')",
        "COPY (SELECT 1) TO '/tmp/nubes-leak.csv'",
        "ATTACH '/tmp/nubes-leak.duckdb' AS leak",
        "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
    ],
)
def test_the_locked_connection_refuses_file_access_even_unvalidated(sandbox: Sandbox, sql: str) -> None:
    sql = sql.format(sales=sandbox.allowed[0].rsplit("/", 1)[0])
    with pytest.raises(duckdb.Error) as info:
        sandbox.connection.sql(sql).fetchall()
    assert isinstance(info.value, duckdb.PermissionException) or "disabled" in str(info.value)
    assert not Path("/tmp/nubes-leak.csv").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET lock_configuration = false",
        "SET allowed_paths = ['/etc/passwd']",
        "SET allowed_directories = ['/']",
        "SET autoload_known_extensions = true",
        "SET disabled_filesystems = ''",
        "PRAGMA threads = 64",
    ],
)
def test_the_locked_connection_cannot_be_unlocked(sandbox: Sandbox, sql: str) -> None:
    with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
        sandbox.connection.execute(sql)
    assert sandbox.connection.sql("SELECT count(*) FROM sales").fetchall() == [(40,)]


def test_load_is_refused_by_the_engine(sandbox: Sandbox) -> None:
    with pytest.raises(duckdb.Error, match="disabled"):
        sandbox.connection.execute("LOAD httpfs")


def test_run_maps_an_engine_refusal_to_403(sandbox: Sandbox) -> None:
    with pytest.raises(Refused) as info:
        sandbox.run("SELECT * FROM read_csv('/etc/passwd')", limit=10, timeout_s=5)
    assert info.value.status == 403
    assert isinstance(info.value.__cause__, duckdb.PermissionException)
    assert "sandbox refused" in info.value.violations[0]


def test_run_needs_a_locked_sandbox(lab: tuple[nubes.App, Any]) -> None:
    with Sandbox(lab[0]) as box, pytest.raises(RuntimeError):
        box.run("SELECT 1", limit=1, timeout_s=1)


def test_enable_external_access_blocks_the_nubes_filesystem_unless_allowed() -> None:
    """The measured behaviour the sandbox is built on: views are bound late, so a view over
    ``nubes://`` created before ``enable_external_access=false`` fails after it, unless its objects are
    listed in ``allowed_paths`` (exact paths: other objects, globs and ``..`` stay refused)."""
    store = nubes.storage.open(f"mem://lab-{uuid.uuid4().hex}")
    store.put("t.parquet", _parquet(pl.DataFrame({"a": [1, 2]})))
    store.put("u.parquet", _parquet(pl.DataFrame({"a": [3]})))
    for allowed in (False, True):
        with Bridge({"home": store}) as bridge:
            con = bridge.duckdb()
            con.execute("CREATE TEMP VIEW t AS SELECT * FROM read_parquet('nubes://home/t.parquet')")
            if allowed:
                con.execute("SET allowed_paths = ['nubes://home/t.parquet']")
            con.execute("SET enable_external_access = false")
            if allowed:
                assert con.sql("SELECT sum(a) FROM t").fetchall() == [(3,)]
            else:
                with pytest.raises(duckdb.PermissionException):
                    con.sql("SELECT sum(a) FROM t").fetchall()
            for other in ("nubes://home/u.parquet", "nubes://home/*.parquet", "nubes://home/x/../u.parquet"):
                with pytest.raises(duckdb.PermissionException):
                    con.sql(f"SELECT * FROM read_parquet('{other}')").fetchall()


# -- validation on its own ----------------------------------------------------------------------------
def test_validate_returns_the_datasets_as_declared() -> None:
    con = duckdb.connect()
    try:
        assert validate(con, "SELECT * FROM Sales JOIN regions USING (region)", ["sales", "regions"]).datasets == ["regions", "sales"]
        assert validate(con, "WITH sales AS (SELECT 1) SELECT * FROM sales", ["sales"]).datasets == []
        assert validate(con, "SELECT * FROM range(3), unnest([1, 2])", []).datasets == []
        with pytest.raises(HTTPError) as info:
            validate(con, "SELECT 1;;; SELECT", [])
        assert info.value.status == 400
    finally:
        con.close()


def test_the_function_rules() -> None:
    for name in ("current_setting", "CURRENT_SETTING", "duckdb_extensions", "pg_get_viewdef", "has_table_privilege",
                 "nextval", "write_log", "json_execute_serialized_sql", "pragma_version"):
        assert denied_function(name), name
    for name in ("sum", "upper", "list_transform", "regexp_matches", "random", "uuid", "now", "pg_typeof", "strftime", "+"):
        assert not denied_function(name), name


def test_endpoint_settings_are_checked_when_declared() -> None:
    for bad in ({"timeout_s": 0}, {"max_timeout_s": -1}, {"max_rows": -1}, {"threads": 0}, {"memory_limit": "1GB'; SET x=1"}):
        with pytest.raises(ValueError):
            SqlEndpoint(**bad)
    assert SqlEndpoint(memory_limit="256MB", threads=1).memory_limit == "256MB"


def test_memory_and_threads_are_applied(lab: tuple[nubes.App, Any]) -> None:
    with Sandbox(lab[0], SqlEndpoint(memory_limit="256MB", threads=1)) as box:
        box.prepare([])
        settings = dict(box.connection.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('threads', 'memory_limit', 'enable_external_access', "
            "'lock_configuration', 'autoinstall_known_extensions', 'autoload_known_extensions', 'allow_community_extensions', "
            "'temp_directory')").fetchall())
    assert settings == {
        "threads": "1", "memory_limit": "244.1 MiB", "enable_external_access": "false", "lock_configuration": "true",
        "autoinstall_known_extensions": "false", "autoload_known_extensions": "false", "allow_community_extensions": "false",
        "temp_directory": "",
    }


def test_concurrent_queries_are_isolated(client: Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        slow = pool.submit(_sql, client, EXPENSIVE)
        fast = [pool.submit(_sql, client, f"SELECT count(*) AS n FROM sales WHERE id <= {i}") for i in (1, 2, 3)]
        assert [f.result().json()["rows"] for f in fast] == [[{"n": 1}], [{"n": 2}], [{"n": 3}]]
        assert slow.result().status_code == 422


def test_the_sandbox_never_locks_the_apps_shared_database(lab: tuple[nubes.App, Any], client: Client) -> None:
    """The sandbox has a database of its own; after a query the app's routes still change settings and read."""
    from nubes.data.session import app_database

    app = lab[0]
    with Sandbox(app, SqlEndpoint()) as box:
        box.prepare(["sales"])
        assert box.session.bridge._database is None  # not a cursor of the shared database
    assert _sql(client, "SELECT count(*) AS n FROM sales").json()["rows"] == [{"n": 40}]

    @app.get("/unlocked")
    def unlocked(ctx: nubes.Context) -> dict:
        ctx.sql("SET threads = 2")
        setting = ctx.sql("SELECT value FROM duckdb_settings() WHERE name = 'lock_configuration'").fetchall()[0][0]
        return {"lock": setting, "n": ctx.sql("SELECT count(*) FROM regions").fetchall()[0][0]}

    assert Client(app).get("/unlocked").json() == {"lock": "false", "n": 3}
    assert app_database(app).sessions == 0
