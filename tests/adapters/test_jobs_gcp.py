"""Jobs on Cloud Functions: the dispatcher creates a Cloud Tasks HTTP task with the official client
(over REST, against the loopback double in cloud_tasks_double.py: no installable emulator exists),
the double posts it to the function served by the functions-framework, which runs the attempt;
failed attempts answer 503 and are retried by the queue until its attempts are spent."""

from __future__ import annotations

import http.client
import json
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from tests.adapters.cloud_tasks_double import CloudTasksDouble
from werkzeug.serving import make_server

APP = textwrap.dedent('''
    import json, os
    import nubes
    from nubes.adapters.gcp import http_function

    app = nubes.App("gcp-jobs", storage=os.environ["JOBS_HOME"], auth=False)

    @app.job("/train")
    def train(ctx, rows: int = 1, fail: int = 0) -> dict:
        with open(os.environ["JOBS_RUNS"], "a") as f:
            f.write(json.dumps({"rows": rows, "retry": ctx.request.headers.get("x-cloudtasks-taskretrycount")}) + "\\n")
        runs = sum(1 for _ in open(os.environ["JOBS_RUNS"]))
        if runs <= fail:
            raise RuntimeError("preempted")
        return {"rows": rows}

    main = http_function(app)
''')


@pytest.fixture
def function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, CloudTasksDouble, Path]]:
    source = tmp_path / "main.py"
    source.write_text(APP, encoding="utf-8")
    runs = tmp_path / "runs.jsonl"
    monkeypatch.setenv("JOBS_HOME", (tmp_path / "home").as_uri())
    monkeypatch.setenv("JOBS_RUNS", str(runs))
    monkeypatch.setenv("K_SERVICE", "trainer")  # on Cloud Functions, not emulated
    monkeypatch.setenv("NUBES_JOBS_QUEUE", "projects/acme/locations/europe-west1/queues/trainer-jobs")
    monkeypatch.delenv("NUBES_JOBS_URL", raising=False)
    import nubes.adapters.gcp.jobs as jobs_module

    with CloudTasksDouble(max_attempts=3, min_backoff=0.05) as tasks:
        monkeypatch.setenv("NUBES_CLOUD_TASKS_ENDPOINT", tasks.endpoint)
        jobs_module._CLIENT.clear()
        server = make_server("127.0.0.1", 0, functions_framework.create_app("main", str(source), "http"), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"127.0.0.1:{server.server_port}", tasks, runs
        finally:
            server.shutdown()
            jobs_module._CLIENT.clear()


def call(host: str, method: str, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def poll(host: str, location: str) -> dict[str, Any]:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        _, doc = call(host, "GET", location)
        if doc["status"] in ("succeeded", "failed", "cancelled"):
            return doc
        time.sleep(0.05)
    raise AssertionError(doc)


def test_a_job_runs_through_a_cloud_tasks_task_to_the_same_function(function: tuple[str, CloudTasksDouble, Path]) -> None:
    host, tasks, runs = function
    status, job = call(host, "POST", "/train?rows=5")
    assert status == 202
    doc = poll(host, job["location"])
    assert doc["status"] == "succeeded" and doc["result"] == {"rows": 5} and doc["attempts"] == 1
    (task,) = tasks.created
    assert task["httpRequest"]["url"] == f"http://{host}/_nubes/jobs/{job['id']}/run"
    assert task["dispatchDeadline"] == "1800s" and tasks.refused == []
    assert [a[2] for a in tasks.attempts] == [200]
    assert [json.loads(line) for line in runs.read_text().splitlines()] == [{"rows": 5, "retry": None}]


def test_failed_attempts_are_retried_by_the_queue_then_the_job_fails(function: tuple[str, CloudTasksDouble, Path]) -> None:
    host, tasks, runs = function
    _, job = call(host, "POST", "/train?fail=9")
    tasks.wait()
    doc = poll(host, job["location"])
    assert doc["status"] == "failed" and doc["attempts"] == 3 and doc["problem"]["status"] == 500
    assert [a[2] for a in tasks.attempts] == [503, 503, 200]  # the last attempt recorded the failure: nothing to retry
    assert len(runs.read_text().splitlines()) == 3


def test_a_transient_failure_succeeds_on_the_queues_retry(function: tuple[str, CloudTasksDouble, Path]) -> None:
    host, tasks, _ = function
    _, job = call(host, "POST", "/train?fail=1")
    doc = poll(host, job["location"])
    assert doc["status"] == "succeeded" and doc["attempts"] == 2
    tasks.wait()
    assert [a[2] for a in tasks.attempts] == [503, 200]


def test_a_delivery_without_the_token_is_refused(function: tuple[str, CloudTasksDouble, Path]) -> None:
    host, tasks, runs = function
    _, job = call(host, "POST", "/train?rows=1")
    tasks.wait()
    conn = http.client.HTTPConnection(host, timeout=30)
    body = json.dumps({"nubes-job": {"id": job["id"], "token": "0" * 32}})
    conn.request("POST", f"/_nubes/jobs/{job['id']}/run", body=body, headers={"content-type": "application/json"})
    r = conn.getresponse()
    assert r.status == 403 and json.loads(r.read())["outcome"] == "refused"
    assert len(runs.read_text().splitlines()) == 1
