"""Jobs under emulation: delivered to worker processes as the emulated cloud delivers them.

An invocation that submits a job (or a poll that restarts one) hands its id back with the worker's
reply (:func:`nubes.core.job_runs.collect`); :class:`EmulatedJobs` then delivers it the emulated
cloud's way (the payload from the profile's :meth:`~nubes.adapters.emulator.profile.Profile.job_payload`:
Lambda's asynchronous invocation, a Cloud Tasks HTTP request, an Azure queue message) to its own pool
of ``workers`` function instances (the HTTP pool stays free to answer polls), each attempt bounded by
the cloud's timeout for a job (the profile's ``job_timeout``: Lambda 15 min, Cloud Functions HTTP
60 min, Azure Flex 30 min by default; ``job_timeout=`` overrides), not the HTTP front's.

Retries follow the cloud: an attempt that fails (the adapter reports a failure, or the worker times
out, runs out of memory or dies) is delivered again after the cloud's delay (Lambda: 1 then 2 min;
Cloud Tasks: from 0.1 s, doubling; Azure queues: at once; ``retry_delay=`` overrides them all), as
many times as the job has attempts. A worker that died mid-job gives its attempt up at once (the
platform saw it die: no need to wait for the lease). When the deliveries are spent the job ends
``failed`` with its last problem, so a job is never left running with no runner.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nubes.adapters.emulator.profile import Settings, new_request_id
from nubes.adapters.emulator.workers import Pool

if TYPE_CHECKING:
    from nubes.adapters.emulator.runtime import Emulator


@dataclass
class Local:
    """One in-process function instance: its target (made on first use), a lock (one invocation at a time)."""

    settings: dict[str, Any]
    target: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class EmulatedJobs:
    """Delivers jobs for one :class:`~nubes.adapters.emulator.runtime.Emulator` (see the module docstring)."""

    def __init__(self, emulator: Emulator, *, timeout: float | None = None, workers: int = 1,
                 retry_delay: float | None = None) -> None:
        self.emulator = emulator
        profile = emulator.provider
        self.timeout = float(timeout if timeout is not None else profile.job_timeout)
        self.retry_delay = retry_delay
        settings = Settings(self.timeout, profile.settings.memory, profile.settings.function_name, profile.settings.front,
                            profile.settings.request_limit)
        self.profile = type(profile)(settings)  # the same function, as deployed for its jobs (their timeout)
        self.pool: Pool | None = None
        self.local = Local(settings.to_json())
        if emulator.isolate:
            assert emulator.spec is not None
            self.pool = Pool(emulator.spec, profile.name, settings.to_json(), self.profile.worker_env(), max(1, workers))
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="nubes-emulated-job")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, sent: list[dict[str, str]]) -> None:
        for job in sent:
            if not self._closed:
                future = self._executor.submit(self._deliver, str(job["id"]), str(job["token"]))
                with self._lock:
                    self._pending.add(future)
                future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every job delivered so far is through (``nubes invoke --emulate`` waits for its
        job before stopping the workers); False if ``timeout`` passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return True
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            wait(pending, timeout=left)

    def _deliver(self, job_id: str, token: str) -> None:
        emulator = self.emulator
        app = emulator.application
        jobs = app.jobs
        delays = self.profile.job_retry_delays(jobs.max_attempts)
        for n in range(len(delays) + 1):
            if self._closed:
                return
            rid = new_request_id()
            meta, body = self.profile.job_payload(app, job_id, token, rid)
            outcome = emulator._run(meta, body, http=False, timeout=self.timeout, pool=self.pool, here=self.local)
            if outcome.failure:
                detail = outcome.detail or outcome.failure
                problem = _problem(f"attempt {n + 1} of job {job_id} stopped: {outcome.failure} ({detail})")
                if outcome.worker is not None:  # the platform saw the instance die: give its attempt up now
                    jobs.expire(job_id, f"{socket.gethostname()}:{outcome.worker}", problem)
                verdict = "retry"
            else:
                assert outcome.reply is not None
                emulator.after(outcome.reply[0])
                verdict = self.profile.job_outcome(*outcome.reply)
            emulator.log.info("emulated job delivery", job=job_id, delivery=n + 1, request_id=rid, worker=outcome.worker,
                              outcome=verdict, duration_ms=outcome.duration_ms, **({"failure": outcome.failure} if outcome.failure else {}))
            if verdict != "retry":
                return
            if n < len(delays):
                self._sleep(delays[n] if self.retry_delay is None else self.retry_delay)
        doc, _ = jobs.load(job_id)
        if doc["status"] not in ("succeeded", "failed", "cancelled"):  # the cloud gave up: so does the job
            jobs.fail(job_id, doc.get("problem") or _problem(f"job {job_id} ran out of deliveries"))

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._closed and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    def close(self) -> None:
        self._closed = True
        if self.pool is not None:
            self.pool.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _problem(detail: str) -> dict[str, Any]:
    return {"type": "about:blank", "title": "Internal Server Error", "status": 500, "detail": detail}
