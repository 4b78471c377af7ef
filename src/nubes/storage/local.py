"""``file://PATH``: objects as files in a local folder, with the same contract as the cloud stores.

``file://data`` is ``./data`` (relative to the working directory when opened), ``file:///abs/path``
is absolute. The folder is created on the first write. Key ``a/b.csv`` is the file
``PATH/a/b.csv``; nubes keeps its own bookkeeping under ``PATH/.nubes-internal/`` (temporary files,
lock files, and a sidecar per object holding its etag and content type), which is never listed and
cannot be used as a key segment.

Guarantees:

* Keys never leave the root: besides :func:`~nubes.storage.base.check_key`, every path is resolved
  and refused (:class:`~nubes.errors.InvalidKey`) if it lands outside the root, e.g. through a
  symbolic link.
* ``put`` is atomic: data streams into a temporary file on the same file system, is fsynced, then
  renamed over the destination, so readers see the old file or the new one, never a part.
* Conditional writes hold an ``flock`` on a per-key (striped) lock file around check-and-rename,
  which excludes other threads and other processes on the same host; ``if_none_match`` also uses
  ``link(2)``, which fails if the destination exists.
* ``etag`` is the hex MD5 of the content, computed while streaming and kept in the sidecar. A file
  changed behind nubes' back (sidecar no longer matching its inode, size and mtime) is re-hashed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import mimetypes
import os
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from nubes.core.errors import AccessDenied, ConfigError, InvalidKey, NotFound, PreconditionFailed, StorageError
from nubes.storage.base import BaseStore, Data, ObjectInfo, check_key

INTERNAL = ".nubes-internal"  # reserved folder name for nubes' own files, at any depth
CHUNK = 1024 * 1024
LOCK_STRIPES = 256


class LocalStore(BaseStore):
    """A folder on the local file system as an object store (see the module docstring)."""

    scheme = "file"
    retries = 1  # local file-system errors are not transient

    def __init__(self, path: str, *, fsync: bool = True) -> None:
        directory = os.path.abspath(os.path.expanduser(path))
        super().__init__(directory)
        self.fsync = fsync
        self._dir = directory
        self._real = os.path.realpath(directory)
        self._internal = os.path.join(directory, INTERNAL)

    @classmethod
    def from_uri(cls, rest: str, **options: Any) -> LocalStore:
        """Open ``file://PATH``; ``rest`` is PATH. Option ``fsync`` (default True) flushes each write to disk."""
        unknown = set(options) - {"fsync"}
        if unknown:
            raise ConfigError(f"file:// storage takes the option 'fsync' only, got: {', '.join(sorted(unknown))}")
        if not rest:
            raise ConfigError("file:// needs a folder: file://PATH (relative) or file:///ABSOLUTE/PATH")
        return cls(rest, fsync=bool(options.get("fsync", True)))

    def url(self, key: str) -> str:
        return "file://" + self._file(self._path(key))

    # -- paths -----------------------------------------------------------------------------
    def _file(self, path: str) -> str:
        """The file-system path of ``path``, refused if it is reserved or resolves outside the root."""
        parts = path.split("/")
        if INTERNAL in parts:
            raise InvalidKey(f"'{INTERNAL}' is reserved for nubes' own files", uri=self.uri, key=path)
        full = os.path.join(self._dir, *parts)
        if not _inside(os.path.realpath(full), self._real):
            raise InvalidKey("key resolves outside the store's folder (through a symbolic link)", uri=self.uri, key=path)
        return full

    def _meta_path(self, path: str) -> str:
        digest = hashlib.sha1(path.encode("utf-8")).hexdigest()
        return os.path.join(self._internal, "meta", digest[:2], digest + ".json")

    @contextlib.contextmanager
    def _lock(self, path: str) -> Iterator[None]:
        """Hold an exclusive flock for ``path``: excludes other threads (own open file description) and processes."""
        stripe = int(hashlib.sha1(path.encode("utf-8")).hexdigest()[:8], 16) % LOCK_STRIPES
        folder = os.path.join(self._internal, "locks")
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, f"{stripe:03d}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _conflict(self, path: str) -> InvalidKey:
        """The error for a key that collides with a folder, or runs through a file, of other keys."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            if os.path.isfile(os.path.join(self._dir, *parts[:i])):
                head = "/".join(parts[:i])
                return InvalidKey(
                    f"object '{head}' exists, so no key can continue below it as a folder", uri=self.uri, key=path
                )
        return InvalidKey(
            f"keys '{path}/...' exist, so '{path}' is a folder and cannot also be an object", uri=self.uri, key=path
        )

    # -- primitives ------------------------------------------------------------------------
    def _put(
        self, path: str, data: Data, content_type: str | None, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        dest = self._file(path)
        tmp_dir = os.path.join(self._internal, "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        tmp = os.path.join(tmp_dir, uuid.uuid4().hex + ".part")
        try:
            md5 = hashlib.md5()
            size = 0
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(data):
                    out.write(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
                st = os.fstat(out.fileno())
            etag = md5.hexdigest()
            with self._lock(path):
                if os.path.isdir(dest) and not os.path.islink(dest):
                    raise self._conflict(path)
                if if_none_match or if_match is not None:
                    current = self._current_etag(path, dest)
                    if if_none_match and current is not None:
                        raise PreconditionFailed("an object already exists (if_none_match)", uri=self.uri, key=path)
                    if if_match is not None and current != _unquote(if_match):
                        why = f"its etag is {current}, not {if_match}" if current else "there is no object to match"
                        raise PreconditionFailed(f"if_match failed: {why}", uri=self.uri, key=path)
                self._write_meta(path, st, etag, content_type)
                self._place(path, tmp, dest, exclusive=if_none_match)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # gone already unless the write failed or used link(2)
        return ObjectInfo(path, size, etag, _mtime(st), content_type or mimetypes.guess_type(path)[0])

    def _place(self, path: str, tmp: str, dest: str, *, exclusive: bool) -> None:
        """Move the finished ``tmp`` to ``dest`` (only if absent when ``exclusive``), making folders as needed."""
        for _ in range(10):
            self._makedirs(path, os.path.dirname(dest))
            try:
                if exclusive:
                    try:
                        os.link(tmp, dest)
                        return
                    except FileExistsError:
                        raise PreconditionFailed(
                            "an object already exists (if_none_match)", uri=self.uri, key=path
                        ) from None
                    except OSError as exc:  # no hard links here: the lock we hold still excludes nubes writers
                        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                            raise
                os.replace(tmp, dest)
                return
            except FileNotFoundError:
                if not os.path.exists(tmp):
                    raise
                # a concurrent delete pruned the (then empty) parent folder: make it again
            except (IsADirectoryError, NotADirectoryError):
                raise self._conflict(path) from None
        raise StorageError("could not create the object's folder (it kept disappearing)", uri=self.uri, key=path)

    def _makedirs(self, path: str, folder: str) -> None:
        try:
            os.makedirs(folder, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise self._conflict(path) from None

    def _write_meta(self, path: str, st: os.stat_result, etag: str, content_type: str | None) -> None:
        """Record etag and content type for the file whose identity is ``st`` (atomically, without fsync).

        A sidecar only counts while it matches the data file's device, inode, size and mtime, so a
        stale or half-written one is harmless: the etag is then recomputed from the content.
        """
        meta = self._meta_path(path)
        os.makedirs(os.path.dirname(meta), exist_ok=True)
        record = {
            "key": path,
            "dev": st.st_dev,
            "ino": st.st_ino,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "etag": etag,
            "content_type": content_type,
        }
        tmp = f"{meta}.{uuid.uuid4().hex}.part"
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.replace(tmp, meta)

    def _read_meta(self, path: str, st: os.stat_result) -> dict[str, Any] | None:
        try:
            with open(self._meta_path(path), encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        ident = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if not isinstance(record, dict) or tuple(record.get(k) for k in ("key", "dev", "ino", "size", "mtime_ns")) != ident:
            return None
        return record

    def _open(self, path: str, full: str | None = None) -> tuple[int, os.stat_result]:
        """Open the object's file read-only: ``(fd, fstat)``. Missing, or a folder → NotFound."""
        full = full or self._file(path)
        try:
            fd = os.open(os.path.realpath(full), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no such object", uri=self.uri, key=path) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            what = "a folder of other objects" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise NotFound(f"no such object ({what})", uri=self.uri, key=path)
        return fd, st

    def _info(self, path: str, fd: int, st: os.stat_result) -> ObjectInfo:
        meta = self._read_meta(path, st)
        if meta is not None:
            etag, content_type = str(meta["etag"]), meta.get("content_type")
        else:
            md5 = hashlib.md5()
            offset = 0
            while chunk := os.pread(fd, CHUNK, offset):
                md5.update(chunk)
                offset += len(chunk)
            etag, content_type = md5.hexdigest(), None
        return ObjectInfo(path, st.st_size, etag, _mtime(st), content_type or mimetypes.guess_type(path)[0])

    def _current_etag(self, path: str, dest: str) -> str | None:
        try:
            fd, st = self._open(path, dest)
        except NotFound:
            return None
        try:
            return self._info(path, fd, st).etag
        finally:
            os.close(fd)

    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        fd, st = self._open(path)
        with os.fdopen(fd, "rb") as f:
            if start >= st.st_size:
                return b""
            f.seek(start)
            return f.read() if end is None else f.read(end - start)

    def _head(self, path: str) -> ObjectInfo:
        fd, st = self._open(path)
        try:
            return self._info(path, fd, st)
        finally:
            os.close(fd)

    def _list(self, path_prefix: str) -> Iterator[ObjectInfo]:
        folder, _, _ = path_prefix.rpartition("/")
        parts = folder.split("/") if folder else []
        if any(p in ("", ".", "..", INTERNAL) for p in parts):
            return  # no valid key starts with this prefix
        start = os.path.join(self._dir, *parts)
        if not _inside(os.path.realpath(start), self._real):
            return
        yield from self._walk(start, folder + "/" if folder else "", path_prefix)

    def _walk(self, folder: str, key_prefix: str, want: str) -> Iterator[ObjectInfo]:
        """Objects below ``folder`` whose key starts with ``want``, in key order.

        Siblings are sorted by name, folders as ``name/``: all keys below folder ``a`` start with
        ``a/``, so this yields keys in global code-point order. Symbolic links to folders are not
        followed; links to files count only if they resolve inside the root.
        """
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        chosen: list[tuple[str, bool, str]] = []
        for entry in entries:
            if entry.name == INTERNAL:
                continue
            key = key_prefix + entry.name
            try:
                check_key(key)
            except (InvalidKey, UnicodeError):
                continue  # a name no key can address (control characters, undecodable bytes...)
            if entry.is_dir(follow_symlinks=False):
                sort_key = key + "/"
                if sort_key.startswith(want) or want.startswith(sort_key):
                    chosen.append((sort_key, True, entry.path))
            elif key.startswith(want):
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if not (_inside(real, self._real) and os.path.isfile(real)):
                        continue
                elif not entry.is_file(follow_symlinks=False):
                    continue
                chosen.append((key, False, entry.path))
        chosen.sort()
        for key, is_dir, full in chosen:
            if is_dir:
                yield from self._walk(full, key, want)
                continue
            try:
                fd, st = self._open(key, full)
            except NotFound:
                continue  # deleted while listing
            try:
                yield self._info(key, fd, st)
            finally:
                os.close(fd)

    def _delete(self, path: str) -> None:
        full = self._file(path)
        if not os.path.lexists(full):
            return
        with self._lock(path):
            try:
                os.unlink(full)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return  # no object (a folder of other objects is not one)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._meta_path(path))
        parent = os.path.dirname(full)
        while parent != self._dir and _inside(parent, self._dir):
            try:
                os.rmdir(parent)
            except OSError:
                break  # not empty (or gone): stop pruning
            parent = os.path.dirname(parent)

    def _translate(self, exc: Exception, key: str | None) -> Exception | None:
        if isinstance(exc, FileNotFoundError):
            return NotFound("no such object", uri=self.uri, key=key)
        if isinstance(exc, PermissionError):
            return AccessDenied(f"permission denied ({exc.strerror})", uri=self.uri, key=key)
        if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
            return InvalidKey(f"key conflicts with a file or folder of another key ({exc.strerror})", uri=self.uri, key=key)
        if isinstance(exc, OSError):
            return StorageError(f"file-system error: {exc.strerror or exc}", uri=self.uri, key=key)
        return None


def _chunks(data: Data) -> Iterator[bytes | memoryview]:
    """``data`` in pieces of at most CHUNK bytes; a file-like object is read until EOF, never whole."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        for i in range(0, len(view), CHUNK):
            yield view[i : i + CHUNK]
        return
    while chunk := data.read(CHUNK):
        yield chunk


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC)


def _unquote(etag: str) -> str:
    """Accept an etag quoted (as HTTP sends it) or bare."""
    return etag[1:-1] if len(etag) >= 2 and etag[0] == etag[-1] == '"' else etag


__all__ = ["INTERNAL", "LocalStore"]
