"""Jobs: routes whose work runs asynchronously, tracked in the app's home store.

``@app.job("/train")`` (or ``@app.post("/train", job=True)``) declares a route whose handler runs
after the request is answered: the request is authenticated and its parameters bound (a 401/403/422
comes at once), then stored, and the caller gets **202** with ``Location: /_nubes/jobs/{id}`` and the
job document::

    {"id", "route", "status": queued|running|succeeded|failed|cancelled, "submitted", "started",
     "finished", "attempts", "progress": {"value", "message"}, "result" | "problem", "cost_usd", "expires"}

``GET /_nubes/jobs/{id}`` polls it (with the result inline when it is JSON under 256 KiB; always at
``GET /_nubes/jobs/{id}/result`` with its content type), ``DELETE`` cancels a queued job (409 once it
runs). Jobs are visible to the principal that submitted them and to admins (anonymous jobs: to
whoever holds the id, a random 128-bit capability). A finished job is kept ``retention_s`` (default 7
days, ``[jobs] retention_s`` in nubes.toml), then answers 404 and is deleted.

**Exactly one runner.** Every state change is a conditional write of ``job.json`` (``if_match`` its
etag). A runner claims a queued job by writing ``running`` with a lease (its deadline); a second
runner that loses the race, or finds a live lease, does nothing. A runner that dies (worker killed,
instance gone) leaves an expired lease: the next attempt re-claims the job and runs it again. After
``max_attempts`` (``[jobs] max_attempts``, default 3, as Lambda's asynchronous invocations) the job
ends ``failed`` with its last problem. A handler's 4xx ``HTTPError`` fails the job at once (a retry
would answer the same).

**Where it runs.** :attr:`Jobs.dispatcher` starts a job: locally (``nubes serve``, ``Client``) a
thread pool in this process; on a cloud, that cloud's own asynchronous execution of the same
function (the cloud object's ``job_dispatcher``); under emulation, the emulator's worker pool.
``Idempotency-Key`` on a submit makes the job id a digest of (route, caller, key): a retried submit
returns the same job (a different body under the same key is a 422).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from nubes.core.context import Context  # at run time: binding resolves the routes' annotations
from nubes.core.encoding import dumps
from nubes.core.response import Response
from nubes.errors import HTTPError, NotFound, PreconditionFailed

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.auth import Principal
    from nubes.core.events import Platform
    from nubes.core.request import Request
    from nubes.core.routing import Route
    from nubes.storage.base import ObjectStore

PREFIX = "_nubes/jobs/"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
INLINE_RESULT_BYTES = 256 * 1024
DEFAULT_RETENTION_S = 7 * 86400
DEFAULT_MAX_ATTEMPTS = 3
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})


class JobDispatcher(Protocol):
    """Starts a stored job somewhere: ``submit(app, job_id)`` returns at once; the job runs later by
    a call to :meth:`nubes.App.run_job` (in this process, another worker, or another invocation)."""

    def submit(self, app: App, job_id: str) -> None: ...


@dataclass
class JobRun:
    """One attempt at running a job, handed to the handler's context (``ctx.progress``)."""

    jobs: Jobs
    job_id: str
    attempt: int
    principal: Principal | None
    _last_progress: float = field(default=0.0)

    def progress(self, value: float | None, message: str | None) -> None:
        now = time.monotonic()
        if now - self._last_progress < 1.0 and value not in (0.0, 1.0):
            return  # at most one write a second (each is a storage PUT)
        self._last_progress = now
        self.jobs.update(self.job_id, progress={"value": value, "message": message})


class Jobs:
    """An app's jobs in its home store (``app.jobs``); see the module docstring."""

    def __init__(self, app: App, *, retention_s: float | None = None, max_attempts: int | None = None) -> None:
        from nubes.core import config

        table = config.section("jobs", app.root)
        self.app = app
        self.retention_s = float(retention_s if retention_s is not None else table.get("retention_s", DEFAULT_RETENTION_S))
        self.max_attempts = int(max_attempts if max_attempts is not None else table.get("max_attempts", DEFAULT_MAX_ATTEMPTS))
        self.dispatcher: JobDispatcher = LocalDispatcher()

    @property
    def store(self) -> ObjectStore:
        return self.app.storage

    # -- documents --------------------------------------------------------------------------------
    def _key(self, job_id: str, name: str = "job.json") -> str:
        return f"{PREFIX}{job_id}/{name}"

    def load(self, job_id: str) -> tuple[dict[str, Any], str]:
        """The job document and its etag; :class:`~nubes.errors.NotFound` if there is none."""
        if not _valid_id(job_id):
            raise NotFound("no such job", key=job_id)
        data = self.store.get(self._key(job_id))
        info = self.store.head(self._key(job_id))
        return json.loads(data), info.etag

    def _write(self, doc: dict[str, Any], etag: str | None) -> str:
        body = json.dumps(doc, separators=(",", ":"), default=str).encode()
        key = self._key(doc["id"])
        if etag is None:
            info = self.store.put(key, body, content_type="application/json", if_none_match=True)
        else:
            info = self.store.put(key, body, content_type="application/json", if_match=etag)
        return info.etag

    def update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        """Apply ``changes`` with a conditional write, retried on a concurrent change (never a terminal job)."""
        for _ in range(20):
            doc, etag = self.load(job_id)
            if doc["status"] in TERMINAL:
                return doc
            doc.update(changes)
            try:
                self._write(doc, etag)
                return doc
            except PreconditionFailed:
                continue
        return doc

    # -- submit -----------------------------------------------------------------------------------
    def submit(self, route: Route, request: Request, principal: Principal | None) -> Response:
        """Store the request as a queued job, start it, and answer 202 with the document."""
        body_digest = hashlib.sha256(request.body).hexdigest()
        key = request.headers.get("idempotency-key")
        if key is not None:
            if not 0 < len(key) <= 255:
                raise HTTPError(400, "Idempotency-Key must be 1 to 255 characters")
            seed = f"{self.app.name}\0{route.path}\0{principal.id if principal else ''}\0{key}"
            job_id = hashlib.sha256(seed.encode()).hexdigest()[:32]
        else:
            job_id = uuid.uuid4().hex
        now = _now()
        doc: dict[str, Any] = {
            "id": job_id, "route": route.path, "method": request.method, "path": request.path, "status": "queued",
            "submitted": now, "started": None, "finished": None, "attempts": 0, "lease_until": None,
            "progress": {"value": None, "message": None}, "result": None, "problem": None, "cost_usd": None,
            "expires": None, "body_sha256": body_digest,
            "principal": _principal_doc(principal),
        }
        stored = {"method": request.method, "raw_path": request.raw_path, "query": request.query_string,
                  "scheme": request.scheme,
                  "headers": [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _SECRET_HEADERS]}
        try:
            self.store.put(self._key(job_id, "request.json"), json.dumps(stored).encode(), content_type="application/json",
                           if_none_match=True)
            self.store.put(self._key(job_id, "body"), request.body, content_type="application/octet-stream", if_none_match=True)
            self._write(doc, None)
        except PreconditionFailed:
            if key is None:
                raise
            existing, _ = self.load(job_id)
            if existing.get("body_sha256") != body_digest:
                raise HTTPError(422, "this Idempotency-Key was used for a different request; use a new key") from None
            return self.answer(existing, 202)
        self.dispatcher.submit(self.app, job_id)
        return self.answer(doc, 202)

    def answer(self, doc: Mapping[str, Any], status: int = 200) -> Response:
        public = {k: v for k, v in doc.items() if k not in ("lease_until", "body_sha256", "principal")}
        public["location"] = f"/_nubes/jobs/{doc['id']}"
        return Response(dumps(public), status, {"location": public["location"]}, "application/json")

    # -- run ---------------------------------------------------------------------------------------
    def claim(self, job_id: str, lease_s: float) -> tuple[dict[str, Any], JobRun] | None:
        """Claim ``job_id`` for one attempt: None when it is finished, cancelled, or running elsewhere."""
        try:
            doc, etag = self.load(job_id)
        except NotFound:
            return None
        if doc["status"] in TERMINAL:
            return None
        if doc["status"] == "running" and (doc.get("lease_until") or 0) > time.time():
            return None  # another runner holds a live lease
        attempt = int(doc.get("attempts") or 0) + 1
        if attempt > self.max_attempts:
            self._finish(doc, etag, "failed", problem=doc.get("problem") or _problem(500, "the job's runner stopped "
                         f"{self.max_attempts} times without finishing it (timeout, out of memory or a crash)"))
            return None
        doc.update(status="running", attempts=attempt, started=doc.get("started") or _now(),
                   lease_until=time.time() + lease_s)
        try:
            self._write(doc, etag)
        except PreconditionFailed:
            return None  # another runner claimed it first
        from nubes.core.auth import Principal

        p = doc.get("principal")
        principal = Principal(p["id"], frozenset(p["roles"]), frozenset(p["scopes"]), p.get("tenant"), p["method"]) if p else None
        return doc, JobRun(self, job_id, attempt, principal)

    def request_of(self, job_id: str) -> Request:
        from nubes.core.request import Request

        stored = json.loads(self.store.get(self._key(job_id, "request.json")))
        body = self.store.get(self._key(job_id, "body"))
        return Request(stored["method"], stored["raw_path"], query=stored["query"],
                       headers=[tuple(h) for h in stored["headers"]], body=body, scheme=stored.get("scheme") or "http")

    def complete(self, run: JobRun, response: Response) -> tuple[dict[str, Any], bool]:
        """Record the attempt's answer; returns the document and whether the attempt should be retried."""
        doc, etag = self.load(run.job_id)
        cost = response.headers.get("x-nubes-cost-usd")
        doc["cost_usd"] = round((doc.get("cost_usd") or 0.0) + float(cost), 12) if cost else doc.get("cost_usd")
        if response.status < 400:
            ctype = response.headers.get("content-type") or "application/octet-stream"
            self.store.put(self._key(run.job_id, "result"), response.body, content_type=ctype)
            if ctype.startswith("application/json") and len(response.body) <= INLINE_RESULT_BYTES:
                doc["result"] = json.loads(response.body) if response.body else None
            doc["result_type"] = ctype
            return self._finish(doc, etag, "succeeded"), False
        try:
            problem = json.loads(response.body)
        except ValueError:
            problem = _problem(response.status, "the job failed")
        retry = response.status >= 500 and run.attempt < self.max_attempts
        if retry:
            doc.update(status="queued", lease_until=None, problem=problem)
            self._write(doc, etag)
            return doc, True
        return self._finish(doc, etag, "failed", problem=problem), False

    def _finish(self, doc: dict[str, Any], etag: str, status: str, *, problem: Any = None) -> dict[str, Any]:
        now = datetime.now(UTC)
        doc.update(status=status, finished=now.isoformat(), lease_until=None,
                   expires=(now + timedelta(seconds=self.retention_s)).isoformat())
        if problem is not None:
            doc["problem"] = problem
        if status == "succeeded":
            doc["problem"] = None
        progress = doc.get("progress") or {}
        if status == "succeeded" and progress.get("value") is not None:
            doc["progress"] = {**progress, "value": 1.0}
        try:
            self._write(doc, etag)
        except PreconditionFailed:
            pass  # a concurrent cancel or finish won: its state stands
        return doc

    # -- the /_nubes/jobs routes ------------------------------------------------------------------
    def visible(self, job_id: str, principal: Principal | None) -> dict[str, Any]:
        """The job for this caller, or 404 (someone else's job, unknown, or past its retention)."""
        try:
            doc, _ = self.load(job_id)
        except NotFound:
            raise HTTPError(404, f"no job {job_id}") from None
        owner = doc.get("principal")
        if owner is not None and not (principal is not None and (principal.is_admin or principal.id == owner["id"])):
            raise HTTPError(404, f"no job {job_id}")
        expires = doc.get("expires")
        if expires and datetime.fromisoformat(expires) < datetime.now(UTC):
            for name in ("job.json", "request.json", "body", "result"):
                try:
                    self.store.delete(self._key(job_id, name))
                except NotFound:
                    pass
            raise HTTPError(404, f"job {job_id} finished and was kept until {expires}")
        return doc

    def cancel(self, job_id: str, principal: Principal | None) -> dict[str, Any]:
        doc = self.visible(job_id, principal)
        for _ in range(20):
            doc, etag = self.load(job_id)
            if doc["status"] != "queued":
                raise HTTPError(409, f"job {job_id} is {doc['status']}: only a queued job can be cancelled")
            try:
                return self._finish(doc, etag, "cancelled")
            except PreconditionFailed:
                continue
        raise HTTPError(409, f"job {job_id} kept changing; try again")


class LocalDispatcher:
    """Runs jobs on a small thread pool in this process (``nubes serve``, ``Client``), retrying a
    failed attempt after a short backoff. A job here is not stopped at a timeout (a thread cannot be)."""

    def __init__(self, workers: int = 2) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self._lock = threading.Lock()

    def submit(self, app: App, job_id: str) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="nubes-job")
        self._pool.submit(self._run, app, job_id)

    def _run(self, app: App, job_id: str) -> None:
        for attempt in range(DEFAULT_MAX_ATTEMPTS + 1):
            outcome = app.run_job(job_id)
            if outcome != "retry":
                return
            time.sleep(min(0.5 * 2**attempt, 5.0))

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every submitted job has finished (for tests and shutdown)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def run_job(app: App, job_id: str, *, platform: Platform | None = None, deadline: float | None = None,
            request_id: str | None = None) -> str:
    """See :meth:`nubes.App.run_job`."""
    jobs = app.jobs
    lease = (deadline - time.monotonic()) if deadline is not None else 900.0
    claimed = jobs.claim(job_id, max(lease, 1.0) + 5.0)
    if claimed is None:
        return "done"
    _, run = claimed
    try:
        request = jobs.request_of(job_id)
    except Exception:
        app.log.exception("job request unreadable", job=job_id)
        request = None
    if request is None:
        from nubes.core.request import Request

        response = _problem_response(HTTPError(500, "the job's stored request could not be read"), Request("GET", "/"), job_id)
    else:
        response = app.handle(request, request_id=request_id, deadline=deadline, platform=platform, job=run)
    _, retry = jobs.complete(run, response)
    return "retry" if retry else "done"


def job_status(ctx: Context, job_id: str) -> Response:
    jobs = ctx.app.jobs
    return jobs.answer(jobs.visible(job_id, ctx.principal))


def job_cancel(ctx: Context, job_id: str) -> Response:
    jobs = ctx.app.jobs
    return jobs.answer(jobs.cancel(job_id, ctx.principal))


def job_result(ctx: Context, job_id: str) -> Response:
    jobs = ctx.app.jobs
    doc = jobs.visible(job_id, ctx.principal)
    if doc["status"] != "succeeded":
        raise HTTPError(409, f"job {job_id} is {doc['status']}: it has no result", status_of_job=doc["status"])
    body = jobs.store.get(f"_nubes/jobs/{job_id}/result")
    return Response(body, 200, {}, doc.get("result_type") or "application/octet-stream")


def _problem_response(exc: HTTPError, request: Request, request_id: str) -> Response:
    from nubes.core.app import problem_response

    return problem_response(exc, request, request_id)


def _principal_doc(principal: Principal | None) -> dict[str, Any] | None:
    if principal is None:
        return None
    return {"id": principal.id, "roles": sorted(principal.roles), "scopes": sorted(principal.scopes),
            "tenant": principal.tenant, "method": principal.method}


def _problem(status: int, detail: str) -> dict[str, Any]:
    from http import HTTPStatus

    return {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}


def _valid_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)


def _now() -> str:
    return datetime.now(UTC).isoformat()
