"""Where a ``file://`` object's etag and content type live: an extended attribute, else a sidecar file.

* Linux (where Python has ``os.setxattr`` and the file system takes ``user.`` attributes): the
  attribute :data:`XATTR` of the data file, set on the temporary file before the rename, so it is
  replaced atomically with the data and travels with it (a rename or hard link by hand keeps it).
* Everywhere else (macOS, Windows, file systems without user attributes, or a value too big for
  one): a JSON sidecar ``.nubes-internal/meta/XX/SHA1.json`` written just before the rename. It
  counts only while it matches the data file's device, inode, size and mtime, so a stale or
  half-written one is harmless.

Either record counts only while it matches the file's size and mtime, so a file changed in place
behind nubes' back loses it; a file without a valid record gets :func:`stat_etag`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import struct
from datetime import UTC, datetime
from typing import Any

from nubes.storage.local_dirs import CREATE, READ, Dir

XATTR = "user.nubes"  # extended attribute holding an object's etag and content type
# Its value: version 1, the etag's 16 bytes, size and mtime_ns (both u64, little-endian), then the
# content type in UTF-8 (if any). Binary and short on purpose: ext4 keeps up to ~64 bytes of
# attributes inside the inode; a longer value (JSON would be ~110 bytes) costs a block of its own
# per file, to allocate, journal and free, which made small puts ~1.5x slower.
_XATTR_VERSION = 1
_XATTR_HEAD = struct.Struct("<B16sQQ")
_NO_XATTRS = frozenset(e for e in (getattr(errno, "ENOTSUP", None), getattr(errno, "EOPNOTSUPP", None)) if e)
_XATTR_TOO_BIG = frozenset({errno.E2BIG, errno.ENOSPC, errno.ERANGE})  # this value only: use a sidecar
_MAX_SIDECAR = 1 << 20  # a sidecar bigger than this is not one nubes wrote

HAS_XATTR = hasattr(os, "setxattr") and hasattr(os, "getxattr")
"""True where Python can set extended attributes (Linux); tests force it off to check the sidecars."""

Meta = tuple[str, str | None]  # (etag, content type)


def set_xattr(fd: int, etag: str, content_type: str | None, st: os.stat_result) -> bool | None:
    """Store the record in the file's attribute: True if done, False if this value needs a sidecar,
    None if the file system has no user attributes at all."""
    value = _XATTR_HEAD.pack(_XATTR_VERSION, bytes.fromhex(etag), st.st_size, st.st_mtime_ns)
    if content_type:
        value += content_type.encode("utf-8")
    try:
        os.setxattr(fd, XATTR, value)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return None
        if exc.errno in _XATTR_TOO_BIG:  # e.g. a huge content type
            return False
        raise
    return True


def read_xattr(fd: int, st: os.stat_result) -> Meta | None:
    """The record in the file's attribute, if there is one and it matches ``st``."""
    try:
        value = os.getxattr(fd, XATTR)
    except OSError:  # none (ENODATA), or no attributes on this file system
        return None
    if len(value) < _XATTR_HEAD.size or value[0] != _XATTR_VERSION:
        return None
    _, token, size, mtime_ns = _XATTR_HEAD.unpack_from(value)
    if size != st.st_size or mtime_ns != st.st_mtime_ns:
        return None  # changed in place since nubes wrote it
    try:
        content_type = value[_XATTR_HEAD.size :].decode("utf-8") or None
    except UnicodeDecodeError:
        return None
    return token.hex(), content_type


def sidecar_name(path: str) -> tuple[str, str]:
    """``(folder, file name)`` of the sidecar of the object at ``path``, inside the ``meta`` folder."""
    digest = hashlib.sha1(path.encode("utf-8")).hexdigest()
    return digest[:2], digest + ".json"


def write_sidecar(folder: Dir, name: str, path: str, st: os.stat_result, etag: str, content_type: str | None) -> None:
    """Write the sidecar ``name`` in ``folder`` atomically (temporary file, rename; no fsync: a lost one is harmless)."""
    record = {
        "key": path,
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "etag": etag,
        "content_type": content_type,
    }
    tmp = f"{name}.{os.urandom(16).hex()}.part"
    fd = folder.open(tmp, CREATE, 0o666)
    try:
        with os.fdopen(fd, "wb", closefd=True) as out:
            out.write(json.dumps(record).encode("utf-8"))
        folder.replace(tmp, folder, name)
    except BaseException:
        with contextlib.suppress(OSError):
            folder.unlink(tmp)
        raise


def read_sidecar(folder: Dir, name: str, path: str, st: os.stat_result) -> Meta | None:
    """The record in the sidecar ``name`` of ``folder``, if it is one for the file whose identity is ``st``."""
    try:
        fd = folder.open(name, READ)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb", closefd=True) as f:
            record: Any = json.loads(f.read(_MAX_SIDECAR))
    except (OSError, ValueError):
        return None
    ident = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if not isinstance(record, dict) or tuple(record.get(k) for k in ("key", "dev", "ino", "size", "mtime_ns")) != ident:
        return None
    etag, content_type = record.get("etag"), record.get("content_type")
    if not isinstance(etag, str) or not (content_type is None or isinstance(content_type, str)):
        return None
    return etag, content_type


def mtime(st: os.stat_result) -> datetime:
    """The file's modification time, timezone-aware (UTC)."""
    return datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC)


def stat_etag(st: os.stat_result) -> str:
    """The etag of a file nubes has no record for: from its inode, size and mtime (no content read)."""
    ident = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return hashlib.blake2b(ident, digest_size=16).hexdigest()


__all__ = ["HAS_XATTR", "XATTR", "Meta", "mtime", "read_sidecar", "read_xattr", "set_xattr", "sidecar_name", "stat_etag", "write_sidecar"]
