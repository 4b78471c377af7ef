"""Idempotency keys of job submits: an index object from a key to the job it started.

A job's id is always a random 128-bit capability (:mod:`nubes.core.jobs`); a submit carrying
``Idempotency-Key`` also writes ``_nubes/job-keys/<sha256 of (app, route, principal, tenant, key)>``
naming that id, with ``if_none_match`` (or ``if_match`` the etag of an index whose job is gone), so of
concurrent submits with one key exactly one job is kept. The index is written after the job's own
objects, so an index always names a job that was complete when it was written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nubes.errors import NotFound, PreconditionFailed

if TYPE_CHECKING:
    from nubes.core.auth import Principal
    from nubes.storage.base import ObjectStore

PREFIX = "_nubes/job-keys/"
MAX_KEY_CHARS = 255


def index_key(app: str, route: str, principal: Principal | None, key: str) -> str:
    """Where the index of ``key`` lives: one per app, route, caller (and tenant) and key."""
    who = f"{principal.id}\0{principal.tenant or ''}" if principal is not None else "\0"
    return PREFIX + hashlib.sha256(f"{app}\0{route}\0{who}\0{key}".encode()).hexdigest()


def lookup(store: ObjectStore, index: str, load: Any) -> tuple[dict[str, Any] | None, str | None]:
    """``(job document, None)`` when ``index`` names a live job; ``(None, etag)`` when it names one that is
    gone (past its retention, or unreadable), to be replaced with ``if_match``; ``(None, None)`` when no
    submit used the key yet. ``load(job_id)`` returns a job's document or raises NotFound."""
    try:
        etag = store.head(index).etag
    except NotFound:
        return None, None
    try:
        doc: dict[str, Any] = load(json.loads(store.get(index))["job"])
    except (NotFound, ValueError, KeyError, TypeError):
        return None, etag
    expires = doc.get("expires")
    if expires and datetime.fromisoformat(expires) < datetime.now(UTC):
        return None, etag
    return doc, None


def claim(store: ObjectStore, index: str, job_id: str, stale_etag: str | None) -> bool:
    """Make ``index`` name ``job_id``; False when a concurrent submit with the same key did first."""
    body = json.dumps({"job": job_id}).encode()
    try:
        store.put(index, body, content_type="application/json", if_none_match=stale_etag is None, if_match=stale_etag)
    except PreconditionFailed:
        return False
    return True


def release(store: ObjectStore, index: str, job_id: str) -> None:
    """Delete ``index`` if it still names ``job_id`` (the job is being deleted)."""
    with contextlib.suppress(NotFound, ValueError, KeyError, TypeError):
        if json.loads(store.get(index))["job"] == job_id:
            store.delete(index)
