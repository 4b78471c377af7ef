"""GCS-specific behaviour of GCSStore and of the local emulator it is tested against.

The emulator ignores generation preconditions, so the wire tests here check what GCSStore *sends*
(``ifGenerationMatch``) and how it handles GCS's 412 answer, by recording (and, where said, faking)
HTTP exchanges through the SDK's own ``_http`` session hook.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import storage

import nubes.storage
from nubes.errors import AccessDenied, ConfigError, NotFound, PreconditionFailed, StorageUnavailable
from nubes.storage.gcs import GCSStore
from nubes.testing.servers import free_port, port_open
from nubes.testing.servers.gcs import GCSEmulator

BUCKET = "nubes-gcs"
MiB = 1024 * 1024

_BUCKET_GET = re.compile(r"/storage/v1/b/[^/]+$")
Responder = Callable[[str, str, dict[str, str]], requests.Response | None]


@pytest.fixture(scope="module")
def emulator() -> Iterator[GCSEmulator]:
    with GCSEmulator() as server, pytest.MonkeyPatch.context() as mp:
        for name in ("API_ENDPOINT_OVERRIDE", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_UNIVERSE_DOMAIN"):
            mp.delenv(name, raising=False)
        for name, value in server.env().items():
            mp.setenv(name, value)
        server.create_bucket(BUCKET)
        yield server


class Recorder(requests.Session):
    """A requests session that records every request and may answer some itself (``respond``)."""

    def __init__(self, respond: Responder | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.respond = respond

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        headers = dict(kwargs.get("headers") or {})
        self.calls.append((method, url, headers))
        if self.respond is not None:
            faked = self.respond(method, url, headers)
            if faked is not None:
                return faked
        return super().request(method, url, *args, **kwargs)

    def queries(self) -> list[dict[str, list[str]]]:
        return [parse_qs(urlsplit(url).query) for _, url, _ in self.object_calls()]

    def object_calls(self) -> list[tuple[str, str, dict[str, str]]]:
        """Calls on objects, without the bucket lookups the SDK makes in the background for tracing."""
        return [call for call in self.calls if not _BUCKET_GET.search(urlsplit(call[1]).path)]


def _response(method: str, url: str, status: int, body: dict[str, Any]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/json"
    response.url = url
    response.request = requests.Request(method, url).prepare()
    return response


def _store(recorder: Recorder | None = None, **options: Any) -> GCSStore:
    client = storage.Client(_http=recorder) if recorder is not None else None
    store = nubes.storage.open(f"gs://{BUCKET}/{uuid.uuid4().hex}", client=client, **options)
    assert isinstance(store, GCSStore)
    return store


class Unseekable(io.RawIOBase):
    """A read-only stream of unknown length that remembers the largest read asked of it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        self.largest_read = max(self.largest_read, size if size >= 0 else 1 << 62)
        return self._data.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# -- what the emulator does and does not do (if one of these fails, update the docs and xfails) ----
def test_emulator_does_not_enforce_generation_preconditions(emulator: GCSEmulator) -> None:
    bucket = storage.Client().bucket(BUCKET)
    name = f"fact/{uuid.uuid4().hex}"
    bucket.blob(name).upload_from_string(b"one", if_generation_match=0)
    bucket.blob(name).upload_from_string(b"two", if_generation_match=0)  # GCS would answer 412
    bucket.blob(name).upload_from_string(b"three", if_generation_match=12345)  # so would this
    assert bucket.blob(name).download_as_bytes() == b"three"


def test_emulator_returns_one_page_whatever_the_page_size(emulator: GCSEmulator) -> None:
    bucket = storage.Client().bucket(BUCKET)
    prefix = f"pages/{uuid.uuid4().hex}/"
    for i in range(5):
        bucket.blob(f"{prefix}{i}").upload_from_string(b"")
    pages = list(storage.Client().list_blobs(BUCKET, prefix=prefix, page_size=2).pages)
    assert [page.num_items for page in pages] == [5]


def test_emulator_does_resumable_uploads_and_batches(emulator: GCSEmulator) -> None:
    recorder = Recorder()
    store = _store(recorder, chunk_size=256 * 1024)
    data = os.urandom(700_000)
    store.put("resumable", io.BytesIO(data))  # a stream over chunk_size: resumable
    assert store.get("resumable") == data
    assert any(q.get("uploadType") == ["resumable"] for q in recorder.queries())
    store.delete_many(["resumable", "never-was"])
    assert any("/batch/storage/v1" in url for _, url, _ in recorder.calls)
    assert not store.exists("resumable")


# -- conditional writes on the wire ----------------------------------------------------------------
def test_if_none_match_sends_generation_zero(emulator: GCSEmulator) -> None:
    recorder = Recorder()
    store = _store(recorder)
    store.put("small", b"x", if_none_match=True)
    store.put("large", io.BytesIO(os.urandom(9 * MiB)), if_none_match=True)  # resumable: > chunk_size
    sent = [q for q in recorder.queries() if "uploadType" in q and "upload_id" not in q]
    assert [(q["uploadType"], q.get("ifGenerationMatch")) for q in sent] == [
        (["multipart"], ["0"]),
        (["resumable"], ["0"]),
    ]


def test_if_match_sends_the_etag_as_generation(emulator: GCSEmulator) -> None:
    recorder = Recorder()
    store = _store(recorder)
    etag = store.put("k", b"v1").etag
    store.put("k", b"v2", if_match=etag)
    assert recorder.queries()[-1].get("ifGenerationMatch") == [etag]


@pytest.mark.parametrize("size", [10, 9 * MiB], ids=["multipart", "resumable"])
def test_412_from_gcs_is_precondition_failed(emulator: GCSEmulator, size: int) -> None:
    def refuse(method: str, url: str, headers: dict[str, str]) -> requests.Response | None:
        if "ifGenerationMatch=" in url:
            message = "At least one of the pre-conditions you specified did not hold."
            return _response(method, url, 412, {"error": {"code": 412, "message": message}})
        return None

    store = _store(Recorder(refuse))
    with pytest.raises(PreconditionFailed, match="cond/key"):
        store.put("cond/key", io.BytesIO(b"x" * size), if_none_match=True)
    assert not store.exists("cond/key")


def test_etag_is_the_generation_and_new_on_every_write(emulator: GCSEmulator) -> None:
    store = _store()
    first = store.put("e", b"same bytes")
    second = store.put("e", b"same bytes")
    assert first.etag.isdigit() and second.etag.isdigit()
    assert first.etag != second.etag
    blob = storage.Client().bucket(BUCKET).get_blob(f"{store.prefix}/e")
    assert blob is not None and str(blob.generation) == second.etag == store.head("e").etag


def test_foreign_etag_cannot_match_and_writes_nothing(emulator: GCSEmulator) -> None:
    recorder = Recorder()
    store = _store(recorder)
    with pytest.raises(PreconditionFailed):
        store.put("f", b"x", if_match='"d41d8cd98f00b204e9800998ecf8427e"')
    assert recorder.calls == []
    assert not store.exists("f")


def test_both_conditions_at_once_is_a_usage_error(emulator: GCSEmulator) -> None:
    with pytest.raises(ValueError):
        _store().put("b", b"x", if_none_match=True, if_match="1")


# -- streaming, ranges, listing ----------------------------------------------------------------------
def test_unsized_stream_is_sent_in_chunks(emulator: GCSEmulator) -> None:
    recorder = Recorder()
    store = _store(recorder, chunk_size=MiB)
    data = os.urandom(3 * MiB + 17)
    stream = Unseekable(data)
    info = store.put("stream", stream)
    assert info.size == len(data)
    assert store.get("stream") == data
    chunks = [q for q in recorder.queries() if "upload_id" in q]
    assert len(chunks) >= 4
    assert stream.largest_read <= 2 * MiB  # never the whole object at once


def test_large_stream_not_at_its_start_sends_the_rest(emulator: GCSEmulator) -> None:
    recorder = Recorder()
    store = _store(recorder, chunk_size=MiB)
    data = os.urandom(3 * MiB)
    buf = io.BytesIO(b"header" + data)
    buf.seek(6)
    assert store.put("rest", buf).size == len(data)
    assert store.get("rest") == data
    assert any(q.get("uploadType") == ["resumable"] for q in recorder.queries())


def test_403_is_access_denied(emulator: GCSEmulator) -> None:
    def forbid(method: str, url: str, headers: dict[str, str]) -> requests.Response | None:
        return _response(method, url, 403, {"error": {"code": 403, "message": "caller does not have storage.objects.get"}})

    store = _store(Recorder(forbid))
    with pytest.raises(AccessDenied, match=r"storage\.objects\.get"):
        store.get("secret")
    with pytest.raises(PermissionError):
        store.put("secret", b"x")


def test_bytes_are_not_chunked(emulator: GCSEmulator) -> None:
    """In-memory bytes go as upload_from_string sends them, whatever chunk_size (meant for streams)."""
    recorder = Recorder()
    store = _store(recorder, chunk_size=256 * 1024)
    small = os.urandom(700_000)
    store.put("small", small)
    assert [q.get("uploadType") for q in recorder.queries()] == [["multipart"]]
    recorder.calls.clear()
    big = os.urandom(9 * MiB)
    for data in (big, bytearray(big), memoryview(big)):
        info = store.put("big", data, content_type="application/x-big")
        assert info.size == len(big)
        assert store.get("big") == big
    assert store.head("big").content_type == "application/x-big"
    starts = [q for q in recorder.queries() if q.get("uploadType") == ["resumable"] and "upload_id" not in q]
    chunks = [q for q in recorder.queries() if "upload_id" in q]
    assert len(starts) == 3 and len(chunks) == 3  # one request with the data per put, not 8 MiB pieces
    assert store.get("small") == small


def test_small_put_is_one_request(emulator: GCSEmulator) -> None:
    recorder = Recorder()
    store = _store(recorder)
    store.put("one", b"payload", content_type="text/csv")
    assert len(recorder.object_calls()) == 1
    assert store.head("one").content_type == "text/csv"


def test_416_past_the_end_is_an_empty_slice(emulator: GCSEmulator) -> None:
    def unsatisfiable(method: str, url: str, headers: dict[str, str]) -> requests.Response | None:
        if headers.get("range", headers.get("Range", "")).startswith("bytes=5"):
            return _response(method, url, 416, {"error": {"code": 416, "message": "Requested range not satisfiable"}})
        return None

    store = _store(Recorder(unsatisfiable))
    store.put("five", b"12345")
    assert store.get_range("five", 5, None) == b""
    assert store.get_range("five", 1, 3) == b"23"


@dataclass
class FakeBlob:
    name: str
    size: int = 1
    generation: int = 7
    updated: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    content_type: str | None = None


class PagingClient:
    """Three pages; fetching page two fails once with a 503 (after the SDK's own retries)."""

    pages: ClassVar[list[list[str]]] = [["p/a", "p/b"], ["p/c", "p/d"], ["p/e"]]

    def __init__(self) -> None:
        self.fetched: list[int] = []
        self.failed = False

    def bucket(self, name: str) -> storage.Bucket:
        return storage.Bucket(None, name)  # type: ignore[arg-type]

    def list_blobs(self, bucket: str, **kwargs: Any) -> Iterator[FakeBlob]:
        assert kwargs["page_size"] == 2 and kwargs["timeout"] and kwargs["retry"]
        for number, names in enumerate(self.pages):
            if number == 1 and not self.failed:
                self.failed = True
                raise gexc.ServiceUnavailable("try again")
            self.fetched.append(number)
            yield from (FakeBlob(name) for name in names)


def test_listing_survives_a_transient_failure_between_pages() -> None:
    client = PagingClient()
    store = GCSStore("bkt", "p", client=client, page_size=2)  # type: ignore[arg-type]
    store.backoff = 0.0
    assert [info.key for info in store.list()] == ["a", "b", "c", "d", "e"]
    assert client.fetched == [0, 0, 1, 2]


def test_listing_gives_up_as_storage_unavailable() -> None:
    class Down(PagingClient):
        def list_blobs(self, bucket: str, **kwargs: Any) -> Iterator[FakeBlob]:
            raise gexc.RetryError("deadline exceeded", gexc.ServiceUnavailable("down"))

    store = GCSStore("bkt", client=Down())  # type: ignore[arg-type]
    store.backoff = 0.0
    with pytest.raises(StorageUnavailable):
        list(store.list())


def test_delete_many_sends_batches_of_100(emulator: GCSEmulator) -> None:
    recorder = Recorder()
    store = _store(recorder)
    keys = [f"d/{i:03d}" for i in range(230)]
    client = storage.Client()
    for key in keys:
        client.bucket(BUCKET).blob(f"{store.prefix}/{key}").upload_from_string(b"")
    recorder.calls.clear()
    store.delete_many([*keys, "d/missing"])
    assert sum("/batch/storage/v1" in url for _, url, _ in recorder.calls) == 3
    assert list(store.list()) == []


# -- configuration -------------------------------------------------------------------------------------
def test_uri_and_options(emulator: GCSEmulator) -> None:
    store = nubes.storage.open(f"gs://{BUCKET}/a/b/", page_size=10)
    assert isinstance(store, GCSStore)
    assert (store.bucket_name, store.prefix, store.page_size) == (BUCKET, "a/b", 10)
    assert store.uri == f"gs://{BUCKET}/a/b"
    assert store.url("x/y.csv") == f"gs://{BUCKET}/a/b/x/y.csv"
    assert nubes.storage.open(f"gs://{BUCKET}").url("k") == f"gs://{BUCKET}/k"
    for bad in ("gs://", "gs:///prefix"):
        with pytest.raises(ConfigError):
            nubes.storage.open(bad)
    with pytest.raises(ConfigError, match="known: client"):
        nubes.storage.open(f"gs://{BUCKET}", region="x")
    with pytest.raises(ConfigError, match="256 KiB"):
        nubes.storage.open(f"gs://{BUCKET}", chunk_size=1000)


def test_dead_endpoint_is_storage_unavailable_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    store = nubes.storage.open("gs://bkt/p", retry_deadline=0.3)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="3 attempts"):
        store.get("k")
    assert time.monotonic() - started < 5


def test_missing_key_is_not_found_with_the_key(emulator: GCSEmulator) -> None:
    store = _store()
    with pytest.raises(NotFound, match=r"no such object.*/nothing/here"):
        store.head("nothing/here")


def test_no_credentials_is_a_config_error(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCLOUD", "CLOUDSDK", "STORAGE_EMULATOR"))}
    env.update(
        GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "absent.json"),  # fails at once, no metadata probe
        CLOUDSDK_CONFIG=str(tmp_path),
        NO_GCE_CHECK="true",
    )
    code = (
        "import nubes.storage\n"
        "from nubes.errors import ConfigError\n"
        "try:\n"
        "    nubes.storage.open('gs://bucket/prefix')\n"
        "except ConfigError as exc:\n"
        "    print('CONFIG', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=True)
    assert "CONFIG" in out.stdout and "STORAGE_EMULATOR_HOST" in out.stdout, out.stdout + out.stderr


# -- the emulator helper -------------------------------------------------------------------------------
def test_emulator_restarts_on_the_same_port_and_leaves_nothing_behind() -> None:
    server = GCSEmulator(default_bucket="helper")
    with server:
        first = server.pid
        assert server.env() == {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{server.port}"}
        server.restart()
        assert server.running and server.pid != first and port_open(server.port)
        second = server.pid
    assert not server.running and not port_open(server.port)
    for pid in (first, second):
        assert pid is not None and not os.path.exists(f"/proc/{pid}")


def test_emulator_with_a_data_dir_keeps_objects_across_restarts(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with GCSEmulator(data_dir=tmp_path) as server:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
        server.create_bucket("kept")
        store = nubes.storage.open("gs://kept/p")
        store.put("k", b"survives")
        server.restart()
        assert store.get("k") == b"survives"
