"""Reading fields of a Lambda payload that nobody vouches for.

A Lambda event is JSON from a service, or anything at all from a direct ``Invoke``. Every reader
here checks the type it expects and raises :class:`~nubes.errors.UnknownEvent` naming the field
and what it should have been; nothing converts a wrong type into a plausible value (``bytes(10**9)``
is not a body). Text must be encodable as UTF-8: a lone surrogate (``"\\ud800"`` in the JSON) is
refused, so no later ``encode`` fails inside the app. The adapter answers these errors with a 400
(HTTP sources) or reports the event as unreadable (the others).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from nubes.core.request import is_text
from nubes.errors import UnknownEvent

_EMPTY: Mapping[str, Any] = {}


def bad(where: str, expected: str, value: Any) -> UnknownEvent:
    """The error for field ``where`` holding ``value`` instead of ``expected``."""
    return UnknownEvent(f"event field {where} must be {expected}, not {_kind(value)}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string" if is_text(value) else "text that is not valid Unicode"
    return {int: "a number", float: "a number", list: "an array", dict: "an object"}.get(type(value), f"a {type(value).__name__}")


def text(value: Any, where: str) -> str:
    """``value`` as text, or :class:`UnknownEvent`."""
    if is_text(value):
        return value
    raise bad(where, "a string", value)


def opt_text(value: Any, where: str) -> str | None:
    """``value`` as text, None for null or absent."""
    return None if value is None else text(value, where)


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    """``value`` as an object, empty for null or absent."""
    if value is None:
        return _EMPTY
    if type(value) is dict or isinstance(value, Mapping):  # a JSON object is a dict: skip the ABC check
        return value
    raise bad(where, "an object", value)


def field(holder: Mapping[str, Any], key: str, where: str | None = None) -> str | None:
    """``holder[key]`` as text, None if null or absent (one call on the warm path: ASCII text returns at once)."""
    value = holder.get(key)
    if value is None or (type(value) is str and value.isascii()):
        return value
    return opt_text(value, where or key)


def text_map(value: Any, where: str) -> list[tuple[str, str]]:
    """An object of string values (``headers``, ``queryStringParameters``) as pairs."""
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    for key, item in mapping(value, where).items():
        if type(key) is str and type(item) is str and key.isascii() and item.isascii():  # the warm path
            append((key, item))
        else:
            name = text(key, f"{where} (a name)")
            append((name, text(item, f"{where}.{name}")))
    return pairs


def text_multimap(value: Any, where: str) -> list[tuple[str, str]]:
    """An object of string arrays (``multiValueHeaders``...) as pairs, in order; a null array is no values."""
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    for key, items in mapping(value, where).items():
        if type(key) is not str or not key.isascii():
            key = text(key, f"{where} (a name)")
        if type(items) is not list:
            if items is None:
                continue
            raise bad(f"{where}.{key}", "an array of strings", items)
        for item in items:
            if type(item) is str and item.isascii():  # the warm path
                append((key, item))
            else:
                append((key, text(item, f"{where}.{key}[]")))
    return pairs


def text_list(value: Any, where: str) -> list[str]:
    """An array of strings (``cookies``), empty for null or absent."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(where, "an array of strings", value)
    return [text(item, f"{where}[]") for item in value]


def body(event: Mapping[str, Any]) -> bytes:
    """The request body: ``body`` is null, text, or base64 text when ``isBase64Encoded`` is true."""
    raw = event.get("body")
    encoded = event.get("isBase64Encoded")
    if encoded is not None and not isinstance(encoded, bool):
        raise bad("isBase64Encoded", "a boolean", encoded)
    if raw is None or raw == "":
        return b""
    if not isinstance(raw, str):
        raise bad("body", "a string", raw)
    if encoded:
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise UnknownEvent("event field body is not valid base64 although isBase64Encoded is true") from None
    try:
        return raw.encode("utf-8")
    except UnicodeEncodeError:
        raise bad("body", "a string", raw) from None
