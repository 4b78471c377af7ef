"""Cloud Functions (2nd gen) limits and defaults as nubes uses them, each with its source (one table
for the adapter, the emulator, build and deploy; prices are in :mod:`.prices`)."""

from __future__ import annotations

from nubes.adapters.base import Figure

MB = 1024 * 1024
_QUOTAS = "cloud.google.com/functions/quotas"
_MEMORY = "cloud.google.com/functions/docs/configuring/memory"
_TIMEOUT = "cloud.google.com/functions/docs/configuring/timeout"

FIGURES: dict[str, Figure] = {
    # Cloud Functions 2nd gen (Cloud Run functions): 32 MiB HTTP request and response;
    # HTTP timeout default 60 s, max 60 min; memory 128 MiB to 32 GiB, default 256 MiB.
    "request_bytes": Figure(32 * MB, _QUOTAS),
    "response_bytes": Figure(32 * MB, _QUOTAS),
    "default_timeout_s": Figure(60, _TIMEOUT),
    "timeout_max_s": Figure(3600, _TIMEOUT),
    "default_memory_mb": Figure(256, _MEMORY),
    "memory_min_mb": Figure(128, _MEMORY),
    "memory_max_mb": Figure(32768, _MEMORY),
    "source_zip_bytes": Figure(100 * MB, _QUOTAS + " (source upload via the API, zipped)"),
    # Jobs run as Cloud Tasks HTTP tasks to the HTTP function: an attempt may run the function's
    # timeout (HTTP functions: up to 60 min); Cloud Tasks waits at most 30 min for the answer
    # (Task.dispatchDeadline "must be in the interval [15 seconds, 30 minutes]",
    # cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks) and retries on
    # any non-2xx answer with the queue's backoff (default minBackoff 0.1 s, doubling;
    # cloud.google.com/tasks/docs/configuring-queues#retry).
    "job_timeout_s": Figure(3600, _TIMEOUT + " (HTTP functions, what a job's attempt may run)"),
    "tasks.dispatch_deadline_max_s": Figure(1800, "cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks"),
    "tasks.min_backoff_s": Figure(0.1, "cloud.google.com/tasks/docs/configuring-queues#retry"),
}
