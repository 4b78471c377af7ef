"""examples/analytics answers as DuckDB over the same order lines does, and its events do their work."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

import nubes
from nubes.core.loader import load_app
from nubes.testing import Client

APP = Path(__file__).resolve().parents[1] / "examples" / "analytics" / "app.py"


@pytest.fixture
def sales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nubes.App:
    monkeypatch.setenv("NUBES_STORAGE", (tmp_path / "home").as_uri())  # the datasets are bound to the home store at import
    return load_app(f"{APP}:app")


def _orders(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    return [{"day": f"2026-11-{rng.randint(1, 30):02d}", "region": rng.choice(["north", "south", "east"]),
             "amount": round(rng.uniform(1, 500), 2)} for _ in range(n)]


def test_revenue_and_the_nightly_rollup_match_duckdb_over_the_same_lines(sales: nubes.App) -> None:
    import duckdb

    client = Client(sales)
    assert client.get("/revenue").json() == [] and client.get("/daily").json() == []  # nothing has arrived yet
    lines = _orders(300, 1) + _orders(200, 2)
    for batch in (lines[:300], lines[300:]):
        assert client.post("/orders", json=batch).json() == {"added": len(batch)}
    con = duckdb.connect()
    con.execute("create table o (day date, region text, amount double)")
    con.executemany("insert into o values (?, ?, ?)", [(o["day"], o["region"], o["amount"]) for o in lines])
    expected = [{"region": r, "orders": n, "revenue": v} for r, n, v in
                con.execute("select region, count(*), round(sum(amount), 2) from o group by 1 order by 1").fetchall()]
    assert client.get("/revenue").json() == expected
    assert client.get("/revenue", params={"region": "south"}).json() == [e for e in expected if e["region"] == "south"]

    [result] = sales.handle_event(nubes.Scheduled("nightly", datetime(2026, 12, 1, 2, tzinfo=UTC)))
    assert result == {"rolled_up_at": "2026-12-01T02:00:00+00:00"}
    daily = client.get("/daily").json()
    raw = con.execute("select strftime(day, '%Y-%m-%d'), region, count(*), round(sum(amount), 2) from o group by all "
                      "order by 1, 2").fetchall()
    assert [(d["day"], d["region"], d["orders"], d["revenue"]) for d in daily] == raw


def test_bad_order_lines_are_422_and_write_nothing(sales: nubes.App) -> None:
    client = Client(sales)
    for body in ([], [{"day": "yesterday", "region": "north", "amount": 1}], [{"region": "north"}], {"day": "2026-11-01"}):
        answer = client.post("/orders", json=body)
        assert answer.status_code == 422 and answer.headers["content-type"].startswith("application/problem+json"), body
    assert client.get("/revenue").json() == []


def test_a_landed_batch_is_logged(sales: nubes.App, capsys: pytest.CaptureFixture[str]) -> None:
    Client(sales).post("/orders", json=_orders(3, 3))
    [batch] = [o for o in sales.storage.list("orders/") if o.key.endswith(".parquet")]
    sales.handle_event(nubes.ObjectCreated(store=sales.storage_uri, key=batch.key, size=batch.size))
    assert '"msg": "order batch landed"' in capsys.readouterr().err


def test_no_route_of_it_carries_scikit_learn(sales: nubes.App) -> None:
    """What `nubes build` derives for each route: DuckDB for the SQL routes and no model library (Polars
    stays with DuckDB: a SQL answer asked for as ?format=parquet or arrow is written by Polars)."""
    from nubes.deploy.build.appfiles import locate
    from nubes.deploy.build.derive import analyse

    source = locate(f"{APP}:app")
    base, units, _ = analyse(source.app, source.module, "import nubes.adapters.aws\n", ["s3://b/p"], source.scope)
    tops = {u.key: {m.split(".")[0] for m in u.modules} | {m.split(".")[0] for m in base.resolved()} for u in units}
    assert {"GET /revenue", "POST /orders", "GET /daily"} <= set(tops)
    sql = [t for key, t in tops.items() if key in ("GET /revenue", "POST /orders", "GET /daily")]
    assert all("duckdb" in t for t in sql) and not any(t & {"sklearn", "scipy", "onnxruntime"} for t in tops.values()), tops
