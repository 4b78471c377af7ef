"""The emulator: a request (or event) in, the provider's payload through its deployed adapter, the
provider's answer out, with its limits, timeout and memory enforced.

``Emulator(app, "aws")`` runs invocations in worker processes (``isolate=True``, the default):
each worker is one function instance serving one invocation at a time; the pool grows to
``workers`` and every new worker is a cold start, logged (``"cold_start": true``). A handler that
overruns is stopped (its worker killed) and the caller gets the provider's timeout answer; a worker
over ``memory`` MB resident is killed and the caller gets the provider's failure answer.

``isolate=False`` runs the same path in this process (no worker start, fast for tests): payload
limits and answers are the same, but an overrun is only detected once the handler returns (it is
not stopped) and memory is not enforced.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from nubes.adapters.emulator.jobs import EmulatedJobs, Local
from nubes.adapters.emulator.profile import EVENT_KINDS, EventResult, Profile, new_request_id
from nubes.adapters.emulator.providers import provider as make_provider
from nubes.adapters.emulator.workers import Pool, Worker, WorkerFailed
from nubes.core.app import App
from nubes.core.job_runs import collect
from nubes.core.logs import BoundLog, logger
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.errors import ConfigError

ERROR_TYPES = {  # how the failure is named in the log (Lambda's names where it has them)
    "timeout": "Sandbox.Timedout",
    "gateway_timeout": "GatewayTimeout",
    "out_of_memory": "Runtime.OutOfMemory",
    "crash": "Runtime.ExitError",
    "init": "Runtime.InitError",
}

@dataclass
class Outcome:
    """One invocation as the emulator saw it."""

    reply: tuple[dict[str, Any], bytes] | None
    failure: str | None
    cold: bool
    worker: int | None
    duration_ms: float
    detail: str = ""
    max_memory_mb: float | None = None


def spec_of(app: App) -> str:
    """A ``path/to/file.py:attr`` spec that loads ``app`` in another process."""
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name.startswith(("nubes.", "_")):
            continue
        for attr, value in list(vars(module).items()):
            if value is app:
                return f"{path}:{attr}"
    raise ConfigError(f"cannot find the module defining app {app.name!r} to load it in a worker process; "
                      "pass its spec (path/to/file.py:app) instead")


def _app_setting(app: App | None, name: str) -> Any:
    if app is None:
        return None
    value = getattr(app, name, None)
    if value is None:
        config = getattr(app, "config", None)
        if isinstance(config, Mapping):
            value = config.get(name)
    return value


class Emulator:
    """Invoke ``app`` (an App, or its spec) the way ``provider`` (aws, gcp, azure) would.

    Worker processes load the app by ``spec`` (found from the app's module when not given).
    """

    def __init__(
        self,
        app: App | str,
        provider: str,
        *,
        aws_event: str | None = None,
        timeout: float | None = None,
        memory: int | None = None,
        workers: int = 2,
        isolate: bool = True,
        request_limit: int | None = None,
        spec: str | None = None,
        front: str | None = None,
        job_timeout: float | None = None,
        job_workers: int = 1,
        job_retry_delay: float | None = None,
    ) -> None:
        if isinstance(app, str):
            self.spec: str | None = app
            if isolate:
                self.app: App | None = None
            else:
                from nubes.core.loader import load_app

                self.app = load_app(app)
        else:
            self.app, self.spec = app, (spec or (spec_of(app) if isolate else None))
        if workers < 1:
            raise ConfigError(f"--workers {workers}: at least one worker is needed")
        name = self.app.name if self.app is not None else "nubes-app"
        self.provider: Profile = make_provider(
            provider,
            timeout=timeout if timeout is not None else _app_setting(self.app, "timeout"),
            memory=memory if memory is not None else _app_setting(self.app, "memory"),
            function_name=name,
            front=front or aws_event,  # aws_event: the older spelling of front
            request_limit=request_limit,
        )
        self.isolate = isolate
        self.log = BoundLog(logger(), component="emulator", provider=self.provider.name)
        self._lock = threading.Lock()
        self._local = Local(self.provider.settings.to_json())
        self._jobs: EmulatedJobs | None = None
        self._job_options: dict[str, Any] = {"timeout": job_timeout, "workers": job_workers, "retry_delay": job_retry_delay}
        self.pool: Pool | None = None
        if isolate:
            assert self.spec is not None
            self.pool = Pool(self.spec, self.provider.name, self.provider.settings.to_json(),
                             self.provider.worker_env(), workers)

    # -- HTTP ---------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """The provider's answer to ``request``."""
        rid = new_request_id()
        started = time.perf_counter()
        encoded = self.provider.encode(request, rid)
        if isinstance(encoded, Response):
            self.log.warning("request refused by the front end", front=self.provider.label, request_id=rid,
                             method=request.method, path=request.path, status=encoded.status,
                             body_bytes=len(request.body))
            return encoded
        meta, body = encoded
        outcome = self._run(meta, body, http=True)
        if outcome.failure:
            response, error_type = self.provider.failure(outcome.failure), ERROR_TYPES.get(outcome.failure, outcome.failure)
        else:
            assert outcome.reply is not None
            self.after(outcome.reply[0])
            response, decoded_error = self.provider.decode(*outcome.reply)
            error_type = decoded_error or ""
        fields: dict[str, Any] = {"front": self.provider.label, "request_id": rid, "method": request.method,
                                  "path": request.path, "status": response.status, "worker": outcome.worker,
                                  "cold_start": outcome.cold, "duration_ms": outcome.duration_ms,
                                  "timeout_s": self.provider.settings.timeout, "memory_mb": self.provider.settings.memory,
                                  "total_ms": round((time.perf_counter() - started) * 1000, 1)}
        if outcome.max_memory_mb is not None:
            fields["max_memory_used_mb"] = round(outcome.max_memory_mb)
        if error_type:
            fields["error_type"] = error_type
            if outcome.detail:
                fields["error"] = outcome.detail
            self.log.error("emulated invocation failed", **fields)
        else:
            self.log.info("emulated invocation", **fields)
        return response

    # -- events -------------------------------------------------------------------------------------
    def emit(self, kind: str, arg: str, *, bucket: str | None = None, size: int = 0, queue: str | None = None,
             source: str | None = None) -> EventResult:
        """Fire an ``object-created`` (``arg`` the key), ``message`` (``arg`` the body) or ``schedule``
        (``arg`` the name) event as the provider delivers it, through the deployed adapter.

        ``source`` names a logical source: the object is created under the URI it is bound to for this
        cloud (``[deploy.<cloud>.sources]``), ``arg`` relative to it. ``queue`` may be a logical queue
        name: its binding (``[deploy.<cloud>.queues]``) is the queue the message arrives on."""
        if kind not in EVENT_KINDS:
            raise ConfigError(f"event {kind!r}: use one of {', '.join(EVENT_KINDS)}")
        if source is not None or queue is not None:
            bucket, arg, queue = self._bind(kind, arg, bucket, queue, source)
        rid = new_request_id()
        meta, body = self._event_payload(kind, arg, bucket=bucket, size=size, queue=queue, rid=rid)
        outcome = self._run(meta, body, http=False)
        if outcome.failure:
            error_type = ERROR_TYPES.get(outcome.failure, outcome.failure)
            result = EventResult(False, {"errorType": error_type, "errorMessage": outcome.detail or outcome.failure}, error_type)
        else:
            assert outcome.reply is not None
            result = self._event_result(*outcome.reply)
        result.cold_start = outcome.cold
        self.log.info("emulated event", event=kind, request_id=rid, worker=outcome.worker, cold_start=outcome.cold,
                      ok=result.ok, duration_ms=outcome.duration_ms, **({"error_type": result.error_type} if result.error_type else {}))
        return result

    def _bind(self, kind: str, arg: str, bucket: str | None, queue: str | None,
              source: str | None) -> tuple[str | None, str, str | None]:
        """(bucket, key or body, queue) with the logical ``source`` / ``queue`` resolved for this cloud."""
        from nubes.adapters.naming import split_uri
        from nubes.core import triggers

        bound = triggers.read(self.application, self.provider.name)
        if source is not None and kind == "object-created":
            uri = bound.source_uri(source)
            if uri is None:
                raise ConfigError(f"source {source!r} is not bound for {self.provider.name}: add {source} = \"<bucket URI>\" "
                                  f"under [deploy.{self.provider.name}.sources] in nubes.toml")
            _, bucket, prefix = split_uri(uri)
            arg = prefix + arg.lstrip("/")
        if queue is not None:
            queue = bound.queue_name(queue)
        return bucket, arg, queue

    @property
    def application(self) -> App:
        """The app in this process (loaded from the spec on first use when only a spec was given)."""
        if self.app is None:
            from nubes.core.loader import load_app

            assert self.spec is not None
            self.app = load_app(self.spec)
        return self.app

    def _event_payload(self, kind: str, arg: str, *, bucket: str | None, size: int, queue: str | None,
                       rid: str) -> tuple[dict[str, Any], bytes]:
        home = self.app.storage_uri if self.app is not None else ""
        return self.provider.event_payload(kind, arg, request_id=rid, bucket=bucket, size=size, queue=queue, home=home)

    def _event_result(self, meta: dict[str, Any], body: bytes) -> EventResult:
        return self.provider.event_result(meta, body)

    # -- running one invocation --------------------------------------------------------------------
    def _run(self, meta: dict[str, Any], body: bytes, *, http: bool, timeout: float | None = None,
             pool: Pool | None = None, here: Local | None = None) -> Outcome:
        """One invocation in a worker of ``pool`` (default: the HTTP pool) or, in process, in ``here``;
        ``timeout`` overrides the function's (job attempts run with the cloud's job timeout)."""
        timeout = timeout if timeout is not None else self.provider.settings.timeout
        wait = self.provider.wait if http else timeout
        meta["remaining"] = timeout
        if not self.isolate:
            return self._run_here(meta, body, wait, timeout, here or self._local)
        pool = pool or self.pool
        assert pool is not None
        try:
            worker, cold = pool.acquire()
        except WorkerFailed as failed:  # the app failed to load: Lambda's Runtime.InitError / ImportModuleError
            self.log.error("worker failed to start", cold_start=True, error=failed.detail)
            return Outcome(None, "init", True, None, 0.0, failed.detail)
        if cold:
            self.log.info("cold start", worker=worker.pid, cold_start=True, init_ms=worker.init_ms, start_ms=worker.start_ms,
                          memory_mb=self.provider.settings.memory, timeout_s=timeout)
        started = time.monotonic()
        try:
            reply = worker.call(meta, body, deadline=started + wait, memory_mb=self.provider.settings.memory)
        except WorkerFailed as failed:
            duration = round((time.monotonic() - started) * 1000, 1)
            kind = failed.kind
            if kind == "timeout" and wait < timeout:
                kind = "gateway_timeout"  # the front end gave up; the function runs on to its own timeout
                self._finish_later(worker, started + timeout, pool)
            else:
                pool.discard(worker)
            if kind in ("timeout", "out_of_memory", "crash"):
                self.log.warning("worker stopped", worker=worker.pid, reason=kind, detail=failed.detail or None,
                                 after_ms=duration)
            detail = failed.detail or (f"Task timed out after {timeout:.2f} seconds" if kind == "timeout" else "")
            return Outcome(None, kind, cold, worker.pid, duration, detail, worker.max_rss_mb)
        pool.release(worker)
        return Outcome(reply, None, cold, worker.pid, round((time.monotonic() - started) * 1000, 1), "", worker.max_rss_mb)

    def _finish_later(self, worker: Worker, deadline: float, pool: Pool) -> None:
        def finish() -> None:
            try:
                reply = worker._wait(deadline, self.provider.settings.memory)
            except WorkerFailed as failed:
                self.log.warning("worker stopped", worker=worker.pid, reason=failed.kind, after="gateway timeout")
                pool.discard(worker)
            else:
                pool.release(worker)
                self.after(reply[0])

        threading.Thread(target=finish, name=f"nubes-emulator-finish-{worker.pid}", daemon=True).start()

    def _run_here(self, meta: dict[str, Any], body: bytes, wait: float, timeout: float, here: Local) -> Outcome:
        with here.lock:  # one invocation at a time, like one function instance
            cold = here.target is None
            if cold:
                from nubes.adapters.emulator.targets import make_target

                init = time.perf_counter()
                here.target = make_target(self.provider.name, self.application, here.settings)
                self.log.info("cold start", worker=None, cold_start=True, in_process=True,
                              init_ms=round((time.perf_counter() - init) * 1000, 1))
            started = time.monotonic()
            try:
                with collect() as sent:
                    reply = here.target.invoke(meta, body)
                if sent:
                    reply[0]["jobs"] = sent
            except Exception as exc:
                return Outcome(None, "crash", cold, None, round((time.monotonic() - started) * 1000, 1), str(exc))
            elapsed = time.monotonic() - started
            duration = round(elapsed * 1000, 1)
            if elapsed > wait:  # detected after the fact: an in-process handler cannot be stopped
                kind = "gateway_timeout" if wait < timeout else "timeout"
                return Outcome(None, kind, cold, None, duration, f"ran {elapsed:.2f} s, over {wait:g} s")
            return Outcome(reply, None, cold, None, duration)

    def after(self, meta: Mapping[str, Any]) -> None:
        """Deliver the jobs an invocation dispatched (its reply's ``jobs``) to the emulated cloud's jobs."""
        sent = meta.get("jobs")
        if sent:
            self.jobs.submit(sent)

    @property
    def jobs(self) -> EmulatedJobs:
        """The jobs of this emulator (:mod:`nubes.adapters.emulator.jobs`), started on first use."""
        if self._jobs is None:
            with self._lock:
                if self._jobs is None:
                    self._jobs = EmulatedJobs(self, **self._job_options)
        return self._jobs

    # -- lifecycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every worker (and the jobs' workers)."""
        if self._jobs is not None:
            self._jobs.close()
        if self.pool is not None:
            self.pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
