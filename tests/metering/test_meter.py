"""The meter on every path: headers, log line and ledger record, through the local client, each adapter
and the emulator, recomputed here from the providers' published prices."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from tests.metering.conftest import METERING_APP, header

import nubes
from nubes.core.loader import load_app
from nubes.metering import configure, flush, meter_of
from nubes.metering.ledger import records
from nubes.metering.meter import peak_rss_mb
from nubes.testing import Client

# Published first-tier prices (platform facts, 2026-11), written out again here on purpose.
LAMBDA_GBS, LAMBDA_REQ, HTTP_API = 0.0000166667, 0.20e-6, 1.00e-6
GCF_VCPU_S, GCF_GIB_S, GCF_INV = 0.000024, 0.0000025, 0.40e-6
AZ_GBS, AZ_EXEC = 0.000016, 0.20e-6


def published(provider: str, billed_ms: int, memory_mb: int, *, http: bool = True) -> float:
    s = billed_ms / 1000
    if provider == "aws":
        return memory_mb / 1024 * s * LAMBDA_GBS + LAMBDA_REQ + (HTTP_API if http else 0.0)
    if provider == "gcp":
        vcpu = {128: 0.083, 256: 0.167, 512: 0.333, 1024: 0.583, 2048: 1.0}[memory_mb]
        return vcpu * s * GCF_VCPU_S + memory_mb / 1024 * s * GCF_GIB_S + GCF_INV
    return math.ceil(memory_mb / 128) * 128 / 1024 * s * AZ_GBS + AZ_EXEC


def cost_without_bookkeeping(h: Any) -> float:
    """The header's cost less nubes' own amortised writes (checked separately), to compare with list prices."""
    parts = dict(p.split("=") for p in h["x-nubes-cost-components"].split(";"))
    return float(h["x-nubes-cost-usd"]) - float(parts["bookkeeping"])


def azure_billed(peak_rss_mb: float) -> int:
    """Consumption bills the observed memory rounded up to 128 MB (128 to 1,536)."""
    return min(max(math.ceil(peak_rss_mb / 128) * 128, 128), 1536)


def metering_headers(h: Any) -> dict[str, str | None]:
    return {n: header(h, n) for n in ("x-nubes-request-id", "x-nubes-billed-duration-ms", "x-nubes-billed-memory-mb",
                                      "x-nubes-cost-usd", "x-nubes-cost-components")}


def ledger_by_id(app: nubes.App) -> dict[str, dict[str, Any]]:
    flush(app)
    return {r["request_id"]: r for r in records(app.storage)}


# -- local ---------------------------------------------------------------------------------------
def test_local_client_headers_log_line_and_ledger(app: nubes.App, capsys: pytest.CaptureFixture[str]) -> None:
    r = Client(app).get("/sleep", params={"ms": "30"})
    h = metering_headers(r.headers)
    assert all(h.values()), h
    billed = int(h["x-nubes-billed-duration-ms"])
    assert 30 <= billed < 1000
    assert h["x-nubes-billed-memory-mb"] == "128"  # local runs priced as Lambda at its default memory
    assert cost_without_bookkeeping(h) == pytest.approx(published("aws", billed, 128), rel=1e-6)
    parts = dict(p.split("=") for p in h["x-nubes-cost-components"].split(";"))
    assert set(parts) == {"compute", "request", "gateway", "storage", "bookkeeping"}
    # the ledger record's share of one S3 PUT and of the GET that compacts it (nominal batch: 100 records)
    assert float(parts["bookkeeping"]) == pytest.approx((0.005 + 0.0004) / 1000 / 100, rel=1e-3)
    assert sum(float(v) for v in parts.values()) == pytest.approx(float(h["x-nubes-cost-usd"]), abs=1e-11)
    line = next(json.loads(x) for x in capsys.readouterr().err.splitlines()
                if '"msg": "invocation"' in x and h["x-nubes-request-id"] in x)
    assert line["billed_duration_ms"] == billed and line["priced_as"] == "aws/lambda"
    assert line["cost_usd"] == pytest.approx(float(h["x-nubes-cost-usd"]), rel=1e-9)
    rec = ledger_by_id(app)[h["x-nubes-request-id"]]
    assert {k: line[k] for k in rec} == rec  # the log line holds the whole record (nubes costs --reconcile)
    assert rec["route"] == "/sleep" and rec["method"] == "GET" and rec["platform"] == "local"
    assert rec["billed_duration_ms"] == billed and rec["cost_usd"] == pytest.approx(line["cost_usd"])
    for field in ("app", "provider", "plan", "region", "memory_mb", "architecture", "start_time", "duration_ms",
                  "peak_rss_mb", "cold_start", "ops_get", "bytes_read", "tenant", "cost_compute_usd",
                  "cost_request_usd", "cost_gateway_usd", "cost_storage_usd"):
        assert field in rec
    assert rec["peak_rss_mb"] > 10


def test_by_default_two_cost_headers_and_the_rest_in_the_log_line(home: str, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("NUBES_COST_HEADERS")
    app = load_app(f"{METERING_APP}:app")
    r = Client(app).get("/ping")
    assert {k for k in r.headers if k.startswith("x-nubes-")} == {"x-nubes-request-id", "x-nubes-billed-duration-ms",
                                                                   "x-nubes-cost-usd"}
    line = next(json.loads(x) for x in capsys.readouterr().err.splitlines() if '"msg": "invocation"' in x)
    assert line["billed_memory_mb"] == 128 and line["cost_usd"] == pytest.approx(float(r.headers["x-nubes-cost-usd"]))
    configure(app, headers="off")
    assert "x-nubes-cost-usd" not in Client(app).get("/ping").headers


def test_storage_operations_and_duckdb_reads_are_priced(app: nubes.App) -> None:
    r = Client(app).get("/summary")
    assert r.status_code == 200, r.text
    rec = ledger_by_id(app)[header(r.headers, "x-nubes-request-id")]
    assert rec["ops_get"] >= 2 and rec["ops_head"] >= 1 and rec["bytes_read"] > 100_000  # DuckDB range reads
    assert rec["ops_put"] == 0  # the lineage entry is batched: its share is in the bookkeeping ...
    assert rec["bookkeeping_puts"] == pytest.approx(2 / 100)  # ... with the ledger record's (nominal: 100 per PUT)
    expected = ((rec["ops_get"] + rec["ops_head"]) * 0.0004 + (rec["ops_put"] + rec["ops_list"]) * 0.005) / 1000
    assert rec["cost_storage_usd"] == pytest.approx(expected)
    keeping = (rec["bookkeeping_puts"] * 0.005 + rec["bookkeeping_gets"] * 0.0004) / 1000
    assert rec["cost_bookkeeping_usd"] == pytest.approx(keeping)
    assert rec["cost_usd"] == pytest.approx(published("aws", rec["billed_duration_ms"], 128) + expected + keeping)


def test_local_runs_can_be_priced_on_another_provider(app: nubes.App) -> None:
    configure(app, local_provider="gcp", memory_mb=512)
    r = Client(app).get("/ping")
    billed = int(header(r.headers, "x-nubes-billed-duration-ms"))
    assert billed == 100
    h = metering_headers(r.headers)
    assert cost_without_bookkeeping(h) == pytest.approx(published("gcp", 100, 512), rel=1e-6)


def test_events_are_metered_without_a_gateway(home: str) -> None:
    app = nubes.App("events-metered", storage=home)

    @app.on_schedule("nightly")
    def nightly(ctx: nubes.Context, event: nubes.Scheduled) -> None:
        time.sleep(0.01)

    from datetime import datetime

    app.handle_event(nubes.Scheduled("nightly", datetime.now(UTC)), request_id="evt-1")
    rec = ledger_by_id(app)["evt-1"]
    assert rec["kind"] == "event" and rec["gateway"] == "none" and rec["cost_gateway_usd"] == 0.0
    assert rec["route"].endswith("nightly") and rec["tenant"] is None


def test_tenant_from_header_or_api_key(app: nubes.App) -> None:
    configure(app, tenant_header="X-Tenant", api_keys={"k-123": "acme", "k-456": "globex"})
    c = Client(app)
    ids = {
        "header": header(c.get("/ping", headers={"X-Tenant": "initech"}).headers, "x-nubes-request-id"),
        "key": header(c.get("/ping", headers={"X-Api-Key": "k-123"}).headers, "x-nubes-request-id"),
        "bearer": header(c.get("/ping", headers={"Authorization": "Bearer k-456"}).headers, "x-nubes-request-id"),
        "unknown": header(c.get("/ping", headers={"X-Api-Key": "nope"}).headers, "x-nubes-request-id"),
    }
    recs = ledger_by_id(app)
    assert [recs[ids[k]]["tenant"] for k in ("header", "key", "bearer", "unknown")] == ["initech", "acme", "globex", None]
    assert "k-123" not in json.dumps(list(recs.values()))  # keys are never recorded


def test_settings_from_nubes_toml_and_environment(home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nubes.toml").write_text(
        '[metering]\ntenant_header = "X-Org"\naws_gateway = "rest"\n[metering.prices]\n"aws.lambda.request" = 0.0\n'
    )
    app = load_app(f"{METERING_APP}:app")
    r = Client(app).get("/ping", headers={"X-Org": "o1"})
    parts = dict(p.split("=") for p in header(r.headers, "x-nubes-cost-components").split(";"))
    assert float(parts["request"]) == 0.0 and float(parts["gateway"]) == pytest.approx(3.5e-6)
    assert ledger_by_id(app)[header(r.headers, "x-nubes-request-id")]["tenant"] == "o1"
    monkeypatch.setenv("NUBES_PRICES", '{"aws": {"gateway": {"rest": 0.000004}}}')
    app = load_app(f"{METERING_APP}:app")
    parts = dict(p.split("=") for p in header(Client(app).get("/ping").headers, "x-nubes-cost-components").split(";"))
    assert float(parts["gateway"]) == pytest.approx(4e-6)


def test_metering_off(home: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBES_METERING", "off")
    app = load_app(f"{METERING_APP}:app")
    r = Client(app).get("/ping")
    assert header(r.headers, "x-nubes-cost-usd") is None and header(r.headers, "x-nubes-request-id")


def test_bad_settings_fail_loudly(app: nubes.App) -> None:
    with pytest.raises(nubes.errors.ConfigError):
        configure(app, azure_plan="premium")
    with pytest.raises(nubes.errors.ConfigError, match="rest"):
        configure(app, aws_front="cdn")
    with pytest.raises(nubes.errors.ConfigError, match="aws"):
        configure(app, local_provider="ibm")
    with pytest.raises(nubes.errors.ConfigError):
        configure(app, colour="blue")


# -- adapters ------------------------------------------------------------------------------------
DATA = Path(__file__).resolve().parent.parent / "data" / "aws"


def test_aws_lambda_handler_with_a_real_event(app: nubes.App) -> None:
    from nubes.adapters.aws import handler
    from nubes.adapters.aws.builders import LambdaContext

    event = json.loads((DATA / "http_sam.json").read_text())
    event["rawPath"] = "/ping"
    event["requestContext"]["http"]["path"] = "/ping"
    event["requestContext"]["http"]["method"] = "GET"
    event["rawQueryString"] = ""
    event.pop("queryStringParameters", None)
    event["body"] = ""
    event["isBase64Encoded"] = False
    result = handler(app)(event, LambdaContext("metered", 512, request_id="aws-req-1"))
    assert result["statusCode"] == 200, result
    h = metering_headers(result["headers"])
    assert h["x-nubes-request-id"] == "aws-req-1" and h["x-nubes-billed-memory-mb"] == "512"
    billed = int(h["x-nubes-billed-duration-ms"])
    assert cost_without_bookkeeping(h) == pytest.approx(published("aws", billed, 512), rel=1e-6)
    # the record is in the ledger (spooled) when the invocation returns: no flush needed to see it
    rec = {r["request_id"]: r for r in records(app.storage)}["aws-req-1"]
    assert rec["gateway"] == "http" and rec["cost_gateway_usd"] == pytest.approx(1e-6)


def test_gcp_http_function(app: nubes.App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functions_framework

    monkeypatch.setenv("FUNCTION_MEMORY_MB", "1024")
    source = tmp_path / "main.py"
    source.write_text(
        "from nubes.core.loader import load_app\nfrom nubes.adapters.gcp.functions import http_function\n"
        f"main = http_function(load_app({str(METERING_APP) + ':app'!r}))\n"
    )
    client = functions_framework.create_app("main", str(source), "http").test_client()
    resp = client.get("/sleep?ms=20", headers={"Function-Execution-Id": "gcp-exec-1"})
    assert resp.status_code == 200
    h = metering_headers(resp.headers)
    assert h["x-nubes-billed-memory-mb"] == "1024"
    billed = int(h["x-nubes-billed-duration-ms"])
    assert billed % 100 == 0 and billed >= 100
    assert cost_without_bookkeeping(h) == pytest.approx(published("gcp", billed, 1024), rel=1e-6)
    assert h["x-nubes-request-id"] in {r["request_id"] for r in records(app.storage)}


def test_azure_function_app(app: nubes.App, monkeypatch: pytest.MonkeyPatch) -> None:
    from nubes.adapters.azure.builders import invocation_context, to_http_request
    from nubes.adapters.azure.functions import HTTP_FUNCTION, function_app
    from nubes.core.request import Request

    monkeypatch.setenv("NUBES_MEMORY_MB", "384")
    functions = {f.get_function_name(): f for f in function_app(app).get_functions()}
    fn = functions[HTTP_FUNCTION].get_user_function()
    resp = fn(to_http_request(Request("GET", "/ping")), invocation_context("az-inv-1"))
    assert resp.status_code == 200
    h = metering_headers(resp.headers)
    rec = {r["request_id"]: r for r in records(app.storage)}[h["x-nubes-request-id"]]
    assert rec["memory_mb"] == 384  # configured; Consumption bills what it observes instead
    memory = azure_billed(rec["peak_rss_mb"])
    assert h["x-nubes-billed-memory-mb"] == str(memory)
    billed = int(h["x-nubes-billed-duration-ms"])
    assert billed == 100  # the 100 ms minimum
    assert cost_without_bookkeeping(h) == pytest.approx(published("azure", 100, memory), rel=1e-6)


# -- the emulator, one worker process per provider -------------------------------------------------
@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_emulator_headers_and_ledger_match_published_prices(app: nubes.App, provider: str) -> None:
    pytest.importorskip("nubes.adapters.emulator.runtime")
    with Client(app, emulate=provider, memory=512, isolate=True) as c:
        c.get("/ping")  # the cold start
        r = c.get("/sleep", params={"ms": "150"})
    assert r.status_code == 200, r.text
    h = metering_headers(r.headers)
    billed = int(h["x-nubes-billed-duration-ms"])
    assert 150 <= billed <= 400
    if provider == "gcp":
        assert billed % 100 == 0
    rec = {r["request_id"]: r for r in records(app.storage)}[h["x-nubes-request-id"]]  # spooled before the answer
    memory = azure_billed(rec["peak_rss_mb"]) if provider == "azure" else 512  # Consumption: the worker's observed memory
    assert h["x-nubes-billed-memory-mb"] == str(memory)
    cost = float(h["x-nubes-cost-usd"])
    assert cost_without_bookkeeping(h) == pytest.approx(published(provider, billed, memory), rel=1e-6)
    assert rec["provider"] == provider and rec["emulated"] is True and rec["memory_mb"] == 512
    assert rec["billed_duration_ms"] == billed and rec["cost_usd"] == pytest.approx(cost, rel=1e-9)


def test_metering_is_in_app_hooks_by_default() -> None:
    from nubes.metering.meter import Meter

    app = nubes.App("hooks")
    assert any(isinstance(h, Meter) for h in app.hooks)
    assert meter_of(app) is app.hooks[0]


def test_in_process_emulation_prices_the_configured_memory_on_every_provider() -> None:
    """Client(emulate=..., memory=512) must price 512 MB on GCP and Azure too, not an environment default."""
    import uuid

    import nubes
    from nubes.testing import Client

    app = nubes.App("mem-check", storage=f"mem://mem-check-{uuid.uuid4().hex}")
    configure(app, headers="full")

    @app.get("/p")
    def where(ctx: nubes.Context) -> dict:
        return {"memory_mb": ctx.platform.memory_mb}

    for provider in ("aws", "gcp"):
        with Client(app, emulate=provider, memory=512) as client:
            r = client.get("/p")
        assert r.json() == {"memory_mb": 512}, provider
        assert r.headers["x-nubes-billed-memory-mb"] == "512", provider
    with Client(app, emulate="azure", memory=512) as client:  # Consumption bills the observed memory instead
        r = client.get("/p")
    assert r.json() == {"memory_mb": 512}
    assert int(r.headers["x-nubes-billed-memory-mb"]) == azure_billed(peak_rss_mb() or 128)


def test_azure_flex_bills_its_instance_size(app: nubes.App) -> None:
    configure(app, azure_plan="flex")
    with Client(app, emulate="azure", memory=1024) as client:
        r = client.get("/ping")
    assert r.headers["x-nubes-billed-memory-mb"] == "2048"  # the instance size holding 1,024 MB
    assert int(r.headers["x-nubes-billed-duration-ms"]) == 1000  # the 1 s minimum
