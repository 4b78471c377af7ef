"""The SQL endpoint's answer, encoded while it is fetched, within a byte limit.

:func:`fetch_encoded` reads the pending result of ``connection.execute`` a batch at a time and encodes
each batch at once with nubes' JSON rules (:func:`nubes.core.encoding.dumps`), so at most one batch of
Python objects exists at a time and the answer's size is known exactly as it grows. The first batch
is small; later ones are sized from the bytes per row seen so far to fit the bytes still allowed.
As soon as the encoded size passes ``max_bytes`` it stops with :class:`ResponseTooLarge` (413); past
``deadline`` it stops with the timeout the caller gives. Nothing is ever built whole first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nubes.core.encoding import dumps
from nubes.errors import HTTPError

if TYPE_CHECKING:
    import duckdb

__all__ = ["EncodedRows", "ResponseTooLarge", "fetch_encoded", "size_text"]

FIRST_BATCH = 64
MAX_BATCH = 2048


class ResponseTooLarge(HTTPError):
    """413: the answer's JSON would be larger than the endpoint's byte limit."""

    def __init__(self, max_bytes: int, rows: int) -> None:
        super().__init__(
            413,
            f"the answer is larger than the endpoint's limit of {size_text(max_bytes)} ({max_bytes:,} bytes; passed "
            f"after {rows:,} rows); narrow the query (fewer columns, WHERE, LIMIT, aggregate) or ask for a lower "
            "'limit', or raise the limit (SqlEndpoint(max_bytes=...), max_bytes under [sql] in nubes.toml, "
            "or NUBES_SQL_MAX_BYTES)",
            title="Response Too Large",
            max_bytes=max_bytes,
        )


@dataclass
class EncodedRows:
    """A query's rows as JSON: ``body`` is the records, comma-separated, without the enclosing brackets."""

    columns: list[dict[str, str]]
    body: bytes
    count: int
    truncated: bool


def size_text(n: int) -> str:
    """``4194304`` -> ``'4 MiB'`` (for messages)."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def fetch_encoded(
    connection: duckdb.DuckDBPyConnection,
    *,
    limit: int,
    max_bytes: int,
    deadline: float,
    on_timeout: Callable[[], Exception],
    reserved: int = 0,
) -> EncodedRows:
    """Encode at most ``limit`` rows of ``connection``'s pending result (one more is read to tell
    ``truncated``). ``reserved`` bytes of the answer are taken by what surrounds the rows; the columns'
    names and types count too. Raises :class:`ResponseTooLarge` past ``max_bytes`` and
    ``on_timeout()`` past ``deadline`` (a ``time.monotonic()`` value), checked after every batch."""
    description = connection.description or []
    keys = _unique([str(d[0]) for d in description])
    types = [str(d[1]) for d in description]
    columns = [{"name": k, "type": t} for k, t in zip(keys, types, strict=True)]
    maps = [i for i, t in enumerate(types) if "MAP(" in t]
    size = reserved + len(dumps(columns))
    if size > max_bytes:
        raise ResponseTooLarge(max_bytes, 0)
    parts: list[bytes] = []
    count = 0  # rows read (encoded ones and the one that tells truncation)
    kept = 0  # rows encoded
    batch = FIRST_BATCH
    while count <= limit:
        rows = connection.fetchmany(min(batch, limit + 1 - count))
        if time.monotonic() > deadline:
            raise on_timeout()
        if not rows:
            break
        count += len(rows)
        take = rows[: max(0, limit - kept)]
        if take:
            records = [dict(zip(keys, _json_maps(row, maps) if maps else row, strict=True)) for row in take]
            chunk = dumps(records)[1:-1]
            del records
            size += len(chunk) + (1 if parts else 0)
            if size > max_bytes:
                raise ResponseTooLarge(max_bytes, kept + len(take))
            parts.append(chunk)
            kept += len(take)
            per_row = max(1.0, (size - reserved) / kept)
            batch = int(min(MAX_BATCH, max(1, (max_bytes - size) / per_row)))
        del rows
        if time.monotonic() > deadline:
            raise on_timeout()
    return EncodedRows(columns, b",".join(parts), kept, count > limit)


def _unique(names: list[str]) -> list[str]:
    """Column names made unique for JSON records (``id``, ``id_1`` ...), as a join's ``SELECT *`` repeats them."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 0
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def _json_maps(row: tuple[Any, ...], maps: list[int]) -> list[Any]:
    values = list(row)
    for i in maps:
        values[i] = _json_keys(values[i])
    return values


def _json_keys(value: Any) -> Any:
    """MAP values arrive as dicts whose keys may be any type; JSON objects need string keys."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else json.dumps(k, default=str)): _json_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_keys(v) for v in value]
    return value
