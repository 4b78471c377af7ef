"""The object-key rules, one check shared by every backend.

A key valid here is valid on every backend (cloud object stores, ``file://`` folders, ``mem://``),
so an app tested on ``mem://`` or ``file://`` does not meet a new key error when deployed on a
cloud store, and a key that one backend would store under a different name (or outside its root)
never reaches any backend.
"""

from __future__ import annotations

from nubes.errors import InvalidKey

MAX_KEY_BYTES = 1024
"""A key is at most this many UTF-8 bytes (the limit of S3, GCS and Azure)."""

MAX_SEGMENT_BYTES = 255
"""Each ``/``-separated segment is at most this many UTF-8 bytes (a file name's limit on common file systems)."""

RESERVED_SEGMENT = ".nubes-internal"
"""A segment name nubes keeps for its own files (``file://`` bookkeeping); no key may use it."""


def check_key(key: str, *, uri: str = "") -> str:
    """Return ``key`` if it is a valid object key, else raise :class:`~nubes.errors.InvalidKey` (no I/O).

    Valid: a non-empty ``str`` of encodable text (no lone surrogates such as ``'\\udcff'``), at most
    :data:`MAX_KEY_BYTES` UTF-8 bytes, made of ``/``-separated segments that are neither empty, ``.``
    nor ``..``, nor :data:`RESERVED_SEGMENT`, each at most :data:`MAX_SEGMENT_BYTES` UTF-8 bytes, with
    no NUL or other control character (U+0000-U+001F, U+007F) and no backslash.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("object keys are non-empty strings", uri=uri, key=repr(key))
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("object keys are text that UTF-8 can encode (no lone surrogates)", uri=uri, key=ascii(key)) from None
    if not key.isprintable() and any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidKey("object keys may not contain NUL or control characters", uri=uri, key=repr(key))
    if key[0] == "/" or "\\" in key:
        raise InvalidKey("object keys are relative '/'-separated paths", uri=uri, key=key)
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"object keys are at most {MAX_KEY_BYTES} UTF-8 bytes", uri=uri, key=key[:80] + "...")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey("object keys may not have empty, '.' or '..' segments", uri=uri, key=key)
        if part == RESERVED_SEGMENT:
            raise InvalidKey(f"'{RESERVED_SEGMENT}' is reserved for nubes' own files", uri=uri, key=key)
        if len(part) > MAX_SEGMENT_BYTES // 4 and len(part.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidKey(f"each '/'-separated part of a key is at most {MAX_SEGMENT_BYTES} UTF-8 bytes", uri=uri, key=key)
    return key


def check_prefix(prefix: str, *, uri: str = "") -> str:
    """Return ``prefix`` if it can start a key (``list``'s argument), else raise InvalidKey.

    A prefix is a plain string prefix, so it may end inside a segment (``"data/x"``) or be empty;
    it must be text UTF-8 can encode, with no leading ``/`` and no NUL.
    """
    if not isinstance(prefix, str) or "\x00" in prefix or prefix.startswith("/"):
        raise InvalidKey("list prefixes are relative strings", uri=uri, key=repr(prefix))
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey("list prefixes are text that UTF-8 can encode", uri=uri, key=ascii(prefix)) from None
    return prefix


__all__ = ["MAX_KEY_BYTES", "MAX_SEGMENT_BYTES", "RESERVED_SEGMENT", "check_key", "check_prefix"]
