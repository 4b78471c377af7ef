"""Turning a handler's return value into a :class:`Response`.

* ``Response`` — sent as is.
* ``None`` — 204 No Content.
* ``bytes`` — ``application/octet-stream``.
* Tables — a Polars DataFrame or LazyFrame, a DuckDB relation, a PyArrow Table or RecordBatch —
  JSON records by default, or CSV, NDJSON, Parquet or Arrow IPC (stream) when ``?format=`` or the
  ``Accept`` header asks (``?format=`` wins; an Accept header naming nothing we can produce is 406).
* Anything else — JSON: dicts, lists, scalars, dates and datetimes (ISO 8601), Decimal (a number),
  UUID, Enum, dataclasses, pydantic models, sets and tuples, numpy scalars and arrays; NaN and
  infinities become ``null`` (JSON has neither).

Polars, DuckDB and PyArrow are never imported here unless the value already is one of theirs.
"""

from __future__ import annotations

import base64
import enum
import io
import json
import math
import os
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from nubes.errors import HTTPError
from nubes.core.request import Request
from nubes.core.response import Response

FORMATS: dict[str, str] = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
_MEDIA_TO_FORMAT = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/ndjson": "ndjson",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
    "application/vnd.apache.arrow.stream": "arrow",
    "application/vnd.apache.arrow.file": "arrow",
}


# -- JSON --------------------------------------------------------------------------------------
def _default(obj: Any) -> Any:
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        return float(obj) if obj.is_finite() else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr) if not all(isinstance(x, str) for x in obj) else sorted(obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if hasattr(obj, "__dataclass_fields__") and not isinstance(obj, type):  # a dataclass instance
        import dataclasses

        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    dump = getattr(obj, "model_dump", None)
    if callable(dump):  # pydantic
        return dump(mode="json")
    module = type(obj).__module__.split(".", 1)[0]
    if module == "uuid":
        return str(obj)
    if module == "numpy":
        if hasattr(obj, "tolist"):
            value = obj.tolist()  # scalars become Python numbers; arrays nested lists
            if type(obj).__name__ == "datetime64":
                return str(obj)
            return value
    if module in ("polars", "duckdb", "pyarrow"):
        return to_polars(obj).to_dicts()
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def _finite(obj: Any) -> Any:
    """Replace NaN and infinities by None, recursively (json.dumps would emit invalid JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        return _finite(_default(o))


_ENCODER = _Encoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def dumps(data: Any) -> bytes:
    """Encode ``data`` as compact UTF-8 JSON with nubes' rules (see module docstring)."""
    try:
        text = _ENCODER.encode(data)
    except ValueError:  # NaN or infinity somewhere in plain Python data
        text = _ENCODER.encode(_finite(_jsonable(data)))
    return text.encode("utf-8")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return _jsonable(_default(obj))


# -- tables ------------------------------------------------------------------------------------
def is_table(value: Any) -> bool:
    """True for a Polars DataFrame/LazyFrame, a DuckDB relation or a PyArrow Table/RecordBatch."""
    cls = type(value)
    module = cls.__module__.split(".", 1)[0]
    if module == "polars":
        return cls.__name__ in ("DataFrame", "LazyFrame")
    if module in ("duckdb", "_duckdb"):
        return cls.__name__ == "DuckDBPyRelation"
    if module == "pyarrow":
        return cls.__name__ in ("Table", "RecordBatch")
    return False


def to_polars(value: Any) -> Any:
    """A Polars DataFrame for any table :func:`is_table` accepts (via the Arrow C stream, no pyarrow)."""
    import polars as pl

    if isinstance(value, pl.LazyFrame):
        return value.collect()
    if isinstance(value, pl.DataFrame):
        return value
    if type(value).__module__.split(".", 1)[0] == "pyarrow":
        return pl.from_arrow(value)
    return pl.DataFrame(value)  # DuckDB relations export the Arrow PyCapsule stream


def encode_table(value: Any, fmt: str) -> Response:
    """Serialize a table in ``fmt`` (one of :data:`FORMATS`)."""
    import polars as pl

    df = to_polars(value)
    buf = io.BytesIO()
    if fmt in ("json", "ndjson"):
        decimals = [name for name, dtype in df.schema.items() if isinstance(dtype, pl.Decimal)]
        if decimals:
            df = df.with_columns(pl.col(decimals).cast(pl.Float64))
        body = (df.write_json() if fmt == "json" else df.write_ndjson()).encode("utf-8")
    elif fmt == "csv":
        body = df.write_csv().encode("utf-8")
    elif fmt == "parquet":
        df.write_parquet(buf)
        body = buf.getvalue()
    else:
        df.write_ipc_stream(buf)
        body = buf.getvalue()
    return Response(body, 200, {"vary": "Accept"}, FORMATS[fmt])


def negotiate(request: Request, *, query_format: bool) -> str:
    """The table format the caller asked for: ``?format=``, else the Accept header, else JSON."""
    if query_format and "format" in request.query:
        fmt = request.query["format"].strip().lower()
        if fmt not in FORMATS:
            from nubes.errors import ValidationError

            raise ValidationError(
                [{"name": "format", "in": "query", "detail": "must be one of " + ", ".join(FORMATS)}]
            )
        return fmt
    accept = request.headers.get("accept")
    if not accept:
        return "json"
    choices: list[tuple[float, int, str]] = []
    for order, item in enumerate(",".join(request.headers.getlist("accept")).split(",")):
        media, *params = [p.strip() for p in item.split(";")]
        media = media.lower()
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0 or not media:
            continue
        if media in _MEDIA_TO_FORMAT:
            choices.append((q, -order, _MEDIA_TO_FORMAT[media]))
        elif media in ("*/*", "application/*"):
            choices.append((q - 0.0001, -order, "json"))
        elif media == "text/*":
            choices.append((q - 0.0001, -order, "csv"))
    if not choices:
        supported = ", ".join(sorted({m.split(";")[0] for m in FORMATS.values()}))
        raise HTTPError(406, f"cannot produce any of '{accept}'; this route answers {supported}")
    return max(choices)[2]


def limit_rows(value: Any, max_rows: int) -> Any:
    """``value`` as a Polars DataFrame of at most ``max_rows`` rows; 413 if the table has more.

    Lazy tables (DuckDB relations, LazyFrames) are cut at ``max_rows + 1`` before they run to the
    end, so an oversized result is refused without being materialised.
    """
    import polars as pl

    if isinstance(value, pl.LazyFrame):
        df = value.head(max_rows + 1).collect()
    elif type(value).__name__ == "DuckDBPyRelation":
        df = pl.DataFrame(value.limit(max_rows + 1))
    else:
        df = to_polars(value)
    if df.height > max_rows:
        raise HTTPError(
            413,
            f"the result has more than {max_rows:,} rows, this route's limit; narrow the query "
            "(filters, aggregation, a limit parameter) or raise the route's max_rows",
            title="Result Too Large",
            max_rows=max_rows,
        )
    return df


def encode(result: Any, request: Request, *, query_format: bool = True, max_rows: int | None = None) -> Response:
    """The response for a handler's return value (see module docstring); tables over ``max_rows`` are 413."""
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(b"", 204)
    if isinstance(result, bytes | bytearray | memoryview):
        return Response(bytes(result), 200, None, "application/octet-stream")
    if is_table(result):
        fmt = negotiate(request, query_format=query_format)
        return encode_table(limit_rows(result, max_rows) if max_rows is not None else result, fmt)
    return Response(dumps(result), 200, None, "application/json")
