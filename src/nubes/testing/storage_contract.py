"""The behaviour every :class:`~nubes.storage.ObjectStore` backend must show, as a pytest suite.

A backend adopts the suite by subclassing :class:`ObjectStoreContract` in a test module (the class
name must start with ``Test`` so pytest collects it) and providing three fixtures::

    from nubes.testing.storage_contract import ObjectStoreContract

    class TestMyStore(ObjectStoreContract):
        @pytest.fixture
        def store(self):            # a fresh, empty store per test (e.g. a unique prefix)
            ...

        @pytest.fixture
        def reopen(self):           # reopen(store) -> a second, independent handle on the same place
            return lambda s: nubes.storage.open(s.uri)

        @pytest.fixture
        def outage(self):           # a context-manager factory: the server is down inside ``with outage():``
            return None             # ... or None for backends without a server (the outage test is skipped)

Backends may override a test to skip it (with a reason) when a service cannot offer a guarantee,
but should not weaken it silently. The suite keeps to keys that work on every backend, including
file systems: no key is both an object and a "folder" of other keys.

Key rules are one rule set (:func:`nubes.storage.keys.check_key`) tested on every backend: fixed
invalid keys (:data:`INVALID_KEYS`), valid edge keys (:data:`VALID_EDGE_KEYS`) and generated text
(hypothesis; ``key_examples`` per backend). A store that is a :class:`~nubes.storage.BaseStore`
(a registered backend, not a wrapper) must also reopen from its URI through the registry and its
own ``from_uri``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import nubes.storage
from nubes.errors import NotFound, PreconditionFailed, StorageError
from nubes.storage.base import BaseStore, ObjectInfo, ObjectStore
from nubes.testing.storage_keys_contract import INVALID_KEYS, VALID_EDGE_KEYS, KeyRulesContract, keys_of

MB = 1024 * 1024
BIG_SIZE = 20 * MB
ALL_BYTES = bytes(range(256))


def _big() -> bytes:
    """20 MB of incompressible bytes, made once per process."""
    global _BIG
    if _BIG is None:
        _BIG = os.urandom(BIG_SIZE)
    return _BIG


_BIG: bytes | None = None


_keys = keys_of

Reopen = Callable[[ObjectStore], ObjectStore]
Outage = Callable[[], contextlib.AbstractContextManager[Any]] | None


def _race(n: int, attempt: Callable[[int], object]) -> tuple[list[int], list[BaseException]]:
    """Run ``attempt(i)`` for i < n in threads released together; return winners and failures."""
    barrier = threading.Barrier(n)
    winners: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            attempt(i)
        except BaseException as exc:  # collected and judged by the test
            with lock:
                failures.append(exc)
        else:
            with lock:
                winners.append(i)

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(run, range(n)))
    return winners, failures


class ObjectStoreContract(KeyRulesContract):
    """Tests every ObjectStore backend passes. Subclass it with ``store``, ``reopen`` and ``outage`` fixtures."""

    @pytest.fixture
    def outage(self) -> Outage:
        """Default: no server to stop, so the outage test is skipped. Server backends override this."""
        return None

    # -- basics ----------------------------------------------------------------------------
    def test_is_an_object_store(self, store: ObjectStore) -> None:
        assert isinstance(store, ObjectStore)
        assert isinstance(store.uri, str) and "://" in store.uri

    def test_round_trip_binary(self, store: ObjectStore) -> None:
        data = ALL_BYTES * 3 + ALL_BYTES[::-1]
        info = store.put("bin/all-bytes.bin", data)
        assert isinstance(info, ObjectInfo)
        assert info.key == "bin/all-bytes.bin" and info.size == len(data)
        assert store.get("bin/all-bytes.bin") == data

    def test_round_trip_empty(self, store: ObjectStore) -> None:
        info = store.put("empty", b"")
        assert info.size == 0
        assert store.get("empty") == b""
        assert store.head("empty").size == 0
        assert store.get_range("empty", 0, None) == b""
        assert store.get_range("empty", 0, 10) == b""
        assert _keys(store) == ["empty"]

    def test_bytearray_and_memoryview(self, store: ObjectStore) -> None:
        store.put("ba", bytearray(b"bytearray"))
        store.put("mv", memoryview(b"xxmemoryview")[2:])
        assert store.get("ba") == b"bytearray"
        assert store.get("mv") == b"memoryview"

    def test_overwrite_replaces_whole_object(self, store: ObjectStore) -> None:
        store.put("k", b"a long first version")
        store.put("k", b"short")
        assert store.get("k") == b"short"
        assert store.head("k").size == 5

    def test_content_type_kept(self, store: ObjectStore) -> None:
        store.put("t/data.bin", b"{}", content_type="application/vnd.nubes+json")
        assert store.head("t/data.bin").content_type == "application/vnd.nubes+json"
        listed = list(store.list("t/"))
        assert [i.content_type for i in listed] in (["application/vnd.nubes+json"], [None])

    def test_put_from_bytesio(self, store: ObjectStore) -> None:
        data = ALL_BYTES * 100
        store.put("io/bytesio", io.BytesIO(data))
        assert store.get("io/bytesio") == data

    def test_put_from_bytesio_not_at_start(self, store: ObjectStore) -> None:
        buf = io.BytesIO(b"skip:payload")
        buf.seek(5)
        store.put("io/partial", buf)
        assert store.get("io/partial") == b"payload"

    def test_put_from_real_file(self, store: ObjectStore, tmp_path: Path) -> None:
        data = os.urandom(300_000)
        source = tmp_path / "source.bin"
        source.write_bytes(data)
        with source.open("rb") as f:
            info = store.put("io/real-file.bin", f)
        assert info.size == len(data)
        assert store.get("io/real-file.bin") == data

    def test_unicode_keys(self, store: ObjectStore) -> None:
        keys = ["données/été ☃.parquet", "日本語/キー.csv", "emoji/🦆 duck.txt", "space in/name with spaces"]
        for i, key in enumerate(keys):
            store.put(key, f"value {i}".encode())
        for i, key in enumerate(keys):
            assert store.get(key) == f"value {i}".encode()
            assert store.head(key).key == key
        assert _keys(store) == sorted(keys)

    def test_nested_keys(self, store: ObjectStore) -> None:
        keys = ["a/b/c/d/e/f.txt", "a/b/x.txt", "a/y.txt", "z.txt"]
        for key in keys:
            store.put(key, key.encode())
        for key in keys:
            assert store.get(key) == key.encode()
        assert _keys(store) == sorted(keys)

    def test_head_fields(self, store: ObjectStore) -> None:
        put = store.put("h/obj", b"12345")
        info = store.head("h/obj")
        assert info.key == "h/obj"
        assert info.size == 5
        assert isinstance(info.etag, str) and info.etag
        assert info.etag == put.etag
        assert isinstance(info.last_modified, datetime)
        assert info.last_modified.tzinfo is not None and info.last_modified.utcoffset() is not None
        assert abs(time.time() - info.last_modified.timestamp()) < 3600  # a sane clock, not epoch 0

    def test_etag_changes_with_content(self, store: ObjectStore) -> None:
        first = store.put("e", b"one").etag
        assert store.head("e").etag == first
        second = store.put("e", b"two").etag
        assert second != first
        assert store.head("e").etag == second

    def test_exists(self, store: ObjectStore) -> None:
        assert not store.exists("x/y")
        store.put("x/y", b"1")
        assert store.exists("x/y")
        assert not store.exists("x/y2")
        assert not store.exists("x")  # a "folder" is not an object

    def test_second_handle_sees_writes(self, store: ObjectStore, reopen: Reopen) -> None:
        other = reopen(store)
        assert other is not store
        store.put("shared", b"from the first handle")
        assert other.get("shared") == b"from the first handle"
        other.put("shared", b"from the second")
        assert store.get("shared") == b"from the second"

    def test_keys_are_relative_to_the_store(self, store: ObjectStore) -> None:
        info = store.put("rel/key.txt", b"x")
        assert info.key == "rel/key.txt"
        assert store.head("rel/key.txt").key == "rel/key.txt"
        assert _keys(store) == ["rel/key.txt"]
        assert store.uri.rstrip("/") not in store.head("rel/key.txt").key

    # -- missing and invalid keys ------------------------------------------------------------
    @pytest.mark.parametrize("op", ["get", "head", "get_range", "get_range_empty", "open"])
    def test_missing_key_is_not_found(self, store: ObjectStore, op: str) -> None:
        key = "missing/nothing-here.bin"
        calls: dict[str, Callable[[], Any]] = {
            "get": lambda: store.get(key),
            "head": lambda: store.head(key),
            "get_range": lambda: store.get_range(key, 0, 10),
            "get_range_empty": lambda: store.get_range(key, 5, 5),
            "open": lambda: store.open(key).read(),
        }
        with pytest.raises(NotFound) as caught:
            calls[op]()
        assert key in str(caught.value)
        assert isinstance(caught.value, FileNotFoundError)
        assert isinstance(caught.value, StorageError)

    # -- the backend interface -----------------------------------------------------------------
    def test_backend_reopens_from_its_uri(self, store: ObjectStore) -> None:
        """A :class:`BaseStore` backend is registered for its scheme and ``from_uri`` reaches the same place."""
        if not isinstance(store, BaseStore):
            pytest.skip("not a BaseStore backend (a wrapper): nothing registered to reopen")
        store.put("reopen/k", b"v")
        scheme, rest = store.uri.split("://", 1)
        for other in (nubes.storage.open(store.uri), type(store).from_uri(rest)):
            assert type(other) is type(store) and other is not store
            assert other.uri == store.uri
            assert other.get("reopen/k") == b"v"
        assert scheme in nubes.storage.registered()

    # -- listing -----------------------------------------------------------------------------
    def test_list_empty_store(self, store: ObjectStore) -> None:
        assert _keys(store) == []
        assert _keys(store, "any/prefix") == []

    def test_list_many_keys_across_pages(self, store: ObjectStore) -> None:
        keys = [f"many/{i % 7}/{i:05d}.bin" for i in range(1_537)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: store.put(k, k.encode()), keys))
        listed = list(store.list())
        assert [i.key for i in listed] == sorted(keys)
        assert all(i.size == len(i.key.encode()) for i in listed)
        assert _keys(store, "many/3/") == sorted(k for k in keys if k.startswith("many/3/"))

    def test_list_is_sorted_by_code_point(self, store: ObjectStore) -> None:
        keys = ["a-b/c", "a.b", "a/b", "a0", "Apple", "Zed", "zoo", "é", "ä/x", "日本", "~", "_x", "a b", "ab"]
        for key in keys:
            store.put(key, b".")
        listed = _keys(store)
        assert listed == sorted(keys)
        assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))

    def test_list_prefix_is_a_string_prefix(self, store: ObjectStore) -> None:
        keys = ["data/x.csv", "data/y.csv", "data-old/z.csv", "dat.txt", "other/data/q", "datum"]
        for key in keys:
            store.put(key, b".")
        assert _keys(store, "data") == ["data-old/z.csv", "data/x.csv", "data/y.csv"]
        assert _keys(store, "data/") == ["data/x.csv", "data/y.csv"]
        assert _keys(store, "dat") == ["dat.txt", "data-old/z.csv", "data/x.csv", "data/y.csv", "datum"]
        assert _keys(store, "data/x") == ["data/x.csv"]
        assert _keys(store, "data/x.csv") == ["data/x.csv"]
        assert _keys(store, "nothing") == []
        assert _keys(store, "") == sorted(keys)

    def test_list_reports_what_head_reports(self, store: ObjectStore) -> None:
        store.put("l/one", b"1")
        store.put("l/two", b"22")
        for info in store.list("l/"):
            head = store.head(info.key)
            assert (info.key, info.size, info.etag) == (head.key, head.size, head.etag)
            assert info.last_modified.tzinfo is not None

    # -- large objects and ranges ------------------------------------------------------------
    def test_large_object_round_trip(self, store: ObjectStore) -> None:
        data = _big()
        info = store.put("big/20mb.bin", io.BytesIO(data))
        assert info.size == BIG_SIZE
        assert store.head("big/20mb.bin").size == BIG_SIZE
        assert hashlib.sha256(store.get("big/20mb.bin")).digest() == hashlib.sha256(data).digest()
        start, end = 7 * MB + 123, 9 * MB + 45
        assert store.get_range("big/20mb.bin", start, end) == data[start:end]

    def test_open_reads_lazily(self, store: ObjectStore) -> None:
        data = _big()
        store.put("big/lazy.bin", io.BytesIO(data))
        before = store.stats.snapshot()["bytes_read"]
        with store.open("big/lazy.bin") as f:
            assert f.seekable() and f.readable()
            f.seek(5 * MB)
            assert f.read(100) == data[5 * MB : 5 * MB + 100]
            assert f.tell() == 5 * MB + 100
        fetched = store.stats.snapshot()["bytes_read"] - before
        assert 100 <= fetched < 2 * MB, f"open() fetched {fetched} bytes to read 100"

    def test_range_edges(self, store: ObjectStore) -> None:
        data = ALL_BYTES * 4
        n = len(data)
        store.put("r", data)
        assert store.get_range("r", 0, 1) == data[:1]
        assert store.get_range("r", n - 1, n) == data[-1:]
        assert store.get_range("r", n - 1, None) == data[-1:]
        assert store.get_range("r", n - 10, n + 100) == data[-10:]
        assert store.get_range("r", 0, None) == data
        assert store.get_range("r", 7, None) == data[7:]
        assert store.get_range("r", 100, 300) == data[100:300]
        assert store.get_range("r", n, None) == b""
        assert store.get_range("r", n, n + 5) == b""
        assert store.get_range("r", n + 10, None) == b""
        assert store.get_range("r", 5, 5) == b""
        assert store.get_range("r", 5, 2) == b""
        with pytest.raises(ValueError):
            store.get_range("r", -1, None)

    def test_open_is_a_seekable_file(self, store: ObjectStore) -> None:
        data = ALL_BYTES * 8
        store.put("o", data)
        with store.open("o") as f:
            assert f.seekable() and f.readable()
            assert f.read(10) == data[:10]
            assert f.tell() == 10
            f.seek(0)
            assert f.read(3) == data[:3]
            f.seek(-5, io.SEEK_END)
            assert f.read() == data[-5:]
            f.seek(100)
            f.seek(20, io.SEEK_CUR)
            assert f.read(4) == data[120:124]
            f.seek(len(data) + 10)
            assert f.read(10) == b""
            f.seek(0)
            assert f.read() == data

    def test_open_empty_object(self, store: ObjectStore) -> None:
        store.put("o/empty", b"")
        with store.open("o/empty") as f:
            assert f.read() == b""

    # -- conditional writes ------------------------------------------------------------------
    def test_if_none_match(self, store: ObjectStore) -> None:
        created = store.put("c/new", b"first", if_none_match=True)
        assert store.get("c/new") == b"first"
        with pytest.raises(PreconditionFailed) as caught:
            store.put("c/new", b"second", if_none_match=True)
        assert "c/new" in str(caught.value)
        assert store.get("c/new") == b"first"
        assert store.head("c/new").etag == created.etag

    def test_if_match(self, store: ObjectStore) -> None:
        first = store.put("c/m", b"v1")
        second = store.put("c/m", b"v2", if_match=first.etag)
        assert store.get("c/m") == b"v2"
        with pytest.raises(PreconditionFailed):
            store.put("c/m", b"v3", if_match=first.etag)  # stale
        assert store.get("c/m") == b"v2"
        store.put("c/m", b"v3", if_match=second.etag)
        assert store.get("c/m") == b"v3"

    def test_if_match_on_missing_key_fails(self, store: ObjectStore) -> None:
        etag = store.put("c/elsewhere", b"x").etag
        with pytest.raises(PreconditionFailed):
            store.put("c/absent", b"y", if_match=etag)
        assert not store.exists("c/absent")

    def test_two_writers_conflict(self, store: ObjectStore, reopen: Reopen) -> None:
        other = reopen(store)
        store.put("c/shared", b"base")
        mine, theirs = store.head("c/shared").etag, other.head("c/shared").etag
        assert mine == theirs
        store.put("c/shared", b"mine", if_match=mine)
        with pytest.raises(PreconditionFailed):
            other.put("c/shared", b"theirs", if_match=theirs)
        assert other.get("c/shared") == b"mine"

    def test_concurrent_if_match_writers(self, store: ObjectStore, reopen: Reopen) -> None:
        handles = [store] + [reopen(store) for _ in range(3)]
        n = 8
        etag = store.put("c/race", b"base").etag
        winners, failures = _race(
            n, lambda i: handles[i % len(handles)].put("c/race", f"writer {i}".encode(), if_match=etag)
        )
        assert len(winners) == 1, f"{len(winners)} writers won"
        assert all(isinstance(f, PreconditionFailed) for f in failures), failures
        assert store.get("c/race") == f"writer {winners[0]}".encode()

    def test_concurrent_if_none_match_creators(self, store: ObjectStore) -> None:
        n = 12
        winners, failures = _race(n, lambda i: store.put("c/once", f"creator {i}".encode(), if_none_match=True))
        assert len(winners) == 1, f"{len(winners)} creators won"
        assert all(isinstance(f, PreconditionFailed) for f in failures), failures
        assert store.get("c/once") == f"creator {winners[0]}".encode()

    # -- delete, url, stats ------------------------------------------------------------------
    def test_delete(self, store: ObjectStore) -> None:
        store.put("d/one", b"1")
        store.delete("d/one")
        assert not store.exists("d/one")
        with pytest.raises(NotFound):
            store.get("d/one")
        assert _keys(store) == []
        store.delete("d/one")  # missing: fine
        store.delete("never/existed")

    def test_delete_many(self, store: ObjectStore) -> None:
        keys = [f"dm/{i}" for i in range(5)]
        for key in keys:
            store.put(key, b"x")
        store.put("keep", b"k")
        store.delete_many([*keys[:4], "dm/missing"])
        assert _keys(store) == ["dm/4", "keep"]
        store.delete_many(iter(["dm/4"]))
        store.delete_many([])
        assert _keys(store) == ["keep"]

    def test_url(self, store: ObjectStore) -> None:
        url = store.url("dir/obj.bin")
        scheme = store.uri.split("://", 1)[0]
        assert url.startswith(scheme + "://")
        assert url.endswith("/dir/obj.bin")

    def test_stats_count_operations_and_bytes(self, store: ObjectStore) -> None:
        start = store.stats.snapshot()
        store.put("s", b"0123456789")
        store.get("s")
        store.get_range("s", 2, 4)
        store.head("s")
        list(store.list())
        store.delete("s")
        end = store.stats.snapshot()
        ops = end["ops"]
        for op in ("put", "get", "head", "list", "delete"):
            assert ops.get(op, 0) > start["ops"].get(op, 0), f"{op} not counted: {ops}"
        assert ops.get("get", 0) - start["ops"].get("get", 0) >= 2
        assert end["bytes_written"] - start["bytes_written"] == 10
        assert end["bytes_read"] - start["bytes_read"] == 12

    # -- outage ------------------------------------------------------------------------------
    def test_server_outage_fails_fast_and_recovers(self, store: ObjectStore, outage: Outage) -> None:
        if outage is None:
            pytest.skip("this backend has no server to stop")
        store.put("up/before", b"still here")
        with outage():
            t0 = time.monotonic()
            with pytest.raises(StorageError):
                store.get("up/before")
            assert time.monotonic() - t0 < 60, "a read against a stopped server took a minute or more"
            t0 = time.monotonic()
            with pytest.raises(StorageError):
                store.put("up/during", b"x")
            assert time.monotonic() - t0 < 60, "a write against a stopped server took a minute or more"
        assert store.get("up/before") == b"still here"
        store.put("up/after", b"fine")
        assert store.get("up/after") == b"fine"


__all__ = ["BIG_SIZE", "INVALID_KEYS", "VALID_EDGE_KEYS", "ObjectStoreContract"]
