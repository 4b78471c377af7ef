"""The cloud-neutral HTTP request every adapter builds and every handler sees."""

from __future__ import annotations

import json as _json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, quote, unquote

from nubes.core.datastructures import Headers, MultiDict, Pairs
from nubes.errors import HTTPError

_UNSET: Any = object()
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")  # an HTTP method (RFC 9110 token)


def is_text(value: Any) -> TypeGuard[str]:
    """True for a str UTF-8 can encode, i.e. with no lone surrogate (``"\\ud800"`` from JSON);
    ASCII is checked in C, anything else encoded once. Adapters use it on untrusted input."""
    if not isinstance(value, str):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def forwarded_scheme(headers: Any, default: str) -> str:
    """The client's scheme as the front end that terminated TLS reports it: the first
    ``X-Forwarded-Proto`` value, else the ``proto`` of the first ``Forwarded`` element (RFC 7239).

    ``headers`` is anything with ``get(name)`` (case-insensitive). Only ``http`` and ``https``
    (any case) are taken; a value that is absent or anything else (CR/LF, another word) gives
    ``default``, so what a client sends never reaches ``Request.scheme`` or ``Request.url`` raw."""
    proto = headers.get("x-forwarded-proto")
    proto = proto.split(",", 1)[0].strip().lower() if isinstance(proto, str) else ""
    if not proto:
        forwarded = headers.get("forwarded")
        for part in forwarded.split(",", 1)[0].split(";") if isinstance(forwarded, str) else ():
            key, _, value = part.strip().partition("=")
            if key.lower() == "proto":
                proto = value.strip().strip('"').lower()
    return proto if proto in ("http", "https") else default


def _text(value: Any, what: str) -> str:
    """``value`` if it is text UTF-8 can encode (no lone surrogate), else a 400."""
    if is_text(value):
        return value
    raise HTTPError(400, f"the request {what} is not valid text")


class Request:
    """An immutable HTTP request.

    ``path`` is percent-decoded (``raw_path`` is as sent); ``query`` and ``headers`` are
    multi-mappings (``get`` first value, ``getlist`` all, ``multi_items`` every pair; header names
    are case-insensitive); ``cookies`` maps names to values; ``body`` is the raw bytes and
    ``json()`` parses them (a malformed body raises a 400 :class:`HTTPError`).

    Construction refuses what no HTTP request carries, with a 400 :class:`HTTPError` an adapter
    answers: a method that is not a token, a path, query or header that is not text UTF-8 can
    encode (a lone surrogate), a body that is not bytes or such text.
    """

    __slots__ = ("_cookies", "_json", "_query", "body", "headers", "method", "path", "query_string", "raw_path", "scheme")

    method: str
    raw_path: str
    path: str
    query_string: str
    headers: Headers
    body: bytes
    scheme: str
    _query: MultiDict | None
    _cookies: Mapping[str, str] | None
    _json: Any

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
        if not isinstance(method, str) or _TOKEN.fullmatch(method) is None:
            raise HTTPError(400, "the request method is not an HTTP method")
        raw_path, _, qs_in_path = _text(path, "path").partition("?") if type(path) is not str else path.partition("?")
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
        if type(body) is bytes:
            data = body
        elif isinstance(body, (bytearray, memoryview)):
            data = bytes(body)
        else:
            data = _text(body, "body").encode("utf-8")
        header_map = headers if isinstance(headers, Headers) else Headers(headers)
        every = "".join(map("".join, header_map._items))  # one C-level pass over every name and value
        if not (path.isascii() and query_string.isascii() and every.isascii()):  # else: is any of it not text?
            _text(path, "path")
            _text(query_string, "query string")
            if not is_text(every):
                raise HTTPError(400, "a request header is not valid text")
        for name, value in (
            ("method", method.upper()),
            ("raw_path", raw_path),
            ("path", unquote(raw_path) if "%" in raw_path else raw_path),
            ("query_string", query_string),
            ("_query", None),
            ("headers", header_map),
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
        assert self._query is not None
        return self._query

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
        assert self._cookies is not None
        return self._cookies

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
        """The body parsed as JSON; 400 if it is empty, malformed or nested deeper than the parser
        can follow (about the interpreter's recursion limit, 1,000 levels)."""
        if self._json is _UNSET:
            if not self.body.strip():
                raise HTTPError(400, "request body is empty; expected JSON")
            try:
                value = _json.loads(self.body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise HTTPError(400, f"request body is not valid JSON: {exc}") from None
            except RecursionError:  # the C parser's nesting limit: the interpreter's recursion limit
                raise HTTPError(400, "request body is JSON nested too deeply to parse") from None
            object.__setattr__(self, "_json", value)
        return self._json

    def __repr__(self) -> str:
        qs = f"?{self.query_string}" if self.query_string else ""
        return f"<Request {self.method} {self.raw_path}{qs}>"
