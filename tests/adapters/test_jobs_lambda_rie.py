"""A job's delivery run by the real Lambda runtime: the Runtime Interface Emulator with awslambdaric
calls the nubes handler with the asynchronous invocation's payload; the job runs in that process
(home store shared on disk) and a failed attempt comes back as the function error Lambda retries."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nubes
from nubes.core.job_runs import delivery
from nubes.core.request import Request
from nubes.testing.servers import free_port, port_open, wait_until

RIE = Path(os.environ.get("NUBES_LAMBDA_RIE") or "/work/shared/tools/aws-lambda-rie/aws-lambda-rie")
if not RIE.exists():
    RIE = Path(__file__).resolve().parents[3] / "shared" / "tools" / "aws-lambda-rie" / "aws-lambda-rie"

APP = textwrap.dedent('''
    import os
    import nubes

    app = nubes.App("rie-jobs", storage=os.environ["JOBS_HOME"], auth=False)

    @app.job("/train")
    def train(ctx, rows: int = 1, fail: int = 0) -> dict:
        if fail:
            raise RuntimeError("out of luck")
        return {"rows": rows, "function": ctx.platform.function_name, "emulated": ctx.platform.emulated}
''')


class Rie:
    def __init__(self, task: Path, env: dict[str, str]) -> None:
        self.port, api = free_port(), free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "AWS_"))}
        base.update({"LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_FUNCTION_NAME": "trainer", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
                     "AWS_LAMBDA_FUNCTION_TIMEOUT": "60", "AWS_REGION": "us-east-1", "NUBES_LOG_LEVEL": "warning",
                     "PYTHONPATH": os.pathsep.join([str(task), str(Path(nubes.__file__).parents[1])]), **env})
        self.proc = subprocess.Popen(
            [str(RIE), "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}", "--runtime-api-address",
             f"127.0.0.1:{api}", sys.executable, "-m", "awslambdaric", "lambda_function.handler"],
            cwd=task, env=base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: port_open(self.port), timeout=20, what="aws-lambda-rie")

    def invoke(self, event: object) -> tuple[dict[str, str], Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations",
                                         data=json.dumps(event).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:  # loopback
            return dict(response.headers.items()), json.loads(response.read() or b"null")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Rie, nubes.App]]:
    if not RIE.exists():
        pytest.skip(f"the Lambda Runtime Interface Emulator is not at {RIE} (see shared/tools/aws-lambda-rie/README.md)")
    task = tmp_path / "task"
    task.mkdir()
    (task / "jobs_rie_app.py").write_text(APP, encoding="utf-8")
    (task / "lambda_function.py").write_text("from nubes.adapters.aws import handler as _h\nfrom jobs_rie_app import app\n"
                                             "handler = _h(app)\n", encoding="utf-8")
    home = (tmp_path / "home").as_uri()
    monkeypatch.setenv("JOBS_HOME", home)
    rie = Rie(task, {"JOBS_HOME": home})
    from nubes.core.loader import load_app

    submitter = load_app(f"{task / 'jobs_rie_app.py'}:app")  # this process submits (its dispatcher held)
    try:
        yield rie, submitter
    finally:
        rie.stop()


class Held:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def submit(self, app: nubes.App, job_id: str, token: str) -> None:
        self.sent.append(delivery(job_id, token))


def test_the_lambda_runtime_runs_a_jobs_delivery(runtime: tuple[Rie, nubes.App]) -> None:
    rie, app = runtime
    held = Held()
    app.jobs.dispatcher = held
    job = json.loads(app.handle(Request("POST", "/train", query="rows=9")).body)
    headers, answer = rie.invoke(held.sent[0])  # what Lambda hands the function for the asynchronous invocation
    assert answer == {"job": job["id"], "outcome": "done"} and "X-Amz-Function-Error" not in headers
    doc, _ = app.jobs.load(job["id"])
    assert doc["status"] == "succeeded" and doc["result"] == {"rows": 9, "function": "trainer", "emulated": False}


def test_a_failed_attempt_is_a_function_error_for_lambda_to_retry(runtime: tuple[Rie, nubes.App]) -> None:
    rie, app = runtime
    held = Held()
    app.jobs.dispatcher = held
    job = json.loads(app.handle(Request("POST", "/train", query="fail=1")).body)
    _, answer = rie.invoke(held.sent[0])
    assert answer["errorType"] == "JobAttemptFailed" and "Lambda retries" in answer["errorMessage"]  # (RIE sets no error header)
    doc, _ = app.jobs.load(job["id"])
    assert doc["status"] == "queued" and doc["attempts"] == 1 and doc["problem"]["status"] == 500
