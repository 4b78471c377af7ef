"""The cloud-neutral HTTP response every handler result becomes and every adapter sends.

Header names must be RFC 9110 tokens and values may hold no control character but tab (no CR, LF
or NUL): :class:`InvalidHeader` is raised when such a header is set, so a value taken from a request
(a redirect target, a cookie path) can never split the response or inject a header. In a handler
that is an unexpected exception, answered as a 500 problem.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from nubes.core.datastructures import MutableHeaders, Pairs, _pairs
from nubes.errors import NubesError

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class InvalidHeader(NubesError, ValueError):
    """A response header name that is not a token, or a value with a control character (CR, LF, NUL ...)."""


_NAMES_SEEN: set[str] = set()  # names already checked (bounded): the common headers skip the regex


def check_header(name: str, value: str) -> None:
    """Raise :class:`InvalidHeader` unless ``name: value`` is a header that cannot split a response."""
    if name not in _NAMES_SEEN:
        if not (isinstance(name, str) and _TOKEN.fullmatch(name)):
            raise InvalidHeader(f"response header name {name!r} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~)")
        if len(_NAMES_SEEN) < 4096:
            _NAMES_SEEN.add(name)
    if not isinstance(value, str):
        raise InvalidHeader(f"response header {name!r}: the value must be a str, not {type(value).__name__}")
    if not value.isprintable():  # fast path: printable text has no control character
        bad = _CONTROL.search(value)
        if bad:
            raise InvalidHeader(f"response header {name!r}: the value contains the control character {bad.group()!r} "
                                "(CR, LF and NUL could split the response); refused")


class ResponseHeaders(MutableHeaders):
    """:class:`~nubes.core.datastructures.MutableHeaders` that refuse, when set, any header
    :func:`check_header` refuses."""

    __slots__ = ()

    def __init__(self, source: Pairs = None) -> None:
        pairs = _pairs(source)
        for name, value in pairs:
            check_header(name, value)
        super().__init__(pairs)

    def _set(self, key: str, values: list[str]) -> None:
        seen = key in _NAMES_SEEN
        for value in values:
            if not (seen and type(value) is str and value.isprintable()):  # the common case needs no call
                check_header(key, value)
        super()._set(key, values)


class Response:
    """An HTTP response: ``status``, case-insensitive multi-valued ``headers`` and ``body`` bytes.

    Return one from a handler to control the answer exactly; otherwise nubes encodes the return
    value (see :mod:`nubes.core.encoding`). ``body`` may be given as ``str`` (sent as UTF-8).
    Headers are checked when set (construction, ``headers[k] = v``, ``add``, :meth:`set_cookie`,
    assigning ``headers``): a name that is not a token or a value with CR, LF, NUL or another
    control character raises :class:`InvalidHeader`.
    """

    __slots__ = ("_headers", "body", "status")

    def __init__(
        self,
        body: bytes | str = b"",
        status: int = 200,
        headers: Pairs = None,
        media_type: str | None = None,
    ) -> None:
        self.status = int(status)
        self._headers = ResponseHeaders(headers)
        if isinstance(body, str):
            self.body = body.encode("utf-8")
            if media_type and media_type.startswith("text/") and "charset" not in media_type:
                media_type += "; charset=utf-8"
        else:
            self.body = bytes(body)
        if media_type and "content-type" not in self.headers:
            self.headers["content-type"] = media_type

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Pairs = None) -> Response:
        """JSON-encode ``data`` with nubes' encoder (dates, decimals, numpy, NaN as null)."""
        from nubes.core.encoding import dumps

        return cls(dumps(data), status, headers, "application/json")

    @classmethod
    def text(cls, text: str, status: int = 200, headers: Pairs = None) -> Response:
        return cls(text, status, headers, "text/plain; charset=utf-8")

    @classmethod
    def redirect(cls, location: str, status: int = 307) -> Response:
        return cls(b"", status, {"location": location})

    @property
    def headers(self) -> ResponseHeaders:
        """The response headers: case-insensitive, ordered, multi-valued, checked when set."""
        return self._headers

    @headers.setter
    def headers(self, value: Pairs) -> None:
        self._headers = value if isinstance(value, ResponseHeaders) else ResponseHeaders(value)

    @property
    def media_type(self) -> str | None:
        value = self.headers.get("content-type")
        return value.split(";", 1)[0].strip() if value else None

    @property
    def reason(self) -> str:
        from http import HTTPStatus

        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return ""

    def set_cookie(
        self,
        name: str,
        value: str,
        *,
        max_age: int | None = None,
        expires: datetime | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: str | None = "lax",
    ) -> None:
        """Append a ``Set-Cookie`` header (each cookie its own header, as RFC 6265 requires).

        ``value`` is percent-encoded; ``name`` must be a token, ``path`` and ``domain`` may hold no
        ``;`` or control character and ``samesite`` is ``strict``, ``lax`` or ``none``
        (:class:`InvalidHeader` otherwise: none of them can add an attribute or a header).
        """
        if not (isinstance(name, str) and _TOKEN.fullmatch(name)):
            raise InvalidHeader(f"cookie name {name!r} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~)")
        for attribute, text in (("path", path), ("domain", domain)):
            if text and (";" in text or _CONTROL.search(text)):
                raise InvalidHeader(f"cookie {name!r}: {attribute} {text!r} contains ';' or a control character; refused")
        if samesite and samesite.lower() not in ("strict", "lax", "none"):
            raise InvalidHeader(f"cookie {name!r}: samesite={samesite!r}; use 'strict', 'lax' or 'none'")
        parts = [f"{name}={quote(value, safe='')}"]
        if max_age is not None:
            parts.append(f"Max-Age={int(max_age)}")
        if expires is not None:
            from email.utils import format_datetime

            when = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
            parts.append(f"Expires={format_datetime(when.astimezone(UTC), usegmt=True)}")
        if path:
            parts.append(f"Path={path}")
        if domain:
            parts.append(f"Domain={domain}")
        if secure:
            parts.append("Secure")
        if httponly:
            parts.append("HttpOnly")
        if samesite:
            parts.append(f"SameSite={samesite.capitalize()}")
        self.headers.add("set-cookie", "; ".join(parts))

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.media_type or ''} {len(self.body)} bytes>"
