"""S3-specific behaviour of S3Store beyond the shared contract, against a local moto_server."""

from __future__ import annotations

import io
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

import nubes.storage
from nubes.errors import (
    AccessDenied,
    ConfigError,
    NotFound,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)
from nubes.storage.s3 import S3Store
from nubes.testing.servers import port_open
from nubes.testing.servers.moto import MotoServer

BUCKET = "nubes-s3-tests"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server, pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_MAX_ATTEMPTS"):
            mp.delenv(name, raising=False)
        for name, value in server.env().items():
            mp.setenv(name, value)
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture
def store(moto: MotoServer) -> S3Store:
    s = nubes.storage.open(f"s3://{BUCKET}/{uuid.uuid4().hex}")
    assert isinstance(s, S3Store)
    return s


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


class _Stream(io.RawIOBase):
    """A non-seekable binary stream of ``size`` bytes that records the largest read asked of it."""

    def __init__(self, size: int, fail_after: int | None = None) -> None:
        self.left = size
        self.sent = 0
        self.largest = 0
        self.fail_after = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise OSError("source broke")
        n = min(len(buffer), self.left, 1 * MiB)  # short reads, as pipes give
        self.largest = max(self.largest, len(buffer))
        buffer[:n] = bytes([self.sent % 251]) * n
        self.left -= n
        self.sent += n
        return n


# -- URIs, options, configuration ---------------------------------------------------------
def test_uri_parsing_and_url(moto: MotoServer) -> None:
    s = nubes.storage.open("s3://bkt/a/b/")
    assert isinstance(s, S3Store)
    assert (s.bucket, s.prefix, s.uri) == ("bkt", "a/b", "s3://bkt/a/b")
    assert s.url("x/y.csv") == "s3://bkt/a/b/x/y.csv"
    assert nubes.storage.open("s3://bkt").url("k") == "s3://bkt/k"


def test_bad_uri_and_unknown_option_are_config_errors(moto: MotoServer) -> None:
    with pytest.raises(ConfigError, match="BUCKET"):
        nubes.storage.open("s3:///prefix")
    with pytest.raises(ConfigError, match="endpoint_url"):
        nubes.storage.open("s3://bkt/p", endpointurl="http://x")


def test_client_has_bounded_timeouts_and_few_retries(store: S3Store) -> None:
    config = store.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5.0, 60.0)
    assert config.retries["total_max_attempts"] == 2
    assert store.client.meta.endpoint_url == store.client.meta.endpoint_url.rstrip("/")


def test_options_override_the_environment(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    s = nubes.storage.open(f"s3://{BUCKET}/{uuid.uuid4().hex}", endpoint_url=moto.endpoint, region_name="us-east-1")
    s.put("k", b"v")
    assert s.get("k") == b"v"


def test_a_given_client_is_used(moto: MotoServer) -> None:
    client = boto3.client("s3")
    s = nubes.storage.open(f"s3://{BUCKET}/{uuid.uuid4().hex}", client=client)
    assert s.client is client
    s.put("k", b"v")
    assert client.get_object(Bucket=BUCKET, Key=f"{s.prefix}/k")["Body"].read() == b"v"


def test_missing_credentials_are_access_denied(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s = nubes.storage.open(f"s3://{BUCKET}/p")
    with pytest.raises(AccessDenied, match="AWS_ACCESS_KEY_ID"):
        s.get("k")


# -- conditional writes ---------------------------------------------------------------------
def test_if_match_on_a_missing_key_is_precondition_failed(store: S3Store) -> None:
    with pytest.raises(PreconditionFailed):
        store.put("nothing-here", b"x", if_match="0123456789abcdef0123456789abcdef")
    assert not store.exists("nothing-here")


def test_etags_are_unquoted_and_accepted_quoted_or_not(store: S3Store) -> None:
    info = store.put("k", b"one")
    assert not info.etag.startswith('"')
    info2 = store.put("k", b"two", if_match=f'"{info.etag}"')
    store.put("k", b"three", if_match=info2.etag)
    assert store.get("k") == b"three"


# -- multipart ------------------------------------------------------------------------------
def test_large_streams_go_multipart_one_part_per_read(store: S3Store) -> None:
    store.part_size = 5 * MiB  # S3's smallest part
    stream = _Stream(12 * MiB + 3)
    info = store.put("big", io.BufferedReader(stream, buffer_size=64 * 1024))
    assert info.size == 12 * MiB + 3
    assert info.etag.endswith("-3")  # three parts: 5 + 5 + 2 MiB
    assert store.head("big").size == info.size
    assert stream.largest <= 5 * MiB


def test_parts_go_up_in_parallel_bounded_and_in_order(store: S3Store) -> None:
    """upload_threads parts in flight at most, the stream read only as parts finish, parts numbered in order."""
    store.part_size = 5 * MiB
    store.upload_threads = 3
    n_parts = 7
    data = b"".join(bytes([i]) * (5 * MiB) for i in range(n_parts - 1)) + b"tail"
    lock = threading.Lock()
    state = {"in_flight": 0, "most": 0}
    numbers: list[int] = []

    class Counting(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            with lock:  # parts read but not yet uploaded: in flight + this one
                assert state["in_flight"] <= store.upload_threads
            return super().read(size)

    def before(params: dict[str, Any], **kwargs: Any) -> None:
        with lock:
            numbers.append(params["PartNumber"])
            state["in_flight"] += 1
            state["most"] = max(state["most"], state["in_flight"])
        time.sleep(0.05)  # keep parts overlapping

    def after(**kwargs: Any) -> None:
        with lock:
            state["in_flight"] -= 1

    store.client.meta.events.register("before-parameter-build.s3.UploadPart", before)
    store.client.meta.events.register("after-call.s3.UploadPart", after)
    info = store.put("par", Counting(data))
    assert info.size == len(data) and info.etag.endswith(f"-{n_parts}")
    assert sorted(numbers) == list(range(1, n_parts + 1))
    assert 2 <= state["most"] <= 3
    assert store.get("par") == data  # parts assembled in stream order
    # as boto3's upload_fileobj: a CRC32 per part, so the service need not checksum the whole object again
    head = store.client.head_object(Bucket=BUCKET, Key=f"{store.prefix}/par", ChecksumMode="ENABLED")
    assert "ChecksumCRC32" in head


def test_a_failed_part_aborts_the_upload(store: S3Store) -> None:
    store.part_size = 5 * MiB
    sent: list[int] = []

    def before(params: dict[str, Any], **kwargs: Any) -> None:
        sent.append(params["PartNumber"])
        if params["PartNumber"] == 2:
            denied = {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}}
            raise ClientError(denied, "UploadPart")

    store.client.meta.events.register("before-parameter-build.s3.UploadPart", before)
    stream = _Stream(200 * MiB)
    with pytest.raises(AccessDenied):
        store.put("failed-part", io.BufferedReader(stream))
    assert stream.sent <= (store.upload_threads + 3) * 5 * MiB  # stopped reading soon after the failure
    uploads = store.client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix).get("Uploads", [])
    assert uploads == []
    assert not store.exists("failed-part")


def test_small_streams_are_single_puts(store: S3Store) -> None:
    info = store.put("small", io.BytesIO(b"abc" * 1000))
    assert "-" not in info.etag and info.size == 3000


def test_failed_multipart_upload_is_aborted(store: S3Store) -> None:
    store.part_size = 5 * MiB
    with pytest.raises(OSError, match="source broke"):
        store.put("broken", io.BufferedReader(_Stream(20 * MiB, fail_after=11 * MiB)))
    uploads = store.client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix).get("Uploads", [])
    assert uploads == []
    assert not store.exists("broken")


def test_multipart_conditions_fail_before_uploading(store: S3Store) -> None:
    store.part_size = 5 * MiB
    data = b"z" * (11 * MiB)
    first = store.put("mp", io.BytesIO(data), if_none_match=True)
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3.UploadPart", lambda **kw: calls.append("part"))
    with pytest.raises(PreconditionFailed):
        store.put("mp", io.BytesIO(data), if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put("mp", io.BytesIO(data), if_match="not-the-etag")
    assert calls == []
    second = store.put("mp", io.BytesIO(data[:-1]), if_match=first.etag)
    assert second.etag != first.etag


def test_moto_enforces_if_none_match_on_complete_multipart(store: S3Store) -> None:
    """The atomic check (not our pre-check) is what refuses a second creator on S3 and moto."""
    c, key = store.client, f"{store.prefix}/race"
    store.put("race", b"first")
    upload = c.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    part = c.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=b"x")
    with pytest.raises(ClientError) as info:
        c.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}, IfNoneMatch="*",
        )
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


@pytest.mark.xfail(strict=True, reason="moto 5.2 ignores If-Match on CompleteMultipartUpload (real S3 answers 412)")
def test_moto_enforces_if_match_on_complete_multipart(store: S3Store) -> None:
    c, key = store.client, f"{store.prefix}/race"
    store.put("race", b"first")
    upload = c.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    part = c.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=b"x")
    with pytest.raises(ClientError):
        c.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}, IfMatch='"0000"',
        )


# -- reads, lists, deletes --------------------------------------------------------------------
def test_ranges_past_the_end_and_of_empty_objects(store: S3Store) -> None:
    store.put("e", b"")
    store.put("k", b"0123456789")
    assert store.get("e") == b""
    assert store.get_range("e", 0, 10) == b""
    assert store.get_range("k", 10, None) == b""
    assert store.get_range("k", 12, 20) == b""
    assert store.get_range("k", 8, 20) == b"89"
    assert store.get_range("k", 0, 1) == b"0"
    with pytest.raises(NotFound):
        store.get_range("missing", 5, None)


def test_delete_many_uses_batches(store: S3Store) -> None:
    assert S3Store.delete_batch == 1000  # DeleteObjects' limit; smaller here to keep the test quick
    store.delete_batch = 100
    keys = [f"k/{i:05d}" for i in range(210)]
    c = store.client
    for k in keys:  # straight to the client: faster than one put each through the store
        c.put_object(Bucket=BUCKET, Key=f"{store.prefix}/{k}", Body=b"")
    calls: list[int] = []
    c.meta.events.register("before-parameter-build.s3.DeleteObjects", lambda params, **kw: calls.append(len(params["Delete"]["Objects"])))
    store.delete_many([*keys, "never-existed"])
    assert calls == [100, 100, 11]
    assert list(store.list()) == []


def test_list_pages(store: S3Store) -> None:
    c = store.client
    for i in range(25):
        c.put_object(Bucket=BUCKET, Key=f"{store.prefix}/p/{i:03d}", Body=b"x")
    store.page_size = 10
    pages: list[int] = []
    c.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: pages.append(1))
    assert [i.key for i in store.list("p/")] == [f"p/{i:03d}" for i in range(25)]
    assert len(pages) == 3


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, NotFound),
        ("404", 404, NotFound),
        ("PreconditionFailed", 412, PreconditionFailed),
        ("ConditionalRequestConflict", 409, PreconditionFailed),
        ("AccessDenied", 403, AccessDenied),
        ("InvalidAccessKeyId", 403, AccessDenied),
        ("NoSuchBucket", 404, NotFound),
        ("MalformedXML", 400, StorageError),
    ],
)
def test_client_errors_translate(store: S3Store, code: str, status: int, expected: type[Exception]) -> None:
    err = store._translate(_client_error(code, status), "k")
    assert type(err) is expected
    assert not store._is_transient(_client_error(code, status))
    if code == "NoSuchBucket":
        assert BUCKET in str(err)


@pytest.mark.parametrize(
    "exc",
    [
        _client_error("SlowDown", 503),
        _client_error("InternalError", 500),
        _client_error("RequestTimeout", 400),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
    ],
)
def test_transient_failures_are_retried(store: S3Store, exc: Exception) -> None:
    assert store._is_transient(exc)


def test_a_server_that_never_answers_gives_storage_unavailable_in_bounded_time(moto: MotoServer) -> None:
    with socket.socket() as hung:  # accepts connections (kernel backlog) but never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        port = hung.getsockname()[1]
        assert port_open(port)
        s = nubes.storage.open(
            f"s3://{BUCKET}/p", endpoint_url=f"http://127.0.0.1:{port}", read_timeout=0.3, connect_timeout=0.3
        )
        t0 = time.monotonic()
        with pytest.raises(StorageUnavailable):
            s.get("k")
        assert time.monotonic() - t0 < 15


def test_stopped_server_gives_storage_unavailable_then_recovers(moto: MotoServer) -> None:
    s = nubes.storage.open(f"s3://{BUCKET}/{uuid.uuid4().hex}")
    s.put("k", b"v")
    big = io.BytesIO(b"m" * (9 * MiB))
    with moto.outage(keep={BUCKET: s.prefix + "/"}):
        t0 = time.monotonic()
        for call in (lambda: s.get("k"), lambda: s.put("k", b"w"), lambda: list(s.list()), lambda: s.put("big", big)):
            with pytest.raises(StorageUnavailable):
                call()
        assert time.monotonic() - t0 < 30
    assert s.get("k") == b"v"
    big.seek(0)  # the failed put read it
    assert s.put("big", big).size == 9 * MiB


def test_huge_bytes_go_multipart(store: S3Store) -> None:
    store.part_size = 5 * MiB
    store.max_single_put = 6 * MiB  # S3's 5 GiB limit, lowered
    data = bytes(range(256)) * (44 * 1024)  # 11 MiB
    info = store.put("huge", data)
    assert info.etag.endswith("-3") and info.size == len(data)
    assert store.get("huge") == data


def test_client_and_client_options_together_are_a_config_error(moto: MotoServer) -> None:
    with pytest.raises(ConfigError, match="not both"):
        nubes.storage.open(f"s3://{BUCKET}/p", client=boto3.client("s3"), region_name="us-east-1")
