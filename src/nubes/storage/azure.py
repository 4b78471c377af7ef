"""Azure Blob Storage backend: ``az://CONTAINER/PREFIX`` (block blobs), on ``azure-storage-blob``.

Configuration comes only from the SDK's standard mechanisms, options to :func:`nubes.storage.open`
first:

1. ``service_client=`` a ready :class:`azure.storage.blob.BlobServiceClient`;
2. ``connection_string=`` (option), else ``account_url=`` (option, with ``credential=`` or
   ``DefaultAzureCredential``);
3. ``AZURE_STORAGE_CONNECTION_STRING``;
4. ``AZURE_STORAGE_ACCOUNT_URL`` or ``AZURE_STORAGE_ACCOUNT`` (-> ``https://{account}.blob.core.windows.net``)
   with ``credential=`` or ``DefaultAzureCredential`` (needs ``pip install azure-identity``).

Tuning options: ``connection_timeout`` / ``read_timeout`` (seconds), ``retry_total`` (SDK-level
retries, each ``retry_backoff`` s apart, before nubes' own bounded retries), ``max_block_size`` /
``max_single_put_size`` (bytes; larger data is streamed as staged blocks), ``max_concurrency``
(parallel blocks per transfer) and ``results_per_page`` (list page size).

The container must exist: a missing one is :class:`~nubes.errors.NotFound` naming it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from typing import IO, Any, Self

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, LinearRetry

from nubes.errors import (
    AccessDenied,
    BackendMissing,
    ConfigError,
    NotFound,
    PreconditionFailed,
    StorageError,
)
from nubes.storage.base import BaseStore, Data, ObjectInfo
from nubes.storage.keys import MAX_KEY_BYTES

DEFAULT_CONTENT_TYPE = "application/octet-stream"
BATCH_LIMIT = 256  # sub-requests per Blob Batch call (service maximum)
_CONTAINER_NAME = re.compile(r"^(?:\$root|\$web|(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*)$")

_DEFAULTS: dict[str, Any] = {
    "connection_timeout": 5.0,
    "read_timeout": 30.0,
    "retry_total": 2,
    "retry_backoff": 0.2,
    "max_block_size": 4 * 1024 * 1024,
    "max_single_put_size": 4 * 1024 * 1024,
    "max_concurrency": 4,
    "results_per_page": 1000,
}
_CLIENT_OPTIONS = {"connection_string", "account_url", "credential", "service_client"}


class AzureBlobStore(BaseStore):
    """Block blobs under ``az://container/prefix``; see :class:`~nubes.storage.ObjectStore` for the contract.

    ``put`` of more than ``max_single_put_size`` bytes (or of a stream of unknown size) stages blocks
    of ``max_block_size`` and commits them in one atomic ``Put Block List``; conditions are checked
    at commit, so a losing writer leaves no trace. ``delete_many`` uses Blob Batch (256 deletes per
    call) and falls back to one call per blob where the service does not offer batches.
    """

    scheme = "az"
    max_path_bytes = MAX_KEY_BYTES

    def __init__(self, container: ContainerClient, prefix: str = "", **options: Any) -> None:
        super().__init__(container.container_name, prefix)
        self._container = container
        settings = {**_DEFAULTS, **{k: v for k, v in options.items() if k in _DEFAULTS}}
        self._max_single_put_size = int(settings["max_single_put_size"])
        self._max_concurrency = int(settings["max_concurrency"])
        self._results_per_page = int(settings["results_per_page"])
        self._batch_supported = True

    @classmethod
    def from_uri(cls, rest: str, **options: Any) -> Self:
        """Open ``az://{rest}``; ``rest`` is ``CONTAINER`` or ``CONTAINER/PREFIX``."""
        container_name, _, prefix = rest.partition("/")
        if not _CONTAINER_NAME.match(container_name):
            raise ConfigError(
                f"az://{rest}: container name {container_name!r} is invalid; Azure container names are 3-63 "
                "characters of lowercase letters, digits and single hyphens, starting with a letter or digit"
            )
        unknown = set(options) - _CLIENT_OPTIONS - set(_DEFAULTS)
        if unknown:
            raise ConfigError(
                f"unknown option(s) for az:// storage: {', '.join(sorted(unknown))}; accepted: "
                + ", ".join(sorted(_CLIENT_OPTIONS | set(_DEFAULTS)))
            )
        service = _service_client(options)
        return cls(service.get_container_client(container_name), prefix, **options)

    # -- primitives ------------------------------------------------------------------------
    def _put(
        self, path: str, data: Data, content_type: str | None, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        if if_none_match and if_match is not None:
            raise ValueError("put takes if_none_match or if_match, not both")
        body, length = self._body(data)
        counter = body if isinstance(body, _CountingReader) else None
        kwargs: dict[str, Any] = {
            "length": length,
            "content_settings": ContentSettings(content_type=content_type or DEFAULT_CONTENT_TYPE),
            "max_concurrency": self._max_concurrency,
            "overwrite": not if_none_match,  # overwrite=False sends If-None-Match: *, checked at commit
        }
        if if_match is not None:
            kwargs.update(etag=_etag(if_match), match_condition=MatchConditions.IfNotModified)
        result = self._container.get_blob_client(path).upload_blob(body, **kwargs)
        size = counter.count if counter is not None else int(length or 0)
        return ObjectInfo(path, size, _etag(result["etag"]), result["last_modified"], content_type or DEFAULT_CONTENT_TYPE)

    def _body(self, data: Data) -> tuple[bytes | IO[bytes] | _CountingReader, int | None]:
        """What to hand ``upload_blob``: bytes, a seekable file with its remaining length, or (for a
        one-way stream) a counting reader of unknown length that the SDK stages block by block."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
            return raw, len(raw)
        seekable = False
        with contextlib.suppress(AttributeError, ValueError, OSError):
            seekable = bool(data.seekable())
        if seekable:
            here = data.tell()
            end = data.seek(0, io.SEEK_END)
            data.seek(here)
            length = max(end - here, 0)
            if here == 0 or length <= self._max_single_put_size:
                return data, length
            # the SDK's parallel block path addresses a seekable stream from offset 0: read it one way
            return _CountingReader(b"", data), None
        head = _read_up_to(data, self._max_single_put_size + 1)
        if len(head) <= self._max_single_put_size:
            return head, len(head)
        return _CountingReader(head, data), None

    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        length = None if end is None else end - start
        try:
            downloader = self._container.get_blob_client(path).download_blob(
                offset=start, length=length, max_concurrency=self._max_concurrency
            )
            return bytes(downloader.readall())
        except ResourceModifiedError as exc:
            # a later chunk of a multi-request download found a new version: read again (transient)
            raise ServiceResponseError("the blob was replaced during a multi-part download") from exc
        except HttpResponseError as exc:
            if exc.status_code == 416:  # the range starts at or past the end (or the blob is empty)
                return b""
            raise

    def _head(self, path: str) -> ObjectInfo:
        props = self._container.get_blob_client(path).get_blob_properties()
        return _info(props)

    def _list(self, path_prefix: str) -> Iterator[ObjectInfo]:
        # Materialised and sorted here: the service lists in binary name order, but emulators may
        # not, and the contract promises order by key (Python str order = UTF-8 byte order).
        pages = self._container.list_blobs(
            name_starts_with=path_prefix or None, results_per_page=self._results_per_page
        ).by_page()
        infos = [_info(props) for page in pages for props in page]
        infos.sort(key=lambda info: info.key)
        return iter(infos)

    def _delete(self, path: str) -> None:
        try:
            self._container.get_blob_client(path).delete_blob(delete_snapshots="include")
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                raise
            # a missing blob is not an error

    def _delete_many(self, paths: list[str]) -> None:
        unique = list(dict.fromkeys(paths))
        for start in range(0, len(unique), BATCH_LIMIT):
            chunk = unique[start : start + BATCH_LIMIT]
            if not (self._batch_supported and len(chunk) > 1 and self._delete_batch(chunk)):
                for path in chunk:
                    self._delete(path)

    def _delete_batch(self, paths: list[str]) -> bool:
        """Delete ``paths`` in one Blob Batch call; False if the service does not support batches."""
        try:
            responses = list(
                self._container.delete_blobs(*paths, delete_snapshots="include", raise_on_any_failure=False)
            )
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status in (400, 404, 405, 501) and _code(exc) != "ContainerNotFound":
                self._batch_supported = False  # e.g. an emulator without Blob Batch: one call per blob
                return False
            raise
        for path, response in zip(paths, responses, strict=False):
            status = response.status_code
            if status in (200, 202):
                continue
            code = response.headers.get("x-ms-error-code", "")
            if status == 404 and code != "ContainerNotFound":
                continue  # already gone
            error = HttpResponseError(message=f"batch delete: {status} {code}", response=response)
            error.error_code = code  # type: ignore[attr-defined]
            if status >= 500 or status in (408, 429):
                raise error  # transient: the whole (idempotent) batch is retried
            key = path[len(self.prefix) + 1 :] if self.prefix else path
            raise self._translate(_refine(error), key) or error
        return True

    # -- errors ----------------------------------------------------------------------------
    def _translate(self, exc: Exception, key: str | None) -> Exception | None:
        code = _code(exc)
        if isinstance(exc, ResourceNotFoundError) or getattr(exc, "status_code", None) == 404:
            if code == "ContainerNotFound":
                return NotFound(
                    f"Azure container '{self.root}' does not exist (create it first, e.g. "
                    f"az storage container create --name {self.root})",
                    uri=self.uri,
                    key=key,
                )
            return NotFound("no such object", uri=self.uri, key=key)
        if isinstance(exc, ResourceModifiedError) or (
            isinstance(exc, (ResourceExistsError, HttpResponseError))
            and (exc.status_code == 412 or code in ("BlobAlreadyExists", "ConditionNotMet"))
        ):
            if code in ("BlobAlreadyExists", "ConditionNotMet", ""):
                why = "the object was created or changed by another writer"
            else:
                why = f"{code}: {_first_line(exc)}"  # e.g. a lease held on the blob
            return PreconditionFailed(f"precondition failed ({why})", uri=self.uri, key=key)
        if isinstance(exc, ClientAuthenticationError) or getattr(exc, "status_code", None) in (401, 403):
            return AccessDenied(f"Azure denied access ({code or type(exc).__name__}: {_first_line(exc)})", uri=self.uri, key=key)
        if isinstance(exc, AzureError):
            status = getattr(exc, "status_code", None)
            return StorageError(
                f"Azure Blob Storage error ({status or ''} {code or type(exc).__name__}: {_first_line(exc)})".replace("( ", "("),
                uri=self.uri,
                key=key,
            )
        return None

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, (ServiceRequestError, ServiceResponseError, IncompleteReadError, ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, HttpResponseError):
            status = exc.status_code or 0
            return status >= 500 or status in (408, 429)
        return False


# -- helpers ---------------------------------------------------------------------------------
def _service_client(options: dict[str, Any]) -> BlobServiceClient:
    """The BlobServiceClient from options, else the standard environment variables (see module doc)."""
    supplied = options.get("service_client")
    if supplied is not None:
        return supplied  # type: ignore[no-any-return]
    settings = {**_DEFAULTS, **{k: v for k, v in options.items() if k in _DEFAULTS}}
    client_kwargs: dict[str, Any] = {
        "connection_timeout": settings["connection_timeout"],
        "read_timeout": settings["read_timeout"],
        "retry_policy": LinearRetry(
            backoff=float(settings["retry_backoff"]),  # type: ignore[arg-type]  # the SDK takes seconds as float
            retry_total=int(settings["retry_total"]),
            random_jitter_range=float(settings["retry_backoff"]) / 2,  # type: ignore[arg-type]
        ),
        "max_block_size": int(settings["max_block_size"]),
        "max_single_put_size": int(settings["max_single_put_size"]),
    }
    credential = options.get("credential")
    connection_string = options.get("connection_string")
    account_url = options.get("account_url")
    if connection_string is None and account_url is None:
        connection_string = os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or None
        if connection_string is None:
            account_url = os.environ.get("AZURE_STORAGE_ACCOUNT_URL") or None
            account = os.environ.get("AZURE_STORAGE_ACCOUNT")
            if account_url is None and account:
                account_url = f"https://{account}.blob.core.windows.net"
    if connection_string is not None:
        try:
            return BlobServiceClient.from_connection_string(connection_string, credential=credential, **client_kwargs)
        except ValueError as exc:
            raise ConfigError(f"the Azure Storage connection string is malformed: {exc}") from exc
    if account_url is None:
        raise ConfigError(
            "az:// storage is not configured: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT "
            "(or AZURE_STORAGE_ACCOUNT_URL) with credentials DefaultAzureCredential can find, or pass "
            "connection_string=/account_url=/service_client= to nubes.storage.open"
        )
    if credential is None:
        credential = _default_credential()
    return BlobServiceClient(account_url, credential=credential, **client_kwargs)


def _default_credential() -> Any:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:
        raise BackendMissing(
            "az:// storage with an account URL authenticates through DefaultAzureCredential, which needs the "
            "azure-identity package: pip install azure-identity (or set AZURE_STORAGE_CONNECTION_STRING)"
        ) from exc
    return DefaultAzureCredential()


def _info(props: Any) -> ObjectInfo:
    content_settings = getattr(props, "content_settings", None)
    content_type = getattr(content_settings, "content_type", None) if content_settings is not None else None
    return ObjectInfo(str(props.name), int(props.size or 0), _etag(props.etag), props.last_modified, content_type)


def _etag(value: Any) -> str:
    """ETags in their quoted HTTP form: headers carry quotes, List Blobs XML does not."""
    return '"' + str(value).strip('"') + '"'


def _code(exc: Exception) -> str:
    code = getattr(exc, "error_code", None)
    if code is None:
        return ""
    return str(getattr(code, "value", code))


def _refine(error: HttpResponseError) -> HttpResponseError:
    """The specific azure.core subclass a status would have produced, so translation stays uniform."""
    status = error.status_code or 0
    cls: type[HttpResponseError] = {404: ResourceNotFoundError, 409: ResourceExistsError, 412: ResourceModifiedError}.get(
        status, ClientAuthenticationError if status in (401, 403) else HttpResponseError
    )
    if cls is HttpResponseError:
        return error
    refined = cls(message=error.message, response=error.response)
    refined.error_code = error.error_code  # type: ignore[attr-defined]
    return refined


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _read_up_to(stream: IO[bytes], size: int) -> bytes:
    """Read until ``size`` bytes or EOF (a raw stream may return short reads)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


class _CountingReader(io.RawIOBase):
    """``head`` then the rest of a one-way ``stream``, counting bytes handed out; not seekable.

    ``read(n)`` returns exactly ``n`` bytes until the end of the data (never a short read before it):
    the SDK's block chunker, given a stream of unknown length, would otherwise glue everything after
    a short read into one block held in memory.
    """

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            out = bytes(self._head) + _read_all(self._stream)
            self._head = memoryview(b"")
        else:
            out = bytes(self._head[:size])
            self._head = self._head[len(out) :]
            if len(out) < size:
                out += _read_up_to(self._stream, size - len(out))
        self.count += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def _read_all(stream: IO[bytes]) -> bytes:
    parts: list[bytes] = []
    while chunk := stream.read(1024 * 1024):
        parts.append(chunk)
    return b"".join(parts)


__all__ = ["AzureBlobStore"]
