"""Jobs on Azure Functions: a Storage queue message to the same function app runs each job.

:class:`QueueDispatcher` puts ``{"nubes-job": {"id", "token"}}`` (base64, as the queue trigger
expects by default) on the app's jobs queue (``NUBES_JOBS_QUEUE``, else ``<app name>-jobs``) through
the storage connection the triggers use (the app setting named by ``connection``, by default
``AzureWebJobsStorage``): a connection string, or, as ``nubes deploy`` configures it, identity-based
(``AzureWebJobsStorage__accountName`` or ``__queueServiceUri``, with ``DefaultAzureCredential``
from ``azure-identity``: the app's managed identity holds Storage Queue Data Contributor).
:func:`nubes.adapters.azure.function_app` registers the queue-triggered function ``nubes_jobs`` on
that queue for an app with job routes; it runs one attempt.

Retries are the queue trigger's: a function that raises (or times out) leaves the message to be
dequeued again, up to ``maxDequeueCount`` times, then moves it to ``<queue>-poison``. nubes writes
``maxDequeueCount`` = ``[jobs] max_attempts`` (3) into host.json, so the job ends ``failed`` with its
problem when the host gives up. Each attempt is bounded by ``functionTimeout`` (Flex Consumption:
30 minutes by default, unbounded if configured so).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import azure.functions as func  # the worker resolves the jobs function's annotations in this module

from nubes.adapters.azure.triggers import jobs_queue_name
from nubes.adapters.deployment import jobs
from nubes.core.job_runs import delivery, delivery_from_body

if TYPE_CHECKING:
    from nubes.core.app import App

CONNECTION = "AzureWebJobsStorage"


class JobAttemptFailed(RuntimeError):
    """Raised to the Functions host so the job's queue message is dequeued again."""


def has_jobs(app: App) -> bool:
    """Whether ``app`` declares jobs (so it gets the ``nubes_jobs`` function and its queue)."""
    return jobs(app) is not None


def jobs_queue(app: App) -> str:
    """The Storage queue of ``app``'s jobs: ``NUBES_JOBS_QUEUE`` (``nubes deploy`` sets it), else
    :func:`~nubes.adapters.azure.triggers.jobs_queue_name` of the app's name."""
    return os.environ.get("NUBES_JOBS_QUEUE") or jobs_queue_name(app.name)


class QueueDispatcher:
    """Starts a job by putting its delivery on the jobs queue (created if missing)."""

    def __init__(self, queue: str, connection_string: str | None = None, *, account_url: str | None = None,
                 credential: Any = None) -> None:
        if not (connection_string or account_url):
            raise ValueError("a QueueDispatcher needs a connection string or an account URL")
        self.queue = queue
        self.connection_string = connection_string
        self.account_url = account_url
        self._credential = credential

    @classmethod
    def for_app(cls, app: App, connection: str = CONNECTION) -> QueueDispatcher:
        """Through the connection ``connection`` names: its connection string, else its identity-based settings."""
        from nubes.errors import ConfigError

        conn = os.environ.get(connection)
        if conn:
            return cls(jobs_queue(app), conn)
        account = os.environ.get(f"{connection}__accountName")
        url = os.environ.get(f"{connection}__queueServiceUri") or (f"https://{account}.queue.core.windows.net" if account else None)
        if url:
            return cls(jobs_queue(app), account_url=url)
        raise ConfigError(f"jobs on Azure go through a Storage queue, but neither the app setting {connection} (a connection "
                          f"string) nor {connection}__accountName (identity-based, as nubes deploy sets it) is set")

    def _client(self) -> Any:
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        if self.connection_string:
            return QueueClient.from_connection_string(self.connection_string, self.queue,
                                                      message_encode_policy=TextBase64EncodePolicy())
        if self._credential is None:
            from azure.identity import DefaultAzureCredential  # the app's managed identity when deployed

            self._credential = DefaultAzureCredential()
        return QueueClient(str(self.account_url), self.queue, credential=self._credential,
                           message_encode_policy=TextBase64EncodePolicy())

    def submit(self, app: App, job_id: str, token: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with self._client() as client:
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
    parsed = delivery_from_body(body)
    if parsed is None:
        app.log.bind(request_id=request_id or "-").error("malformed job message dropped")
        return "refused"
    job_id, token = parsed
    outcome = app.run_job(job_id, token=token, platform=platform, deadline=deadline, request_id=request_id)
    if outcome in ("retry", "busy"):
        raise JobAttemptFailed(f"job {job_id}: {'the attempt failed' if outcome == 'retry' else 'another runner holds it'}; "
                               "the queue delivers it again")
    return outcome
