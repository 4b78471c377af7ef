"""Folders of a ``file://`` store as handles, and the resolution of keys beneath its root.

Every operation of :class:`~nubes.storage.local.LocalStore` names a file by a folder handle and
one plain name in it, never by a path the kernel resolves on its own:

* :class:`FdDir` (Linux, macOS, the BSDs: wherever :data:`DIR_FDS` is true) holds the folder
  open as a file descriptor and acts with ``openat``/``renameat``/``unlinkat``/``fstatat``/
  ``fdopendir`` on it; each next folder is opened with ``O_DIRECTORY | O_NOFOLLOW``. Swapping
  any folder for a symbolic link (or moving it) while an operation runs cannot redirect the
  operation: the handles it holds keep naming the folders it resolved.
* :class:`PathDir` (Windows, or any system without those calls) holds the folder's path and
  checks each name with ``lstat`` just before acting on it. That refuses every link and junction
  present at check time, but is not atomic: a local process able to swap folders for links
  between the check and the act can redirect it. (Creating symbolic links on Windows needs a
  privilege or developer mode.)

:class:`Walk` resolves a key one name at a time from the root, following a symbolic link only
while it stays beneath the root (an absolute target must point inside the root's real path; a
relative one may not climb above the root; ``..`` steps back to the folder held before, not to
whatever the file system now calls the parent) and never into nubes' reserved folder; anything
else is :class:`~nubes.errors.InvalidKey`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence

from nubes.errors import InvalidKey, StorageError
from nubes.storage.keys import RESERVED_SEGMENT

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)  # Windows: descriptors are not inherited anyway
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
READ = os.O_RDONLY | _O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _O_CLOEXEC | _O_BINARY
"""Open an object to read: never through a final link; a FIFO does not block (and is then refused)."""
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
"""Create a new file (a temporary file, a sidecar): fails if anything, a link included, has the name."""
OPEN_OR_CREATE = os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
"""Open a lock file, making it if missing; never through a link."""
_DIR = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC

DIR_FDS = bool(
    _O_DIRECTORY
    and _O_NOFOLLOW
    and {os.open, os.stat, os.mkdir, os.rename, os.link, os.unlink, os.rmdir, os.readlink} <= os.supports_dir_fd
    and os.scandir in os.supports_fd
)
"""True where every file operation can be made relative to a folder descriptor (tests force it off)."""

WINDOWS = sys.platform == "win32"
"""True where names follow Windows' rules (tests force it on to check the name rules)."""

MAX_LINKS = 40  # as the kernel's ELOOP limit: a chain longer than this is refused
_LINK_ERRNOS = frozenset(e for e in (errno.ELOOP, getattr(errno, "EMLINK", 0), errno.ENOTDIR) if e)
_REPARSE_POINT = 0x400  # FILE_ATTRIBUTE_REPARSE_POINT: links and junctions on Windows
_WINDOWS_BAD_CHARS = frozenset('<>:"|?*')
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{n}" for p in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]]
)


def is_link(st: os.stat_result) -> bool:
    """True for a symbolic link (and, on Windows, any reparse point such as a junction)."""
    return stat.S_ISLNK(st.st_mode) or bool(getattr(st, "st_file_attributes", 0) & _REPARSE_POINT)


def windows_name_error(name: str) -> str | None:
    """Why Windows cannot hold ``name`` as a plain file name (a device, a stream, a trailing dot), or None."""
    if any(c in _WINDOWS_BAD_CHARS for c in name):
        return "Windows file names cannot contain any of <>:\"|?*"
    if name[-1] in ". ":
        return "Windows file names cannot end with a dot or a space"
    if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        return f"'{name}' names a device on Windows"
    return None


class Dir(ABC):
    """A folder held for acting on the names in it. No method follows a symbolic link at ``name``."""

    __slots__ = ()

    @abstractmethod
    def open(self, name: str, flags: int, mode: int = 0o666) -> int:
        """``os.open`` of ``name`` here; a link at ``name`` raises OSError (ELOOP or the like)."""

    @abstractmethod
    def child(self, name: str) -> Dir:
        """The folder ``name`` here; a link or a file at ``name`` raises OSError (ENOTDIR, ELOOP...)."""

    @abstractmethod
    def lstat(self, name: str) -> os.stat_result: ...

    @abstractmethod
    def stat(self) -> os.stat_result:
        """This folder's own status (its identity: ``st_dev``, ``st_ino``)."""

    @abstractmethod
    def mkdir(self, name: str) -> None: ...

    @abstractmethod
    def readlink(self, name: str) -> str: ...

    @abstractmethod
    def replace(self, name: str, dest: Dir, dest_name: str) -> None:
        """Rename ``name`` here to ``dest_name`` in ``dest``, replacing a file (or link) there."""

    @abstractmethod
    def link(self, name: str, dest: Dir, dest_name: str) -> None:
        """Hard-link ``name`` here as ``dest_name`` in ``dest``; FileExistsError if that name is taken."""

    @abstractmethod
    def unlink(self, name: str) -> None: ...

    @abstractmethod
    def rmdir(self, name: str) -> None: ...

    @abstractmethod
    def scandir(self) -> contextlib.AbstractContextManager[Iterator[os.DirEntry[str]]]: ...

    @abstractmethod
    def close(self) -> None:
        """Release the handle (a no-op for path handles)."""


class FdDir(Dir):
    """A folder held open as a descriptor: every name is resolved relative to it, atomically."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def at(cls, path: str) -> FdDir:
        """Open the folder at ``path`` (links on the way are followed: this is how a store's root is opened)."""
        return cls(os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC))

    def open(self, name: str, flags: int, mode: int = 0o666) -> int:
        return os.open(name, flags, mode, dir_fd=self.fd)

    def child(self, name: str) -> FdDir:
        return FdDir(os.open(name, _DIR, dir_fd=self.fd))

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def mkdir(self, name: str) -> None:
        os.mkdir(name, 0o777, dir_fd=self.fd)

    def readlink(self, name: str) -> str:
        return os.readlink(name, dir_fd=self.fd)

    def replace(self, name: str, dest: Dir, dest_name: str) -> None:
        assert isinstance(dest, FdDir)
        os.rename(name, dest_name, src_dir_fd=self.fd, dst_dir_fd=dest.fd)  # POSIX rename replaces

    def link(self, name: str, dest: Dir, dest_name: str) -> None:
        assert isinstance(dest, FdDir)
        os.link(name, dest_name, src_dir_fd=self.fd, dst_dir_fd=dest.fd, follow_symlinks=False)

    def unlink(self, name: str) -> None:
        os.unlink(name, dir_fd=self.fd)

    def rmdir(self, name: str) -> None:
        os.rmdir(name, dir_fd=self.fd)

    def scandir(self) -> contextlib.AbstractContextManager[Iterator[os.DirEntry[str]]]:
        return os.scandir(self.fd)  # reads a duplicate of the descriptor

    def close(self) -> None:
        os.close(self.fd)


class PathDir(Dir):
    """A folder named by its path: each name is checked with ``lstat`` just before the act (not atomic)."""

    __slots__ = ("path",)

    replace_retries = 5 if WINDOWS else 0  # Windows refuses to replace a file another handle holds open

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def at(cls, path: str) -> PathDir:
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "no such folder", path)
        return cls(path)

    def open(self, name: str, flags: int, mode: int = 0o666) -> int:
        full = os.path.join(self.path, name)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            pass
        else:
            if is_link(st):
                raise OSError(errno.ELOOP, "a symbolic link", full)
            if stat.S_ISDIR(st.st_mode):  # Windows cannot open a folder as a file: say what it is
                raise IsADirectoryError(errno.EISDIR, "a folder", full)
        return os.open(full, flags, mode)

    def child(self, name: str) -> PathDir:
        full = os.path.join(self.path, name)
        st = os.lstat(full)
        if is_link(st):
            raise OSError(errno.ELOOP, "a symbolic link", full)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", full)
        return PathDir(full)

    def lstat(self, name: str) -> os.stat_result:
        return os.lstat(os.path.join(self.path, name))

    def stat(self) -> os.stat_result:
        return os.stat(self.path)

    def mkdir(self, name: str) -> None:
        os.mkdir(os.path.join(self.path, name), 0o777)

    def readlink(self, name: str) -> str:
        return os.readlink(os.path.join(self.path, name))

    def replace(self, name: str, dest: Dir, dest_name: str) -> None:
        assert isinstance(dest, PathDir)
        target = os.path.join(dest.path, dest_name)
        self._refuse_link_folder(dest)
        for attempt in range(self.replace_retries + 1):
            try:
                os.replace(os.path.join(self.path, name), target)
                return
            except PermissionError:
                if attempt == self.replace_retries:
                    raise
                time.sleep(0.01 * 2**attempt)

    def link(self, name: str, dest: Dir, dest_name: str) -> None:
        assert isinstance(dest, PathDir)
        self._refuse_link_folder(dest)
        os.link(os.path.join(self.path, name), os.path.join(dest.path, dest_name))

    def _refuse_link_folder(self, dest: PathDir) -> None:
        if is_link(os.lstat(dest.path)):
            raise OSError(errno.ELOOP, "the folder became a symbolic link", dest.path)

    def unlink(self, name: str) -> None:
        os.unlink(os.path.join(self.path, name))

    def rmdir(self, name: str) -> None:
        full = os.path.join(self.path, name)
        if is_link(os.lstat(full)):
            raise NotADirectoryError(errno.ENOTDIR, "a symbolic link", full)
        os.rmdir(full)

    def scandir(self) -> contextlib.AbstractContextManager[Iterator[os.DirEntry[str]]]:
        return os.scandir(self.path)

    def close(self) -> None:
        pass  # nothing held


def open_root(path: str, *, fds: bool) -> Dir:
    """A handle on the store's root folder (FileNotFoundError if it does not exist)."""
    return FdDir.at(path) if fds else PathDir.at(path)


class MissingBelowRoot(FileNotFoundError):
    """A name is missing below a folder that was found in the root: the root itself was not deleted."""


def open_direct(root: Dir, parts: Sequence[str], flags: int) -> int | None:
    """Open the file at ``parts`` below ``root`` if no link (nor file) is on the way, else None (then use a :class:`Walk`).

    The fast path of reads: one ``openat`` per name, nothing followed. A missing name raises
    FileNotFoundError.
    """
    here = root
    opened: list[Dir] = []
    try:
        for name in parts[:-1]:
            here = here.child(name)
            opened.append(here)
        return here.open(parts[-1], flags)
    except FileNotFoundError as exc:
        if opened:  # a folder was found in the root, so the root itself is alive
            raise MissingBelowRoot(exc.errno, exc.strerror, exc.filename) from None
        raise
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            return None
        raise
    finally:
        for folder in opened:
            folder.close()


def subfolder(parent: Dir, name: str, *, uri: str) -> Dir:
    """The folder ``name`` in ``parent``, made if missing; a link (or a file) there is refused, never followed.

    For nubes' own folders (temporary files, locks, sidecars), which must be real folders.
    """
    for _ in range(10):
        try:
            return parent.child(name)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                parent.mkdir(name)
        except OSError as exc:
            if exc.errno not in _LINK_ERRNOS:
                raise
            raise StorageError(
                f"nubes' folder '{name}' is not a plain folder (a symbolic link or a file); remove it", uri=uri
            ) from None
    raise StorageError(f"could not make nubes' folder '{name}' (it kept disappearing)", uri=uri)


class Walk:
    """The folders from the root down to the current one, each held open while a key is resolved.

    ``stack[0]`` is the root (borrowed, never closed here); ``names[i]`` is the name of
    ``stack[i + 1]`` in ``stack[i]``. ``direct`` stays true while no link has been followed, so the
    stack is exactly the key's folders (what pruning empty folders needs). Close with :meth:`close`.
    """

    __slots__ = ("direct", "floor", "key", "links", "names", "real_roots", "stack", "uri")

    def __init__(self, root: Dir, real_roots: tuple[str, ...], *, uri: str, key: str) -> None:
        self.stack: list[Dir] = [root]
        self.names: list[str] = []
        self.floor = 1  # stack[:floor] is borrowed (never closed here), the rest was opened by this walk
        self.real_roots = real_roots  # the root's path(s) as links name it: absolute, real
        self.direct = True
        self.links = 0
        self.uri = uri
        self.key = key

    @property
    def here(self) -> Dir:
        return self.stack[-1]

    def fork(self, key: str) -> Walk:
        """A walk starting in the current folder that borrows this one's folders (closing it closes only its own)."""
        other = Walk(self.stack[0], self.real_roots, uri=self.uri, key=key)
        other.stack = list(self.stack)
        other.names = list(self.names)
        other.floor = len(self.stack)
        return other

    def close(self) -> None:
        """Close the folders this walk opened and go back to the root."""
        while len(self.stack) > 1:
            self._pop()

    def _pop(self) -> None:
        folder = self.stack.pop()
        if self.names:
            self.names.pop()
        if len(self.stack) >= self.floor:
            folder.close()
        else:
            self.floor = len(self.stack)

    def descend(self, parts: Sequence[str], *, create: bool = False) -> Dir:
        """Enter the folders ``parts`` below the current one (making missing ones if ``create``).

        A file on the way raises NotADirectoryError whose ``filename`` is the key of that file
        (as far as the walk went without links); a missing folder, FileNotFoundError.
        """
        queue = deque(parts)
        made = 0
        while queue:
            name = queue.popleft()
            if not self._step(name):
                continue
            try:
                self.stack.append(self.here.child(name))
            except FileNotFoundError:
                if not create or made > 20:
                    raise
                made += 1  # a concurrent delete may prune it again: retry a few times
                with contextlib.suppress(FileExistsError):
                    self.here.mkdir(name)
                queue.appendleft(name)
                continue
            except OSError as exc:
                if exc.errno not in _LINK_ERRNOS:
                    raise
                if not is_link(self.here.lstat(name)):
                    raise NotADirectoryError(errno.ENOTDIR, "not a folder", "/".join([*self.names, name])) from None
                queue.extendleft(reversed(self.follow(name)))
                continue
            self.names.append(name)
        return self.here

    def open_file(self, parts: Sequence[str], flags: int = READ) -> int:
        """Open the file at ``parts`` (below the current folder) with ``flags``, following links beneath the root."""
        folders, name = list(parts[:-1]), parts[-1]
        while True:
            here = self.descend(folders)
            if not self._step(name):  # a link led to a folder ("..", "sub/"): not a file
                raise IsADirectoryError(errno.EISDIR, "a folder", self.key)
            try:
                return here.open(name, flags)
            except OSError as exc:
                if exc.errno not in _LINK_ERRNOS or not is_link(here.lstat(name)):
                    raise
            target = self.follow(name) or ["."]  # [] is the root itself
            folders, name = target[:-1], target[-1]

    def follow(self, name: str) -> list[str]:
        """The names the link ``name`` (in the current folder) stands for, relative to the folder the walk is then in.

        An absolute target inside the root restarts the walk at the root; anything leading
        outside is InvalidKey.
        """
        self.links += 1
        if self.links > MAX_LINKS:
            raise InvalidKey("too many levels of symbolic links", uri=self.uri, key=self.key)
        self.direct = False
        target = self.here.readlink(name)
        if WINDOWS:
            target = target.replace("\\", "/")
            if target.startswith("//?/"):  # a junction's or a link's "\\?\C:\..." form
                target = target[4:]
        if os.path.isabs(target) or (WINDOWS and len(target) > 1 and target[1] == ":"):
            inside = self._below_root(target)
            if inside is None:
                raise self.outside()
            self.close()
            return inside
        return target.split("/")

    def _below_root(self, target: str) -> list[str] | None:
        """The names of the absolute ``target`` (``/``-separated) below the root, None if it is not below it."""
        fold = str.lower if WINDOWS else str  # Windows paths compare without case
        for root in self.real_roots:
            base = fold(root.replace("\\", "/").rstrip("/"))
            if fold(target) == base:
                return []
            if fold(target).startswith(base + "/"):
                return target[len(base) + 1 :].split("/")
        return None

    def _step(self, name: str) -> bool:
        """Handle ``.``, ``..`` and empty names from link targets (False: nothing to open); refuse reserved names."""
        if name in ("", "."):
            return False
        if name == "..":
            if len(self.stack) == 1:
                raise self.outside()
            self._pop()
            return False
        if name == RESERVED_SEGMENT:
            raise InvalidKey(f"'{RESERVED_SEGMENT}' is reserved for nubes' own files", uri=self.uri, key=self.key)
        return True

    def outside(self) -> InvalidKey:
        return InvalidKey("key resolves outside the store's folder (through a symbolic link)", uri=self.uri, key=self.key)


__all__ = [
    "CREATE",
    "DIR_FDS",
    "MAX_LINKS",
    "OPEN_OR_CREATE",
    "READ",
    "WINDOWS",
    "Dir",
    "FdDir",
    "MissingBelowRoot",
    "PathDir",
    "Walk",
    "is_link",
    "open_direct",
    "open_root",
    "subfolder",
    "windows_name_error",
]
