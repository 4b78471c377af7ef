"""``file://PATH``: objects as files in a local folder, with the same contract as the cloud stores.

``file://data`` is ``./data`` (relative to the working directory when opened), ``file:///abs/path``
is absolute. The folder is created on the first write. Key ``a/b.csv`` is the file
``PATH/a/b.csv``; nubes keeps its own bookkeeping under ``PATH/.nubes-internal/`` (temporary files,
lock files and, where there are no extended attributes, a sidecar per object holding its etag and
content type), which is never listed and cannot be used as a key segment.

Guarantees, and how each platform keeps them:

* Keys never leave the root. Besides :func:`~nubes.storage.keys.check_key`, every operation
  (``put`` with its temporary file, lock and metadata; ``get``, ``get_range``, ``open``, ``head``,
  ``exists``, ``list``, ``delete``, ``delete_many``) resolves the key one name at a time from the
  root (:mod:`nubes.storage.local_dirs`). A symbolic link is followed only while it stays beneath
  the root (:class:`~nubes.errors.InvalidKey` otherwise); ``list`` does not descend into linked
  folders. **Linux, macOS, BSD**: each folder is held open as a descriptor (``O_DIRECTORY |
  O_NOFOLLOW``) and every act is relative to it, so this holds while other processes swap any
  folder of the path for a link, concurrently. **Windows** (and systems without ``openat``): each
  name is checked with ``lstat`` just before the act, which refuses links and junctions present
  then but is not atomic against a concurrent swap; names Windows cannot hold plainly (devices such
  as ``CON``, ``:`` streams, a trailing dot or space) are InvalidKey there.
* The root folder is opened once per store handle (and again if it is deleted): a handle whose root
  is renamed away keeps using it where it went.
* ``put`` is atomic: data streams into a temporary file on the same file system, is fsynced (unless
  ``fsync=False``), then renamed over the destination, so readers see the old file or the new one,
  never a part. (Windows refuses to replace a file another program holds open; nubes retries
  briefly, then the put fails with AccessDenied.)
* Conditional writes hold an exclusive per-key (striped) lock around check-and-rename, across
  threads and processes on the same host (:mod:`nubes.storage.local_lock`: ``flock`` on POSIX,
  ``msvcrt.locking`` on Windows, an ``O_EXCL`` lock file elsewhere); ``if_none_match`` also uses
  ``link(2)``, which fails if the destination exists.
* ``etag`` is a token made for each write (128 random bits, hex), not a hash of the content: every
  ``put`` gets a new etag, and writing costs no hashing. It and the content type live in an
  extended attribute on Linux, else in a sidecar (:mod:`nubes.storage.local_meta`). A file without
  valid nubes metadata (dropped in or edited by hand) has an etag derived from its inode, size and
  mtime (in nanoseconds): stable while the file is untouched, new when it is replaced or rewritten,
  never computed by reading the content. (An in-place edit that keeps the size within the same
  mtime tick is not noticed; nubes itself never writes in place.)
* On a case-insensitive volume (the macOS and Windows default) keys differing only in case are one object.
"""

from __future__ import annotations

import contextlib
import errno
import mimetypes
import os
import stat
import weakref
from collections.abc import Iterator
from typing import Any, Self, TypeVar

from nubes.errors import AccessDenied, ConfigError, InvalidKey, NotFound, PreconditionFailed, StorageError
from nubes.storage import local_dirs, local_lock, local_meta
from nubes.storage.base import BaseStore, Data, ObjectInfo, unquote_etag
from nubes.storage.keys import RESERVED_SEGMENT, check_key
from nubes.storage.local_dirs import CREATE, READ, Dir, Walk, is_link, open_direct, subfolder, windows_name_error
from nubes.storage.local_folders import Folders
from nubes.storage.local_io import read_at, write_all
from nubes.storage.local_meta import XATTR

INTERNAL = RESERVED_SEGMENT  # reserved folder name for nubes' own files, at any depth
T = TypeVar("T")
_NO_HARD_LINKS = frozenset(
    e for e in (errno.EPERM, getattr(errno, "ENOTSUP", 0), getattr(errno, "EOPNOTSUPP", 0), errno.EMLINK, errno.EXDEV) if e
)
_FOLDER, _FILE, _LINK = 0, 1, 2  # kinds of listed entries


class LocalStore(BaseStore):
    """A folder on the local file system as an object store (see the module docstring)."""

    scheme = "file"
    retries = 1  # local file-system errors are not transient

    def __init__(self, path: str, *, fsync: bool = True) -> None:
        directory = os.path.abspath(os.path.expanduser(path))
        if os.sep == "\\":  # Windows: the URI names C:\data file:///C:/data
            super().__init__("/" + directory.replace("\\", "/"))
        else:
            super().__init__(directory)
        self.fsync = fsync
        self._dir = directory
        self._base = self.root.rstrip("/") + "/"  # + key = the key's URI path ("/" + key at the top)
        # the platform's capabilities, read once per handle (tests force the fallbacks through them)
        self._windows = local_dirs.WINDOWS
        self._lock_kind = local_lock.KIND
        self._read_xattrs = local_meta.HAS_XATTR
        self._xattrs = local_meta.HAS_XATTR  # False once the file system refused user extended attributes
        self._h = Folders(directory, uri=self.uri, fds=local_dirs.DIR_FDS)
        weakref.finalize(self, self._h.close)

    @classmethod
    def from_uri(cls, rest: str, **options: Any) -> Self:
        """Open ``file://PATH``; ``rest`` is PATH. Option ``fsync`` (default True) flushes each write to disk."""
        unknown = set(options) - {"fsync"}
        if unknown:
            raise ConfigError(f"file:// storage takes the option 'fsync' only, got: {', '.join(sorted(unknown))}")
        if not rest:
            raise ConfigError("file:// needs a folder: file://PATH (relative) or file:///ABSOLUTE/PATH")
        if os.sep == "\\" and len(rest) > 2 and rest[0] == "/" and rest[2] == ":":
            rest = rest[1:]  # file:///C:/data is C:/data on Windows
        return cls(rest, fsync=bool(options.get("fsync", True)))

    def url(self, key: str) -> str:
        return "file://" + self._base + self._path(key)

    def _path(self, key: str) -> str:
        """The shared key rules, and on Windows the names Windows cannot hold plainly."""
        path = BaseStore._path(self, key)
        if self._windows:
            for part in path.split("/"):
                why = windows_name_error(part)
                if why:
                    raise InvalidKey(why, uri=self.uri, key=key)
        return path

    def _lock(self, path: str) -> local_lock.Release:
        """Hold ``path``'s exclusive lock (threads and processes); call the result to release it."""
        name = local_lock.stripe(path)
        return self._h.in_folder("locks", lambda folder: local_lock.acquire(folder, name, self._lock_kind))

    def _conflict(self, path: str, head: str | None) -> InvalidKey:
        """The error for a key that collides with a folder, or runs through a file, of other keys."""
        if head:
            return InvalidKey(f"object '{head}' exists, so no key can continue below it as a folder", uri=self.uri, key=path)
        return InvalidKey(f"keys '{path}/...' exist, so '{path}' is a folder and cannot also be an object", uri=self.uri, key=path)

    def _walk(self, root: Dir, key: str) -> Walk:
        return Walk(root, self._h.real_roots, uri=self.uri, key=key)

    # -- put ---------------------------------------------------------------------------------
    def _put(
        self, path: str, data: Data, content_type: str | None, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        etag = os.urandom(16).hex()  # this write's token, also the temporary file's name
        tmp_name = etag + ".part"
        tmp_dir, fd = self._h.in_folder("tmp", lambda folder: (folder, folder.open(tmp_name, CREATE, 0o666)))
        placed = False
        try:
            try:
                size = write_all(fd, data)
                st = os.fstat(fd)
                # before fsync and rename: the metadata is durable and replaced with the data
                in_xattr = self._set_xattr(fd, etag, content_type, st)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            meta = None if in_xattr else (st, etag, content_type)
            release = self._lock(path)
            try:
                placed = self._h.rooted(
                    lambda root: self._place(root, path, tmp_dir, tmp_name, meta, if_none_match, if_match), create=True
                )
            finally:
                release()
        finally:
            if not placed:  # the write failed, or link(2) left the temporary name behind
                with contextlib.suppress(OSError):
                    tmp_dir.unlink(tmp_name)
        return ObjectInfo(path, size, etag, local_meta.mtime(st), content_type or mimetypes.guess_type(path)[0])

    def _set_xattr(self, fd: int, etag: str, content_type: str | None, st: os.stat_result) -> bool:
        if not self._xattrs:
            return False
        done = local_meta.set_xattr(fd, etag, content_type, st)
        if done is None:
            self._xattrs = False  # this file system has none: sidecars from now on
        return bool(done)

    def _place(
        self,
        root: Dir,
        path: str,
        tmp_dir: Dir,
        tmp_name: str,
        meta: tuple[os.stat_result, str, str | None] | None,
        if_none_match: bool,
        if_match: str | None,
    ) -> bool:
        """Move the finished temporary file to the key (only if absent when ``if_none_match``), under the key's lock.

        True if it was renamed (its name is gone), False if it was hard-linked.
        """
        parts = path.split("/")
        name = parts[-1]
        for _ in range(10):
            walk = self._walk(root, path)
            try:
                try:
                    folder = walk.descend(parts[:-1], create=True)
                except NotADirectoryError as exc:
                    raise self._conflict(path, exc.filename) from None
                current = self._current(walk, folder, name, path, if_none_match or if_match is not None)
                if if_none_match and current is not None:
                    raise PreconditionFailed("an object already exists (if_none_match)", uri=self.uri, key=path)
                if if_match is not None and current != unquote_etag(if_match):
                    why = f"its etag is {current}, not {if_match}" if current else "there is no object to match"
                    raise PreconditionFailed(f"if_match failed: {why}", uri=self.uri, key=path)
                if meta is not None:
                    self._write_meta(path, *meta)
                try:
                    if if_none_match:
                        try:
                            tmp_dir.link(tmp_name, folder, name)
                            return False
                        except FileExistsError:
                            raise PreconditionFailed("an object already exists (if_none_match)", uri=self.uri, key=path) from None
                        except OSError as exc:  # no hard links here: the lock we hold still excludes nubes writers
                            if exc.errno not in _NO_HARD_LINKS:
                                raise
                    tmp_dir.replace(tmp_name, folder, name)
                    return True
                except FileNotFoundError:
                    tmp_dir.lstat(tmp_name)  # FileNotFoundError if the temporary file itself is gone
                    continue  # the folder was pruned by a concurrent delete: resolve again
                except (IsADirectoryError, NotADirectoryError):
                    raise self._conflict(path, None) from None
            finally:
                walk.close()
        raise StorageError("could not create the object's folder (it kept disappearing)", uri=self.uri, key=path)

    def _current(self, walk: Walk, folder: Dir, name: str, path: str, conditional: bool) -> str | None:
        """The etag of the object at the key now (None if there is none; only computed if ``conditional``).

        A folder there is a conflict; a link is refused if it leads outside the root (a put replaces
        the link itself, so nothing is ever written through one).
        """
        try:
            st = folder.lstat(name)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            raise self._conflict(path, None)
        if not (conditional or is_link(st)):
            return None
        sub = walk.fork(path)
        try:
            fd = sub.open_file([name])
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None  # a link to nothing, or to a folder: no object to match
        finally:
            sub.close()
        try:
            st = os.fstat(fd)
            return self._info(path, fd, st).etag if stat.S_ISREG(st.st_mode) else None
        finally:
            os.close(fd)

    # -- metadata ----------------------------------------------------------------------------
    def _write_meta(self, path: str, st: os.stat_result, etag: str, content_type: str | None) -> None:
        sub, name = local_meta.sidecar_name(path)

        def write(meta: Dir) -> None:
            folder = subfolder(meta, sub, uri=self.uri)
            try:
                local_meta.write_sidecar(folder, name, path, st, etag, content_type)
            finally:
                folder.close()

        self._h.in_folder("meta", write)

    def _read_meta(self, path: str, st: os.stat_result) -> local_meta.Meta | None:
        try:
            meta = self._h.folder("meta", create=False)
        except OSError:  # no sidecars yet (or nubes' folder is not a plain one)
            return None
        sub, name = local_meta.sidecar_name(path)
        try:
            folder = meta.child(sub)
        except OSError:
            return None
        try:
            return local_meta.read_sidecar(folder, name, path, st)
        finally:
            folder.close()

    def _info(self, path: str, fd: int, st: os.stat_result) -> ObjectInfo:
        meta = local_meta.read_xattr(fd, st) if self._read_xattrs else None
        if meta is None:
            meta = self._read_meta(path, st)  # no xattrs here, or a value too big for one
        etag, content_type = meta if meta is not None else (local_meta.stat_etag(st), None)
        return ObjectInfo(path, st.st_size, etag, local_meta.mtime(st), content_type or mimetypes.guess_type(path)[0])

    # -- reads -------------------------------------------------------------------------------
    def _open(self, path: str) -> tuple[int, os.stat_result]:
        """Open the object's file read-only: ``(fd, fstat)``. Missing, a folder, or not a regular file: NotFound."""
        root = self._h.root()
        try:
            fd = self._open_at(root, path)
        except FileNotFoundError as exc:  # as Folders.rooted, inlined on the hot path
            if not self._h.stale(root, exc):
                raise
            fd = self._open_at(self._h.root(), path)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            what = "a folder of other objects" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise NotFound(f"no such object ({what})", uri=self.uri, key=path)
        return fd, st

    def _open_at(self, root: Dir, path: str) -> int:
        parts = path.split("/")
        try:
            fd = open_direct(root, parts, READ)
            if fd is not None:
                return fd
            walk = self._walk(root, path)  # a link (or a file) on the way
            try:
                return walk.open_file(parts)
            finally:
                walk.close()
        except (NotADirectoryError, IsADirectoryError):
            raise NotFound("no such object (a folder of other objects)", uri=self.uri, key=path) from None

    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        """``data[start:end]`` of the file as it was opened (its size then bounds the read)."""
        fd, st = self._open(path)
        try:
            stop = st.st_size if end is None else min(end, st.st_size)
            if start >= stop:
                return b""
            data = read_at(fd, stop - start, start)  # one call, no file object
            if len(data) == stop - start:
                return data
            parts = [data]  # a short read (huge range, or the file shrank in place): go on to EOF
            offset = start + len(data)
            while offset < stop:
                chunk = read_at(fd, stop - offset, offset)
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

    # -- list --------------------------------------------------------------------------------
    def _list(self, path_prefix: str) -> Iterator[ObjectInfo]:
        folder, _, _ = path_prefix.rpartition("/")
        parts = folder.split("/") if folder else []
        if any(p in ("", ".", "..", INTERNAL) for p in parts):
            return  # no valid key starts with this prefix
        try:
            root = self._h.root()
            if self._h.stale(root):
                root = self._h.root()
        except FileNotFoundError:
            return
        walk = self._walk(root, folder)
        try:
            try:
                start = walk.descend(parts)
            except (FileNotFoundError, NotADirectoryError, InvalidKey):
                return  # no such folder, a file, or a link leading outside the root
            yield from self._scan(root, start, folder + "/" if folder else "", path_prefix)
        finally:
            walk.close()

    def _scan(self, root: Dir, here: Dir, key_prefix: str, want: str) -> Iterator[ObjectInfo]:
        """Objects in the folder ``here`` (and below) whose key starts with ``want``, in key order.

        Siblings are sorted by name, folders as ``name/``: all keys below folder ``a`` start with
        ``a/``, so this yields keys in global code-point order. Linked folders are not entered;
        links to files count only if they resolve inside the root.
        """
        try:
            with here.scandir() as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        chosen: list[tuple[str, int, str]] = []
        for entry in entries:
            if entry.name == INTERNAL:
                continue
            key = key_prefix + entry.name
            try:
                check_key(key)
            except InvalidKey:
                continue  # a name no key can address (control characters, undecodable bytes...)
            if entry.is_dir(follow_symlinks=False):
                sort_key = key + "/"
                if sort_key.startswith(want) or want.startswith(sort_key):
                    chosen.append((sort_key, _FOLDER, entry.name))
            elif key.startswith(want):
                if entry.is_symlink():
                    chosen.append((key, _LINK, entry.name))
                elif entry.is_file(follow_symlinks=False):
                    chosen.append((key, _FILE, entry.name))
        chosen.sort()
        for key, kind, name in chosen:
            if kind == _FOLDER:
                try:
                    sub = here.child(name)
                except OSError:
                    continue  # gone, or swapped for a link or a file since: not entered
                try:
                    yield from self._scan(root, sub, key, want)
                finally:
                    sub.close()
                continue
            info = self._listed(root, here, name, key, kind)
            if info is not None:
                yield info

    def _listed(self, root: Dir, here: Dir, name: str, key: str, kind: int) -> ObjectInfo | None:
        """The info of a listed file (or link to one), None if it is gone or not an object any more."""
        fd = -1
        if kind == _FILE:
            try:
                fd = here.open(name, READ)
            except FileNotFoundError:
                return None  # deleted while listing
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR, errno.EISDIR):
                    raise
        if fd < 0:  # a link (or it became one): resolved from the root, and only if it stays inside
            try:
                fd = self._open_at(root, key)
            except (NotFound, InvalidKey, FileNotFoundError):
                return None
        try:
            st = os.fstat(fd)
            return self._info(key, fd, st) if stat.S_ISREG(st.st_mode) else None
        finally:
            os.close(fd)

    # -- delete ------------------------------------------------------------------------------
    def _delete(self, path: str) -> None:
        try:
            self._h.rooted(lambda root: self._delete_at(root, path))
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing there (or a file where a folder of the key should be): no object

    def _delete_at(self, root: Dir, path: str) -> None:
        parts = path.split("/")
        name = parts[-1]
        walk = self._walk(root, path)
        try:
            folder = walk.descend(parts[:-1])
            if stat.S_ISDIR(folder.lstat(name).st_mode):
                return  # a folder of other keys is not an object
            release = self._lock(path)
            try:
                try:
                    folder.unlink(name)  # a link is removed itself, never its target
                except (IsADirectoryError, PermissionError):
                    if stat.S_ISDIR(folder.lstat(name).st_mode):
                        return  # became a folder meanwhile (macOS says EPERM)
                    raise
                self._drop_meta(path)
            finally:
                release()
            if walk.direct:  # prune the key's folders left empty, never the root
                for i in range(len(walk.names) - 1, -1, -1):
                    try:
                        walk.stack[i].rmdir(walk.names[i])
                    except OSError:
                        break  # not empty, gone, or not a folder any more: stop pruning
        finally:
            walk.close()

    def _drop_meta(self, path: str) -> None:
        sub, name = local_meta.sidecar_name(path)
        try:
            folder = self._h.folder("meta", create=False).child(sub)
        except OSError:
            return
        try:
            folder.unlink(name)
        except OSError:
            pass
        finally:
            folder.close()

    def _translate(self, exc: Exception, key: str | None) -> Exception | None:
        if isinstance(exc, FileNotFoundError):
            return NotFound("no such object", uri=self.uri, key=key)
        if isinstance(exc, PermissionError):
            return AccessDenied(f"permission denied ({exc.strerror})", uri=self.uri, key=key)
        if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
            return InvalidKey(f"key conflicts with a file or folder of another key ({exc.strerror})", uri=self.uri, key=key)
        if isinstance(exc, OSError):
            if exc.errno == errno.ENAMETOOLONG:
                return InvalidKey("key too long for this file system", uri=self.uri, key=key)
            return StorageError(f"file-system error: {exc.strerror or exc}", uri=self.uri, key=key)
        return None


__all__ = ["INTERNAL", "XATTR", "LocalStore"]
