"""Jobs on Azure: the dispatcher puts the delivery on a Storage queue (Azurite), the FunctionApp's
queue-triggered ``nubes_jobs`` runs it from the real azure.functions QueueMessage, and a failed
attempt raises so the host dequeues it again (up to maxDequeueCount = max_attempts, in host.json)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.adapters.test_azure_support import Indexed, assert_worker_loads

import nubes
from nubes.adapters.azure.builders import from_http_response, invocation_context, queue_message, to_http_request
from nubes.adapters.azure.functions import HTTP_FUNCTION, JOBS_FUNCTION, function_app, host_json
from nubes.adapters.azure.jobs import JobAttemptFailed, jobs_queue, run_delivery
from nubes.core.request import Request
from nubes.testing.servers.azurite import AzuriteQueue


@pytest.fixture(scope="module")
def azurite() -> Iterator[AzuriteQueue]:
    with AzuriteQueue() as server:
        yield server


@pytest.fixture
def on_azure(azurite: AzuriteQueue, monkeypatch: pytest.MonkeyPatch) -> AzuriteQueue:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "instance-1")  # as on Azure: not emulated
    monkeypatch.delenv("NUBES_JOBS_QUEUE", raising=False)
    return azurite


def make_app(name: str, fail_times: int = 0) -> tuple[nubes.App, list[int]]:
    app = nubes.App(name, storage=f"mem://{name}-{id(object())}", auth=False)
    runs: list[int] = []

    @app.job("/train")
    def train(ctx: nubes.Context, rows: int = 1) -> dict:
        runs.append(rows)
        if len(runs) <= fail_times:
            raise RuntimeError("node lost")
        return {"rows": rows}

    return app, runs


def receive(azurite: AzuriteQueue, queue: str) -> list[Any]:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    with QueueClient.from_connection_string(azurite.connection_string, queue, message_decode_policy=TextBase64DecodePolicy()) as q:
        got = list(q.receive_messages(visibility_timeout=1, max_messages=32))
        for m in got:
            q.delete_message(m)
    return got


def call(idx: Indexed, method: str, path: str) -> Any:
    resp = from_http_response(idx[HTTP_FUNCTION](to_http_request(Request(method, path)), invocation_context()))
    return resp.status, json.loads(resp.body)


def test_a_job_goes_through_the_storage_queue_to_the_jobs_function(on_azure: AzuriteQueue) -> None:
    app, runs = make_app("sales-models")
    idx = Indexed(function_app(app))
    assert jobs_queue(app) == "sales-models-jobs"
    assert idx.trigger(JOBS_FUNCTION) == {"direction": "IN", "type": "queueTrigger", "name": "msg",
                                         "queueName": "sales-models-jobs", "connection": "AzureWebJobsStorage"}
    assert_worker_loads(idx.functions[JOBS_FUNCTION])
    assert host_json(app)["extensions"]["queues"] == {"maxDequeueCount": 3}
    status, job = call(idx, "POST", "/train?rows=4")
    assert status == 202 and runs == []
    (message,) = receive(on_azure, "sales-models-jobs")
    body = json.loads(message.content)
    assert body["nubes-job"]["id"] == job["id"]
    idx[JOBS_FUNCTION](queue_message(message.content.encode(), id=message.id, dequeue_count=1), invocation_context())
    status, doc = call(idx, "GET", job["location"])
    assert status == 200 and doc["status"] == "succeeded" and doc["result"] == {"rows": 4} and runs == [4]


def test_failed_attempts_raise_until_the_dequeue_count_is_spent(on_azure: AzuriteQueue) -> None:
    app, runs = make_app("flaky", fail_times=9)
    idx = Indexed(function_app(app))
    _, job = call(idx, "POST", "/train")
    (message,) = receive(on_azure, jobs_queue(app))
    for n in (1, 2):
        with pytest.raises(JobAttemptFailed):
            idx[JOBS_FUNCTION](queue_message(message.content.encode(), dequeue_count=n), invocation_context())
    idx[JOBS_FUNCTION](queue_message(message.content.encode(), dequeue_count=3), invocation_context())  # then poison
    _, doc = call(idx, "GET", job["location"])
    assert doc["status"] == "failed" and doc["attempts"] == 3 and len(runs) == 3


def test_an_app_without_jobs_has_no_jobs_function(on_azure: AzuriteQueue) -> None:
    app = nubes.App("plain", auth=False)
    app.get("/x")(lambda ctx: {})
    assert JOBS_FUNCTION not in Indexed(function_app(app)).functions
    assert "queues" not in host_json(app)["extensions"]


@pytest.mark.parametrize("body", [b"[" * 4000, b'{"nubes-job":' * 20_000, b"\xff\xfe", b"", b"{}"])
def test_an_unreadable_job_message_is_dropped_not_retried(body: bytes) -> None:
    """A queue message the jobs function cannot read (nested past the JSON parser's recursion limit
    included) is logged and consumed: raising would make the host retry it, then poison it."""
    app, runs = make_app("unreadable")
    assert run_delivery(app, body, request_id="r1", deadline=0.0, platform=None) == "refused"
    assert runs == []
