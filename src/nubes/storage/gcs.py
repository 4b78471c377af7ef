"""Google Cloud Storage backend: ``gs://BUCKET/PREFIX`` through ``google-cloud-storage``.

Configuration comes only from the SDK's own mechanisms: ``STORAGE_EMULATOR_HOST`` (the SDK then
uses anonymous credentials and needs no project), otherwise Application Default Credentials and
``GOOGLE_CLOUD_PROJECT``. Options given to :func:`nubes.storage.open` override them: ``client``
(a ready ``google.cloud.storage.Client``), ``project``, ``credentials``, plus the tuning options of
:class:`GCSStore`.

Etags: the nubes etag of a GCS object is its **generation** as a decimal string. GCS gives every
write a new generation (even of identical bytes), so equal etags mean the same stored version, and
``put(if_match=etag)`` is the server-side precondition ``ifGenerationMatch=etag``;
``put(if_none_match=True)`` is ``ifGenerationMatch=0``. Both are enforced by GCS itself, atomically.
(The local ``gcp-storage-emulator`` ignores preconditions; nubes does not emulate them client-side,
because a check-then-write from the client could not be atomic.)

Like every conditional write on GCS, a conditional put whose response is lost and is then retried
may report :class:`~nubes.errors.PreconditionFailed` although the first attempt was written.
"""

from __future__ import annotations

import contextlib
import http.client
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any, Self

import google.auth.exceptions as gauth_exceptions
import requests
import urllib3
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import storage  # type: ignore[attr-defined]
from google.cloud.storage.retry import DEFAULT_RETRY

from nubes.errors import AccessDenied, ConfigError, NotFound, PreconditionFailed, StorageError
from nubes.storage.base import BaseStore, Data, ObjectInfo
from nubes.storage.keys import MAX_KEY_BYTES

MiB = 1024 * 1024
_SDK_MULTIPART_MAX = 8 * MiB  # google.cloud.storage.blob._MAX_MULTIPART_SIZE
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,  # also http.client.RemoteDisconnected
    TimeoutError,
    http.client.HTTPException,  # IncompleteRead, BadStatusLine ...
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    gauth_exceptions.TransportError,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class GCSStore(BaseStore):
    """Objects under ``gs://bucket/prefix``.

    ``timeout`` is the per-request (connect, read) timeout in seconds. ``retry_deadline`` bounds the
    SDK's own retries of one call (transient errors only); :class:`BaseStore` then retries the call
    ``retries`` times, so a dead endpoint raises StorageUnavailable after roughly
    ``retries * retry_deadline`` seconds. Bytes are sent as ``upload_from_string`` sends them: one
    multipart request up to 8 MiB, else a resumable upload in one request per 100 MiB (the SDK's
    default; the data is in memory already, so smaller chunks would only add requests). Streams of
    known size up to ``chunk_size`` (and at most 8 MiB) are one multipart request; larger ones, and
    streams of unknown size, are resumable uploads sent ``chunk_size`` bytes at a time (a multiple
    of 256 KiB), so at most one chunk is in memory. ``page_size`` is the listing page size
    (``None``: the service default, 1,000).
    """

    scheme = "gs"
    max_path_bytes = MAX_KEY_BYTES

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: storage.Client | None = None,
        project: str | None = None,
        credentials: Any = None,
        timeout: float | tuple[float, float] = (5.0, 60.0),
        retry_deadline: float = 2.0,
        chunk_size: int = 8 * MiB,
        page_size: int | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"gs:// URIs name a bucket first: gs://BUCKET/PREFIX, not gs://{bucket}/{prefix}")
        if chunk_size <= 0 or chunk_size % (256 * 1024):
            raise ConfigError(f"GCS chunk_size must be a positive multiple of 256 KiB, not {chunk_size}")
        super().__init__(bucket, prefix)
        self.bucket_name = bucket
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.page_size = page_size
        self.retry: Retry = DEFAULT_RETRY.with_delay(initial=0.05, maximum=1.0, multiplier=2.0).with_timeout(
            retry_deadline
        )
        self._client = client if client is not None else _make_client(project, credentials)
        self._bucket = self._client.bucket(bucket)
        self._bucket_seen = False  # the bucket was seen to exist: a 404 then means a missing object

    @classmethod
    def from_uri(cls, rest: str, **options: Any) -> Self:
        """``rest`` is ``BUCKET[/PREFIX]`` (the URI after ``gs://``); ``options`` as for the constructor."""
        bucket, _, prefix = rest.partition("/")
        try:
            return cls(bucket, prefix, **options)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            raise ConfigError(
                f"unknown option for gs:// storage ({exc}); known: client, project, credentials, "
                "timeout, retry_deadline, chunk_size, page_size"
            ) from exc

    @property
    def client(self) -> storage.Client:
        return self._client

    # -- primitives --------------------------------------------------------------------------
    def _put(
        self, path: str, data: Data, content_type: str | None, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        conditions: dict[str, int] = {}
        if if_none_match and if_match is not None:
            raise ValueError("put takes if_none_match or if_match, not both")
        if if_none_match:
            conditions["if_generation_match"] = 0
        elif if_match is not None:
            generation = _generation(if_match)
            if generation is None:  # not an etag this backend ever returned: it cannot match
                raise PreconditionFailed(f"etag {if_match!r} does not match the stored object", uri=self.uri, key=self._key(path))
            conditions["if_generation_match"] = generation

        if isinstance(data, (bytes, bytearray, memoryview)):
            # Already in memory: sent as upload_from_string sends it, one multipart request up to
            # 8 MiB, else a resumable upload in the SDK's default 100 MiB chunks (no chunk_size:
            # 8 MiB chunks would only add requests, there is nothing to bound).
            blob = self._bucket.blob(path)
            blob.upload_from_file(
                io.BytesIO(data),
                size=memoryview(data).nbytes,
                content_type=content_type,
                timeout=self.timeout,
                retry=self.retry,
                **conditions,
            )
            return self._info(blob)

        size, rewindable = _remaining(data), _seekable(data)
        one_request = size is not None and size <= min(self.chunk_size, _SDK_MULTIPART_MAX)
        blob = self._bucket.blob(path, chunk_size=self.chunk_size)
        blob.upload_from_file(
            _Window(data),
            # The SDK sends any known size up to 8 MiB as one multipart request, larger or unknown
            # sizes as a resumable upload; hiding the size forces resumable below 8 MiB.
            size=size if one_request or (size or 0) > _SDK_MULTIPART_MAX else None,
            content_type=content_type,
            timeout=self.timeout,
            retry=self.retry if rewindable else None,
            **conditions,
        )
        return self._info(blob)

    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        blob = self._bucket.blob(path)
        try:
            return bytes(
                blob.download_as_bytes(
                    start=start or None,
                    end=None if end is None else end - 1,  # GCS ranges are inclusive
                    timeout=self.timeout,
                    retry=self.retry,
                )
            )
        except gexc.RequestRangeNotSatisfiable:  # start at or past the end: a slice is empty
            return b""

    def _head(self, path: str) -> ObjectInfo:
        blob = self._bucket.blob(path)
        blob.reload(timeout=self.timeout, retry=self.retry)
        return self._info(blob)

    def _list(self, path_prefix: str) -> Iterator[ObjectInfo]:
        """All pages, in GCS order: lexicographic by UTF-8 bytes, which is Python's ``str`` order."""
        blobs = self._client.list_blobs(
            self.bucket_name,
            prefix=path_prefix or None,
            page_size=self.page_size,
            timeout=self.timeout,
            retry=self.retry,
        )
        return (self._info(blob) for blob in blobs)

    def _delete(self, path: str) -> None:
        with contextlib.suppress(gexc.NotFound):
            self._bucket.delete_blob(path, timeout=self.timeout, retry=self.retry)

    def _delete_many(self, paths: list[str]) -> None:
        """Batch requests of at most 100 deletes (the JSON API limit); missing objects are ignored."""
        for i in range(0, len(paths), 100):
            batch = self._client.batch(raise_exception=False)
            with batch:
                for path in paths[i : i + 100]:
                    self._bucket.delete_blob(path, timeout=self.timeout)
            for response in getattr(batch, "_responses", ()):
                status = getattr(response, "status_code", 200)
                if not 200 <= status < 300 and status != 404:
                    raise gexc.from_http_response(response)  # type: ignore[no-untyped-call]

    def _translate(self, exc: Exception, key: str | None) -> Exception | None:
        if isinstance(exc, gexc.NotFound):
            if self._bucket_missing():
                return NotFound(f"no such bucket 'gs://{self.bucket_name}'", uri=self.uri, key=key)
            return NotFound("no such object", uri=self.uri, key=key)
        if isinstance(exc, gexc.PreconditionFailed):
            return PreconditionFailed("the object changed or exists (generation precondition failed)", uri=self.uri, key=key)
        if isinstance(exc, (gexc.Forbidden, gexc.Unauthorized, gauth_exceptions.RefreshError)):
            return AccessDenied(f"access denied ({_short(exc)})", uri=self.uri, key=key)
        if isinstance(exc, gauth_exceptions.DefaultCredentialsError):
            return AccessDenied(f"no Google credentials found ({_short(exc)})", uri=self.uri, key=key)
        if isinstance(exc, gexc.GoogleAPICallError):
            return StorageError(f"GCS request failed ({_short(exc)})", uri=self.uri, key=key)
        return None

    def _is_transient(self, exc: Exception) -> bool:
        """Timeouts, refused/reset connections, 408/429/5xx, and SDK retries that ran out of time."""
        if isinstance(exc, gexc.RetryError):  # the SDK retried a transient error until its deadline
            return True
        if isinstance(exc, gexc.GoogleAPICallError):
            return exc.code in _TRANSIENT_STATUS
        return isinstance(exc, _TRANSIENT_TYPES)

    # -- helpers -----------------------------------------------------------------------------
    def _info(self, blob: storage.Blob) -> ObjectInfo:
        return ObjectInfo(
            key=blob.name,
            size=int(blob.size or 0),
            etag=str(blob.generation),
            last_modified=_utc(blob.updated),
            content_type=blob.content_type,
        )

    def _key(self, path: str) -> str:
        return path[len(self.prefix) + 1 :] if self.prefix else path

    def _bucket_missing(self) -> bool:
        """True only if the bucket is known not to exist (one extra request, until it is seen once)."""
        if self._bucket_seen:
            return False
        try:
            exists = self._bucket.exists(timeout=self.timeout, retry=None)
        except Exception:  # unknown (no permission to check, network): do not claim it is missing
            return False
        self._bucket_seen = bool(exists)
        return not exists


class _Window:
    """A binary stream seen from its current position, as the SDK's resumable upload wants it.

    ``tell()`` counts from where the stream was (the SDK insists on 0 at the start), ``read(n)``
    returns ``n`` bytes unless the stream ends (a short read would end the upload early), and
    ``seek`` (the SDK's recovery after a failed chunk) works only if the stream is seekable.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._seekable = _seekable(stream)
        self._base = stream.tell() if self._seekable else 0
        self._pos = 0

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data = self._stream.read()
        else:
            parts: list[bytes] = []
            wanted = size
            while wanted > 0:
                part = self._stream.read(wanted)
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
            data = b"".join(parts)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return self._seekable

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self._seekable or whence != io.SEEK_SET:
            raise io.UnsupportedOperation("this upload stream can only be read forward")
        self._stream.seek(self._base + offset)
        self._pos = offset
        return offset


def _make_client(project: str | None, credentials: Any) -> storage.Client:
    """A client configured by the SDK's standard environment, with explicit overrides."""
    kwargs: dict[str, Any] = {}
    if project is not None:
        kwargs["project"] = project
    if credentials is not None:
        kwargs["credentials"] = credentials
    try:
        try:
            return storage.Client(**kwargs)
        except OSError as exc:  # credentials found but no project: object operations need none
            if "project" not in str(exc).lower() or "project" in kwargs:
                raise
            return storage.Client(project=None, credentials=credentials)
    except gauth_exceptions.DefaultCredentialsError as exc:
        raise ConfigError(
            "gs:// storage found no Google credentials: set up Application Default Credentials "
            "(GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`), set "
            f"STORAGE_EMULATOR_HOST for an emulator, or pass credentials= ({_short(exc)})"
        ) from exc


def _generation(etag: str) -> int | None:
    etag = etag.strip().strip('"')
    return int(etag) if etag.isdigit() else None


def _remaining(stream: IO[bytes]) -> int | None:
    """Bytes from the current position to the end, if the stream can tell; else None."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(here)
        return max(end - here, 0)
    except (AttributeError, OSError, ValueError):
        return None


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return _EPOCH
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
