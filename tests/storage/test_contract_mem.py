"""mem:// passes the shared ObjectStore contract."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

import nubes.storage
from nubes.storage import ObjectInfo, ObjectStore
from nubes.storage.memory import MemoryStore
from nubes.testing.storage_contract import ObjectStoreContract


class TestMemoryStore(ObjectStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[ObjectStore]:
        name = f"contract-{uuid.uuid4().hex}"
        store = nubes.storage.open(f"mem://{name}/some/prefix")
        assert isinstance(store, MemoryStore)
        yield store
        MemoryStore.drop(name)

    @pytest.fixture
    def reopen(self) -> Callable[[ObjectStore], ObjectStore]:
        return lambda store: nubes.storage.open(store.uri)


def test_prefixes_partition_one_bucket() -> None:
    name = f"prefixes-{uuid.uuid4().hex}"
    try:
        a = nubes.storage.open(f"mem://{name}/a")
        ab = nubes.storage.open(f"mem://{name}/ab")
        whole = nubes.storage.open(f"mem://{name}")
        a.put("k", b"1")
        ab.put("k", b"2")
        assert [i.key for i in a.list()] == ["k"]
        assert [i.key for i in ab.list()] == ["k"]
        assert [i.key for i in whole.list()] == ["a/k", "ab/k"]
        assert a.url("k") == f"mem://{name}/a/k"
    finally:
        MemoryStore.drop(name)


def test_unknown_option_is_a_config_error() -> None:
    from nubes.errors import ConfigError

    with pytest.raises(ConfigError):
        nubes.storage.open("mem://x", region="nowhere")


class _FlakyList(MemoryStore):
    """A store whose listing breaks once, mid-way, with a transient error."""

    retries = 3
    backoff = 0.0
    failures = 1

    def _list(self, path_prefix: str) -> Iterator[ObjectInfo]:
        for n, info in enumerate(super()._list(path_prefix)):
            if n == 5 and self.failures:
                self.failures -= 1
                raise ConnectionError("connection reset mid-listing")
            yield info


def test_listing_resumes_after_a_transient_error() -> None:
    name = f"flaky-{uuid.uuid4().hex}"
    try:
        store = _FlakyList(name, "p")
        keys = [f"k{i:02d}" for i in range(12)]
        for key in keys:
            store.put(key, b".")
        assert [i.key for i in store.list()] == keys  # complete, no duplicates, not cut short
    finally:
        MemoryStore.drop(name)
