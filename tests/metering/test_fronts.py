"""Emulated invocations priced per front (API Gateway REST and HTTP API, a function URL, an ALB by LCU) and per
Azure plan (Consumption: observed memory; Flex: instance size), recomputed here from the published figures."""

from __future__ import annotations

import math
from typing import Any

import pytest

import nubes
from nubes.metering import configure
from nubes.metering.ledger import records
from nubes.testing import Client

# Published figures (platform facts 2026-11; ALB from aws.amazon.com/elasticloadbalancing/pricing), written out again.
LAMBDA_GBS, LAMBDA_REQ = 0.0000166667, 0.20e-6
FRONT_FEE = {"http": 1.00e-6, "rest": 3.50e-6, "url": 0.0}
LCU_HOUR, LCU_BYTES, LCU_CONNECTIONS = 0.008, 0.4e9, 25
AZ_GBS, FLEX_GBS, AZ_EXEC, FLEX_EXEC = 0.000016, 0.000026, 0.20e-6, 0.40e-6


def parts(h: Any) -> dict[str, float]:
    return {k: float(v) for k, v in (p.split("=") for p in h["x-nubes-cost-components"].split(";"))}


@pytest.mark.parametrize("front", ["http", "rest", "url", "alb"])
def test_each_aws_front_is_priced_as_published(app: nubes.App, front: str) -> None:
    with Client(app, emulate="aws", aws_event=front, memory=512) as c:
        r = c.get("/ping")
    assert r.status_code == 200, r.text
    rec = {x["request_id"]: x for x in records(app.storage)}[r.headers["x-nubes-request-id"]]
    assert rec["front"] == front and rec["gateway"] == front
    p = parts(r.headers)
    if front == "alb":
        lcu_hours = max(rec["http_bytes"] / LCU_BYTES, 1 / (LCU_CONNECTIONS * 3600))
        assert p["gateway"] == pytest.approx(lcu_hours * LCU_HOUR, rel=1e-6)
    else:
        assert p["gateway"] == pytest.approx(FRONT_FEE[front], abs=1e-12)
    billed = int(r.headers["x-nubes-billed-duration-ms"])
    assert p["compute"] == pytest.approx(0.5 * billed / 1000 * LAMBDA_GBS, rel=1e-6)
    assert p["request"] == pytest.approx(LAMBDA_REQ)
    assert rec["cost_usd"] == pytest.approx(sum(p.values()), rel=1e-9)


@pytest.mark.parametrize("plan", ["consumption", "flex"])
def test_azure_plans_emulated(app: nubes.App, plan: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The emulator runs in this process, whose peak is whatever earlier tests left (up to GBs): the peak
    # Consumption bills is fixed here, so the rule is seen below the 1,536 MB cap in any test order.
    from nubes.metering import meter

    monkeypatch.setattr(meter, "peak_rss_mb", lambda max_age_s=0.0: 300.4)
    configure(app, azure_plan=plan)
    with Client(app, emulate="azure", memory=1536) as c:
        r = c.get("/sleep", params={"ms": "40"})
    assert r.status_code == 200, r.text
    rec = {x["request_id"]: x for x in records(app.storage)}[r.headers["x-nubes-request-id"]]
    billed, memory = rec["billed_duration_ms"], rec["billed_memory_mb"]
    p = parts(r.headers)
    if plan == "consumption":  # the observed memory, rounded up to 128 MB; 1 ms rounding, 100 ms minimum
        assert rec["peak_rss_mb"] == 300.4 and memory == 384  # the observed memory rounded up to 128 MB, not 1,536
        assert billed == max(math.ceil(rec["duration_ms"]), 100)
        assert p["compute"] == pytest.approx(memory / 1024 * billed / 1000 * AZ_GBS, rel=1e-6)
        assert p["request"] == pytest.approx(AZ_EXEC)
    else:  # the instance size holding the configured memory; 1 s minimum, then 100 ms
        assert memory == 2048 and billed == 1000
        assert p["compute"] == pytest.approx(2.0 * 1.0 * FLEX_GBS, rel=1e-6)
        assert p["request"] == pytest.approx(FLEX_EXEC)
    assert rec["plan"] == plan and p["gateway"] == 0.0
