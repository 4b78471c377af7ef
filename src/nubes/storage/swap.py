"""Compare-and-swap of one small object (a manifest, a record): read it with its etag, write it back
only if nobody changed it in between.

Every backend gives conditional PUTs (``if_match`` an etag, ``if_none_match`` for "still absent"),
so a writer that read an object with :func:`read_with_etag` and writes with :func:`swap` either
replaces exactly what it read or gets :class:`~nubes.errors.PreconditionFailed` and reads again.
Retrying (how often, with what back-off, undoing what) is the caller's: it knows what it wrote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nubes.errors import NotFound

if TYPE_CHECKING:
    from nubes.storage.base import Data, ObjectInfo, ObjectStore


def read_with_etag(store: ObjectStore, key: str) -> tuple[bytes | None, str | None]:
    """``(content, etag)`` of ``key``, or ``(None, None)`` if it does not exist.

    HEAD before GET: the content is at least as new as the etag, so a :func:`swap` with that etag
    fails if anything changed after the HEAD (never overwrites a change the content missed)."""
    try:
        etag = store.head(key).etag
        return store.get(key), etag
    except NotFound:
        return None, None


def swap(store: ObjectStore, key: str, body: Data, etag: str | None, *,
         content_type: str | None = "application/json") -> ObjectInfo:
    """Write ``body`` at ``key`` only if it still has ``etag`` (``None``: only if it still does not
    exist); :class:`~nubes.errors.PreconditionFailed` otherwise."""
    if etag is None:
        return store.put(key, body, content_type=content_type, if_none_match=True)
    return store.put(key, body, content_type=content_type, if_match=etag)


__all__ = ["read_with_etag", "swap"]
