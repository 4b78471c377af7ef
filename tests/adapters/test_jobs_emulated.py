"""Jobs under emulation: delivered to the emulator's job workers the emulated cloud's way, with the
cloud's job timeout (not the HTTP front's), its retries, cancel, idempotency keys, and a worker
killed mid-job (re-run once, never lost, never two at once)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nubes
from nubes.core.loader import load_app
from nubes.testing import Client

APP = Path(__file__).resolve().parents[1] / "apps" / "jobs_app.py"
TERMINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[nubes.App]:
    monkeypatch.setenv("NUBES_STORAGE", (tmp_path / "home").as_uri())  # shared by the worker processes
    monkeypatch.setenv("JOBS_LOG", str(tmp_path / "jobs.jsonl"))
    yield load_app(f"{APP}:app")


def poll(client: Client, location: str, until: float = 60.0) -> dict[str, Any]:
    end = time.monotonic() + until
    doc: dict[str, Any] = {}
    while time.monotonic() < end:
        doc = client.get(location).json()
        if doc["status"] in TERMINAL:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"job did not finish: {doc}")


def log_lines() -> list[dict[str, Any]]:
    path = Path(os.environ["JOBS_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_a_job_outlives_the_functions_http_timeout(app: nubes.App, cloud: str) -> None:
    with Client(app, emulate=cloud, timeout=1) as client:
        assert client.get("/slow", params={"seconds": "1.3"}).status_code >= 500  # an HTTP call is cut at 1 s
        r = client.post("/train", params={"seconds": "1.5", "tag": cloud})
        assert r.status_code == 202 and r.headers["location"] == f"/_nubes/jobs/{r.json()['id']}"
        doc = poll(client, r.headers["location"])
    assert doc["status"] == "succeeded" and doc["attempts"] == 1
    assert doc["result"] == {"slept": 1.5, "tag": cloud, "provider": cloud, "emulated": True}


def test_cancel_a_queued_job_and_idempotent_submits(app: nubes.App) -> None:
    with Client(app, emulate="gcp", isolate=True, workers=1) as client:  # one job worker: the second job waits
        running = client.post("/train", params={"seconds": "3", "tag": "first"})
        queued = client.post("/train", params={"seconds": "0", "tag": "second"})
        assert queued.json()["status"] == "queued"
        cancelled = client.delete(queued.headers["location"])
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        key = {"idempotency-key": "nightly-2026-12-03"}
        first = client.post("/train", params={"seconds": "0", "tag": "idem"}, headers=key)
        again = client.post("/train", params={"seconds": "0", "tag": "idem"}, headers=key)
        assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
        assert client.post("/train", params={"seconds": "1", "tag": "idem"}, headers=key).status_code == 422
        assert poll(client, running.headers["location"])["status"] == "succeeded"
        assert poll(client, first.headers["location"])["status"] == "succeeded"
        assert client.get(queued.headers["location"]).json()["status"] == "cancelled"
        assert client.delete(running.headers["location"]).status_code == 409
    tags = [line["tag"] for line in log_lines() if line["event"] == "start"]
    assert "second" not in tags and tags.count("idem") == 1


def test_a_worker_killed_mid_job_is_re_run_never_two_at_once(app: nubes.App) -> None:
    with Client(app, emulate="aws", isolate=True, job_retry_delay=0.2) as client:
        location = client.post("/train", params={"seconds": "4", "tag": "killed"}).headers["location"]
        end = time.monotonic() + 60
        while not log_lines() and time.monotonic() < end:
            time.sleep(0.05)
        victim = log_lines()[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        doc = poll(client, location)
    assert doc["status"] == "succeeded" and doc["attempts"] == 2
    starts = [line for line in log_lines() if line["event"] == "start"]
    ends = [line for line in log_lines() if line["event"] == "end"]
    assert len(starts) == 2 and len(ends) == 1 and starts[0]["pid"] == victim and ends[0]["pid"] != victim
    assert starts[1]["at"] > starts[0]["at"]  # the second attempt started after the first one's worker died


def test_a_job_that_always_times_out_ends_failed_after_the_clouds_retries(app: nubes.App) -> None:
    with Client(app, emulate="azure", isolate=True, job_timeout=1, job_retry_delay=0.1) as client:
        location = client.post("/train", params={"seconds": "30", "tag": "slow"}).headers["location"]
        doc = poll(client, location, until=90)
    assert doc["status"] == "failed" and doc["attempts"] == 3
    assert "timeout" in doc["problem"]["detail"]
    assert len([line for line in log_lines() if line["event"] == "start"]) == 3


def test_job_figures_have_sources() -> None:
    from nubes.core import clouds

    for name in ("aws", "gcp", "azure"):
        figure = clouds.get(name).figures["job_timeout_s"]
        assert figure.value >= 900 and figure.source
    assert clouds.get("aws").emulation().job_retry_delays(3) == [60, 120]
    assert clouds.get("gcp").emulation().job_retry_delays(3) == [0.1, 0.2]
    assert clouds.get("azure").emulation().job_retry_delays(3) == [0, 0]
