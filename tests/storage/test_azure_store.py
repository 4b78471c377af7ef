"""Azure-specific behaviour of AzureBlobStore against Azurite: streaming block uploads, Blob Batch
deletes, configuration precedence and errors. The shared contract is in test_contract_azure.py."""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import nubes.storage
from nubes.errors import BackendMissing, ConfigError, NotFound, PreconditionFailed, StorageError, StorageUnavailable
from nubes.testing.servers import free_port
from nubes.testing.servers.azurite import Azurite, find_azurite

CONTAINER = "nubes-azure-specific"
BLOCK = 256 * 1024


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    if find_azurite() is None:
        pytest.skip("Azurite is not installed: run `npm ci` in the repo root (node_modules/.bin/azurite-blob)")
    from azure.storage.blob import BlobServiceClient

    with Azurite() as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AZURE_STORAGE_CONNECTION_STRING", server.connection_string)
        BlobServiceClient.from_connection_string(server.connection_string).create_container(CONTAINER)
        yield server


@pytest.fixture
def store(azurite: Azurite) -> Any:
    """Small blocks so that streaming is visible with little data."""
    return nubes.storage.open(
        f"az://{CONTAINER}/s-{uuid.uuid4().hex[:10]}", max_block_size=BLOCK, max_single_put_size=BLOCK
    )


class RecordingStream(io.RawIOBase):
    """A one-way stream of ``size`` pseudo-random bytes that records the size of every read."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self.data = _payload(size, seed)
        self.pos = 0
        self.reads: list[int] = []

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        self.reads.append(len(view))
        chunk = self.data[self.pos : self.pos + len(view)]
        view[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


class RecordingFile(io.BytesIO):
    """A seekable in-memory file that records the size of every read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(-1 if size is None else size)
        return super().read(size)


def _payload(size: int, seed: int) -> bytes:
    block = bytes((i * 31 + seed) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def _blocks(store: Any, key: str) -> int:
    committed, _ = store._container.get_blob_client(store._path(key)).get_block_list("committed")
    return len(committed)


def test_one_way_stream_goes_as_blocks_read_in_chunks(store: Any) -> None:
    size = 5 * BLOCK + 123
    stream = RecordingStream(size)
    info = store.put("big/one-way.bin", stream, content_type="application/x-test")
    assert info.size == size
    assert max(stream.reads) <= BLOCK + 1  # never the whole object at once
    assert len(stream.reads) >= 5
    assert _blocks(store, "big/one-way.bin") == 6
    assert store.get("big/one-way.bin") == stream.data
    assert store.head("big/one-way.bin").content_type == "application/x-test"


def test_seekable_file_goes_as_blocks_read_in_chunks(store: Any) -> None:
    data = _payload(4 * BLOCK + 5, 3)
    f = RecordingFile(data)
    info = store.put("big/seekable.bin", f)
    assert info.size == len(data)
    assert max(n for n in f.reads if n >= 0) <= BLOCK and -1 not in f.reads
    assert _blocks(store, "big/seekable.bin") == 5
    assert store.get("big/seekable.bin") == data


def test_file_positioned_midway_uploads_the_rest(store: Any) -> None:
    data = _payload(3 * BLOCK, 5)
    for offset in (10, BLOCK + 1):
        f = io.BytesIO(data)
        f.seek(offset)
        assert store.put(f"mid/{offset}", f).size == len(data) - offset
        assert store.get(f"mid/{offset}") == data[offset:]


def test_small_stream_is_a_single_put(store: Any) -> None:
    stream = RecordingStream(1000)
    assert store.put("small", stream).size == 1000
    assert _blocks(store, "small") == 0  # Put Blob, not a block list
    assert store.get("small") == stream.data


def test_conditional_block_upload_loses_without_trace(store: Any) -> None:
    first = store.put("cond", b"first")
    with pytest.raises(PreconditionFailed):
        store.put("cond", RecordingStream(3 * BLOCK), if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put("cond", RecordingStream(3 * BLOCK), if_match='"0x1234"')
    assert store.get("cond") == b"first"
    second = store.put("cond", RecordingStream(3 * BLOCK, seed=9), if_match=first.etag)
    assert second.etag != first.etag and store.head("cond").size == 3 * BLOCK
    with pytest.raises(PreconditionFailed):
        store.put("never-written", b"x", if_match=first.etag)
    assert not store.exists("never-written")


def test_get_range_edges_on_empty_and_short_blobs(store: Any) -> None:
    store.put("empty", b"")
    store.put("five", b"01234")
    assert store.get("empty") == b""
    assert store.get_range("empty", 0, 10) == b""
    assert store.get_range("empty", 3, None) == b""
    assert store.get_range("five", 5, None) == b""
    assert store.get_range("five", 9, 20) == b""
    assert store.get_range("five", 3, 100) == b"34"
    with pytest.raises(NotFound):
        store.get_range("missing", 5, None)


def test_delete_many_uses_blob_batch(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"batch/{i:04d}-é€" for i in range(300)]
    for key in keys:
        store.put(key, b"x")
    calls: list[int] = []
    original = store._container.delete_blobs

    def spy(*blobs: Any, **kwargs: Any) -> Any:
        calls.append(len(blobs))
        return original(*blobs, **kwargs)

    monkeypatch.setattr(store._container, "delete_blobs", spy)
    store.delete_many([*keys, "batch/missing", keys[0]])
    assert calls == [256, 45]
    assert list(store.list("batch/")) == []
    assert store._batch_supported


def test_delete_many_falls_back_without_batch(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.exceptions import HttpResponseError

    for i in range(3):
        store.put(f"fb/{i}", b"x")

    def unsupported(*blobs: Any, **kwargs: Any) -> Any:
        err = HttpResponseError(message="batch not supported")
        err.status_code = 400
        raise err

    monkeypatch.setattr(store._container, "delete_blobs", unsupported)
    store.delete_many(["fb/0", "fb/1", "fb/2", "fb/missing"])
    assert [i.key for i in store.list("fb/")] == []
    assert not store._batch_supported


def test_missing_container_is_not_found_naming_it(azurite: Azurite) -> None:
    missing = nubes.storage.open("az://no-such-container/p")
    for op in (lambda: missing.get("k"), lambda: missing.head("k"), lambda: list(missing.list()),
               lambda: missing.put("k", b"x"), lambda: missing.delete("k"), lambda: missing.delete_many(["a", "b"])):
        with pytest.raises(NotFound, match="no-such-container"):
            op()


def test_url_and_uri(azurite: Azurite) -> None:
    s = nubes.storage.open(f"az://{CONTAINER}/a/b")
    assert s.uri == f"az://{CONTAINER}/a/b"
    assert s.url("c/d.txt") == f"az://{CONTAINER}/a/b/c/d.txt"


def test_options_override_the_environment(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    good = azurite.connection_string
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", good.replace(str(azurite.port), str(free_port())))
    s = nubes.storage.open(f"az://{CONTAINER}/opt", connection_string=good)
    s.put("k", b"v")
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(good)
    s2 = nubes.storage.open(f"az://{CONTAINER}/opt", service_client=client)
    assert s2.get("k") == b"v"


def test_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCOUNT_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        nubes.storage.open("az://container/p")
    with pytest.raises(ConfigError, match="container name"):
        nubes.storage.open("az://ab/p", connection_string="UseDevelopmentStorage=true")
    with pytest.raises(ConfigError, match="container name"):
        nubes.storage.open("az://Upper-Case/p", connection_string="UseDevelopmentStorage=true")
    with pytest.raises(ConfigError, match="unknown option"):
        nubes.storage.open("az://container/p", connection_string="UseDevelopmentStorage=true", bucket="x")


def test_account_without_azure_identity_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "someaccount")
    monkeypatch.setitem(__import__("sys").modules, "azure.identity", None)
    with pytest.raises(BackendMissing, match="pip install azure-identity"):
        nubes.storage.open("az://container/p")
    # an explicit credential needs no azure-identity
    s = nubes.storage.open("az://container/p", credential="not-a-real-key-but-accepted-by-the-sdk")
    assert s.uri == "az://container/p"


def test_dead_endpoint_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    conn = Azurite(port=port).connection_string  # never started: connections are refused
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    s = nubes.storage.open("az://container/p")
    began = time.monotonic()
    with pytest.raises(StorageUnavailable):
        s.get("k")
    assert time.monotonic() - began < 10


def test_azurite_restart_keeps_data_and_port(tmp_path: Any) -> None:
    if find_azurite() is None:
        pytest.skip("Azurite is not installed: run `npm ci` in the repo root")
    from azure.storage.blob import BlobServiceClient

    with Azurite(location=tmp_path / "az") as server:
        pid, port = server.pid, server.port
        BlobServiceClient.from_connection_string(server.connection_string).create_container("restart")
        s = nubes.storage.open("az://restart/x", connection_string=server.connection_string)
        s.put("k", b"kept")
        with server.outage():
            assert not server.running
            with pytest.raises(StorageUnavailable):
                s.get("k")
        assert server.port == port and server.pid != pid
        assert s.get("k") == b"kept"
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert (tmp_path / "az").exists()  # a caller-given location is not deleted


def test_list_pages_and_sorts(azurite: Azurite) -> None:
    s = nubes.storage.open(f"az://{CONTAINER}/pages-{uuid.uuid4().hex[:8]}", results_per_page=7)
    keys = [f"k/{i:03d}" for i in range(30)] + ["k/é", "k/日本", "k/🦆", "k/Z"]
    for key in keys:
        s.put(key, b".")
    assert [i.key for i in s.list()] == sorted(keys)
    assert [i.key for i in s.list("k/0")] == sorted(k for k in keys if k.startswith("k/0"))


def test_batch_sub_request_failure_is_translated(store: Any) -> None:
    """A leased blob refuses an unleased delete (412): the batch reports it rather than ignoring it."""
    store.put("leased/a", b"1")
    store.put("leased/b", b"2")
    lease = store._container.get_blob_client(store._path("leased/a")).acquire_lease(lease_duration=-1)
    try:
        with pytest.raises(StorageError, match="leased/a"):
            store.delete_many(["leased/a", "leased/b"])
        assert store.exists("leased/a") and not store.exists("leased/b")
    finally:
        lease.release()
    store.delete_many(["leased/a"])
    assert not store.exists("leased/a")


def test_container_names(monkeypatch: pytest.MonkeyPatch) -> None:
    cs = "UseDevelopmentStorage=true"
    for ok in ("abc", "a-b-c", "x" * 63, "$web", "$root", "0abc"):
        assert nubes.storage.open(f"az://{ok}/p", connection_string=cs).uri == f"az://{ok}/p"
    for bad in ("ab", "x" * 64, "a--b", "-ab", "ab-", "a_b", "$logs"):
        with pytest.raises(ConfigError):
            nubes.storage.open(f"az://{bad}/p", connection_string=cs)


def test_wrong_key_is_access_denied(azurite: Azurite) -> None:
    from nubes.errors import AccessDenied

    wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=AAAA")
    s = nubes.storage.open(f"az://{CONTAINER}/denied", connection_string=wrong)
    with pytest.raises(AccessDenied):
        s.get("k")
    with pytest.raises(AccessDenied):
        s.put("k", b"v")
