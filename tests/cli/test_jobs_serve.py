"""`nubes serve --emulate aws|gcp` as real processes: a job that runs longer than API Gateway's 30 s
limit is polled to `succeeded` with its result, while a plain route that long gets the front's 503."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nubes.testing.servers import free_port, port_open, wait_until

APP = Path(__file__).resolve().parents[1] / "apps" / "jobs_app.py"
NUBES = str(Path(sys.executable).with_name("nubes"))
SECONDS = 31.0  # API Gateway's HTTP API integration timeout is 30 s


def call(port: int, method: str, path: str, timeout: float = 60) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        body = r.read()
        return r.status, json.loads(body) if body else None
    finally:
        conn.close()


def run_one(cloud: str, tmp_path: Path) -> dict[str, Any]:
    port = free_port()
    log = (tmp_path / f"{cloud}.log").open("wb")
    env = {**os.environ, "NUBES_STORAGE": (tmp_path / cloud).as_uri(), "JOBS_LOG": str(tmp_path / f"{cloud}.jsonl")}
    # AWS: a function deployed with 900 s for its jobs, behind API Gateway's 30 s
    extra = ["--timeout", "900"] if cloud == "aws" else []
    proc = subprocess.Popen([NUBES, "serve", str(APP), "--port", str(port), "--emulate", cloud, "--workers", "2", *extra],
                            stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        wait_until(lambda: port_open(port), timeout=60, what=f"nubes serve --emulate {cloud}")
        status, job = call(port, "POST", f"/train?seconds={SECONDS}&tag={cloud}")
        assert status == 202, job
        plain = call(port, "GET", f"/slow?seconds={SECONDS}", timeout=90)[0] if cloud == "aws" else None
        end = time.monotonic() + 120
        while time.monotonic() < end:
            status, doc = call(port, "GET", job["location"])
            if doc["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        _, result = call(port, "GET", job["location"] + "/result")
        return {"doc": doc, "result": result, "plain": plain}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_job_longer_than_api_gateways_limit_succeeds_under_aws_and_gcp_emulation(tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        aws, gcp = pool.map(lambda cloud: run_one(cloud, tmp_path), ["aws", "gcp"])
    assert aws["plain"] == 503  # the same 31 s as a plain route: API Gateway's answer
    for cloud, got in (("aws", aws), ("gcp", gcp)):
        doc = got["doc"]
        assert doc["status"] == "succeeded" and doc["attempts"] == 1, doc
        assert doc["result"] == got["result"] == {"slept": SECONDS, "tag": cloud, "provider": cloud, "emulated": True}
        assert doc["progress"]["value"] == 1.0


def test_invoke_emulate_waits_for_the_job_it_submitted(tmp_path: Path) -> None:
    env = {**os.environ, "NUBES_STORAGE": (tmp_path / "home").as_uri(), "NUBES_LOG_LEVEL": "off"}
    r = subprocess.run([NUBES, "invoke", str(APP), "POST", "/train?seconds=0.5&tag=once", "--emulate", "azure"],
                       capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    submitted = json.loads(r.stdout)
    assert submitted["status"] == "queued" and b"waiting for the job" in r.stderr
    doc = json.loads((tmp_path / "home" / "_nubes" / "jobs" / submitted["id"] / "job.json").read_text())
    assert doc["status"] == "succeeded" and doc["result"]["tag"] == "once" and doc["result"]["provider"] == "azure"


def test_a_worker_killed_mid_job_under_nubes_serve_is_re_run(tmp_path: Path) -> None:
    port = free_port()
    jobs_log = tmp_path / "jobs.jsonl"
    env = {**os.environ, "NUBES_STORAGE": (tmp_path / "home").as_uri(), "JOBS_LOG": str(jobs_log)}
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen([NUBES, "serve", str(APP), "--port", str(port), "--emulate", "gcp", "--job-retry-delay", "0.5"],
                                stdout=subprocess.DEVNULL, stderr=log, env=env)
        try:
            wait_until(lambda: port_open(port), timeout=60, what="nubes serve --emulate gcp")
            _, job = call(port, "POST", "/train?seconds=3&tag=victim")
            wait_until(lambda: jobs_log.exists() and jobs_log.read_text().strip() != "", timeout=60, what="the job's start")
            victim = json.loads(jobs_log.read_text().splitlines()[0])["pid"]
            os.kill(victim, signal.SIGKILL)
            statuses = []
            end = time.monotonic() + 90
            while time.monotonic() < end:
                _, doc = call(port, "GET", job["location"])
                statuses.append(doc["status"])
                if doc["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    assert doc["status"] == "succeeded" and doc["attempts"] == 2, doc
    lines = [json.loads(line) for line in jobs_log.read_text().splitlines()]
    assert [(x["event"], x["pid"] == victim) for x in lines] == [("start", True), ("start", False), ("end", False)]
