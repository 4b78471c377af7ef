"""The one error tree of nubes. Every exception nubes raises on purpose is one of these.

Vendor exceptions (botocore, google.api_core, azure.core, OSError ...) are translated at the
boundary where they arise, so callers only ever catch what is drawn here::

    NubesError                      base of everything below
    ├── ConfigError                 an app, route, option or CLI argument is declared wrongly
    ├── BackendMissing              a backend's SDK is not installed (names the extra to install)
    ├── NoHandler                   an event arrived that no event handler of the app matches
    ├── UnknownEvent                an adapter got a payload it does not recognise
    ├── HTTPError                   an HTTP answer: status + detail, sent as application/problem+json
    │   └── ValidationError         422: request parameters or body that do not bind, each named
    └── StorageError                an object-store operation failed (carries ``uri`` and ``key``)
        ├── NotFound                no object at that key                       (404, FileNotFoundError)
        ├── PreconditionFailed      if_match / if_none_match did not hold        (412)
        ├── AccessDenied            the credentials may not do this              (403, PermissionError)
        ├── StorageUnavailable      the service did not answer, after retries    (503, ConnectionError)
        └── InvalidKey              the key is malformed or escapes the store    (400, ValueError)

A ``StorageError`` escaping a handler becomes an HTTP answer with the status shown above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class NubesError(Exception):
    """Base class of every error nubes raises on purpose."""


class ConfigError(NubesError):
    """An app, route, option or command-line argument is declared wrongly; the message says how to fix it."""


class BackendMissing(NubesError, ImportError):
    """The SDK a backend needs is not installed; the message names the extra to install."""


class NoHandler(NubesError):
    """An event arrived that no ``on_object_created`` / ``on_message`` / ``on_schedule`` handler matches."""


class UnknownEvent(NubesError, ValueError):
    """An adapter was invoked with a payload it does not recognise; the message says what it expected."""


class HTTPError(NubesError):
    """Raise from a handler to answer with ``status`` and an RFC 9457 problem body.

    ``detail`` is the human explanation; ``title`` defaults to the status phrase; ``type`` is a URI
    identifying the problem kind (``about:blank`` by default); ``headers`` are added to the response;
    any further keyword becomes an extension member of the problem body.
    """

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str = "about:blank",
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        if not 400 <= int(status) <= 599:
            raise ValueError(f"HTTPError status must be 4xx or 5xx, not {status}")
        self.status = int(status)
        self.title = title or _phrase(self.status)
        self.detail = detail
        self.type = type
        self.headers = dict(headers or {})
        self.extensions = extensions
        super().__init__(f"{self.status} {self.title}" + (f": {detail}" if detail else ""))

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document for this error (without ``instance``/``request_id``)."""
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extensions)
        return body


class ValidationError(HTTPError):
    """422: one entry per parameter that did not bind: ``{"name", "in", "detail"}``."""

    def __init__(self, errors: Sequence[Mapping[str, str]]) -> None:
        self.errors = [dict(e) for e in errors]
        names = ", ".join(f"{e['in']} parameter '{e['name']}'" for e in self.errors)
        detail = "; ".join(f"{e['in']} parameter '{e['name']}': {e['detail']}" for e in self.errors)
        super().__init__(422, detail or f"invalid {names}", errors=self.errors)


class StorageError(NubesError):
    """An object-store operation failed. ``uri`` is the store's URI, ``key`` the object key (if any)."""

    http_status = 500

    def __init__(self, message: str, *, uri: str = "", key: str | None = None) -> None:
        self.uri = uri
        self.key = key
        where = uri.rstrip("/") + ("/" + key if key else "") if uri else (key or "")
        super().__init__(f"{message}: {where}" if where else message)


class NotFound(StorageError, FileNotFoundError):
    """No object at that key."""

    http_status = 404


class PreconditionFailed(StorageError):
    """A conditional write's ``if_match`` / ``if_none_match`` did not hold: another writer got there first."""

    http_status = 412


class AccessDenied(StorageError, PermissionError):
    """The credentials in use may not perform this operation."""

    http_status = 403


class StorageUnavailable(StorageError, ConnectionError):
    """The storage service did not answer, after bounded retries with backoff."""

    http_status = 503


class InvalidKey(StorageError, ValueError):
    """The key is empty, malformed, or would escape the store's root."""

    http_status = 400


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Error" if status < 500 else "Server Error"


__all__ = [
    "AccessDenied",
    "BackendMissing",
    "ConfigError",
    "HTTPError",
    "InvalidKey",
    "NoHandler",
    "NotFound",
    "NubesError",
    "PreconditionFailed",
    "StorageError",
    "StorageUnavailable",
    "UnknownEvent",
    "ValidationError",
]
