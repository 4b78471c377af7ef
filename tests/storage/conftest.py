"""Platform profiles for file://: Linux runs here, the others are forced through the capability probes.

A profile sets what :class:`~nubes.storage.local.LocalStore` reads when a handle is opened:
directory descriptors or paths (:data:`nubes.storage.local_dirs.DIR_FDS`), Windows name rules
(:data:`~nubes.storage.local_dirs.WINDOWS`), extended attributes or sidecars
(:data:`nubes.storage.local_meta.HAS_XATTR`) and the lock kind (:data:`nubes.storage.local_lock.KIND`).
The ``msvcrt`` kind runs against :class:`FakeMsvcrt`, which keeps ``msvcrt.locking``'s contract
(lock/unlock bytes from the current position, ``LK_NBLCK`` fails at once with EACCES when another
handle holds them) on top of ``flock``: it checks how nubes calls it, not Windows itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

import nubes.storage
from nubes.storage import local_dirs, local_lock, local_meta
from nubes.storage.local import LocalStore

PROFILES: dict[str, dict[str, Any]] = {
    "linux": {},
    "macos": {"HAS_XATTR": False},  # descriptors and flock, no os.setxattr: sidecars
    "windows": {"DIR_FDS": False, "WINDOWS": True, "HAS_XATTR": False, "KIND": "msvcrt"},
    "other": {"DIR_FDS": False, "HAS_XATTR": False, "KIND": "lockfile"},  # no fcntl, no msvcrt
}


class FakeMsvcrt:
    """``msvcrt.locking`` semantics over ``flock`` (one lock per open file description, like a Windows handle)."""

    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1 and os.lseek(fd, 0, os.SEEK_CUR) == 0, "nubes locks the first byte"
        self.calls.append((mode, nbytes))
        if mode == self.LK_UNLCK:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        assert mode == self.LK_NBLCK, "nubes polls with LK_NBLCK (LK_LOCK gives up after 10 s)"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(errno.EACCES, "Permission denied") from None


def force_profile(monkeypatch: pytest.MonkeyPatch, name: str) -> FakeMsvcrt | None:
    """Make LocalStore handles opened from now on (in this test) behave as on platform ``name``."""
    fake = None
    for attr, value in PROFILES[name].items():
        module = {"DIR_FDS": local_dirs, "WINDOWS": local_dirs, "HAS_XATTR": local_meta, "KIND": local_lock}[attr]
        monkeypatch.setattr(module, attr, value)
    if PROFILES[name].get("KIND") == "msvcrt":
        fake = FakeMsvcrt()
        monkeypatch.setattr(local_lock, "msvcrt", fake)
    return fake


@pytest.fixture(params=sorted(PROFILES))
def profile(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each platform profile in turn (see the module docstring)."""
    force_profile(monkeypatch, str(request.param))
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Where a file:// test store lives (made by its first write)."""
    return tmp_path / "root"


def open_local(root: Path) -> LocalStore:
    store = nubes.storage.open(f"file://{root}")
    assert isinstance(store, LocalStore)
    return store


@pytest.fixture
def store(root: Path) -> LocalStore:
    """A file:// store at ``root``, as on this platform."""
    return open_local(root)


@pytest.fixture
def any_store(root: Path, profile: str) -> LocalStore:
    """A file:// store at ``root`` opened under each platform profile in turn."""
    return open_local(root)
