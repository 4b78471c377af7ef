"""The analytics contract on file:// and on s3:// (moto_server): catalog, SQL and Polars routes checked
against DuckDB run directly, hostile parameters, quality checks and 409, atomic writes, lineage, limits."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

import nubes
from nubes.core.loader import load_app
from nubes.data import lineage
from nubes.testing import Client
from nubes.testing.servers.moto import MotoServer

APP = Path(__file__).resolve().parents[1] / "apps" / "analytics_app.py"
REGIONS = ["north", "south", "east", "west"]


def make_orders(n: int = 400, *, bad: bool = False) -> pl.DataFrame:
    orders = pl.DataFrame(
        {
            "order_id": list(range(1, n + 1)),
            "customer_id": [i % 25 + 1 for i in range(n)],
            "region": [REGIONS[i % 4] for i in range(n)],
            "day": pl.date_range(pl.date(2023, 12, 1), pl.date(2024, 3, 31), eager=True).sample(n, with_replacement=True, seed=7),
            "amount": [round((i * 37 % 200) + 0.25 * (i % 4), 2) for i in range(n)],
        }
    )
    if bad:
        orders = orders.with_columns(pl.when(pl.col("order_id") % 50 == 0).then(-1.0).otherwise(pl.col("amount")).alias("amount"))
    return orders


def make_customers() -> pl.DataFrame:
    tiers = ["gold", "silver", "bronze", "platinum"]
    return pl.DataFrame({"customer_id": list(range(1, 26)), "name": [f"customer {i:02d}" for i in range(1, 26)],
                         "tier": [tiers[i % 3] if i != 13 else tiers[3] for i in range(1, 26)]})


def put_data(store: nubes.storage.ObjectStore, orders: pl.DataFrame) -> None:
    buf = io.BytesIO()
    orders.write_parquet(buf, row_group_size=100)
    store.put("orders.parquet", buf.getvalue())
    store.put("customers.csv", make_customers().write_csv().encode())


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server, server.environment():
        server.create_bucket("shop-data")
        yield server


@pytest.fixture(params=["file", "s3"])
def shop(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[nubes.App, str, Path]]:
    if request.param == "file":
        data_uri = f"file://{tmp_path / 'data'}"
    else:
        request.getfixturevalue("moto")
        data_uri = f"s3://shop-data/{uuid.uuid4().hex}"
    monkeypatch.setenv("SHOP_DATA", data_uri)
    monkeypatch.setenv("SHOP_HOME", f"mem://shop-home-{uuid.uuid4().hex}")
    store = nubes.storage.open(data_uri)
    orders = make_orders()
    put_data(store, orders)
    local = tmp_path / "local"
    local.mkdir()
    orders.write_parquet(local / "orders.parquet")
    make_customers().write_csv(local / "customers.csv")
    yield load_app(str(APP)), data_uri, local


def test_parameterised_sql_matches_duckdb_run_directly(shop: tuple[nubes.App, str, Path]) -> None:
    app, _, local = shop
    got = Client(app).get("/revenue", params={"region": "south", "since": "2024-02-01"}).json()
    raw = duckdb.sql(
        f"select region, count(*) as orders, sum(amount) as revenue from read_parquet('{local}/orders.parquet') "
        "where region = 'south' and day >= DATE '2024-02-01' group by region"
    ).fetchall()
    assert [(r["region"], r["orders"], pytest.approx(r["revenue"])) for r in got] == raw


def test_join_of_parquet_and_csv_matches_duckdb(shop: tuple[nubes.App, str, Path]) -> None:
    app, _, local = shop
    got = Client(app).get("/top-customers?n=4").json()
    raw = duckdb.sql(
        f"select c.name, c.tier, round(sum(o.amount), 2) as spent from read_parquet('{local}/orders.parquet') o "
        f"join read_csv('{local}/customers.csv') c using (customer_id) group by all order by spent desc, c.name limit 4"
    ).fetchall()
    assert [tuple(r.values()) for r in got] == raw


def test_polars_route_matches_polars_on_the_file(shop: tuple[nubes.App, str, Path]) -> None:
    app, _, local = shop
    got = Client(app).get("/big-orders", params={"min_amount": "150"}).json()
    raw = pl.read_parquet(local / "orders.parquet").filter(pl.col("amount") >= 150).select("order_id", "amount").sort("order_id")
    assert got == raw.to_dicts() and len(got) > 10


@pytest.mark.parametrize("hostile", ["south' OR '1'='1", "south'; drop table orders; --", "$region", "\\'; select 1"])
def test_hostile_parameter_values_stay_data(shop: tuple[nubes.App, str, Path], hostile: str) -> None:
    app, _, local = shop
    client = Client(app)
    assert client.get("/revenue", params={"region": hostile}).json() == []
    expected = duckdb.sql(f"select count(*) from read_parquet('{local}/orders.parquet') "
                          "where region = 'south' and day >= DATE '2024-01-01'").fetchall()[0][0]
    assert client.get("/revenue", params={"region": "south"}).json()[0]["orders"] == expected  # orders still there


def test_failing_error_check_answers_409_naming_the_checks(shop: tuple[nubes.App, str, Path]) -> None:
    app, data_uri, _ = shop
    put_data(nubes.storage.open(data_uri), make_orders(bad=True))
    client = Client(app)
    r = client.get("/revenue", params={"region": "north"})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["dataset"] == "orders"
    assert [c["check"] for c in problem["checks"]] == ["in_range(amount, min=0)"]
    assert problem["checks"][0]["failing"] == 8
    assert client.get("/order-count").json() == {"orders": 400}  # the route that opted out still answers


def test_warn_checks_do_not_block(shop: tuple[nubes.App, str, Path]) -> None:
    app, _, _ = shop  # customer 13 has tier 'platinum': a warn-level failure
    assert Client(app).get("/top-customers").status_code == 200


def test_catalog_endpoint_reports_schema_size_rows_and_checks(shop: tuple[nubes.App, str, Path]) -> None:
    app, _, _ = shop
    datasets = {d["name"]: d for d in Client(app).get("/_nubes/catalog").json()["datasets"]}
    orders = datasets["orders"]
    assert orders["schema"] == {"order_id": "BIGINT", "customer_id": "BIGINT", "region": "VARCHAR", "day": "DATE", "amount": "DOUBLE"}
    assert orders["rows"] == 400 and orders["bytes"] > 1000 and orders["owner"] == "sales-ops" and orders["status"] == "ok"
    assert datasets["customers"]["status"] == "warning" and datasets["customers"]["rows"] is None
    assert datasets["daily"]["status"] == "unavailable"  # not built yet: reported, not a crash


def test_writes_are_atomic_and_readers_never_see_a_mix(shop: tuple[nubes.App, str, Path]) -> None:
    app, data_uri, _ = shop
    client = Client(app)
    assert client.post("/daily/rebuild").json()["rows"] > 0
    expected = client.get("/daily").json()
    assert [r["region"] for r in expected] == sorted(REGIONS)
    seen: list[object] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(Client(app).get("/daily").json())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(4):
            assert client.post("/daily/rebuild").status_code == 200
    finally:
        stop.set()
        thread.join()
    assert seen and all(view == expected for view in seen)
    store = nubes.storage.open(data_uri + "/daily")
    manifest = json.loads(store.get("_manifest.json"))
    assert all(f.split("/")[1].startswith("region=") for f in manifest["files"])
    assert len(manifest["retired"]) == 4  # superseded versions stay readable for in-flight readers


def test_superseded_versions_are_deleted_after_the_grace_period(shop: tuple[nubes.App, str, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from nubes.data import writes as analytics

    app, data_uri, _ = shop
    client = Client(app)
    store = nubes.storage.open(data_uri + "/daily")
    client.post("/daily/rebuild")
    first = set(json.loads(store.get("_manifest.json"))["files"])
    client.post("/daily/rebuild")
    monkeypatch.setattr(analytics, "SUPERSEDED_GRACE_S", 0.0)
    client.post("/daily/rebuild")
    manifest = json.loads(store.get("_manifest.json"))
    live = {o.key for o in store.list("") if not o.key.startswith("_")}
    assert not first & live  # the first version is gone
    assert live == set(manifest["files"]) | set(manifest["retired"][0]["files"])  # the one just replaced stays
    assert len(manifest["retired"]) == 1


def test_append_adds_a_version_and_failed_write_keeps_the_old(shop: tuple[nubes.App, str, Path]) -> None:
    app, _data_uri, _ = shop
    client = Client(app)
    first = client.post("/daily/rebuild").json()["rows"]
    assert client.post("/daily/rebuild?mode=append").json()["rows"] == 2 * first
    before = client.get("/daily").json()
    ctx_app = app

    @ctx_app.post("/daily/broken")
    def broken(ctx: nubes.Context) -> None:
        ctx.write("daily", pl.DataFrame({"day": [1]}), partition_by="nonexistent")

    assert client.post("/daily/broken").status_code == 500
    assert client.get("/daily").json() == before


@pytest.mark.parametrize("fmt", ["parquet", "csv", "ndjson"])
def test_a_relation_with_bound_parameters_is_written_with_them(shop: tuple[nubes.App, str, Path], fmt: str) -> None:
    """ctx.write(ctx.sql(query, name=value)): the relation's parameters go with it (its SQL text alone has $name)."""
    app, data_uri, _ = shop
    app.dataset(f"picked_{fmt}", f"{data_uri}/picked_{fmt}/", format=fmt)

    @app.post(f"/picked/{fmt}")
    def pick(ctx: nubes.Context, region: str) -> object:
        ctx.write(f"picked_{fmt}", ctx.sql("select region, amount from orders where region = $region", region=region))
        return ctx.sql(f"select count(*) as n, min(region) as lo, max(region) as hi from picked_{fmt}")

    client = Client(app)
    answer = client.post(f"/picked/{fmt}?region=north")
    assert answer.status_code == 200, answer.text
    [row] = answer.json()
    assert row["lo"] == row["hi"] == "north" and row["n"] == make_orders().filter(pl.col("region") == "north").height


def test_lineage_records_reads_and_writes(shop: tuple[nubes.App, str, Path]) -> None:
    app, _, _ = shop
    client = Client(app)
    r = client.post("/daily/rebuild")
    entry = next(lineage.history(app.storage, "daily"))
    assert entry["request_id"] == r.headers["x-nubes-request-id"] and entry["route"] == "/daily/rebuild"
    read = next(x for x in entry["reads"] if x["dataset"] == "orders")
    assert read["objects"][0]["key"] == "orders.parquet" and read["objects"][0]["etag"]
    assert read["bytes_read"] > 0  # every query of the invocation (checks, the COPY, the count) is counted
    written = next(x for x in entry["writes"] if x["dataset"] == "daily")
    assert written["mode"] == "overwrite" and len(written["objects"]) == 4


def test_row_limit_guards_responses(shop: tuple[nubes.App, str, Path]) -> None:
    app, _, _ = shop
    r = Client(app).get("/all-orders")
    assert r.status_code == 413 and r.json()["max_rows"] == 50


def test_narrow_query_reads_a_fraction_of_a_wide_parquet_file(tmp_path: Path) -> None:
    wide = pl.DataFrame({f"c{i}": pl.int_range(0, 200_000, eager=True) * (i + 1) for i in range(20)})
    buf = io.BytesIO()
    wide.write_parquet(buf, row_group_size=50_000, compression="uncompressed")
    store = nubes.storage.open(f"file://{tmp_path}")
    info = store.put("wide.parquet", buf.getvalue())
    app = nubes.App("wide", storage=f"mem://wide-{uuid.uuid4().hex}")
    app.dataset("wide", f"file://{tmp_path}/wide.parquet")

    @app.get("/sum")
    def total(ctx: nubes.Context) -> dict:
        return {"sum": ctx.sql("select sum(c7) from wide").fetchall()[0][0]}

    assert Client(app).get("/sum").json() == {"sum": int(wide["c7"].sum())}
    read = next(lineage.history(app.storage, "wide"))["reads"][0]["bytes_read"]
    assert read < 0.15 * info.size, (read, info.size)


def test_catalog_yaml_beside_the_app(tmp_path: Path) -> None:
    store = nubes.storage.open(f"file://{tmp_path}/data")
    store.put("t.csv", b"id,v\n1,a\n2,b\n")
    (tmp_path / "catalog.yaml").write_text(
        "datasets:\n"
        f"  things:\n    uri: file://{tmp_path}/data/t.csv\n    owner: me\n"
        "    checks:\n      - not_null: id\n      - accepted_values: {column: v, values: [a, b]}\n"
    )
    (tmp_path / "yapp.py").write_text(
        "import nubes\napp = nubes.App('y', storage='mem://yapp')\n"
        "@app.get('/n')\ndef n(ctx):\n    return {'n': ctx.sql('select count(*) from things').fetchall()[0][0]}\n"
    )
    app = load_app(str(tmp_path / "yapp.py"))
    assert [d.name for d in app.catalog] == ["things"]
    assert [c.name for c in app.catalog.get("things").checks] == ["not_null(id)", "accepted_values(v, ['a', 'b'])"]
    assert Client(app).get("/n").json() == {"n": 2}


def test_bad_declarations_are_clear_errors() -> None:
    app = nubes.App("bad", storage="mem://bad")
    with pytest.raises(nubes.errors.ConfigError, match="SQL identifier"):
        app.dataset("my-data", "file://x/y.parquet")
    with pytest.raises(nubes.errors.ConfigError, match="cannot infer the format"):
        app.dataset("x", "file://x/y.xlsx")
    with pytest.raises(nubes.errors.ConfigError, match="needs a scheme"):
        app.dataset("x", "/tmp/y.parquet")
    app.dataset("x", "file://x/y.parquet")
    with pytest.raises(nubes.errors.ConfigError, match="declared twice"):
        app.dataset("x", "file://x/z.parquet")


def test_join_of_two_ctx_tables(shop: tuple[nubes.App, str, Path]) -> None:
    """Polars reads both sides of a join at the same time: each scan runs on its own cursor (was HTTP 500)."""
    app, _, local = shop

    @app.get("/tier-revenue")
    def tier_revenue(ctx: nubes.Context) -> pl.LazyFrame:
        return (
            ctx.table("orders").join(ctx.table("customers"), on="customer_id")
            .group_by("tier").agg(pl.col("amount").sum().round(2).alias("revenue"), pl.len().alias("orders")).sort("tier")
        )

    r = Client(app).get("/tier-revenue")
    assert r.status_code == 200, r.text
    raw = (
        pl.read_parquet(local / "orders.parquet").join(pl.read_csv(local / "customers.csv"), on="customer_id")
        .group_by("tier").agg(pl.col("amount").sum().round(2).alias("revenue"), pl.len().alias("orders")).sort("tier")
    )
    assert r.json() == raw.to_dicts()
    entry = next(lineage.history(app.storage, "customers"))
    assert {x["dataset"] for x in entry["reads"]} == {"orders", "customers"}
    assert all(x["bytes_read"] > 0 for x in entry["reads"])


def test_is_between_filter_is_pushed_into_ctx_table(tmp_path: Path) -> None:
    """A selective ``is_between`` on a sorted column skips row groups, as the same filter in SQL does."""
    ids = pl.DataFrame({"id": pl.int_range(0, 200_000, eager=True), "v": pl.int_range(0, 200_000, eager=True) * 3})
    buf = io.BytesIO()
    ids.write_parquet(buf, row_group_size=20_000, compression="uncompressed")
    nubes.storage.open(f"file://{tmp_path}").put("ids.parquet", buf.getvalue())
    app = nubes.App("between", storage=f"mem://between-{uuid.uuid4().hex}")
    app.dataset("ids", f"file://{tmp_path}/ids.parquet")

    @app.get("/all")
    def everything(ctx: nubes.Context) -> pl.LazyFrame:
        return ctx.table("ids").select(pl.col("v").sum())

    @app.get("/between")
    def between(ctx: nubes.Context, lo: int, hi: int) -> pl.LazyFrame:
        return ctx.table("ids").filter(pl.col("id").is_between(lo, hi)).select(pl.len().alias("n"), pl.col("v").sum())

    client = Client(app)
    assert client.get("/all").status_code == 200
    whole = next(lineage.history(app.storage, "ids"))["reads"][0]["bytes_read"]
    assert client.get("/between", params={"lo": 50_000, "hi": 50_099}).json() == [{"n": 100, "v": 3 * sum(range(50_000, 50_100))}]
    pruned = next(lineage.history(app.storage, "ids"))["reads"][0]["bytes_read"]
    assert pruned < 0.25 * whole, (pruned, whole)


def test_invocations_share_one_database_and_are_metered_apart(tmp_path: Path) -> None:
    """A warm instance opens one DuckDB database; concurrent invocations each record exactly their own reads."""
    from concurrent.futures import ThreadPoolExecutor

    from nubes.data.session import app_database

    store = nubes.storage.open(f"file://{tmp_path}")
    app = nubes.App("shared", storage=f"mem://shared-{uuid.uuid4().hex}")
    for i in range(3):
        buf = io.BytesIO()
        pl.DataFrame({"v": pl.int_range(0, (i + 1) * 30_000, eager=True)}).write_parquet(buf, row_group_size=10_000)
        store.put(f"t{i}.parquet", buf.getvalue())
        # written an hour ago: DuckDB trusts its cached footer from the first read on (it does not for files
        # modified in the last 10 s), so every invocation after the first reads the same bytes
        os.utime(tmp_path / f"t{i}.parquet", (time.time() - 3600, time.time() - 3600))
        app.dataset(f"t{i}", f"file://{tmp_path}/t{i}.parquet")

    @app.get("/sum/{i}")
    def total(ctx: nubes.Context, i: int) -> dict:
        ctx.sql(f"SELECT count(*) FROM t{i}")  # creates the dataset's view (TEMP: the invocation's own)
        ctx.sql(f"CREATE TEMP VIEW mine AS SELECT * FROM t{i}")  # so is this one, though all share one database
        return {"sum": ctx.sql("SELECT sum(v) FROM mine").fetchall()[0][0]}

    client = Client(app)
    solo = {}
    for i in range(3):
        assert client.get(f"/sum/{i}").json()["sum"] == sum(range((i + 1) * 30_000))  # makes the shared view
        assert client.get(f"/sum/{i}").json()["sum"] == sum(range((i + 1) * 30_000))
        solo[i] = next(lineage.history(app.storage, f"t{i}"))["reads"][0]["bytes_read"]
        assert solo[i] > 0
    database = app_database(app)
    assert database.sessions == 0  # every session closed with its invocation

    def call(i: int) -> tuple[int, str]:
        r = Client(app).get(f"/sum/{i}")
        return i, r.headers["x-nubes-request-id"]

    with ThreadPoolExecutor(4) as pool:
        calls = list(pool.map(call, [n % 3 for n in range(18)]))
    assert app_database(app) is database and database.sessions == 0
    by_request = {e["request_id"]: e for e in lineage.history(app.storage)}
    for i, rid in calls:
        reads = by_request[rid]["reads"]
        assert [r["dataset"] for r in reads] == [f"t{i}"] and reads[0]["bytes_read"] == solo[i]


def test_a_private_session_has_its_own_database(shop: tuple[nubes.App, str, Path]) -> None:
    from nubes.data.session import Session, app_database

    app, _, _ = shop
    shared = Session(app)
    private = Session(app, private=True)
    try:
        assert shared.bridge._database is app_database(app) and private.bridge._database is None
        private.connection.execute("SET lock_configuration = true")
        assert shared.sql("SELECT count(*) FROM orders").fetchall() == [(400,)]
        shared.connection.execute("SET threads = 2")  # the shared database is not locked
    finally:
        shared.close()
        private.close()
