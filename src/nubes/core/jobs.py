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
etag). A runner claims a queued job by writing ``running`` with a lease of ``lease_s`` (default 60 s,
``[jobs] lease_s``) that it renews while the handler runs (:mod:`nubes.core.job_runs`); a second
runner that loses the race, or finds a live lease, does not run it (it answers ``busy`` so the
cloud delivers again later). A runner that dies (worker killed, instance gone) stops renewing: once
its lease has expired the next delivery re-claims the job, and a poll of a job whose runner is gone
puts it back in the queue (or fails it) itself. After ``max_attempts`` (``[jobs] max_attempts``,
default 3: Lambda's asynchronous invocation makes 3 attempts, and nubes deploys Cloud Tasks'
``maxAttempts`` and Azure's ``maxDequeueCount`` at the same number) the job ends ``failed`` with its
last problem. A handler's 4xx ``HTTPError`` fails the job at once (a retry would answer the same).

**Where it runs**: see :mod:`nubes.core.job_runs` (each cloud's own asynchronous execution of the
same function, the emulator's worker pool, or a thread pool here). ``Idempotency-Key`` on a submit
(1-255 characters) is remembered per (route, caller, key) in an index naming the job
(:mod:`nubes.core.job_keys`): a retried submit returns the same job (a different body under the same
key is a 422); the job id stays random. A job that cannot be started is ``failed`` with a 503 naming
the error's type and the request id; the error itself goes to the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nubes.core import job_keys
from nubes.core.context import Context  # at run time: binding resolves the routes' annotations
from nubes.core.encoding import dumps
from nubes.core.job_runs import JobDispatcher, JobRun, choose_dispatcher
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
DEFAULT_LEASE_S = 60.0
_PRIVATE = ("lease_until", "request_sha256", "principal", "run_token", "runner", "key_index")
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})
DOCUMENT_FIELDS = ("id", "route", "method", "path", "status", "submitted", "started", "finished", "attempts",
                   "progress", "result", "result_type", "problem", "cost_usd", "expires", "location")


class Jobs:
    """An app's jobs in its home store (``app.jobs``); see the module docstring."""

    def __init__(self, app: App, *, retention_s: float | None = None, max_attempts: int | None = None,
                 lease_s: float | None = None) -> None:
        from nubes.core import config

        table = config.section("jobs", app.root)
        self.app = app
        self.retention_s = float(retention_s if retention_s is not None else table.get("retention_s", DEFAULT_RETENTION_S))
        self.max_attempts = int(max_attempts if max_attempts is not None else table.get("max_attempts", DEFAULT_MAX_ATTEMPTS))
        self.lease_s = float(lease_s if lease_s is not None else table.get("lease_s", DEFAULT_LEASE_S))
        self._dispatcher: JobDispatcher | None = None

    @property
    def dispatcher(self) -> JobDispatcher | None:
        """An explicit dispatcher for every job (tests); None (default) picks one per invocation."""
        return self._dispatcher

    @dispatcher.setter
    def dispatcher(self, value: JobDispatcher | None) -> None:
        self._dispatcher = value

    def dispatcher_for(self, platform: Platform | None, request: Request | None = None) -> JobDispatcher:
        return self._dispatcher or choose_dispatcher(self.app, platform, request)

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
        key = self._key(job_id)
        for _ in range(10):  # no store reads body and etag in one call: an etag unchanged around the read vouches for it
            before = self.store.head(key).etag
            data = self.store.get(key)
            if self.store.head(key).etag == before:
                break
        return json.loads(data), before

    def _write(self, doc: dict[str, Any], etag: str | None) -> str:
        body = json.dumps(doc, separators=(",", ":"), default=str).encode()
        key = self._key(doc["id"])
        if etag is None:
            info = self.store.put(key, body, content_type="application/json", if_none_match=True)
        else:
            info = self.store.put(key, body, content_type="application/json", if_match=etag)
        return info.etag

    def transition(self, job_id: str, change: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """Apply ``change(doc)`` (it returns False to leave the job as it is) with a conditional write,
        retried on a concurrent change; the written document, or None when nothing was written."""
        for _ in range(20):
            try:
                doc, etag = self.load(job_id)
            except NotFound:
                return None
            if not change(doc):
                return None
            try:
                self._write(doc, etag)
                return doc
            except PreconditionFailed:
                continue
        return None

    def update(self, job_id: str, **changes: Any) -> dict[str, Any] | None:
        """Apply ``changes`` to a job that is not finished."""
        def change(doc: dict[str, Any]) -> bool:
            if doc["status"] in TERMINAL:
                return False
            doc.update(changes)
            return True

        return self.transition(job_id, change)

    # -- submit -----------------------------------------------------------------------------------
    def submit(self, route: Route, request: Request, principal: Principal | None,
               platform: Platform | None = None, *, request_id: str | None = None) -> Response:
        """Store the request as a queued job, start it, and answer 202 with the document."""
        digest = hashlib.sha256(f"{request.method}\0{request.raw_path}\0{request.query_string}\0".encode())
        digest.update(request.body)
        body_digest = digest.hexdigest()  # what a retried submit must repeat: method, path, query and body
        key = request.headers.get("idempotency-key")
        index, stale = None, None
        if key is not None:
            if not 0 < len(key) <= job_keys.MAX_KEY_CHARS:
                raise HTTPError(400, f"Idempotency-Key must be 1 to {job_keys.MAX_KEY_CHARS} characters")
            index = job_keys.index_key(self.app.name, route.path, principal, key)
            existing, stale = job_keys.lookup(self.store, index, lambda job_id: self.load(job_id)[0])
            if existing is not None:
                return self._again(existing, body_digest)
        job_id = secrets.token_hex(16)  # always random: an anonymous job is readable by whoever holds its id
        now = _now()
        doc: dict[str, Any] = {
            "id": job_id, "route": route.path, "method": request.method, "path": request.path, "status": "queued",
            "submitted": now, "started": None, "finished": None, "attempts": 0, "lease_until": None,
            "progress": {"value": None, "message": None}, "result": None, "problem": None, "cost_usd": None,
            "expires": None, "request_sha256": body_digest, "run_token": secrets.token_hex(16),
            "principal": _principal_doc(principal), "key_index": index,
        }
        stored = {"method": request.method, "raw_path": request.raw_path, "query": request.query_string,
                  "scheme": request.scheme,
                  "headers": [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _SECRET_HEADERS]}
        self.store.put(self._key(job_id, "request.json"), json.dumps(stored).encode(), content_type="application/json",
                       if_none_match=True)
        self.store.put(self._key(job_id, "body"), request.body, content_type="application/octet-stream", if_none_match=True)
        self._write(doc, None)
        if index is not None and not job_keys.claim(self.store, index, job_id, stale):
            self._delete(job_id)  # a concurrent submit with the same key won: its job is the one
            existing, _ = job_keys.lookup(self.store, index, lambda job_id: self.load(job_id)[0])
            if existing is None:
                raise HTTPError(409, "a submit with this Idempotency-Key is being stored; send it again")
            return self._again(existing, body_digest)
        try:
            self.dispatcher_for(platform, request).submit(self.app, job_id, doc["run_token"])
        except Exception as exc:  # the job cannot start: say so now rather than leave it queued forever
            self.app.log.exception("job could not be started", job=job_id, request_id=request_id)
            detail = f"the job could not be started ({_quote(exc, request_id)}); submit it again later"
            self.fail(job_id, _problem(503, detail))
            raise HTTPError(503, detail, job=job_id) from None
        return self.answer(doc, 202)

    def _again(self, existing: dict[str, Any], body_digest: str) -> Response:
        """The answer to a retried submit: the job its key started, if the request is the same."""
        if existing.get("request_sha256") != body_digest:
            raise HTTPError(422, "this Idempotency-Key was used for a different request; use a new key")
        return self.answer(existing, 202)

    def _delete(self, job_id: str) -> None:
        for name in ("job.json", "request.json", "body", "result"):
            with contextlib.suppress(NotFound):
                self.store.delete(self._key(job_id, name))

    def answer(self, doc: Mapping[str, Any], status: int = 200) -> Response:
        public = {k: v for k, v in doc.items() if k not in _PRIVATE}
        public["location"] = f"/_nubes/jobs/{doc['id']}"
        return Response(dumps(public), status, {"location": public["location"]}, "application/json")

    # -- run ---------------------------------------------------------------------------------------
    def claim(self, job_id: str, *, token: str | None = None, lease_s: float | None = None) -> tuple[str, JobRun | None]:
        """Claim ``job_id`` for one attempt: ``("claimed", run)``; else ``("done", None)`` (finished,
        cancelled, unknown, or out of attempts), ``("busy", None)`` (another runner holds a live
        lease or won the race) or ``("refused", None)`` (``token`` is not the job's run token)."""
        lease = self.lease_s if lease_s is None else lease_s
        try:
            doc, etag = self.load(job_id)
        except NotFound:
            return "done", None
        if token is not None and not hmac.compare_digest(str(doc.get("run_token") or ""), token):
            return "refused", None
        if doc["status"] in TERMINAL:
            return "done", None
        if doc["status"] == "running" and (doc.get("lease_until") or 0) > time.time():
            return "busy", None
        attempt = int(doc.get("attempts") or 0) + 1
        if attempt > self.max_attempts:
            self._finish(doc, etag, "failed", problem=doc.get("problem") or _problem(500, "the job's runner stopped "
                         f"{self.max_attempts} times without finishing it (timeout, out of memory or a crash)"))
            return "done", None
        doc.update(status="running", attempts=attempt, started=doc.get("started") or _now(),
                   lease_until=time.time() + lease, runner=RUNNER)
        try:
            self._write(doc, etag)
        except PreconditionFailed:
            return "busy", None  # another runner claimed it first
        from nubes.core.auth import Principal

        p = doc.get("principal")
        principal = Principal(p["id"], frozenset(p["roles"]), frozenset(p["scopes"]), p.get("tenant"), p["method"]) if p else None
        return "claimed", JobRun(self, job_id, attempt, principal, lease)

    def renew(self, run: JobRun) -> bool:
        """Extend ``run``'s lease; False once the job is no longer this attempt's."""
        def change(doc: dict[str, Any]) -> bool:
            if doc["status"] != "running" or doc.get("attempts") != run.attempt:
                return False
            doc["lease_until"] = time.time() + run.lease_s
            return True

        return self.transition(run.job_id, change) is not None

    def request_of(self, job_id: str) -> Request:
        from nubes.core.request import Request

        stored = json.loads(self.store.get(self._key(job_id, "request.json")))
        body = self.store.get(self._key(job_id, "body"))
        return Request(stored["method"], stored["raw_path"], query=stored["query"],
                       headers=[tuple(h) for h in stored["headers"]], body=body, scheme=stored.get("scheme") or "http")

    def complete(self, run: JobRun, response: Response) -> tuple[dict[str, Any] | None, bool]:
        """Record the attempt's answer; returns the document and whether the attempt should be retried."""
        cost = response.headers.get("x-nubes-cost-usd")
        ok = response.status < 400
        ctype = response.headers.get("content-type") or "application/octet-stream"
        if ok:
            self.store.put(self._key(run.job_id, "result"), response.body, content_type=ctype)
        try:
            problem = None if ok else json.loads(response.body)
        except (ValueError, RecursionError):
            problem = _problem(response.status, "the job failed")
        retry = not ok and response.status >= 500 and run.attempt < self.max_attempts
        finished = datetime.now(UTC)

        def change(doc: dict[str, Any]) -> bool:
            if doc["status"] != "running" or doc.get("attempts") != run.attempt:
                return False  # a poll gave the attempt up (its lease lapsed): the job is someone else's now
            doc["cost_usd"] = round((doc.get("cost_usd") or 0.0) + float(cost), 12) if cost else doc.get("cost_usd")
            if ok:
                if ctype.startswith("application/json") and len(response.body) <= INLINE_RESULT_BYTES:
                    with contextlib.suppress(ValueError, RecursionError):  # not JSON after all: /result has the bytes
                        doc["result"] = json.loads(response.body) if response.body else None
                doc["result_type"] = ctype
                self._finished(doc, "succeeded", None, finished)
            elif retry:
                doc.update(status="queued", lease_until=None, problem=problem)
            else:
                self._finished(doc, "failed", problem, finished)
            return True

        return self.transition(run.job_id, change), retry

    def _finished(self, doc: dict[str, Any], status: str, problem: Any, now: datetime) -> None:
        doc.update(status=status, finished=now.isoformat(), lease_until=None,
                   expires=(now + timedelta(seconds=self.retention_s)).isoformat())
        if problem is not None:
            doc["problem"] = problem
        if status == "succeeded":
            doc["problem"] = None
            progress = doc.get("progress") or {}
            if progress.get("value") is not None:
                doc["progress"] = {**progress, "value": 1.0}

    def _finish(self, doc: dict[str, Any], etag: str, status: str, *, problem: Any = None) -> dict[str, Any]:
        self._finished(doc, status, problem, datetime.now(UTC))
        with contextlib.suppress(PreconditionFailed):  # a concurrent cancel or finish won: its state stands
            self._write(doc, etag)
        return doc

    def fail(self, job_id: str, problem: Any) -> dict[str, Any] | None:
        """End a job that is not finished as ``failed`` with ``problem`` (its runner is gone for good)."""
        now = datetime.now(UTC)
        def change(doc: dict[str, Any]) -> bool:
            if doc["status"] in TERMINAL:
                return False
            self._finished(doc, "failed", problem, now)
            return True

        return self.transition(job_id, change)

    def expire(self, job_id: str, runner: str | None, problem: Any) -> dict[str, Any] | None:
        """The platform saw the runner of a running attempt die (``runner``: its id, None: whoever):
        give the attempt up at once (back to ``queued`` with ``problem``) rather than wait for its lease."""
        def change(doc: dict[str, Any]) -> bool:
            if doc["status"] != "running" or (runner is not None and doc.get("runner") != runner):
                return False
            doc.update(status="queued", lease_until=None, problem=problem)
            return True

        return self.transition(job_id, change)

    def reap(self, doc: dict[str, Any], platform: Platform | None, request: Request | None,
             request_id: str | None = None) -> dict[str, Any]:
        """A polled job whose runner is gone (running, its lease lapsed): fail it if it is out of
        attempts, else queue it and start it again. Returns the document as it now stands."""
        lapsed = doc["status"] == "running" and (doc.get("lease_until") or 0) + 5 < time.time()
        if not lapsed:
            return doc
        attempts = int(doc.get("attempts") or 0)
        stopped = _problem(500, f"the job's runner stopped during attempt {attempts} without finishing it "
                                "(timeout, out of memory or a crash)")

        def change(d: dict[str, Any]) -> bool:
            if d["status"] != "running" or d.get("lease_until") != doc.get("lease_until"):
                return False
            if attempts >= self.max_attempts:
                self._finished(d, "failed", d.get("problem") or stopped, datetime.now(UTC))
            else:
                d.update(status="queued", lease_until=None, problem=stopped)
            return True

        written = self.transition(doc["id"], change)
        if written is None:
            return self.load(doc["id"])[0]
        if written["status"] == "queued":
            self.app.log.warning("job runner lost; started again", job=doc["id"], attempts=attempts)
            try:
                self.dispatcher_for(platform, request).submit(self.app, doc["id"], str(written.get("run_token") or ""))
            except Exception as exc:  # it cannot start again: end it rather than leave it queued with no delivery
                self.app.log.exception("job could not be started again", job=doc["id"], request_id=request_id)
                return self.fail(doc["id"], _problem(503, f"the job's runner stopped and it could not be started again "
                                                     f"({_quote(exc, request_id)})")) or written
        return written

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
            if doc.get("key_index"):
                job_keys.release(self.store, doc["key_index"], job_id)
            self._delete(job_id)
            raise HTTPError(404, f"job {job_id} finished and was kept until {expires}")
        return doc

    def cancel(self, job_id: str, principal: Principal | None) -> dict[str, Any]:
        self.visible(job_id, principal)
        for _ in range(20):
            doc, etag = self.load(job_id)
            if doc["status"] != "queued":
                raise HTTPError(409, f"job {job_id} is {doc['status']}: only a queued job can be cancelled")
            self._finished(doc, "cancelled", None, datetime.now(UTC))
            try:
                self._write(doc, etag)
                return doc
            except PreconditionFailed:
                continue
        raise HTTPError(409, f"job {job_id} kept changing; try again")


RUNNER = f"{socket.gethostname()}:{os.getpid()}"
"""This process as a job runner (``host:pid``), recorded with its claims (a fork gets its own below)."""


def _reset_runner() -> None:
    global RUNNER
    RUNNER = f"{socket.gethostname()}:{os.getpid()}"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_runner)


def job_status(ctx: Context, job_id: str) -> Response:
    jobs = ctx.app.jobs
    doc = jobs.visible(job_id, ctx.principal)
    return jobs.answer(jobs.reap(doc, ctx.platform, ctx.request, ctx.request_id))


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


def _principal_doc(principal: Principal | None) -> dict[str, Any] | None:
    if principal is None:
        return None
    return {"id": principal.id, "roles": sorted(principal.roles), "scopes": sorted(principal.scopes),
            "tenant": principal.tenant, "method": principal.method}


def _problem(status: int, detail: str) -> dict[str, Any]:
    from http import HTTPStatus

    return {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}


def _quote(exc: BaseException, request_id: str | None) -> str:
    """What a caller may see of an error (its type; the message, which may name ARNs or URLs, is logged)."""
    return f"{type(exc).__name__}; quote request id {request_id} when reporting this" if request_id else type(exc).__name__


def _valid_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)


def _now() -> str:
    return datetime.now(UTC).isoformat()
