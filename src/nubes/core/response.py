"""The cloud-neutral HTTP response every handler result becomes and every adapter sends."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from nubes.core.datastructures import MutableHeaders, Pairs


class Response:
    """An HTTP response: ``status``, case-insensitive multi-valued ``headers`` and ``body`` bytes.

    Return one from a handler to control the answer exactly; otherwise nubes encodes the return
    value (see :mod:`nubes.core.encoding`). ``body`` may be given as ``str`` (sent as UTF-8).
    """

    __slots__ = ("status", "headers", "body")

    def __init__(
        self,
        body: bytes | str = b"",
        status: int = 200,
        headers: Pairs = None,
        media_type: str | None = None,
    ) -> None:
        self.status = int(status)
        self.headers = MutableHeaders(headers)
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
        """Append a ``Set-Cookie`` header (each cookie its own header, as RFC 6265 requires)."""
        parts = [f"{name}={quote(value, safe='')}"]
        if max_age is not None:
            parts.append(f"Max-Age={int(max_age)}")
        if expires is not None:
            from email.utils import format_datetime

            when = expires if expires.tzinfo else expires.replace(tzinfo=timezone.utc)
            parts.append(f"Expires={format_datetime(when.astimezone(timezone.utc), usegmt=True)}")
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
