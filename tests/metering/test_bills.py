"""Bills from the ledger: grouping, date ranges, what-if re-pricing, free tiers, the route and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from tests.metering.conftest import METERING_APP
from typer.testing import CliRunner

import nubes
from nubes.cli.main import cli
from nubes.core.events import Platform
from nubes.core.request import Request
from nubes.metering import configure, flush
from nubes.metering.bills import bill
from nubes.metering.pricing import Usage, price
from nubes.testing import Client

GCP = Platform("gcp", memory_mb=512, emulated=True)
AZURE = Platform("azure", memory_mb=1024, emulated=True)


def traffic(app: nubes.App) -> list[dict[str, Any]]:
    """A known mix: 3 tenants, 3 routes, 2 providers (+ local priced as AWS)."""
    configure(app, tenant_header="X-Tenant")
    c = Client(app)
    for tenant, n in (("acme", 3), ("globex", 2)):
        for _ in range(n):
            c.get("/ping", headers={"X-Tenant": tenant})
    c.get("/sleep", params={"ms": "20"}, headers={"X-Tenant": "acme"})
    c.post("/echo", json={"a": 1})
    app.handle(Request("GET", "/ping", headers=[("x-tenant", "initech")]), platform=GCP)
    app.handle(Request("GET", "/sleep", query=[("ms", "5")]), platform=AZURE)
    assert flush(app)
    from nubes.metering.ledger import records

    return list(records(app.storage))


def test_by_request_is_one_row_per_record(app: nubes.App) -> None:
    recs = traffic(app)
    result = bill(app, by="request")
    assert len(result["rows"]) == len(recs) == 9
    assert {r["request_id"] for r in result["rows"]} == {r["request_id"] for r in recs}
    assert result["total"]["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in recs))


@pytest.mark.parametrize("by, key", [("route", "route"), ("tenant", "tenant"), ("day", "day"), ("provider", "provider")])
def test_grouped_sums_match_the_records(app: nubes.App, by: str, key: str) -> None:
    recs = traffic(app)
    result = bill(app, by=by)
    expected: dict[Any, list[float]] = {}
    for r in recs:
        expected.setdefault(r[key], []).append(r["cost_usd"])
    got = {row[key]: row for row in result["rows"]}
    assert len(recs) == 9, [(r["request_id"], r["route"], r["tenant"], r["platform"], r["record_id"]) for r in recs]
    assert set(got) == set(expected)
    for k, costs in expected.items():
        assert got[k]["invocations"] == len(costs)
        assert got[k]["cost_usd"] == pytest.approx(sum(costs))
        row = got[k]
        parts = ("compute_usd", "request_usd", "gateway_usd", "storage_usd", "bookkeeping_usd")
        assert sum(row[p] for p in parts) == pytest.approx(row["cost_usd"])
    if by == "tenant":
        assert got["acme"]["invocations"] == 4 and got["globex"]["invocations"] == 2 and got[None]["invocations"] == 2
    if by == "provider":
        assert got["aws"]["plan"] == "lambda" and got["azure"]["plan"] == "consumption"


def test_tenant_filter_and_date_range(app: nubes.App) -> None:
    recs = traffic(app)
    day = recs[0]["day"]
    assert bill(app, by="request", tenant="acme")["total"]["invocations"] == 4
    assert bill(app, by="request", since=day, until=day)["total"]["invocations"] == 9
    assert bill(app, by="request", since="2099-01-01")["total"]["invocations"] == 0
    assert bill(app, by="request", until="2000-01-01")["rows"] == []
    first = min(r["start_time"] for r in recs)
    assert bill(app, by="request", since=first)["total"]["invocations"] == 9


@pytest.mark.parametrize("target", ["aws", "gcp", "azure"])
def test_what_if_reprices_the_same_invocations(app: nubes.App, target: str) -> None:
    recs = {r["request_id"]: r for r in traffic(app)}
    result = bill(app, by="request", what_if=target)
    assert len(result["rows"]) == 9
    for row in result["rows"]:
        rec = recs[row["request_id"]]
        assert row["provider"] == target and row["metered_usd"] == pytest.approx(rec["cost_usd"])
        usage = Usage(rec["duration_ms"], rec["memory_mb"], rec["peak_rss_mb"], rec["architecture"], rec["kind"] == "http",
                      {k: rec[f"ops_{k}"] for k in ("put", "get", "head", "list")}, rec["emulated"],
                      rec["front"] if target == rec["provider"] else None, rec["http_bytes"], rec["bookkeeping_puts"],
                      rec["bookkeeping_gets"])
        assert row["cost_usd"] == pytest.approx(price(usage, target).total_usd, rel=1e-9)
        if target == rec["provider"]:  # re-pricing on the same provider gives back what was metered
            assert row["cost_usd"] == pytest.approx(rec["cost_usd"], rel=1e-9)
    if target == "gcp":
        assert all(r["billed_duration_ms"] % 100 == 0 for r in result["rows"])
    assert result["total"]["metered_usd"] == pytest.approx(sum(r["cost_usd"] for r in recs.values()))


def test_free_tier_is_off_by_default_and_credits_when_on(app: nubes.App) -> None:
    traffic(app)
    plain = bill(app, by="provider")
    assert "free_tier_credit_usd" not in plain["total"]
    free = bill(app, by="provider", free_tier=True)
    assert free["total"]["free_tier_credit_usd"] > 0
    # a few invocations are well inside every grant: compute, requests and gateway are all credited
    left = free["total"]["storage_usd"] + free["total"]["bookkeeping_usd"]
    assert free["total"]["cost_after_free_tier_usd"] <= left + 1e-12


def test_bad_arguments(app: nubes.App) -> None:
    with pytest.raises(nubes.errors.ConfigError):
        bill(app, by="colour")
    with pytest.raises(nubes.errors.ConfigError):
        bill(app, what_if="ibm")


def test_costs_route_returns_the_same_json(app: nubes.App) -> None:
    traffic(app)
    c = Client(app)
    body = c.get("/_nubes/costs", params={"by": "tenant", "what_if": "gcp"}).json()
    direct = bill(app, by="tenant", what_if="gcp")
    assert body["by"] == "tenant" and body["what_if"] == "gcp"
    mine = {r["tenant"]: r["invocations"] for r in direct["rows"]}
    theirs = {r["tenant"]: r["invocations"] for r in body["rows"]}
    # the route's own invocation (tenant None) is flushed between the two calls
    assert {k: v for k, v in theirs.items() if k is not None} == {k: v for k, v in mine.items() if k is not None}
    assert c.get("/_nubes/costs", params={"by": "colour"}).status_code == 422


def test_cli_costs_json_and_table(app: nubes.App) -> None:
    traffic(app)
    runner = CliRunner()
    out = runner.invoke(cli, ["costs", f"{METERING_APP}:app", "--by", "route", "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert {r["route"] for r in data["rows"]} >= {"/ping", "/sleep", "/echo"}
    table = runner.invoke(cli, ["costs", f"{METERING_APP}:app", "--by", "provider", "--what-if", "azure"])
    assert table.exit_code == 0, table.output
    assert "re-priced on azure" in table.stdout and "total" in table.stdout
    bad = runner.invoke(cli, ["costs", f"{METERING_APP}:app", "--by", "colour"])
    assert bad.exit_code == 2
    prices = runner.invoke(cli, ["prices", "--format", "json"])
    assert prices.exit_code == 0 and json.loads(prices.stdout)[0]["source"].startswith("https://")


@pytest.mark.parametrize("value", ["x", "2026-13-45T00:00", "2026-12-03T25:00", "2026-02-30", "20261203T100000",
                                   "2026-12-03X10:00"])
def test_bad_since_until_are_a_clear_error_not_a_500_or_an_empty_bill(app: nubes.App, value: str) -> None:
    traffic(app)
    for name in ("since", "until"):
        with pytest.raises(nubes.errors.ConfigError, match=f"--{name} must be a day"):
            bill(app, **{name: value})
        r = Client(app).get("/_nubes/costs", params={name: value})
        assert r.status_code == 422, r.text
        assert "YYYY-MM-DD" in r.json()["detail"] and repr(value) in r.json()["detail"]
    out = CliRunner().invoke(cli, ["costs", f"{METERING_APP}:app", "--until", value])
    assert out.exit_code != 0 and "--until must be a day (YYYY-MM-DD)" in out.output
    assert "Traceback" not in out.output


def test_iso_times_with_an_offset_choose_the_utc_days(app: nubes.App) -> None:
    recs = traffic(app)
    first = datetime.fromisoformat(min(r["start_time"] for r in recs)).astimezone(UTC)
    east = (first - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-11))).isoformat()  # the day before, there
    assert bill(app, by="request", since=east)["total"]["invocations"] == 9
    assert bill(app, by="request", until=east)["rows"] == []
