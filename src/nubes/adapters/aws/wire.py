"""A Lambda result's size as the runtime sends it, so an oversized answer becomes a problem nubes
can explain rather than a bare 502 from Lambda.

The Python runtime client (``awslambdaric``, what the managed runtimes and AWS base images run)
serializes a result with simplejson: default separators (``", "``, ``": "``) and, unless
``AWS_EXECUTION_ENV`` names a python3.12+ managed runtime, every non-ASCII character escaped
(``ensure_ascii``: ``é`` is 6 bytes, an emoji 12). A 2.4 MB UTF-8 body of accented text is thus a
7 MB payload, over the 6 MB limit (ALB: 1 MB), and the runtime reports
``Function.ResponseSizeTooLarge``. The standard library's encoder with the same settings writes
the same bytes for the dicts of strings, numbers and booleans an adapter returns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

UNESCAPED_RUNTIMES = frozenset(
    {"AWS_Lambda_python3.12", "AWS_Lambda_python3.13", "AWS_Lambda_python3.14", "AWS_Lambda_python3.15"}
)
"""``AWS_EXECUTION_ENV`` values under which awslambdaric sends non-ASCII text as UTF-8 (its
``lambda_runtime_marshaller``); under any other value, or none (a container image, the RIE), it escapes."""

_WORST_BYTES_PER_CHAR = 12  # an astral character escaped as a surrogate pair: \ud83d\ude00
_SLACK = 1024  # the result's keys, status, punctuation


def escapes_non_ascii() -> bool:
    """True when the runtime client escapes non-ASCII characters in results (see the module doc)."""
    return os.environ.get("AWS_EXECUTION_ENV") not in UNESCAPED_RUNTIMES


def may_exceed(result: dict[str, Any], headers: Iterable[tuple[str, str]], limit: int) -> bool:
    """False when ``result`` is surely within ``limit`` bytes on the wire, whatever its characters;
    a bound from lengths alone, so the warm path never serializes a small result twice."""
    body = result.get("body") or ""
    size = len(body) if result.get("isBase64Encoded") else len(body) * _WORST_BYTES_PER_CHAR
    if size + _SLACK > limit:
        return True
    pairs = headers if isinstance(headers, (list, tuple)) else list(headers)
    size += (len("".join(map("".join, pairs))) + 8 * len(pairs)) * _WORST_BYTES_PER_CHAR
    return size + _SLACK > limit


def result_bytes(result: dict[str, Any]) -> int | None:
    """The exact size of ``result`` as the runtime client sends it; None if it could not send it at
    all (a lone surrogate in text, which UTF-8 cannot encode, when non-ASCII is not escaped)."""
    if escapes_non_ascii():
        return len(json.dumps(result, ensure_ascii=True))
    try:
        return len(json.dumps(result, ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        return None
