"""Where and how jobs run: dispatchers, the delivery payload, and one attempt (:func:`run_job`).

A :class:`JobDispatcher` starts a stored job; :func:`choose_dispatcher` picks one per invocation:

* on a cloud (``platform.provider`` names one and the invocation is not emulated): that cloud's own
  asynchronous execution of the same function, from ``clouds.get(provider).job_dispatcher(app,
  request=...)`` — Lambda's asynchronous invocation, a Cloud Tasks HTTP task, an Azure Storage queue
  message. Each delivers :func:`delivery` (``{"nubes-job": {"id", "token"}}``) back to the function,
  whose adapter recognises it and calls :meth:`nubes.App.run_job`;
* under the emulator (``nubes serve --emulate``, ``Client(emulate=...)``): an outbox the emulator
  collects around each invocation (:func:`collect`); the emulator delivers the jobs to its own
  worker pool with the emulated cloud's job timeout and retries;
* otherwise (``nubes serve``, ``Client``, a function framework run by hand): a small thread pool in
  this process (:class:`LocalDispatcher`), which retries a failed attempt after a short backoff.

One attempt (:func:`run_job`) claims the job (a lease in its document), renews the lease while the
handler runs, and records the answer. It returns ``"done"`` (finished, or nothing to do), ``"retry"``
(the attempt failed and the job is queued for another: the cloud should deliver again), ``"busy"``
(another runner holds it: deliver again later) or ``"refused"`` (the delivery's token is wrong: drop it).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.auth import Principal
    from nubes.core.events import Platform
    from nubes.core.jobs import Jobs
    from nubes.core.request import Request

DELIVERY_KEY = "nubes-job"
RUN_PATH = "/_nubes/jobs/{job_id}/run"
"""Where an HTTP delivery (a Cloud Tasks task) posts the delivery payload: adapters intercept it."""


class JobDispatcher(Protocol):
    """Starts a stored job somewhere: ``submit(app, job_id, token)`` returns at once; the job runs
    later by a call to :meth:`nubes.App.run_job` (here, in another worker, or another invocation)."""

    def submit(self, app: App, job_id: str, token: str) -> None: ...


def delivery(job_id: str, token: str) -> dict[str, Any]:
    """The payload a cloud delivers to the function to run a job."""
    return {DELIVERY_KEY: {"id": job_id, "token": token}}


def parse_delivery(payload: Any) -> tuple[str, str] | None:
    """``(job_id, token)`` from a delivery payload (a mapping), or None when it is not one."""
    if not isinstance(payload, Mapping) or set(payload) != {DELIVERY_KEY}:
        return None
    inner = payload[DELIVERY_KEY]
    if not isinstance(inner, Mapping):
        return None
    job_id, token = inner.get("id"), inner.get("token")
    if not (isinstance(job_id, str) and isinstance(token, str) and len(job_id) == 32 and 0 < len(token) <= 64):
        return None
    return job_id, token


def delivery_from_body(body: bytes | str) -> tuple[str, str] | None:
    """``(job_id, token)`` from an untrusted delivery body (JSON text), or None when it is not one.

    Never raises on what the body holds: not JSON, not UTF-8, or nested too deep for the parser
    (``RecursionError``: an HTTP request or queue message of a few kilobytes of ``[``)."""
    import json

    try:
        return parse_delivery(json.loads(body))
    except (ValueError, RecursionError):
        return None


def delivery_from_http(method: str, path: str, body: bytes) -> tuple[str, str] | None:
    """``(job_id, token)`` when an HTTP request is a job delivery (``POST /_nubes/jobs/{id}/run``)."""
    prefix, suffix = RUN_PATH.split("{job_id}")
    if method != "POST" or not path.startswith(prefix) or not path.endswith(suffix) or len(body) > 4096:
        return None
    parsed = delivery_from_body(body)
    if parsed is None or path != RUN_PATH.format(job_id=parsed[0]):
        return None
    return parsed


# -- the emulator's outbox ------------------------------------------------------------------------
_OUTBOX: contextvars.ContextVar[list[dict[str, str]] | None] = contextvars.ContextVar("nubes_job_outbox", default=None)


@contextmanager
def collect() -> Iterator[list[dict[str, str]]]:
    """Collect the jobs dispatched in this context (``[{"id", "token"}]``) instead of starting them:
    the emulator wraps each invocation in it and delivers them itself."""
    sent: list[dict[str, str]] = []
    token = _OUTBOX.set(sent)
    try:
        yield sent
    finally:
        _OUTBOX.reset(token)


class OutboxDispatcher:
    def submit(self, app: App, job_id: str, token: str) -> None:
        outbox = _OUTBOX.get()
        if outbox is None:
            raise RuntimeError("no emulator is collecting jobs in this context")
        outbox.append({"id": job_id, "token": token})


OUTBOX = OutboxDispatcher()


class LocalDispatcher:
    """Runs jobs on a small thread pool in this process (``nubes serve``, ``Client``), retrying a
    failed attempt after a short backoff. A job here is not stopped at a timeout (a thread cannot be)."""

    def __init__(self, workers: int = 2) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self._lock = threading.Lock()

    def submit(self, app: App, job_id: str, token: str = "") -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="nubes-job")
            pool = self._pool
        pool.submit(self._run, app, job_id)

    def _run(self, app: App, job_id: str) -> None:
        for attempt in range(app.jobs.max_attempts + 3):
            outcome = app.run_job(job_id)
            if outcome not in ("retry", "busy"):
                return
            time.sleep(min(0.25 * 2**attempt, 5.0))

    def drain(self) -> None:
        """Wait until every submitted job has finished (for tests and shutdown)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


LOCAL = LocalDispatcher()


def choose_dispatcher(app: App, platform: Platform | None, request: Request | None) -> JobDispatcher:
    """The dispatcher for a job submitted in this invocation (see the module docstring)."""
    if _OUTBOX.get() is not None:
        return OUTBOX
    from nubes.core import clouds

    if platform is not None and not platform.emulated and clouds.is_cloud(platform.provider):
        dispatcher: JobDispatcher = clouds.get(platform.provider).job_dispatcher(app, request=request)
        return dispatcher
    return LOCAL


# -- one attempt ----------------------------------------------------------------------------------
@dataclass
class JobRun:
    """One attempt at running a job, handed to the handler's context (``ctx.progress``)."""

    jobs: Jobs
    job_id: str
    attempt: int
    principal: Principal | None
    lease_s: float = 60.0
    _last_progress: float = field(default=0.0)

    def progress(self, value: float | None, message: str | None) -> None:
        now = time.monotonic()
        if now - self._last_progress < 1.0 and value not in (0.0, 1.0):
            return  # at most one write a second (each is a storage PUT)
        self._last_progress = now
        self.jobs.update(self.job_id, progress={"value": value, "message": message})


class _Heartbeat(threading.Thread):
    """Renews a run's lease every third of it until stopped (or the job is no longer the run's)."""

    def __init__(self, run: JobRun) -> None:
        super().__init__(name=f"nubes-job-lease-{run.job_id[:8]}", daemon=True)
        self.run_ = run
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(max(self.run_.lease_s / 3, 0.05)):
            try:
                if not self.run_.jobs.renew(self.run_):
                    return
            except Exception:  # a storage hiccup: try again at the next beat (the lease has slack)
                self.run_.jobs.app.log.exception("job lease renewal failed", job=self.run_.job_id)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def run_job(app: App, job_id: str, *, platform: Platform | None = None, deadline: float | None = None,
            request_id: str | None = None, token: str | None = None) -> str:
    """See :meth:`nubes.App.run_job`."""
    jobs = app.jobs
    outcome, run = jobs.claim(job_id, token=token)
    if run is None:
        if outcome == "refused":
            app.log.bind(request_id=request_id or "-").error("job delivery refused: wrong token", job=job_id)
        return outcome
    beat = _Heartbeat(run)
    beat.start()
    try:
        try:
            request = jobs.request_of(job_id)
        except Exception:
            app.log.exception("job request unreadable", job=job_id)
            request = None
        if request is None:
            from nubes.core.app import problem_response
            from nubes.core.request import Request
            from nubes.errors import HTTPError

            response = problem_response(HTTPError(500, "the job's stored request could not be read"), Request("GET", "/"), job_id)
        else:
            response = app.handle(request, request_id=request_id, deadline=deadline, platform=platform, job=run)
    finally:
        beat.stop()
    _, retry = jobs.complete(run, response)
    return "retry" if retry else "done"
