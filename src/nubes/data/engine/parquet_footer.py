"""The part of a Parquet footer the engine needs: row groups, column chunk byte ranges and min/max statistics.

A Parquet file ends with its ``FileMetaData`` (Thrift compact protocol), a 4-byte length and ``PAR1``.
The engine reads it to know, before any data is read, which byte ranges a scan of some columns and
row groups will read (metering and lineage count them) and which row groups a filter can skip. DuckDB
and Polars parse footers too, but expose neither the ranges (Polars) nor a way to get them without
loading the engine (DuckDB's ``parquet_metadata`` needs DuckDB in a Polars-only function), and pyarrow
does not fit a function package; the subset needed here is small.

The input is untrusted: every length is checked against the bytes left, nesting is bounded, and any
malformed footer is a :class:`FooterError` (never a hang, an IndexError or unbounded memory).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

MAGIC = b"PAR1"
MAX_FOOTER = 64 * 1024 * 1024
_MAX_DEPTH = 48
_EPOCH = date(1970, 1, 1)

# parquet.thrift physical types and converted types used for statistics
_INT32, _INT64, _FLOAT, _DOUBLE, _BYTE_ARRAY = 1, 2, 4, 5, 6
_UTF8, _DATE, _ENUM, _JSON = 0, 6, 4, 19
_UNSIGNED = frozenset({11, 12, 13, 14})  # UINT_8 .. UINT_64


class FooterError(ValueError):
    """The bytes are not a Parquet footer this module can read."""


@dataclass
class Chunk:
    """One column chunk: where its bytes are and what its statistics say (``None``: unknown)."""

    start: int
    length: int
    min: Any = None
    max: Any = None
    null_count: int | None = None


@dataclass
class RowGroup:
    num_rows: int
    columns: dict[str, list[Chunk]] = field(default_factory=dict)  # top-level column -> its leaf chunks


@dataclass
class Footer:
    """A Parquet file's layout: footer length (bytes at the end of the file) and row groups."""

    length: int
    num_rows: int
    row_groups: list[RowGroup]

    def chunk_bytes(self, columns: set[str] | None, groups: range | list[int]) -> int:
        """Bytes of the chunks of ``columns`` (all when None) in row groups ``groups``."""
        total = 0
        for g in groups:
            for name, chunks in self.row_groups[g].columns.items():
                if columns is None or name in columns:
                    total += sum(c.length for c in chunks)
        return total


def footer_length(tail: bytes) -> int:
    """The footer's length (metadata + 8) from the last 8 bytes of a Parquet file."""
    if len(tail) < 8 or tail[-4:] != MAGIC:
        raise FooterError("not a Parquet file (no PAR1 at its end, or it is encrypted)")
    length = int(struct.unpack("<I", tail[-8:-4])[0]) + 8
    if length > MAX_FOOTER:
        raise FooterError(f"Parquet footer of {length} bytes is over the {MAX_FOOTER} byte limit")
    return length


def parse(metadata: bytes) -> Footer:
    """Read ``FileMetaData`` (the footer without its last 8 bytes); a FooterError for anything malformed."""
    try:
        return _parse(metadata)
    except FooterError:
        raise
    except (IndexError, KeyError, TypeError, AttributeError, ValueError, OverflowError, struct.error, RecursionError) as exc:
        raise FooterError(f"malformed Parquet footer: {type(exc).__name__}: {exc}") from None


def _parse(metadata: bytes) -> Footer:
    doc, _ = _Reader(metadata).struct(0)
    schema = [s for s in doc.get(2, []) if isinstance(s, dict)]
    leaf_types = _leaf_types(schema)
    groups = []
    for rg in doc.get(4, []):
        if not isinstance(rg, dict):
            raise FooterError("malformed Parquet footer: a row group is not a struct")
        group = RowGroup(int(rg.get(3, 0)))
        for cc in rg.get(1, []):
            meta = cc.get(3) if isinstance(cc, dict) else None
            if not isinstance(meta, dict) or cc.get(1):  # no metadata, or column data in another file
                raise FooterError("Parquet column chunk without inline metadata")
            path = [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in meta.get(3, [])]
            if not path:
                raise FooterError("Parquet column chunk without a path")
            data, dictionary = int(meta.get(9, 0)), meta.get(11)
            start = int(dictionary) if isinstance(dictionary, int) and 0 < dictionary < data else data
            chunk = Chunk(start, int(meta.get(7, 0)))
            stats = meta.get(12)
            if isinstance(stats, dict):
                chunk.null_count = stats.get(3) if isinstance(stats.get(3), int) else None
                if len(path) == 1:
                    kind = leaf_types.get(path[0])
                    chunk.min, chunk.max = _value(kind, stats.get(6)), _value(kind, stats.get(5))
            if chunk.start < 0 or chunk.length < 0:
                raise FooterError("Parquet column chunk with a negative offset or size")
            group.columns.setdefault(path[0], []).append(chunk)
        groups.append(group)
    return Footer(len(metadata) + 8, int(doc.get(3, 0)), groups)


def _leaf_types(schema: list[dict[int, Any]]) -> dict[str, str]:
    """Top-level primitive columns -> the kind of value their statistics hold (int, float, str, date)."""
    out: dict[str, str] = {}
    for element in schema[1:]:  # schema[0] is the root; nested children are skipped (their names repeat)
        if element.get(5):  # a group (struct, list, map): no statistics used
            continue
        name = element.get(4)
        if not isinstance(name, bytes):
            continue
        physical, converted, logical = element.get(1), element.get(6), element.get(10)
        logical_kind = next(iter(logical), None) if isinstance(logical, dict) else None
        int_type = logical.get(10) if isinstance(logical, dict) else None
        if physical in (_INT32, _INT64):
            if converted == _DATE or logical_kind == 6:
                kind = "date"
            elif converted in _UNSIGNED or (isinstance(int_type, dict) and not int_type.get(2, True)):
                continue
            elif converted in (None, 15, 16, 17, 18) and logical_kind in (None, 10):
                kind = "int64" if physical == _INT64 else "int32"
            else:
                continue  # decimals, times, timestamps: not compared here
        elif physical in (_FLOAT, _DOUBLE) and converted is None:
            kind = "float" if physical == _FLOAT else "double"
        elif physical == _BYTE_ARRAY and (converted in (_UTF8, _ENUM, _JSON) or logical_kind in (1, 4, 12)):
            kind = "str"
        else:
            continue
        out[name.decode("utf-8", "replace")] = kind
    return out


def _value(kind: str | None, raw: Any) -> Any:
    if kind is None or not isinstance(raw, bytes):
        return None
    if kind in ("int32", "date"):
        if len(raw) != 4:
            return None
        n = struct.unpack("<i", raw)[0]
        return _EPOCH + timedelta(days=n) if kind == "date" and -700_000 < n < 2_900_000 else (None if kind == "date" else n)
    if kind == "int64":
        return struct.unpack("<q", raw)[0] if len(raw) == 8 else None
    if kind in ("float", "double"):
        width, code = (4, "<f") if kind == "float" else (8, "<d")
        if len(raw) != width:
            return None
        value = struct.unpack(code, raw)[0]
        return value if value == value else None  # NaN statistics prove nothing
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


class _Reader:
    """Thrift compact protocol, enough for Parquet metadata (maps are read and dropped)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        out, shift = 0, 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7
            if shift > 70:
                raise FooterError("malformed Parquet footer: varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FooterError("malformed Parquet footer: a length runs past its end")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def struct(self, depth: int) -> tuple[dict[int, Any], int]:
        if depth > _MAX_DEPTH:
            raise FooterError("malformed Parquet footer: nested too deeply")
        out: dict[int, Any] = {}
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return out, self.pos
            kind, delta = header & 0x0F, header >> 4
            fid = last + delta if delta else self.zigzag()
            last = fid
            out[fid] = self.value(kind, depth)

    def value(self, kind: int, depth: int) -> Any:
        if kind in (1, 2):  # booleans live in the field header
            return kind == 1
        if kind == 3:
            b = self.byte()
            return b - 256 if b > 127 else b
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            return struct.unpack("<d", self.take(8))[0]
        if kind == 8:
            return self.take(self.varint())
        if kind in (9, 10):
            header = self.byte()
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            if size > len(self.data) - self.pos:
                raise FooterError("malformed Parquet footer: a list is longer than the footer")
            if element in (1, 2):
                return [self.byte() == 1 for _ in range(size)]
            return [self.value(element, depth + 1) for _ in range(size)]
        if kind == 11:
            size = self.varint()
            if size:
                if size > len(self.data) - self.pos:
                    raise FooterError("malformed Parquet footer: a map is longer than the footer")
                types = self.byte()
                for _ in range(size):
                    self.value(types >> 4, depth + 1)
                    self.value(types & 0x0F, depth + 1)
            return None
        if kind == 12:
            return self.struct(depth + 1)[0]
        raise FooterError(f"malformed Parquet footer: unknown Thrift type {kind}")
