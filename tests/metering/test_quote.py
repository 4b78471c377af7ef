"""Quotes against the metered cost of the real run (within ±30%), by each method, with no side effects."""

from __future__ import annotations

import json
import statistics

import pytest
from tests.metering.conftest import METERING_APP
from typer.testing import CliRunner

import nubes
from nubes.cli.main import cli
from nubes.metering import configure, flush
from nubes.metering.bills import bill
from nubes.metering.ledger import PREFIX, records
from nubes.metering.quote import quote
from nubes.testing import Client

TOLERANCE = 0.30
PATHS = ["/summary", "/top?n=20", "/summary?min_distance=12.5"]


@pytest.fixture(autouse=True)
def roomy(app: nubes.App) -> None:
    """Real runs and quotes at 4,096 MB, above what this test process holds (the whole suite's imports
    included): the light routes fit, so the quote prices the memory the real run was metered at (heavy
    requests are in test_quote_heavy.py)."""
    configure(app, memory_mb=4096)


def run_for_real(app: nubes.App, path: str, n: int = 8) -> None:
    c = Client(app)
    for _ in range(n):
        assert c.get(path).status_code == 200
    assert flush(app)


def metered(app: nubes.App, route: str, provider: str) -> float:
    """Median metered cost of the route's warm runs, re-priced on ``provider`` (same durations and memory)."""
    rows = bill(app, by="request", route=route, what_if=provider)["rows"]
    warm = [r for r in rows if not r["cold_start"]] or rows
    return statistics.median(r["cost_usd"] for r in warm[-5:])  # steady state: the instance's first runs warm caches


def check_within(app: nubes.App, result: dict, route: str) -> None:
    for e in result["estimates"]:
        if e["plan"] == "flex":
            continue  # the ledger's what-if uses the azure_plan setting (consumption); flex is checked below
        actual = metered(app, route, e["provider"])
        assert e["low_usd"] <= e["expected_usd"] <= e["high_usd"]
        assert abs(e["expected_usd"] / actual - 1) <= TOLERANCE, (e, actual)


@pytest.mark.parametrize("path", PATHS)
def test_sample_quote_is_within_30_percent_of_the_real_run(app: nubes.App, path: str) -> None:
    result = quote(app, "GET", path)
    assert result["basis"] == "sample" and {e["method"] for e in result["estimates"]} == {"sample"}
    assert [(e["provider"], e["plan"]) for e in result["estimates"]] == [
        ("aws", "lambda"), ("gcp", "gen2"), ("azure", "consumption"), ("azure", "flex")]
    assert result["datasets"]["trips"]["bytes_now"] > 1_000_000
    assert not list(records(app.storage))  # the sample run left no ledger record...
    run_for_real(app, path)
    check_within(app, result, result["route"])


def test_history_quote_after_real_runs(app: nubes.App) -> None:
    run_for_real(app, "/summary", 8)
    result = quote(app, "GET", "/summary")
    assert result["basis"] == "history" and result["detail"]["records"] == 8
    check_within(app, result, "/summary")


def test_flex_quote(app: nubes.App) -> None:
    configure(app, azure_plan="flex")
    result = quote(app, "GET", "/top?n=5", providers=["azure"])
    run_for_real(app, "/top?n=5")
    flex = next(e for e in result["estimates"] if e["plan"] == "flex")
    actual = metered(app, "/top", "azure")
    assert abs(flex["expected_usd"] / actual - 1) <= TOLERANCE


def test_history_scaled_by_current_dataset_sizes(app: nubes.App, tmp_path_factory: pytest.TempPathFactory,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from nubes.core.loader import load_app

    folder = tmp_path_factory.mktemp("bigger")
    spec = importlib.util.spec_from_file_location("_maker", METERING_APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_trips(f"file://{folder}", rows=60_000)
    monkeypatch.setenv("METERING_DATA", f"file://{folder}")
    small = load_app(f"{METERING_APP}:app")
    run_for_real(small, "/summary", 3)
    module.make_trips(f"file://{folder}", rows=180_000)  # the dataset triples
    result = quote(small, "GET", "/summary")
    assert result["basis"] == "history+sizes"
    assert result["detail"]["size_ratio"] == pytest.approx(3.0, rel=0.15)
    assert result["datasets"]["trips"]["bytes_now"] > result["datasets"]["trips"]["bytes_then"]


def test_quote_has_no_side_effects(app: nubes.App) -> None:
    from nubes.storage import memory

    before_buckets = set(memory._BUCKETS)
    datasets = [d.name for d in app.catalog]
    quote(app, "POST", "/echo", body=b'{"a": 1}')
    quote(app, "GET", "/summary")
    assert [d.name for d in app.catalog] == datasets
    assert app.catalog.get("trips").store_uri.startswith("file://")
    assert not [o.key for o in app.storage.list("_nubes/lineage/")]
    assert not [o.key for o in app.storage.list(PREFIX)]
    assert set(memory._BUCKETS) == before_buckets


def test_emulated_run_then_quote_from_its_history(app: nubes.App) -> None:
    pytest.importorskip("nubes.adapters.emulator.runtime")
    with Client(app, emulate="aws", memory=512, isolate=True) as c:
        for _ in range(4):
            assert c.get("/summary").status_code == 200
    rows = [r for r in records(app.storage) if r["route"] == "/summary"]
    assert len(rows) == 4 and {r["memory_mb"] for r in rows} == {512}
    actual = statistics.median(r["cost_usd"] for r in rows if not r["cold_start"])
    result = quote(app, "GET", "/summary", providers=["aws"])
    aws = result["estimates"][0]
    assert aws["method"] == "history" and aws["memory_mb"] == 512
    assert abs(aws["expected_usd"] / actual - 1) <= TOLERANCE


def test_quote_route_and_cli(app: nubes.App) -> None:
    body = Client(app).get("/_nubes/quote", params={"method": "GET", "path": "/sleep", "q": "ms=30"}).json()
    assert body["route"] == "/sleep" and len(body["estimates"]) == 4
    for e in body["estimates"]:
        assert set(e) >= {"provider", "plan", "low_usd", "expected_usd", "high_usd", "method"}
        assert e["low_usd"] <= e["expected_usd"] <= e["high_usd"]
    aws = body["estimates"][0]
    assert aws["billed_duration_ms"] >= 30
    assert Client(app).get("/_nubes/quote", params={"path": "/nowhere"}).status_code == 422
    runner = CliRunner()
    out = runner.invoke(cli, ["quote", f"{METERING_APP}:app", "GET", "/sleep", "-q", "ms=20", "--format", "json",
                              "--memory", "3000"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    memory = [e["memory_mb"] for e in data["estimates"]]
    assert memory[:2] == [3000, 3000] and memory[3] == 4096  # GCF bills the memory set; Flex the instance holding it
    assert 128 <= memory[2] <= 1536 and memory[2] % 128 == 0  # Consumption: the memory it observes
    assert all(e["fits"] for e in data["estimates"])
    table = runner.invoke(cli, ["quote", f"{METERING_APP}:app", "GET", "/sleep"])
    assert table.exit_code == 0 and "expected" in table.stdout
