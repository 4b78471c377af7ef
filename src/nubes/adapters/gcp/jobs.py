"""Jobs on Cloud Functions (2nd gen): a Cloud Tasks HTTP task to the same function runs each job.

:class:`CloudTasksDispatcher` creates a task on the jobs queue (``NUBES_JOBS_QUEUE``: the full
``projects/P/locations/L/queues/Q``, or ``Q`` with ``GOOGLE_CLOUD_PROJECT`` and ``FUNCTION_REGION``)
that ``POST``s ``{"nubes-job": {"id", "token"}}`` to ``<function URL>/_nubes/jobs/{id}/run``; the URL
is ``NUBES_JOBS_URL`` when set, else the one the submitting request reached. With
``NUBES_JOBS_SERVICE_ACCOUNT`` the task carries an OIDC token for that account (for a function that
requires authentication). The HTTP target (:func:`nubes.adapters.gcp.http_function`) recognises the
delivery (and its token, so a caller who is not Cloud Tasks cannot run a job) and runs one attempt.

Retries are Cloud Tasks': any answer other than 2xx is retried with the queue's backoff, up to its
``retryConfig.maxAttempts`` (deploy it at ``[jobs] max_attempts``, 3). An attempt that failed with a
5xx or found the job held by a live runner answers 503, so Cloud Tasks tries again; the job ends
``failed`` with its problem when the attempts are spent. Each attempt is bounded by the function's
timeout (HTTP functions: up to 60 min); Cloud Tasks waits at most 30 min for the answer
(``dispatchDeadline``), after which it counts the attempt failed while the function runs on (the
lease keeps a second runner out until it finishes).

``NUBES_CLOUD_TASKS_ENDPOINT`` (``http://host:port``) points the client at another endpoint over REST
with anonymous credentials (an emulator, or a test double); unset, the client is configured the
standard way (ADC).
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any

from nubes.adapters.gcp.limits import FIGURES
from nubes.core.job_runs import RUN_PATH, delivery
from nubes.errors import ConfigError

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.request import Request

DISPATCH_DEADLINE_MAX_S = FIGURES["tasks.dispatch_deadline_max_s"].value
_CLIENT: list[Any] = []
_LOCK = threading.Lock()


def tasks_client() -> Any:
    """One Cloud Tasks client per process (see the module docstring for the endpoint)."""
    if not _CLIENT:
        with _LOCK:
            if not _CLIENT:
                from google.cloud import tasks_v2

                endpoint = os.environ.get("NUBES_CLOUD_TASKS_ENDPOINT")
                if endpoint:
                    from google.api_core.client_options import ClientOptions
                    from google.auth.credentials import AnonymousCredentials

                    _CLIENT.append(tasks_v2.CloudTasksClient(transport="rest", credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                                                             client_options=ClientOptions(api_endpoint=endpoint)))
                else:
                    _CLIENT.append(tasks_v2.CloudTasksClient())
    return _CLIENT[0]


def queue_path() -> str:
    name = os.environ.get("NUBES_JOBS_QUEUE", "")
    if name.startswith("projects/"):
        return name
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT")
    region = os.environ.get("FUNCTION_REGION") or os.environ.get("GOOGLE_CLOUD_REGION")
    if not (name and project and region):
        raise ConfigError("jobs on Cloud Functions go through a Cloud Tasks queue: set NUBES_JOBS_QUEUE to "
                          "projects/PROJECT/locations/REGION/queues/QUEUE (or QUEUE with GOOGLE_CLOUD_PROJECT and FUNCTION_REGION)")
    return f"projects/{project}/locations/{region}/queues/{name}"


def function_url(request: Request | None) -> str:
    """Where tasks are sent: ``NUBES_JOBS_URL``, else the URL the submitting request reached."""
    url = os.environ.get("NUBES_JOBS_URL")
    if url:
        return url.rstrip("/")
    host = request.headers.get("host") if request is not None else None
    if not host:
        raise ConfigError("set NUBES_JOBS_URL to the function's URL: Cloud Tasks sends jobs there")
    base = f"{'https' if request is not None and request.scheme == 'https' else 'http'}://{host}"
    service = os.environ.get("K_SERVICE")
    if host.endswith("cloudfunctions.net") and service:
        base += f"/{service}"  # https://REGION-PROJECT.cloudfunctions.net/NAME routes by the function's name
    return base


class CloudTasksDispatcher:
    """Starts a job by creating an HTTP task that posts its delivery to the function."""

    def __init__(self, queue: str, url: str, *, service_account: str | None = None, deadline_s: float | None = None,
                 client: Any = None) -> None:
        self.queue, self.url, self.service_account = queue, url, service_account
        timeout = deadline_s or float(os.environ.get("FUNCTION_TIMEOUT_SEC") or DISPATCH_DEADLINE_MAX_S)
        self.deadline_s = int(min(max(timeout, 15), DISPATCH_DEADLINE_MAX_S))  # Cloud Tasks allows 15 s to 30 min
        self._client = client

    @classmethod
    def from_environment(cls, request: Request | None) -> CloudTasksDispatcher:
        return cls(queue_path(), function_url(request), service_account=os.environ.get("NUBES_JOBS_SERVICE_ACCOUNT"))

    def submit(self, app: App, job_id: str, token: str) -> None:
        from google.cloud import tasks_v2
        from google.protobuf import duration_pb2

        http = tasks_v2.HttpRequest(http_method=tasks_v2.HttpMethod.POST, url=self.url + RUN_PATH.format(job_id=job_id),
                                    headers={"content-type": "application/json"},
                                    body=json.dumps(delivery(job_id, token)).encode())
        if self.service_account:
            http.oidc_token = tasks_v2.OidcToken(service_account_email=self.service_account, audience=self.url)
        task = tasks_v2.Task(http_request=http, dispatch_deadline=duration_pb2.Duration(seconds=self.deadline_s))
        (self._client or tasks_client()).create_task(parent=self.queue, task=task)
