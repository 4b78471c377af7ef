"""Jobs on Azure Functions: a Storage queue message to the same function app runs each job.

:class:`QueueDispatcher` puts ``{"nubes-job": {"id", "token"}}`` (base64, as the queue trigger
expects by default) on the app's jobs queue (``NUBES_JOBS_QUEUE``, else ``<app name>-jobs``) through
the storage connection the triggers use (the app setting named by ``connection``, by default
``AzureWebJobsStorage``). :func:`nubes.adapters.azure.function_app` registers the queue-triggered
function ``nubes_jobs`` on that queue for an app with job routes; it runs one attempt.

Retries are the queue trigger's: a function that raises (or times out) leaves the message to be
dequeued again, up to ``maxDequeueCount`` times, then moves it to ``<queue>-poison``. nubes writes
``maxDequeueCount`` = ``[jobs] max_attempts`` (3) into host.json, so the job ends ``failed`` with its
problem when the host gives up. Each attempt is bounded by ``functionTimeout`` (Flex Consumption:
30 minutes by default, unbounded if configured so).
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

import azure.functions as func  # the worker resolves the jobs function's annotations in this module

from nubes.core.job_runs import delivery

if TYPE_CHECKING:
    from nubes.core.app import App

CONNECTION = "AzureWebJobsStorage"


class JobAttemptFailed(RuntimeError):
    """Raised to the Functions host so the job's queue message is dequeued again."""


def has_jobs(app: App) -> bool:
    return any(r.options.get("job") for r in app.routes)


def jobs_queue(app: App) -> str:
    """The Storage queue of ``app``'s jobs: ``NUBES_JOBS_QUEUE``, else ``<app name>-jobs`` made a valid queue name."""
    name = os.environ.get("NUBES_JOBS_QUEUE")
    if name:
        return name
    slug = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", app.name.lower())).strip("-")[:58] or "nubes"
    return f"{slug}-jobs" if len(slug) >= 1 else "nubes-jobs"


class QueueDispatcher:
    """Starts a job by putting its delivery on the jobs queue (created if missing)."""

    def __init__(self, queue: str, connection_string: str) -> None:
        self.queue = queue
        self.connection_string = connection_string

    @classmethod
    def for_app(cls, app: App, connection: str = CONNECTION) -> QueueDispatcher:
        from nubes.errors import ConfigError

        conn = os.environ.get(connection)
        if not conn:
            raise ConfigError(f"jobs on Azure go through a Storage queue, but the app setting {connection} (the storage "
                              "connection string the triggers use) is not set")
        return cls(jobs_queue(app), conn)

    def submit(self, app: App, job_id: str, token: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        with QueueClient.from_connection_string(self.connection_string, self.queue,
                                                message_encode_policy=TextBase64EncodePolicy()) as client:
            text = json.dumps(delivery(job_id, token))
            try:
                client.send_message(text)
            except ResourceNotFoundError:
                client.create_queue()
                client.send_message(text)


def jobs_function(app: App, runtime: Any, request_id: Any) -> Any:
    """The queue-triggered ``nubes_jobs`` function of :func:`nubes.adapters.azure.function_app`."""

    def on_job(msg: func.QueueMessage, context: func.Context) -> None:
        run_delivery(app, msg.get_body() or b"", request_id=request_id(context), deadline=runtime.deadline(False),
                     platform=runtime.platform())

    return on_job


def run_delivery(app: App, body: bytes, *, request_id: str | None, deadline: float, platform: Any) -> str:
    """Run the job a queue message delivers; raises :class:`JobAttemptFailed` so the host retries."""
    from nubes.core.job_runs import parse_delivery

    try:
        parsed = parse_delivery(json.loads(body))
    except ValueError:
        parsed = None
    if parsed is None:
        app.log.bind(request_id=request_id or "-").error("malformed job message dropped")
        return "refused"
    job_id, token = parsed
    outcome = app.run_job(job_id, token=token, platform=platform, deadline=deadline, request_id=request_id)
    if outcome in ("retry", "busy"):
        raise JobAttemptFailed(f"job {job_id}: {'the attempt failed' if outcome == 'retry' else 'another runner holds it'}; "
                               "the queue delivers it again")
    return outcome
