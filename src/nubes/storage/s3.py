"""Amazon S3 (and S3-compatible services) as an :class:`~nubes.storage.ObjectStore`: ``s3://bucket/prefix``.

Configured only through boto3's standard mechanisms: ``AWS_ENDPOINT_URL`` (or
``AWS_ENDPOINT_URL_S3``), the credentials chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, config files, instance roles ...) and ``AWS_DEFAULT_REGION``. Options given to
:func:`nubes.storage.open` override them: ``endpoint_url``, ``region_name``,
``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``, ``profile_name``,
``connect_timeout``, ``read_timeout``, ``max_attempts``, or a ready ``client``.

Conditional writes use S3's ``If-None-Match: *`` / ``If-Match: ETAG`` on PutObject and
CompleteMultipartUpload, so the service decides atomically which writer wins. File-like data of
more than :attr:`S3Store.part_size` bytes is streamed as a multipart upload: parts are read in
order and sent by :attr:`S3Store.upload_threads` threads (4), so at most ``upload_threads + 1``
parts are in memory at once (the ones in flight and the one being read), never the whole object.

This module imports boto3; :mod:`nubes.storage` imports it only when an ``s3://`` store is opened.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import IO, Any, Self

import boto3  # the SDK the 'aws' extra installs: its absence is BackendMissing
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.loaders import create_loader

try:
    from botocore.httpchecksum import DEFAULT_CHECKSUM_ALGORITHM as _DEFAULT_CHECKSUM
except ImportError:  # botocore before flexible checksums by default
    _DEFAULT_CHECKSUM = "CRC32"

from nubes.errors import (
    AccessDenied,
    ConfigError,
    NotFound,
    PreconditionFailed,
    StorageError,
)
from nubes.storage.base import BaseStore, Data, ObjectInfo
from nubes.storage.keys import MAX_KEY_BYTES

MiB = 1024 * 1024

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_DENIED = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "AccountProblem",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
}
_CLIENT_OPTIONS = ("endpoint_url", "region_name", "connect_timeout", "read_timeout", "max_attempts")
_SESSION_OPTIONS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "profile_name")


_LOADER: Any = None  # botocore's service-model loader, shared so each new client skips re-reading JSON
_LOADER_LOCK = threading.Lock()


def _loader() -> Any:
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = create_loader()
        return _LOADER


def make_client(
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    profile_name: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_attempts: int | None = None,
) -> Any:
    """An S3 client from the SDK's standard configuration, with bounded timeouts and few retries.

    Arguments left ``None`` come from the environment and config files exactly as boto3 resolves
    them (a fresh session each call, so current variables count). ``max_attempts`` (total tries
    per call inside botocore) defaults to the configured ``AWS_MAX_ATTEMPTS`` or else 2:
    :class:`~nubes.storage.BaseStore` retries with backoff on top of it.
    """
    session = botocore.session.get_session()
    session.register_component("data_loader", _loader())
    if profile_name is not None:
        session.set_config_variable("profile", profile_name)
    if max_attempts is None:
        configured = session.get_config_variable("max_attempts")
        max_attempts = int(configured) if configured is not None else 2
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts},
        max_pool_connections=32,
        user_agent_extra=f"nubes Boto3/{boto3.__version__}",
    )
    return session.create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region_name,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        config=config,
    )


class S3Store(BaseStore):
    """Objects under ``s3://bucket/prefix``; see :class:`~nubes.storage.ObjectStore` for the contract.

    ETags are S3's ETags without the surrounding quotes (an MD5 for single-part objects, ``MD5-N``
    for multipart ones). ``last_modified`` of a ``put`` is the service's ``Date`` of the answer.
    """

    scheme = "s3"
    max_path_bytes = MAX_KEY_BYTES
    part_size: int = 8 * MiB  # file-like data larger than this goes up as a multipart upload
    upload_threads: int = 4  # parts of one multipart upload sent at once (each holds one part in memory)
    max_single_put: int = 5 * 1024 * MiB  # S3's limit for one PutObject; larger bytes go multipart
    delete_batch: int = 1000  # DeleteObjects takes at most 1,000 keys
    page_size: int = 1000  # ListObjectsV2 answers at most 1,000 keys a page

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, **options: Any) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"S3 URIs name a bucket: s3://BUCKET/PREFIX, not s3://{bucket}/{prefix}")
        unknown = set(options) - set(_CLIENT_OPTIONS) - set(_SESSION_OPTIONS)
        if unknown:
            raise ConfigError(
                f"unknown s3:// option(s) {', '.join(sorted(unknown))}; accepted: client, "
                + ", ".join(_CLIENT_OPTIONS + _SESSION_OPTIONS)
            )
        if client is not None and options:
            raise ConfigError(f"give s3:// either client= or client options ({', '.join(sorted(options))}), not both")
        super().__init__(bucket, prefix)
        self.bucket = bucket
        self.client = client if client is not None else make_client(**options)
        self._bucket_seen = False  # set once the bucket is known to exist

    @classmethod
    def from_uri(cls, rest: str, **options: Any) -> Self:
        """``rest`` is what follows ``s3://``: ``BUCKET`` or ``BUCKET/PREFIX``."""
        bucket, _, prefix = rest.partition("/")
        return cls(bucket, prefix, **options)

    # -- primitives ------------------------------------------------------------------------
    def _put(
        self, path: str, data: Data, content_type: str | None, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        conditions: dict[str, str] = {}
        if if_none_match:
            conditions["IfNoneMatch"] = "*"
        if if_match is not None:
            conditions["IfMatch"] = _quote(if_match)
        extra = {"ContentType": content_type} if content_type else {}
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                body = bytes(data)
                if len(body) > self.max_single_put:
                    return self._put_multipart(path, io.BytesIO(body), [], extra, conditions, content_type)
                return self._put_small(path, body, extra, conditions, content_type)
            # The first parts read are handed over in a list that _put_multipart empties as it
            # sends them: no local here keeps a sent part in memory until the upload ends.
            head = [_read_full(data, self.part_size)]
            if len(head[0]) < self.part_size:
                return self._put_small(path, head.pop(), extra, conditions, content_type)
            head.append(_read_full(data, self.part_size))
            if not head[1]:
                return self._put_small(path, head.pop(0), extra, conditions, content_type)
            return self._put_multipart(path, data, head, extra, conditions, content_type)
        except ClientError as exc:
            # S3 answers If-Match on a missing key with 404 NoSuchKey; for nubes that is a failed precondition.
            if if_match is not None and _code(exc) in ("NoSuchKey", "404"):
                raise PreconditionFailed(
                    f"if_match={if_match!r} but there is no object", uri=self.uri, key=self._key_of(path)
                ) from exc
            raise

    def _put_small(
        self, path: str, body: bytes, extra: dict[str, str], conditions: dict[str, str], content_type: str | None
    ) -> ObjectInfo:
        resp = self.client.put_object(Bucket=self.bucket, Key=path, Body=body, **extra, **conditions)
        return ObjectInfo(path, len(body), _etag(resp["ETag"]), _answer_time(resp), content_type)

    def _put_multipart(
        self,
        path: str,
        data: IO[bytes],
        head: list[bytes],
        extra: dict[str, str],
        conditions: dict[str, str],
        content_type: str | None,
    ) -> ObjectInfo:
        """Upload ``head`` chunks then the rest of ``data`` as parts; complete with the conditions.

        ``data`` is read in order, in this thread; up to :attr:`upload_threads` parts are sent at
        once, and the next part is read only while fewer are in flight, so at most
        ``upload_threads + 1`` parts are in memory. A failed precondition is checked once before
        any part is sent (to fail before uploading gigabytes) and enforced atomically by S3 on
        CompleteMultipartUpload. On any failure the parts still in flight are waited for (or
        cancelled if not started) and the upload is aborted, so no orphaned parts are billed.
        """
        self._precheck(path, conditions)
        # As boto3's upload_fileobj does (unless the client is set to checksum "when_required"):
        # a CRC32 per part, so the service checks each part and builds a composite checksum from
        # them instead of checksumming the whole object again on completion.
        checksum = _multipart_checksum(self.client)
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=path, **extra, **checksum)[
            "UploadId"
        ]
        workers = max(1, int(self.upload_threads))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nubes-s3-part")
        try:
            done_parts: dict[int, dict[str, Any]] = {}
            in_flight: dict[Future[dict[str, Any]], int] = {}
            size = 0

            def send(number: int, body: bytes) -> dict[str, Any]:
                resp = self.client.upload_part(
                    Bucket=self.bucket, Key=path, UploadId=upload_id, PartNumber=number, Body=body, **checksum
                )
                part = {"PartNumber": number, "ETag": resp["ETag"]}
                if checksum:
                    member = "Checksum" + checksum["ChecksumAlgorithm"].upper()
                    if member in resp:
                        part[member] = resp[member]
                return part

            def harvest(done: Iterable[Future[dict[str, Any]]]) -> None:
                for future in done:
                    done_parts[in_flight.pop(future)] = future.result()  # a failed part raises here

            for number, chunk in enumerate(_chain_chunks(head, data, self.part_size), start=1):
                size += len(chunk)
                if len(in_flight) >= workers:
                    harvest(wait(in_flight, return_when=FIRST_COMPLETED).done)
                in_flight[pool.submit(send, number, chunk)] = number
                del chunk  # only the pool's task holds the part now
                harvest([f for f in in_flight if f.done()])  # fail fast, before reading more
            harvest(wait(in_flight).done)
            parts = [done_parts[n] for n in sorted(done_parts)]
            resp = self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=path, UploadId=upload_id, MultipartUpload={"Parts": parts}, **conditions
            )
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # no part may land after the abort
            with contextlib.suppress(Exception):  # best effort: the original error is what matters
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=path, UploadId=upload_id)
            raise
        finally:
            pool.shutdown(wait=True)
        return ObjectInfo(path, size, _etag(resp["ETag"]), _answer_time(resp), content_type)

    def _precheck(self, path: str, conditions: dict[str, str]) -> None:
        if not conditions:
            return
        try:
            current: str | None = _etag(self.client.head_object(Bucket=self.bucket, Key=path)["ETag"])
        except ClientError as exc:
            if _status(exc) != 404:
                raise
            current = None
        if "IfNoneMatch" in conditions and current is not None:
            raise PreconditionFailed("if_none_match but an object exists", uri=self.uri, key=self._key_of(path))
        wanted = conditions.get("IfMatch")
        if wanted is not None and current != _etag(wanted):
            raise PreconditionFailed(
                f"if_match={_etag(wanted)!r} but the object's etag is {current!r}", uri=self.uri, key=self._key_of(path)
            )

    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        kwargs: dict[str, str] = {}
        if start > 0 or end is not None:
            kwargs["Range"] = f"bytes={start}-" + (str(end - 1) if end is not None else "")
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=path, **kwargs)
        except ClientError as exc:
            if _code(exc) == "InvalidRange" or _status(exc) == 416:
                return b""  # the object exists but the range starts at or past its end: an empty slice
            raise
        body = resp["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def _head(self, path: str) -> ObjectInfo:
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=path)
        except ClientError as exc:
            if _status(exc) == 404:
                self._check_bucket(path)
            raise
        self._bucket_seen = True
        return ObjectInfo(
            path, int(resp["ContentLength"]), _etag(resp["ETag"]), _utc(resp["LastModified"]), resp.get("ContentType")
        )

    def _check_bucket(self, path: str) -> None:
        """HEAD answers 404 without a code: raise NotFound naming the bucket if that is what is missing.

        Checked once per handle; if the check itself fails otherwise (no permission to HEAD the
        bucket, a flaky network) the caller's own 404 stands.
        """
        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _status(exc) == 404:
                raise NotFound(f"no such S3 bucket '{self.bucket}'", uri=self.uri, key=self._key_of(path)) from exc
            return
        except BotoCoreError:
            return
        self._bucket_seen = True

    def _list(self, path_prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=path_prefix, PaginationConfig={"PageSize": self.page_size}
        )
        for page in pages:  # S3 lists keys in UTF-8 byte order, which is code-point (str) order
            for item in page.get("Contents", ()):
                yield ObjectInfo(item["Key"], int(item["Size"]), _etag(item["ETag"]), _utc(item["LastModified"]))

    def _delete(self, path: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=path)

    def _delete_many(self, paths: list[str]) -> None:
        unique = list(dict.fromkeys(paths))
        for i in range(0, len(unique), self.delete_batch):
            batch = unique[i : i + self.delete_batch]
            resp = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": p} for p in batch], "Quiet": True}
            )
            errors = [e for e in resp.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                key = self._key_of(first.get("Key", ""))
                message = f"{len(errors)} of {len(batch)} deletes failed, first: {first.get('Code')}: {first.get('Message')}"
                if first.get("Code") in _DENIED:
                    raise AccessDenied(message, uri=self.uri, key=key)
                raise StorageError(message, uri=self.uri, key=key)

    # -- errors ----------------------------------------------------------------------------
    def _translate(self, exc: Exception, key: str | None) -> Exception | None:
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return AccessDenied(
                f"no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
                uri=self.uri,
                key=key,
            )
        if isinstance(exc, ClientError):
            code, status = _code(exc), _status(exc)
            message = exc.response.get("Error", {}).get("Message") or code
            if code == "NoSuchBucket":
                return NotFound(f"no such S3 bucket '{self.bucket}'", uri=self.uri, key=key)
            if code in _NOT_FOUND or status == 404:
                return NotFound("no such object", uri=self.uri, key=key)
            if code in _PRECONDITION or status in (409, 412):
                return PreconditionFailed(f"precondition did not hold ({code})", uri=self.uri, key=key)
            if code in _DENIED or status == 403:
                return AccessDenied(f"access denied ({code}: {message})", uri=self.uri, key=key)
            return StorageError(f"S3 error {code} (HTTP {status}): {message}", uri=self.uri, key=key)
        if isinstance(exc, BotoCoreError):
            return StorageError(f"S3 client error: {exc}", uri=self.uri, key=key)
        return None

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, (HTTPClientError, BotoConnectionError, IncompleteReadError)):
            return True
        if isinstance(exc, ClientError):
            return _code(exc) in _TRANSIENT_CODES or (_status(exc) or 0) >= 500
        return super()._is_transient(exc)

    def _key_of(self, path: str) -> str:
        return path[len(self.prefix) + 1 :] if self.prefix and path.startswith(self.prefix + "/") else path


# -- helpers -----------------------------------------------------------------------------------
def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _etag(value: str) -> str:
    return value.strip('"')


def _quote(etag: str) -> str:
    return etag if etag.startswith('"') or etag == "*" else f'"{etag}"'


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _answer_time(resp: dict[str, Any]) -> datetime:
    """The ``Date`` of the service's answer (when it stored the object), else now."""
    date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if date:
        try:
            return _utc(parsedate_to_datetime(date))
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


def _multipart_checksum(client: Any) -> dict[str, str]:
    """``ChecksumAlgorithm`` for a multipart upload, as boto3's transfer manager chooses it."""
    if getattr(client.meta.config, "request_checksum_calculation", None) != "when_supported":
        return {}
    return {"ChecksumAlgorithm": _DEFAULT_CHECKSUM}


def _read_full(data: IO[bytes], size: int) -> bytes:
    """Read exactly ``size`` bytes unless the stream ends first (short reads are retried)."""
    chunks: list[bytes] = []
    missing = size
    while missing > 0:
        chunk = data.read(missing)
        if isinstance(chunk, str):
            raise TypeError("put takes bytes or a binary file-like object, not a text file")
        if not chunk:
            break
        chunks.append(bytes(chunk))
        missing -= len(chunk)
    return b"".join(chunks)


def _chain_chunks(head: list[bytes], data: IO[bytes], part_size: int) -> Iterator[bytes]:
    """``head`` (emptied) then the rest of ``data`` in parts; parts grow every 1,000 so 10,000 parts reach ~440 GB."""
    count = 0
    while head:  # emptied as sent, so the caller's list does not keep sent parts alive
        count += 1
        yield head.pop(0)
    while True:
        chunk = _read_full(data, part_size * (1 + count // 1000))
        if not chunk:
            return
        count += 1
        yield chunk


__all__ = ["S3Store", "make_client"]
