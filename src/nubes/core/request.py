"""The cloud-neutral HTTP request every adapter builds and every handler sees."""

from __future__ import annotations

import json as _json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from nubes.core.datastructures import Headers, MultiDict, Pairs
from nubes.errors import HTTPError

_UNSET: Any = object()


class Request:
    """An immutable HTTP request.

    ``path`` is percent-decoded (``raw_path`` is as sent); ``query`` and ``headers`` are
    multi-mappings (``get`` first value, ``getlist`` all, ``multi_items`` every pair; header names
    are case-insensitive); ``cookies`` maps names to values; ``body`` is the raw bytes and
    ``json()`` parses them (a malformed body raises a 400 :class:`HTTPError`).
    """

    __slots__ = ("method", "raw_path", "path", "query_string", "_query", "headers", "body", "scheme", "_cookies", "_json")

    method: str
    raw_path: str
    path: str
    query_string: str
    headers: Headers
    body: bytes
    scheme: str

    def __init__(
        self,
        method: str,
        path: str,
        *,
        query: Pairs | str = None,
        headers: Pairs = None,
        body: bytes | str = b"",
        scheme: str = "http",
    ) -> None:
        raw_path, _, qs_in_path = path.partition("?")
        if not raw_path.startswith("/"):
            raw_path = "/" + raw_path
        if isinstance(query, str):
            query_string = query
        elif query is not None:
            pairs = MultiDict(query).multi_items()
            query_string = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
        else:
            query_string = qs_in_path
        if qs_in_path and query is not None:
            query_string = qs_in_path + ("&" + query_string if query_string else "")
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        for name, value in (
            ("method", method.upper()),
            ("raw_path", raw_path),
            ("path", unquote(raw_path) if "%" in raw_path else raw_path),
            ("query_string", query_string),
            ("_query", None),
            ("headers", headers if isinstance(headers, Headers) else Headers(headers)),
            ("body", data),
            ("scheme", scheme),
            ("_cookies", None),
            ("_json", _UNSET),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Request is immutable")

    @property
    def query(self) -> MultiDict:
        """The query string's pairs, in order (parsed on first use)."""
        if self._query is None:
            pairs = parse_qsl(self.query_string, keep_blank_values=True) if self.query_string else []
            object.__setattr__(self, "_query", MultiDict(pairs))
        return self._query  # type: ignore[return-value]

    @property
    def url(self) -> str:
        host = self.headers.get("host", "localhost")
        return f"{self.scheme}://{host}{self.raw_path}" + (f"?{self.query_string}" if self.query_string else "")

    @property
    def content_type(self) -> str:
        """The media type of the body, lower-case, without parameters ('' if none)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def cookies(self) -> Mapping[str, str]:
        if self._cookies is None:
            jar: dict[str, str] = {}
            for header in self.headers.getlist("cookie"):
                for part in header.split(";"):
                    name, sep, value = part.strip().partition("=")
                    if sep and name:
                        value = value.strip()
                        if len(value) >= 2 and value[0] == value[-1] == '"':
                            value = value[1:-1]
                        jar.setdefault(name.strip(), unquote(value))
            object.__setattr__(self, "_cookies", MappingProxyType(jar))
        return self._cookies  # type: ignore[return-value]

    def text(self) -> str:
        charset = "utf-8"
        for param in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.body.decode(charset)
        except (LookupError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"request body is not valid {charset} text: {exc}") from None

    def json(self) -> Any:
        """The body parsed as JSON; 400 if it is empty or malformed."""
        if self._json is _UNSET:
            if not self.body.strip():
                raise HTTPError(400, "request body is empty; expected JSON")
            try:
                value = _json.loads(self.body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise HTTPError(400, f"request body is not valid JSON: {exc}") from None
            object.__setattr__(self, "_json", value)
        return self._json

    def __repr__(self) -> str:
        qs = f"?{self.query_string}" if self.query_string else ""
        return f"<Request {self.method} {self.raw_path}{qs}>"
