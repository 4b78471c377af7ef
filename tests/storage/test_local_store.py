"""file:// specifics beyond the shared contract: root confinement, atomicity, cross-process locking, URIs."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import nubes.storage
from nubes.errors import AccessDenied, ConfigError, InvalidKey, NotFound
from nubes.storage.local import INTERNAL, XATTR, LocalStore


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# -- confinement -------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "/etc/passwd", "a\x00b", "..", "a/./b"])
def test_path_escapes_refused(any_store: LocalStore, root: Path, key: str) -> None:
    with pytest.raises(InvalidKey):
        any_store.put(key, b"x")
    with pytest.raises(InvalidKey):
        any_store.get(key)
    assert not root.exists()
    assert not (root.parent / "escape").exists()


def test_symlink_to_a_file_outside_is_refused(any_store: LocalStore, root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"do not read me")
    any_store.put("inside.txt", b"fine")
    (root / "link.txt").symlink_to(secret)
    for read in (any_store.get, any_store.head, any_store.open, any_store.exists, lambda k: any_store.get_range(k, 0, 2)):
        with pytest.raises(InvalidKey) as caught:
            read("link.txt")
        assert "outside" in str(caught.value)
    with pytest.raises(InvalidKey):
        any_store.put("link.txt", b"overwrite")
    assert secret.read_bytes() == b"do not read me"
    assert [i.key for i in any_store.list()] == ["inside.txt"]


def test_symlinked_folder_outside_is_refused(any_store: LocalStore, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    any_store.put("x", b"x")
    (root / "dir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKey):
        any_store.get("dir/secret")
    with pytest.raises(InvalidKey):
        any_store.put("dir/new", b"n")
    assert not (outside / "new").exists()
    assert [i.key for i in any_store.list()] == ["x"]
    assert [i.key for i in any_store.list("dir/")] == []


def test_symlink_inside_the_root_is_followed(any_store: LocalStore, root: Path) -> None:
    any_store.put("real.txt", b"content")
    (root / "alias.txt").symlink_to(root / "real.txt")
    assert any_store.get("alias.txt") == b"content"
    assert [i.key for i in any_store.list()] == ["alias.txt", "real.txt"]


def test_internal_folder_is_reserved_and_hidden(any_store: LocalStore, root: Path) -> None:
    any_store.put("a.txt", b"a", content_type="text/x-custom")
    assert (root / INTERNAL).is_dir()
    with pytest.raises(InvalidKey):
        any_store.put(f"{INTERNAL}/meta/x", b"x")
    with pytest.raises(InvalidKey):
        any_store.get(f"deep/{INTERNAL}/x")
    assert [i.key for i in any_store.list()] == ["a.txt"]
    assert [i.key for i in any_store.list(".nubes")] == []


def test_names_no_key_can_address_are_not_listed(any_store: LocalStore, root: Path) -> None:
    any_store.put("ok", b"1")
    (root / "bad\nname").write_bytes(b"2")
    (root / "back\\slash").write_bytes(b"3")
    assert [i.key for i in any_store.list()] == ["ok"]


# -- layout and errors -------------------------------------------------------------------------
def test_root_created_on_first_write_only(root: Path) -> None:
    store = nubes.storage.open(f"file://{root}")
    assert not store.exists("k")
    assert list(store.list()) == []
    store.delete("k")
    assert not root.exists()
    store.put("a/b/c.txt", b"abc")
    assert (root / "a" / "b" / "c.txt").read_bytes() == b"abc"


def test_delete_prunes_empty_folders_but_not_the_root(any_store: LocalStore, root: Path) -> None:
    any_store.put("a/b/c/d.txt", b"d")
    any_store.put("a/keep.txt", b"k")
    any_store.delete("a/b/c/d.txt")
    assert not (root / "a" / "b").exists()
    assert (root / "a" / "keep.txt").exists()
    any_store.delete("a/keep.txt")
    assert root.is_dir() and not (root / "a").exists()


def test_key_that_is_a_folder_of_other_keys(any_store: LocalStore) -> None:
    any_store.put("a/b", b"ab")
    with pytest.raises(InvalidKey) as caught:
        any_store.put("a", b"a")
    assert "folder" in str(caught.value)
    with pytest.raises(InvalidKey) as caught:
        any_store.put("a/b/c", b"abc")
    assert "'a/b'" in str(caught.value)
    with pytest.raises(NotFound):
        any_store.get("a")
    with pytest.raises(NotFound):
        any_store.get("a/b/c")
    assert not any_store.exists("a")
    any_store.delete("a")  # not an object: nothing to delete
    assert any_store.get("a/b") == b"ab"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_error_is_access_denied(store: LocalStore, root: Path) -> None:
    store.put("locked", b"x")
    (root / "locked").chmod(0)
    try:
        with pytest.raises(AccessDenied):
            store.get("locked")
    finally:
        (root / "locked").chmod(0o644)


def test_content_type_and_etag_persist_across_handles(store: LocalStore, root: Path) -> None:
    info = store.put("t/report", b"hello", content_type="text/x-report")
    other = nubes.storage.open(f"file://{root}")
    head = other.head("t/report")
    assert head.content_type == "text/x-report"
    assert head.etag == info.etag == store.head("t/report").etag
    assert [(i.key, i.etag) for i in other.list("t/")] == [("t/report", info.etag)]


def test_every_write_gets_a_new_etag_without_hashing(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_md5(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file store hashes no content")

    monkeypatch.setattr(hashlib, "md5", no_md5)
    etags = {store.put("same", b"same bytes").etag for _ in range(20)}
    assert len(etags) == 20  # a token per write: equal content may get a new etag
    assert all(len(e) == 32 and int(e, 16) >= 0 for e in etags)
    stream = store.put("same", io.BytesIO(b"same bytes"))
    assert stream.etag not in etags and store.head("same").etag == stream.etag


@pytest.mark.skipif(not hasattr(os, "getxattr"), reason="no extended attributes on this platform")
def test_metadata_lives_in_an_extended_attribute(store: LocalStore, root: Path) -> None:
    info = store.put("x/data.bin", b"payload", content_type="application/x-thing")
    if not store._xattrs:
        pytest.skip("this file system has no user extended attributes")
    value = os.getxattr(root / "x" / "data.bin", XATTR)
    assert bytes.fromhex(info.etag) in value and value.endswith(b"application/x-thing")
    assert len(value) <= 64  # small enough for ext4 to keep inside the inode
    assert not (root / INTERNAL / "meta").exists()  # no sidecar
    os.setxattr(root / "x" / "data.bin", XATTR, b"garbage")  # unreadable: treated as a foreign file
    foreign = store.head("x/data.bin").etag
    assert foreign != info.etag and store.head("x/data.bin").etag == foreign
    info = store.put("x/data.bin", b"payload", content_type="application/x-thing")
    # a hard link or rename by hand keeps the attribute: same inode, same version
    os.rename(root / "x" / "data.bin", root / "x" / "moved.bin")
    assert store.head("x/moved.bin").etag == info.etag


def test_sidecars_where_extended_attributes_are_unsupported(
    store: LocalStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def unsupported(*args: object) -> None:
        calls.append("setxattr")
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported, raising=False)
    first = store.put("a", b"one", content_type="text/x-a")
    second = store.put("b", b"two", content_type="text/x-b", if_none_match=True)
    assert calls == ["setxattr"]  # found out once per store handle
    assert (root / INTERNAL / "meta").is_dir()
    other = nubes.storage.open(f"file://{root}")
    assert (other.head("a").etag, other.head("a").content_type) == (first.etag, "text/x-a")
    assert (other.head("b").etag, other.head("b").content_type) == (second.etag, "text/x-b")
    third = store.put("a", b"three", if_match=first.etag)
    assert other.head("a").etag == third.etag != first.etag
    (root / "a").write_bytes(b"by hand")  # the sidecar no longer matches the file
    assert other.head("a").etag not in (first.etag, third.etag)
    store.delete("a")
    assert not store.exists("a") and other.head("b").etag == second.etag


def test_a_content_type_too_big_for_an_attribute_goes_to_a_sidecar(store: LocalStore, root: Path) -> None:
    huge = "application/x-" + "z" * 70_000
    info = store.put("big-type", b"x", content_type=huge)
    head = nubes.storage.open(f"file://{root}").head("big-type")
    assert (head.etag, head.content_type) == (info.etag, huge)
    assert store.put("small-type", b"y", content_type="text/plain").content_type == "text/plain"
    assert store.head("small-type").content_type == "text/plain"


def test_file_changed_behind_nubes_back_gets_a_new_etag(store: LocalStore, root: Path) -> None:
    first = store.put("edit.txt", b"version one", content_type="text/plain")
    (root / "edit.txt").write_bytes(b"edited by hand!")  # in place: same inode, new size and mtime
    head = store.head("edit.txt")
    assert head.etag != first.etag
    assert head.content_type == "text/plain"  # guessed from the name: nubes' record no longer counts
    assert store.head("edit.txt").etag == head.etag  # stable while the file is untouched
    store.put("edit.txt", b"v3", if_match=head.etag)
    assert store.get("edit.txt") == b"v3"


def test_files_written_by_others_are_objects(store: LocalStore, root: Path) -> None:
    root.mkdir()
    (root / "dropped.parquet").write_bytes(b"PAR1")
    assert [i.key for i in store.list()] == ["dropped.parquet"]
    etag = store.head("dropped.parquet").etag
    assert etag == nubes.storage.open(f"file://{root}").head("dropped.parquet").etag  # stable, any handle
    assert [i.etag for i in store.list()] == [etag]
    store.get("dropped.parquet")
    assert store.head("dropped.parquet").etag == etag
    (root / "dropped.parquet").write_bytes(b"PAR1 and more")  # in place: a new size and mtime
    edited = store.head("dropped.parquet").etag
    assert edited != etag
    replacement = root / "new.parquet"
    replacement.write_bytes(b"PAR2 and more")
    os.utime(replacement, ns=(0, os.stat(root / "dropped.parquet").st_mtime_ns))
    os.replace(replacement, root / "dropped.parquet")  # same size and mtime, but another file (inode)
    newer = store.head("dropped.parquet").etag
    assert newer not in (etag, edited)
    store.put("dropped.parquet", b"mine", if_match=newer)
    assert store.get("dropped.parquet") == b"mine"


class _ReadOnly(io.RawIOBase):
    """A raw stream that implements read() only (its readinto raises NotImplementedError)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)


@pytest.mark.parametrize("wrap", [io.BytesIO, _ReadOnly, lambda d: io.BufferedReader(io.BytesIO(d), 4096)])
def test_streams_of_every_kind_are_written_whole(store: LocalStore, wrap: object) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    info = store.put("s", wrap(data))  # type: ignore[operator]
    assert info.size == len(data) and store.get("s") == data
    with pytest.raises(TypeError):
        store.put("t", io.StringIO("text"))  # type: ignore[arg-type]
    assert not store.exists("t")


def test_get_resolves_the_path_without_realpath(store: LocalStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put("a/b/c.txt", b"abc")
    store.put("a/b/range.bin", bytes(range(100)))
    calls: list[str] = []
    real = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    assert store.get("a/b/c.txt") == b"abc"
    assert store.get_range("a/b/range.bin", 10, 20) == bytes(range(10, 20))
    assert store.get_range("a/b/range.bin", 95, 200) == bytes(range(95, 100))
    assert store.get_range("a/b/range.bin", 100, None) == b""
    assert store.head("a/b/c.txt").size == 3
    assert calls == []  # no symbolic link on the way: one lstat per folder, then open(O_NOFOLLOW)


# -- atomicity ---------------------------------------------------------------------------------
def test_readers_never_see_a_partial_object(store: LocalStore) -> None:
    size = 4 * 1024 * 1024
    versions = [bytes([v]) * size for v in range(3)]
    store.put("big", versions[0])
    stop = threading.Event()
    seen: list[bytes] = []
    bad: list[str] = []

    def read() -> None:
        while not stop.is_set():
            data = store.get("big")
            if data not in versions:
                bad.append(f"{len(data)} bytes starting {data[:1]!r}")
            seen.append(data[:1])

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for i in range(30):
            store.put("big", versions[i % 3])
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not bad, bad[:3]
    assert seen


class _Exploding:
    """A file-like that yields some data, then fails."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks

    def read(self, n: int = -1) -> bytes:
        if self.chunks == 0:
            raise RuntimeError("the source broke mid-read")
        self.chunks -= 1
        return b"x" * 65536


def test_failed_write_leaves_nothing_behind(any_store: LocalStore, root: Path) -> None:
    any_store.put("keep", b"old content")
    with pytest.raises(RuntimeError, match="mid-read"):
        any_store.put("new", _Exploding(5))
    with pytest.raises(RuntimeError, match="mid-read"):
        any_store.put("keep", _Exploding(3))
    assert any_store.get("keep") == b"old content"
    assert not any_store.exists("new")
    assert [i.key for i in any_store.list()] == ["keep"]
    assert [f for f in _files(root) if not f.startswith(INTERNAL)] == ["keep"]
    assert list((root / INTERNAL / "tmp").iterdir()) == []


# -- across processes --------------------------------------------------------------------------
_CHILD = textwrap.dedent(
    """
    import os, sys, time
    import nubes.storage
    from nubes.errors import PreconditionFailed
    from nubes.storage import local_lock

    uri, key, mode, go, me, kind, here = sys.argv[1:8]
    local_lock.KIND = kind
    if kind == "msvcrt":
        sys.path.insert(0, here)
        from conftest import FakeMsvcrt
        local_lock.msvcrt = FakeMsvcrt()
    store = nubes.storage.open(uri)
    etag = store.head(key).etag if mode == "if_match" else None
    open(go + "." + me, "w").close()  # ready
    while not os.path.exists(go):
        time.sleep(0.001)
    try:
        if mode == "if_match":
            store.put(key, f"process {me}".encode(), if_match=etag)
        else:
            store.put(key, f"process {me}".encode(), if_none_match=True)
    except PreconditionFailed:
        print("lost")
    else:
        print("won")
    """
)


@pytest.mark.parametrize("kind", ["flock", "msvcrt", "lockfile"])
@pytest.mark.parametrize("mode", ["if_none_match", "if_match"])
def test_conditional_writes_across_processes(store: LocalStore, root: Path, tmp_path: Path, mode: str, kind: str) -> None:
    n = 6
    if mode == "if_match":
        store.put("contested", b"base")
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, store.uri, "contested", mode, str(go), str(i), kind, str(Path(__file__).parent)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{i}").exists() for i in range(n)):
        assert time.monotonic() < deadline, "children did not start"
        assert all(c.poll() is None for c in children), [c.communicate() for c in children]
        time.sleep(0.01)
    go.touch()
    results = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        results.append(out.strip())
    assert sorted(results) == ["lost"] * (n - 1) + ["won"]
    winner = results.index("won")
    assert store.get("contested") == f"process {winner}".encode()


# -- URIs --------------------------------------------------------------------------------------
def test_relative_uri_resolves_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = nubes.storage.open("file://relative/data")
    store.put("k.txt", b"k")
    assert (tmp_path / "relative" / "data" / "k.txt").read_bytes() == b"k"
    assert store.uri == f"file://{tmp_path}/relative/data"
    assert store.url("k.txt") == f"file://{tmp_path}/relative/data/k.txt"
    dot = nubes.storage.open("file://.nubes")
    dot.put("x", b"x")
    assert (tmp_path / ".nubes" / "x").exists()
    monkeypatch.chdir(tmp_path / "relative")
    assert store.get("k.txt") == b"k"  # resolved once, when opened


def test_absolute_uri(tmp_path: Path) -> None:
    store = nubes.storage.open(f"file://{tmp_path}/abs")
    assert store.uri == f"file://{tmp_path}/abs"
    assert store.url("a/b.txt") == f"file://{tmp_path}/abs/a/b.txt"
    assert nubes.storage.open(store.url("a/b.txt").rsplit("/", 1)[0]).uri == f"file://{tmp_path}/abs/a"


def test_file_uri_options() -> None:
    with pytest.raises(ConfigError):
        nubes.storage.open("file://")
    with pytest.raises(ConfigError, match="fsync"):
        nubes.storage.open("file://x", compression="zstd")
    assert nubes.storage.open("file://x", fsync=False).fsync is False  # type: ignore[attr-defined]


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        nubes.storage.open("ftp://example/data")
    message = str(caught.value)
    assert "ftp://" in message
    for scheme in ("file://", "mem://", "s3://"):
        assert scheme in message
    with pytest.raises(ConfigError, match="file://"):
        nubes.storage.open("just/a/path")
