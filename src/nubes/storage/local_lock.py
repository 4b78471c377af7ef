"""Exclusive locks per key for a ``file://`` store, across threads and processes, on every platform.

Keys map to :data:`LOCK_STRIPES` lock files in ``.nubes-internal/locks/`` (byte 3 of the key's
SHA-1: the first 32 bits mod 256, as every nubes version computes it, so processes running other
versions lock the same files). Each acquisition opens its own descriptor, so threads of one
process exclude each other as processes do. How the file is locked depends on the platform
(:data:`KIND`, chosen once; tests force each):

* ``"flock"`` (POSIX: Linux, macOS, the BSDs): ``flock(LOCK_EX)``; the kernel releases it when the
  descriptor closes, including when the process dies.
* ``"msvcrt"`` (Windows): ``msvcrt.locking`` of the file's first byte, retried until granted;
  Windows releases it when the handle closes or the process dies.
* ``"lockfile"`` (anywhere else): the lock is the existence of ``NNN.lock.held``, created with
  ``O_EXCL``. A holder that dies leaves it behind; a ``.held`` file older than
  :data:`STALE_SECONDS` is taken to be such a leftover and broken, so a holder frozen for longer
  than that (nubes holds a lock for one check-and-rename) can lose its exclusion.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
from collections.abc import Callable
from types import ModuleType

from nubes.storage.local_dirs import CREATE, OPEN_OR_CREATE, Dir

fcntl: ModuleType | None
msvcrt: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # everywhere but Windows
    msvcrt = None

LOCK_STRIPES = 256
STALE_SECONDS = 30.0
KIND = "flock" if fcntl is not None else "msvcrt" if msvcrt is not None else "lockfile"
"""How locks are taken here: ``flock``, ``msvcrt`` or ``lockfile`` (see the module docstring)."""

Release = Callable[[], None]
_NAMES = [f"{i:03d}.lock" for i in range(LOCK_STRIPES)]


def stripe(path: str) -> str:
    """The name of the lock file guarding the object at ``path``."""
    return _NAMES[hashlib.sha1(path.encode("utf-8")).digest()[3] % LOCK_STRIPES]


def acquire(folder: Dir, name: str, kind: str) -> Release:
    """Take the lock ``name`` in ``folder`` the ``kind`` way, waiting as long as it is held; return its release."""
    if kind == "lockfile":
        return _acquire_lockfile(folder, name)
    fd = folder.open(name, OPEN_OR_CREATE, 0o666)
    try:
        if kind == "flock":
            assert fcntl is not None
            fcntl.flock(fd, fcntl.LOCK_EX)
            return lambda: os.close(fd)  # closing the descriptor releases the lock
        assert msvcrt is not None and kind == "msvcrt"
        _wait(lambda: msvcrt.locking(fd, msvcrt.LK_NBLCK, 1), _held)
    except BaseException:
        os.close(fd)
        raise

    def release() -> None:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.close(fd)

    return release


def _acquire_lockfile(folder: Dir, name: str) -> Release:
    held = name + ".held"

    def take() -> None:
        try:
            os.close(folder.open(held, CREATE, 0o666))
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - folder.lstat(held).st_mtime > STALE_SECONDS:
                    folder.unlink(held)  # left by a holder that died
            raise

    _wait(take, lambda exc: isinstance(exc, FileExistsError))
    return lambda: folder.unlink(held)


def _held(exc: OSError) -> bool:
    """``msvcrt.locking(LK_NBLCK)`` failed because another handle holds the byte (not a real error)."""
    return exc.errno in (errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK), errno.EDEADLK)


def _wait(attempt: Callable[[], object], busy: Callable[[OSError], bool]) -> None:
    """Call ``attempt`` until it returns; an OSError ``busy`` accepts means wait (0.5 ms, doubling up to 50 ms)."""
    delay = 0.0005
    while True:
        try:
            attempt()
            return
        except OSError as exc:
            if not busy(exc):
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


__all__ = ["KIND", "LOCK_STRIPES", "STALE_SECONDS", "Release", "acquire", "stripe"]
