"""``file://PATH``: objects as files in a local folder, with the same contract as the cloud stores.

``file://data`` is ``./data`` (relative to the working directory when opened), ``file:///abs/path``
is absolute. The folder is created on the first write. Key ``a/b.csv`` is the file
``PATH/a/b.csv``; nubes keeps its own bookkeeping under ``PATH/.nubes-internal/`` (temporary files,
lock files, and, where the file system has no extended attributes, a sidecar per object holding
its etag and content type), which is never listed and cannot be used as a key segment.

Guarantees:

* Keys never leave the root: besides :func:`~nubes.storage.base.check_key`, every path is resolved
  and refused (:class:`~nubes.errors.InvalidKey`) if it lands outside the root, e.g. through a
  symbolic link.
* ``put`` is atomic: data streams into a temporary file on the same file system, is fsynced, then
  renamed over the destination, so readers see the old file or the new one, never a part.
* Conditional writes hold an ``flock`` on a per-key (striped) lock file around check-and-rename,
  which excludes other threads and other processes on the same host; ``if_none_match`` also uses
  ``link(2)``, which fails if the destination exists.
* ``etag`` is a token made for each write (128 random bits, hex), not a hash of the content: every
  ``put`` gets a new etag, even of content equal to the current one (the contract only requires a
  new etag for different content), and writing costs no hashing. The etag and the content type
  are kept in the extended attribute ``user.nubes`` of the file, set on the temporary file before
  the rename, so they are replaced atomically with the data and travel with it. Where the file
  system has no user extended attributes (detected once per store handle) they go to a sidecar
  file under ``.nubes-internal/meta/`` instead, written just before the rename.
* Metadata counts only while it matches the file's size and mtime (a sidecar also its device and
  inode), so a file changed in place behind nubes' back loses it. A file without valid nubes
  metadata (dropped in or edited by hand) has an etag derived from its inode, size and mtime (in
  nanoseconds): stable while the file is untouched, new when it is replaced or rewritten, and
  never computed by reading the content. (An in-place edit that keeps the size and lands within
  the same mtime tick as the previous write is not noticed; nubes itself never writes in place.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import mimetypes
import os
import stat
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from nubes.errors import AccessDenied, ConfigError, InvalidKey, NotFound, PreconditionFailed, StorageError
from nubes.storage.base import BaseStore, Data, ObjectInfo, check_key

INTERNAL = ".nubes-internal"  # reserved folder name for nubes' own files, at any depth
CHUNK = 1024 * 1024
LOCK_STRIPES = 256
XATTR = "user.nubes"  # extended attribute holding an object's etag and content type
# Its value: version 1, the etag's 16 bytes, size and mtime_ns (both u64, little-endian), then the
# content type in UTF-8 (if any). Binary and short on purpose: ext4 keeps up to ~64 bytes of
# attributes inside the inode; a longer value (JSON would be ~110 bytes) costs a block of its own
# per file, to allocate, journal and free, which made small puts ~1.5x slower.
_XATTR_VERSION = 1
_XATTR_HEAD = struct.Struct("<B16sQQ")
_NO_XATTRS = frozenset(e for e in (getattr(errno, "ENOTSUP", None), getattr(errno, "EOPNOTSUPP", None)) if e)
_XATTR_TOO_BIG = frozenset({errno.E2BIG, errno.ENOSPC, errno.ERANGE})  # this value only: use a sidecar
_SYMLINK_FINAL = frozenset({errno.ELOOP, errno.EMLINK})  # open(O_NOFOLLOW) of a symbolic link
_HAS_XATTR = hasattr(os, "setxattr") and hasattr(os, "getxattr")


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
        self._tmp_dir = os.path.join(self._internal, "tmp")
        self._lock_dir = os.path.join(self._internal, "locks")
        self._lock_files = [os.path.join(self._lock_dir, f"{i:03d}.lock") for i in range(LOCK_STRIPES)]
        self._base = directory.rstrip(os.sep) + os.sep  # + key = the key's file ("/" + key at the top)
        self._real_base = self._real.rstrip(os.sep)  # + "/" + component, in _resolve
        self._made: set[str] = set()  # internal folders known to exist (made again if removed)
        self._xattrs = _HAS_XATTR  # False once the file system refused user extended attributes

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
        self._resolve(path, self._parts(path))
        return self._base + path  # keys are "/"-separated, as POSIX paths

    def _parts(self, path: str) -> list[str]:
        parts = path.split("/")
        if INTERNAL in parts:
            raise InvalidKey(f"'{INTERNAL}' is reserved for nubes' own files", uri=self.uri, key=path)
        return parts

    def _resolve(self, path: str, parts: list[str]) -> str:
        """The real path of ``parts`` below the root; InvalidKey if a symbolic link leads outside it.

        What ``os.path.realpath`` gives, but checking only the key's own components (one ``lstat``
        each, from the already resolved root) and resolving fully only from a link on.
        """
        real = self._real_base
        for i, part in enumerate(parts):
            nxt = f"{real}{os.sep}{part}"
            try:
                mode = os.lstat(nxt).st_mode
            except OSError:  # missing (or unreadable): nothing below it can be a link
                return os.path.join(nxt, *parts[i + 1 :])
            if stat.S_ISLNK(mode):
                resolved = os.path.realpath(os.path.join(nxt, *parts[i + 1 :]))
                if not _inside(resolved, self._real):
                    raise InvalidKey(
                        "key resolves outside the store's folder (through a symbolic link)", uri=self.uri, key=path
                    )
                return resolved
            real = nxt
        return real or os.sep

    def _meta_path(self, path: str) -> str:
        digest = hashlib.sha1(path.encode("utf-8")).hexdigest()
        return os.path.join(self._internal, "meta", digest[:2], digest + ".json")

    def _ensure_dir(self, folder: str) -> None:
        """Make an internal folder, once per handle (callers make it again if it was removed since)."""
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)

    @contextlib.contextmanager
    def _lock(self, path: str) -> Iterator[None]:
        """Hold an exclusive flock for ``path``: excludes other threads (own open file description) and processes."""
        fd = self._acquire(path)
        try:
            yield
        finally:
            os.close(fd)  # releases the lock

    def _acquire(self, path: str) -> int:
        """Lock ``path``'s stripe: the fd of its lock file, flocked; closing it releases the lock.

        The stripe is byte 3 of the key's SHA-1 (= the first 32 bits mod 256, as always: processes
        running other nubes versions lock the same files).
        """
        lock_file = self._lock_files[hashlib.sha1(path.encode("utf-8")).digest()[3] % LOCK_STRIPES]
        self._ensure_dir(self._lock_dir)
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:  # the internal folder was removed since: make it again
            self._made.discard(self._lock_dir)
            self._ensure_dir(self._lock_dir)
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

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
        etag = os.urandom(16).hex()  # this write's token, also the temporary file's name
        tmp = f"{self._tmp_dir}{os.sep}{etag}.part"
        fd = self._create_tmp(tmp)
        placed = False
        try:
            try:
                size = _write_all(fd, data)
                st = os.fstat(fd)
                # before fsync and rename: the metadata is durable and replaced with the data
                in_xattr = self._set_xattr(fd, etag, content_type, st)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            lock = self._acquire(path)
            try:
                if if_none_match or if_match is not None:
                    if os.path.isdir(dest) and not os.path.islink(dest):
                        raise self._conflict(path)
                    current = self._current_etag(path)
                    if if_none_match and current is not None:
                        raise PreconditionFailed("an object already exists (if_none_match)", uri=self.uri, key=path)
                    if if_match is not None and current != _unquote(if_match):
                        why = f"its etag is {current}, not {if_match}" if current else "there is no object to match"
                        raise PreconditionFailed(f"if_match failed: {why}", uri=self.uri, key=path)
                if not in_xattr:
                    self._write_meta(path, st, etag, content_type)
                placed = self._place(path, tmp, dest, exclusive=if_none_match)
            finally:
                os.close(lock)  # releases the lock
        finally:
            if not placed:  # the write failed, or link(2) left the temporary name behind
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return ObjectInfo(path, size, etag, _mtime(st), content_type or mimetypes.guess_type(path)[0])

    def _create_tmp(self, tmp: str) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self._ensure_dir(self._tmp_dir)
        try:
            return os.open(tmp, flags, 0o666)
        except FileNotFoundError:  # the internal folder was removed since: make it again
            self._made.discard(self._tmp_dir)
            self._ensure_dir(self._tmp_dir)
            return os.open(tmp, flags, 0o666)

    def _set_xattr(self, fd: int, etag: str, content_type: str | None, st: os.stat_result) -> bool:
        """Store the metadata in the file's extended attribute; False if it must go to a sidecar."""
        if not self._xattrs:
            return False
        value = _XATTR_HEAD.pack(_XATTR_VERSION, bytes.fromhex(etag), st.st_size, st.st_mtime_ns)
        if content_type:
            value += content_type.encode("utf-8")
        try:
            os.setxattr(fd, XATTR, value)
        except OSError as exc:
            if exc.errno in _NO_XATTRS:
                self._xattrs = False  # this file system has none: sidecars from now on
                return False
            if exc.errno in _XATTR_TOO_BIG:  # e.g. a huge content type: a sidecar for this one
                return False
            raise
        return True

    def _place(self, path: str, tmp: str, dest: str, *, exclusive: bool) -> bool:
        """Move the finished ``tmp`` to ``dest`` (only if absent when ``exclusive``), making folders as needed.

        True if ``tmp`` was renamed (it no longer exists), False if it was hard-linked.
        """
        for attempt in range(10):
            if attempt:  # the folder is missing (or a concurrent delete pruned it): make it
                self._makedirs(path, os.path.dirname(dest))
            try:
                if exclusive:
                    try:
                        os.link(tmp, dest)
                        return False
                    except FileExistsError:
                        raise PreconditionFailed(
                            "an object already exists (if_none_match)", uri=self.uri, key=path
                        ) from None
                    except OSError as exc:  # no hard links here: the lock we hold still excludes nubes writers
                        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                            raise
                os.replace(tmp, dest)
                return True
            except FileNotFoundError:
                if not os.path.exists(tmp):
                    raise
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
        self._ensure_dir(os.path.dirname(meta))
        record = {
            "key": path,
            "dev": st.st_dev,
            "ino": st.st_ino,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "etag": etag,
            "content_type": content_type,
        }
        tmp = f"{meta}.{os.urandom(16).hex()}.part"
        try:
            out = open(tmp, "w", encoding="utf-8")  # noqa: SIM115 - the folder may have been removed since
        except FileNotFoundError:
            os.makedirs(os.path.dirname(meta), exist_ok=True)
            out = open(tmp, "w", encoding="utf-8")  # noqa: SIM115
        with out:
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

    def _open(self, path: str) -> tuple[int, os.stat_result]:
        """Open the object's file read-only: ``(fd, fstat)``. Missing, or a folder → NotFound.

        The path is resolved once: folders by :meth:`_resolve`, the file itself by opening it
        without following a final symbolic link (a link is then resolved and checked first).
        """
        parts = self._parts(path)
        target = f"{self._resolve(path, parts[:-1]).rstrip(os.sep)}{os.sep}{parts[-1]}"
        try:
            try:
                fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC | _O_NOFOLLOW)
            except OSError as exc:
                if not _O_NOFOLLOW or exc.errno not in _SYMLINK_FINAL:
                    raise
                real = os.path.realpath(target)
                if not _inside(real, self._real):
                    raise InvalidKey(
                        "key resolves outside the store's folder (through a symbolic link)", uri=self.uri, key=path
                    ) from None
                fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no such object", uri=self.uri, key=path) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            what = "a folder of other objects" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise NotFound(f"no such object ({what})", uri=self.uri, key=path)
        return fd, st

    def _info(self, path: str, fd: int, st: os.stat_result) -> ObjectInfo:
        meta = self._read_xattr(fd, st)
        if meta is None:
            meta = self._read_meta(path, st)  # no xattrs here, or written by an older nubes
        if meta is not None:
            etag, content_type = str(meta["etag"]), meta.get("content_type")
        else:  # not written by nubes (or changed since): an etag from the file's identity
            etag, content_type = _stat_etag(st), None
        return ObjectInfo(path, st.st_size, etag, _mtime(st), content_type or mimetypes.guess_type(path)[0])

    def _read_xattr(self, fd: int, st: os.stat_result) -> dict[str, Any] | None:
        if not _HAS_XATTR:
            return None
        try:
            value = os.getxattr(fd, XATTR)
        except OSError:  # none (ENODATA), or no xattrs on this file system
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
        return {"etag": token.hex(), "content_type": content_type}

    def _current_etag(self, path: str) -> str | None:
        try:
            fd, st = self._open(path)
        except NotFound:
            return None
        try:
            return self._info(path, fd, st).etag
        finally:
            os.close(fd)

    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        """``data[start:end]`` of the file as it was opened (its size then bounds the read)."""
        fd, st = self._open(path)
        try:
            stop = st.st_size if end is None else min(end, st.st_size)
            if start >= stop:
                return b""
            data = os.pread(fd, stop - start, start)  # one call, no file object
            if len(data) == stop - start:
                return data
            parts = [data]  # a short read (huge range, or the file shrank in place): go on to EOF
            offset = start + len(data)
            while offset < stop:
                chunk = os.pread(fd, stop - offset, offset)
                if not chunk:
                    break
                parts.append(chunk)
                offset += len(chunk)
            return b"".join(parts)
        finally:
            os.close(fd)

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
                fd, st = self._open(key)
            except (NotFound, InvalidKey):  # deleted, or made a link outside, while listing
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


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _write_all(fd: int, data: Data) -> int:
    """Write ``data`` to ``fd``: bytes in one go, a file-like object CHUNK bytes at a time (never whole)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return _write_view(fd, memoryview(data).cast("B"))
    size = 0
    readinto = getattr(data, "readinto", None)
    if readinto is not None and not isinstance(data, io.TextIOBase):
        buffer = memoryview(bytearray(CHUNK))  # one buffer for the whole stream, no allocation per chunk
        try:
            n = readinto(buffer)
        except (NotImplementedError, io.UnsupportedOperation):  # e.g. a RawIOBase with read() only
            n = -1
        if n != -1:
            while n:
                size += _write_view(fd, buffer[:n])
                n = readinto(buffer)
            return size
    while chunk := data.read(CHUNK):
        if isinstance(chunk, str):
            raise TypeError("put takes bytes or a binary file-like object, not a text file")
        size += _write_view(fd, memoryview(chunk).cast("B"))
    return size


def _write_view(fd: int, view: memoryview) -> int:
    written = 0
    total = len(view)
    while written < total:
        written += os.write(fd, view[written:] if written else view)
    return total


def _stat_etag(st: os.stat_result) -> str:
    """The etag of a file nubes has no metadata for: from its inode, size and mtime (no content read)."""
    ident = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return hashlib.blake2b(ident, digest_size=16).hexdigest()


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC)


def _unquote(etag: str) -> str:
    """Accept an etag quoted (as HTTP sends it) or bare."""
    return etag[1:-1] if len(etag) >= 2 and etag[0] == etag[-1] == '"' else etag


__all__ = ["INTERNAL", "LocalStore"]
