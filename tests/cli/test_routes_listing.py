"""`nubes routes` lists everything an app answers: routes, jobs, enabled built-ins, event handlers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

APPS = Path(__file__).resolve().parents[1] / "apps"
NUBES = str(Path(sys.executable).with_name("nubes"))


def routes(app: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUBES_SOURCES", "NUBES_QUEUES")}
    return subprocess.run([NUBES, "routes", str(app), *args], capture_output=True, env=env, timeout=120)


def test_jobs_and_built_ins_are_marked() -> None:
    listed = json.loads(routes(APPS / "jobs_app.py", "--format", "json").stdout)
    kinds = {(r["path"], tuple(r["methods"])): r["kind"] for r in listed["routes"]}
    assert kinds[("/train", ("POST",))] == "job" and kinds[("/slow", ("GET",))] == "route"
    assert kinds[("/_nubes/jobs/{job_id}", ("DELETE",))] == "built-in" and kinds[("/_nubes/openapi.json", ("GET",))] == "built-in"
    assert listed["events"] == []


def test_event_handlers_come_with_each_clouds_bindings() -> None:
    listed = json.loads(routes(APPS / "portable" / "app.py", "--format", "json").stdout)
    landed, order = listed["events"]
    assert landed["kind"] == "object_created" and landed["source"] == "landing" and landed["prefix"] == "raw/"
    assert landed["bindings"] == {"aws": "s3://acme-landing/incoming", "gcp": "gs://acme-landing-gcs/incoming",
                                  "azure": "az://landing/incoming"}
    assert order["bindings"] == {"aws": "orders-prod", "gcp": "orders-topic", "azure": "orders-queue"}
    table = routes(APPS / "portable" / "app.py").stdout.decode()
    assert "2 event handlers" in table and "orders-topic" in table
