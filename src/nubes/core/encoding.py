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

from nubes.core.request import Request
from nubes.core.response import Response
from nubes.errors import HTTPError

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
        if not obj.is_finite():
            return None
        return int(obj) if obj.as_tuple().exponent >= 0 else float(obj)  # type: ignore[operator]
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
    if module == "numpy" and hasattr(obj, "tolist"):
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


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types by the rules of :func:`dumps` (the one rule set every nubes answer,
    check report and log uses): ISO 8601 dates, decimals as numbers (integral ones as integers), NaN
    and infinities as None, bytes as base64, UUIDs as strings, dict keys as strings."""
    out = _finite(_jsonable(value))
    if isinstance(out, dict):
        return {str(k): v for k, v in out.items()}
    return out


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


def encode_table(value: Any, fmt: str, max_rows: int | None = None) -> Response:
    """Serialize a table in ``fmt`` (one of :data:`FORMATS`); over ``max_rows`` rows is a 413.

    A DuckDB relation answered as JSON, NDJSON or CSV is fetched once and written here, without
    Polars (a pure-SQL function need not have it installed); the other formats and tables go through
    Polars. Either way the same rules apply: datetimes in ISO 8601 with ``T`` (as in dicts), integral
    decimals and integer aggregates as integers, NaN as null in JSON.
    """
    if _is_relation(value) and fmt in ("json", "ndjson", "csv"):
        return _encode_rows(value, fmt, max_rows)
    import polars as pl

    df = limit_rows(value, max_rows) if max_rows is not None else to_polars(value)
    buf = io.BytesIO()
    if fmt in ("json", "ndjson", "csv"):
        df = _plain_columns(df, pl)
        body = df.write_csv().encode("utf-8") if fmt == "csv" else (df.write_json() if fmt == "json" else df.write_ndjson()).encode("utf-8")
    elif fmt == "parquet":
        df.write_parquet(buf)
        body = buf.getvalue()
    else:
        df.write_ipc_stream(buf)
        body = buf.getvalue()
    return Response(body, 200, {"vary": "Accept"}, FORMATS[fmt])


def _is_relation(value: Any) -> bool:
    return type(value).__name__ == "DuckDBPyRelation" and type(value).__module__.split(".", 1)[0] in ("duckdb", "_duckdb")


def _too_large(max_rows: int) -> HTTPError:
    return HTTPError(
        413,
        f"the result has more than {max_rows:,} rows, this route's limit; narrow the query "
        "(filters, aggregation, a limit parameter) or raise the route's max_rows",
        title="Result Too Large",
        max_rows=max_rows,
    )


def _encode_rows(relation: Any, fmt: str, max_rows: int | None) -> Response:
    """A DuckDB relation's rows (fetched once, at most ``max_rows + 1``) as JSON records, NDJSON or CSV."""
    if max_rows is not None:
        relation = relation.limit(max_rows + 1)
    names = list(relation.columns)
    rows = relation.fetchall()
    if max_rows is not None and len(rows) > max_rows:
        raise _too_large(max_rows)
    if fmt == "csv":
        import csv

        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([_csv_cell(v) for v in row] for row in rows)
        body = text.getvalue().encode("utf-8")
    else:
        records = [dict(zip(names, row, strict=True)) for row in rows]
        body = dumps(records) if fmt == "json" else b"".join(dumps(r) + b"\n" for r in records)
    return Response(body, 200, {"vary": "Accept"}, FORMATS[fmt])


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return value
    if isinstance(value, Decimal | datetime | date | time):
        out = _default(value)
        return out if out is not None else ""
    return dumps(value).decode("utf-8").strip('"')


def _plain_columns(df: Any, pl: Any) -> Any:
    """Columns Polars would write differently from :func:`dumps`, made plain: naive datetimes in ISO 8601
    with ``T`` (timezone-aware ones also with ``+HH:MM``), integral decimals as integers, others as floats."""
    changes = []
    for name, dtype in df.schema.items():
        if isinstance(dtype, pl.Datetime):
            zone = "%:z" if dtype.time_zone else ""
            changes.append(pl.col(name).dt.to_string(f"%Y-%m-%dT%H:%M:%S%.f{zone}"))
        elif isinstance(dtype, pl.Decimal):
            changes.append(pl.col(name).cast(pl.Int128 if dtype.scale == 0 else pl.Float64))
    return df.with_columns(changes) if changes else df


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
    elif _is_relation(value):
        df = pl.DataFrame(value.limit(max_rows + 1))
    else:
        df = to_polars(value)
    if df.height > max_rows:
        raise _too_large(max_rows)
    return df


def check_query_format(request: Request, *, query_format: bool) -> None:
    """Refuse an unknown ``?format=`` before the handler runs (the same 422 :func:`negotiate` gives)."""
    if query_format and "format" in request.query:
        negotiate(request, query_format=True)


def encode(result: Any, request: Request, *, query_format: bool = True, max_rows: int | None = None) -> Response:
    """The response for a handler's return value (see module docstring); tables over ``max_rows`` are 413."""
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(b"", 204)
    if isinstance(result, bytes | bytearray | memoryview):
        return Response(bytes(result), 200, None, "application/octet-stream")
    if is_table(result):
        return encode_table(result, negotiate(request, query_format=query_format), max_rows)
    return Response(dumps(result), 200, None, "application/json")
