"""Quotes tell the truth about heavy requests: the body is part of the request quoted, memory and time are
measured on growing slices and extrapolated, compared with each plan's limits, and a request that does not
fit says so and what to do (more memory, a job)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import nubes
from nubes.cli.main import cli
from nubes.core.loader import load_app
from nubes.metering import configure
from nubes.metering.quote import extrapolate, quote
from nubes.metering.sandbox import _rss_mb
from nubes.testing import Client

HEAVY = Path(__file__).resolve().parent / "heavy_app.py"


@pytest.fixture(scope="session")
def events(data_uri: str) -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_heavy_maker", HEAVY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_events(data_uri)
    return data_uri


@pytest.fixture
def heavy(home: str, events: str) -> nubes.App:
    return load_app(f"{HEAVY}:app")


def body(**kw: Any) -> bytes:
    return json.dumps(kw).encode()


def real_peak(app: nubes.App, data: bytes) -> tuple[float, float]:
    """(peak resident MB, seconds) of the request run for real in this process."""
    peak = [_rss_mb() or 0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.002):
            peak[0] = max(peak[0], _rss_mb() or 0.0)

    t = threading.Thread(target=sample)
    t.start()
    r = Client(app).post("/train", content=data, headers={"content-type": "application/json"})
    stop.set()
    t.join()
    assert r.status_code == 200, r.text
    return peak[0], int(r.headers["x-nubes-billed-duration-ms"]) / 1000


def by_plan(result: dict) -> dict[str, dict]:
    return {f"{e['provider']}/{e['plan']}": e for e in result["estimates"]}


def test_extrapolation_follows_superlinear_growth() -> None:
    assert extrapolate([0.1, 0.2], [10.0, 20.0]) == pytest.approx(100.0)  # linear
    assert extrapolate([0.1, 0.2], [10.0, 40.0]) == pytest.approx(1000.0)  # quadratic: the power law
    assert extrapolate([0.1, 0.4], [50.0, 55.0]) == pytest.approx(65.0)  # mostly a fixed cost: linear
    assert extrapolate([1.0], [7.0]) == 7.0


def test_memory_over_the_default_is_said_and_quoted_at_the_smallest_size_that_fits() -> None:
    """Resident memory is a property of the whole process: in a suite that has already run hundreds of tests,
    the allocator's free lists hide a run's growth. The comparison runs in a fresh interpreter."""
    import os
    import subprocess
    import sys

    here = Path(__file__).resolve()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"{here}::test_memory_quote_inner"],
                       cwd=here.parents[2], env={**os.environ, "NUBES_QUOTE_MEMORY_INNER": "1"},
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-4000:]


@pytest.mark.skipif(__import__("os").environ.get("NUBES_QUOTE_MEMORY_INNER") != "1",
                    reason="run in a fresh interpreter by the test above (resident memory is per process)")
def test_memory_quote_inner(heavy: nubes.App) -> None:
    data = body(bytes_per_row=2500)  # 120,000 rows: ~300 MB held at the whole dataset
    result = quote(heavy, "POST", "/train", body=data, budget_s=15)
    assert result["basis"] == "sample" and result["body_bytes"] == len(data)
    peak, _ = real_peak(heavy, data)
    assert result["peak_rss_mb"] == pytest.approx(peak, rel=0.25)
    lam = by_plan(result)["aws/lambda"]
    assert lam["configured_memory_mb"] == 128 and lam["fits"]
    assert lam["memory_mb"] >= result["peak_rss_mb"] and lam["memory_mb"] - result["peak_rss_mb"] < 64 + 1
    assert any("over the 128 MB configured" in n for n in lam["notes"])
    gcf = by_plan(result)["gcp/gen2"]
    tiers = [t for t in (256, 512, 1024, 2048, 4096, 8192) if t >= result["peak_rss_mb"]]
    assert gcf["memory_mb"] == tiers[0]  # the smallest memory tier holding the peak
    consumption = by_plan(result)["azure/consumption"]
    assert consumption["fits"] and consumption["memory_mb"] >= result["peak_rss_mb"]  # billed as observed
    assert result["warnings"]


def test_the_body_is_quoted_not_ignored(heavy: nubes.App) -> None:
    configure(heavy, memory_mb=4096)
    light = quote(heavy, "POST", "/train", body=body(ms_per_row=0.002, epochs=1), providers=["aws"], budget_s=10)
    heavier = quote(heavy, "POST", "/train", body=body(ms_per_row=0.002, epochs=4), providers=["aws"], budget_s=10)
    ratio = heavier["estimates"][0]["duration_ms"] / light["estimates"][0]["duration_ms"]
    assert 2.5 < ratio < 5.5, (light["detail"], heavier["detail"])
    # history is used only for the same body
    Client(heavy).post("/train", content=body(ms_per_row=0.002, epochs=1), headers={"content-type": "application/json"})
    from nubes.metering import flush

    flush(heavy)
    same = quote(heavy, "POST", "/train", body=body(ms_per_row=0.002, epochs=1), providers=["aws"])
    other = quote(heavy, "POST", "/train", body=body(ms_per_row=0.002, epochs=2), providers=["aws"], budget_s=10)
    assert same["basis"] == "history" and other["basis"] == "sample"


def test_a_run_longer_than_the_front_allows_is_advised_to_be_a_job(heavy: nubes.App) -> None:
    configure(heavy, memory_mb=4096)
    data = body(ms_per_row=0.06)  # about 36 s on the whole dataset: over API Gateway's 30 s
    result = quote(heavy, "POST", "/train-events", body=data, budget_s=3)
    lam = by_plan(result)["aws/lambda"]
    assert 20_000 < lam["duration_ms"] < 60_000, result["detail"]
    assert lam["fits"] and lam["limit_s"] == 30, lam
    assert any("make the route a job" in n for n in lam["notes"])
    gcf = by_plan(result)["gcp/gen2"]
    assert not any("job" in n for n in gcf["notes"])  # Cloud Functions answers HTTP for up to 60 min
    job = quote(heavy, "POST", "/train-job", body=data, budget_s=3, providers=["aws"])["estimates"][0]
    assert 20_000 < job["duration_ms"] < 60_000
    assert job["limit_s"] == 900 and not any("job" in n for n in job["notes"])  # a job runs within 900 s


def test_a_run_no_plan_can_hold_does_not_fit(heavy: nubes.App) -> None:
    data = body(bytes_per_row=100_000)  # about 12 GB on the whole dataset: more than Lambda's 10,240 MB
    result = quote(heavy, "POST", "/train", body=data, budget_s=20)
    plans = by_plan(result)
    assert result["peak_rss_mb"] > 10_240, result["detail"]
    assert max(result["detail"]["peak_rss_mb"]) < result["peak_rss_mb"] / 2  # measured on slices, not run whole
    for plan in ("aws/lambda", "azure/consumption", "azure/flex"):
        assert not plans[plan]["fits"] and any("more than" in n for n in plans[plan]["notes"])
    assert plans["gcp/gen2"]["fits"] and plans["gcp/gen2"]["memory_mb"] >= 16_384  # Cloud Functions goes to 32 GiB


def test_a_run_longer_than_a_function_may_last_does_not_fit(heavy: nubes.App) -> None:
    configure(heavy, memory_mb=4096)
    data = body(ms_per_row=0.002, epochs=1000)  # about 20 minutes; a slice of 2,048 rows takes 4 s
    result = quote(heavy, "POST", "/train-job", body=data, budget_s=1, providers=["aws", "gcp"])
    assert result["detail"]["runs"] == 1  # the slow first run was enough
    lam, gcf = by_plan(result)["aws/lambda"], by_plan(result)["gcp/gen2"]
    assert not lam["fits"] and any("split the work" in n for n in lam["notes"])
    assert gcf["fits"]  # up to 60 minutes


def test_cli_quote_with_a_body_prints_the_notes(heavy: nubes.App, tmp_path: Path) -> None:
    payload = tmp_path / "body.json"
    payload.write_text(json.dumps({"bytes_per_row": 2500}))
    out = CliRunner().invoke(cli, ["quote", f"{HEAVY}:app", "POST", "/train", "-d", f"@{payload}", "--provider", "aws"])
    assert out.exit_code == 0, out.output
    assert "configured" in out.stdout and "MB" in out.stdout
