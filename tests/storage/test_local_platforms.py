"""file:// on each platform's code paths (forced here, see conftest), and the edges they share."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import nubes.storage
from nubes.errors import InvalidKey, NotFound, PreconditionFailed, StorageError
from nubes.storage import local_lock
from nubes.storage.local import INTERNAL, LocalStore

from .conftest import force_profile


def test_each_profile_takes_its_own_code_paths(root: Path, profile: str) -> None:
    store = nubes.storage.open(f"file://{root}")
    assert isinstance(store, LocalStore)
    store.put("k", b"v", content_type="text/x-k", if_none_match=True)
    assert type(store._h.root()).__name__ == ("FdDir" if profile in ("linux", "macos") else "PathDir")
    assert store._lock_kind == {"windows": "msvcrt", "other": "lockfile"}.get(profile, "flock")
    sidecars = root / INTERNAL / "meta"
    assert sidecars.is_dir() == (profile != "linux" or not store._xattrs)
    assert nubes.storage.open(store.uri).head("k").content_type == "text/x-k"


def test_msvcrt_locks_the_first_byte_and_unlocks_before_closing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = force_profile(monkeypatch, "windows")
    assert fake is not None
    store = nubes.storage.open(f"file://{root}")
    store.put("a", b"1", if_none_match=True)
    store.delete("a")
    assert fake.calls == [(fake.LK_NBLCK, 1), (fake.LK_UNLCK, 1)] * 2
    hold = local_lock.acquire(store._h.folder("locks"), local_lock.stripe("a"), "msvcrt")
    done = threading.Event()
    worker = threading.Thread(target=lambda: (store.put("a", b"2", if_none_match=True), done.set()))
    worker.start()
    assert not done.wait(0.3), "a second handle got the lock while it was held"
    hold()
    worker.join(10)
    assert done.is_set() and store.get("a") == b"2"


def test_a_stale_lock_file_is_broken(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    force_profile(monkeypatch, "other")
    store = nubes.storage.open(f"file://{root}")
    store.put("k", b"1")
    held = root / INTERNAL / "locks" / (local_lock.stripe("k") + ".held")
    held.touch()  # left behind by a holder that died...
    old = time.time() - local_lock.STALE_SECONDS - 5
    os.utime(held, (old, old))  # ... long ago
    t0 = time.monotonic()
    store.put("k", b"2", if_match=store.head("k").etag)
    assert time.monotonic() - t0 < 5 and store.get("k") == b"2" and not held.exists()
    held.touch()  # a fresh one is respected
    worker = threading.Thread(target=lambda: store.put("k", b"3", if_none_match=False))
    worker.start()
    worker.join(0.3)
    assert worker.is_alive() and store.get("k") == b"2"
    held.unlink()
    worker.join(10)
    assert store.get("k") == b"3"


@pytest.mark.parametrize("key", ["CON", "a/nul.txt", "com1.log", "x:stream", "q?", "star*", "trail.", "space ", 'quo"te', "p|ipe"])
def test_names_windows_cannot_hold_are_refused_there(root: Path, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    plain = nubes.storage.open(f"file://{root}/linux")
    plain.put(key, b"fine on Linux")
    force_profile(monkeypatch, "windows")
    store = nubes.storage.open(f"file://{root}/windows")
    for call in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.url(key)):
        with pytest.raises(InvalidKey, match="Windows"):
            call()
    assert list(store.list()) == []


def test_root_deleted_and_made_again_behind_a_handle(root: Path, store: LocalStore) -> None:
    store.put("a/k", b"1")
    shutil.rmtree(root)
    assert not store.exists("a/k") and list(store.list()) == []
    other = nubes.storage.open(f"file://{root}")
    other.put("a/k", b"2")
    assert store.get("a/k") == b"2" and [i.key for i in store.list()] == ["a/k"]
    shutil.rmtree(root)
    store.put("b", b"3", if_none_match=True)  # the internal folders are made again too
    assert other.get("b") == b"3"


def test_a_fifo_is_not_an_object_and_does_not_block(root: Path, store: LocalStore) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    store.put("k", b"1")
    os.mkfifo(root / "pipe")
    t0 = time.monotonic()
    with pytest.raises(NotFound, match="not a regular file"):
        store.get("pipe")
    assert [i.key for i in store.list()] == ["k"]
    assert time.monotonic() - t0 < 5


def test_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    store = nubes.storage.open(f"file://{tmp_path / 'file'}")
    with pytest.raises(StorageError, match="is a file"):
        store.put("k", b"v")


def test_delete_removes_a_link_not_its_target(root: Path, store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep")
    store.put("real", b"r")
    (root / "to-outside").symlink_to(outside)
    (root / "to-real").symlink_to("real")
    store.delete("to-outside")
    store.delete("to-real")
    assert outside.read_bytes() == b"keep" and store.get("real") == b"r"
    assert not os.path.lexists(root / "to-outside") and not os.path.lexists(root / "to-real")


def test_conditional_write_through_a_link_outside_is_refused(root: Path, store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep")
    store.put("x", b"x")
    (root / "link").symlink_to(outside)
    for kwargs in ({"if_none_match": True}, {"if_match": "whatever"}, {}):
        with pytest.raises(InvalidKey, match="outside"):
            store.put("link", b"w", **kwargs)  # type: ignore[arg-type]
    assert outside.read_bytes() == b"keep"
    with pytest.raises(PreconditionFailed):
        store.put("x", b"y", if_match="0" * 32)
