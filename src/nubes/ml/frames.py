"""Model input as Polars frames: any table-like input to exactly the columns a model was trained on.

:func:`to_frame` is what every nubes pipeline's first step (``FrameInput``) and the serving routes
use: it takes Polars frames, DuckDB relations, JSON records, column dicts or 2-D arrays, checks that
every column is there (:class:`MissingColumns` names the missing ones) and casts each column to the
kind it had in training (:class:`BadColumns` names values that do not convert, and infinite numbers:
no estimator takes them; a missing number is NaN).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nubes.errors import ConfigError, NubesError

if TYPE_CHECKING:
    import polars as pl

KINDS = ("number", "category", "date", "datetime")
NULL_CATEGORY = "__null__"


# -- input errors -------------------------------------------------------------------------------
class MissingColumns(NubesError, ValueError):
    """The data given to a model lacks feature columns it was trained on (``columns`` names them)."""

    def __init__(self, columns: Sequence[str], have: Iterable[str] = ()) -> None:
        self.columns = list(columns)
        have = list(have)
        super().__init__(
            "missing feature column(s): " + ", ".join(self.columns)
            + (f" (got: {', '.join(have)})" if have else "")
        )


class BadColumns(NubesError, ValueError):
    """Feature values that cannot be converted to the type the model was trained on."""

    def __init__(self, errors: Sequence[Mapping[str, str]]) -> None:
        self.errors = [dict(e) for e in errors]
        super().__init__("; ".join(f"column '{e['name']}': {e['detail']}" for e in self.errors))


# -- schema -------------------------------------------------------------------------------------
def column_kind(name: str, dtype: Any) -> str:
    """``number``, ``category``, ``date`` or ``datetime`` for a Polars dtype (ConfigError otherwise)."""
    import polars as pl

    if dtype.is_numeric() or dtype == pl.Boolean:
        return "number"
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum) or dtype == pl.Categorical:
        return "category"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime) or dtype == pl.Datetime:
        return "datetime"
    raise ConfigError(
        f"feature column {name!r} has type {dtype}, which train() cannot encode; "
        "use numbers, strings, booleans, dates or date-times (or leave it out with features=[...])"
    )


def to_frame(data: Any, columns: Mapping[str, str]) -> pl.DataFrame:
    """``data`` as a Polars DataFrame of exactly ``columns`` (name -> kind), cast for the model.

    ``data``: a Polars DataFrame/LazyFrame, a DuckDB relation, a list of records (dicts), one
    record, a dict of column lists, or a 2-D array whose columns are in training order. Extra
    columns are ignored; missing ones raise :class:`MissingColumns`, values that do not convert
    :class:`BadColumns`.
    """
    import polars as pl

    names = list(columns)
    if isinstance(data, pl.LazyFrame):
        have = data.collect_schema().names()
        _require(names, have)
        data = data.select(names).collect()
    elif type(data).__name__ == "DuckDBPyRelation":
        _require(names, data.columns)
        data = pl.DataFrame(data.select(*[_quote(n) for n in names]))
    elif isinstance(data, Mapping):
        if data and all(isinstance(v, list | tuple) or hasattr(v, "__array__") or isinstance(v, pl.Series)
                        for v in data.values()):
            _require(names, data.keys())
            data = _from_columns({n: data[n] for n in names}, columns)
        else:
            data = [data]
    elif hasattr(data, "__array__") and not isinstance(data, pl.DataFrame | pl.Series):
        import numpy as np

        array = np.asarray(data)
        if array.ndim != 2 or array.shape[1] != len(names):
            raise BadColumns([{"name": "(array)", "detail": f"a {array.shape} array; expected (rows, {len(names)}) "
                               f"with columns in this order: {', '.join(names)}"}])
        data = _from_columns({n: array[:, i].tolist() for i, n in enumerate(names)}, columns)
    if isinstance(data, list | tuple):
        if not all(isinstance(r, Mapping) for r in data):
            raise BadColumns([{"name": "(records)", "detail": "expected a list of records (JSON objects)"}])
        present = {k for r in data for k in r}
        _require(names, present if data else names, have=sorted(present))
        data = _from_columns({n: [r.get(n) for r in data] for n in names}, columns)
    if not isinstance(data, pl.DataFrame):
        raise BadColumns([{"name": "(data)", "detail": f"cannot read features from a {type(data).__name__}"}])
    _require(names, data.columns)
    return _cast(data.select(names), columns)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _require(names: Sequence[str], present: Iterable[str], have: Iterable[str] | None = None) -> None:
    present = set(present)
    missing = [n for n in names if n not in present]
    if missing:
        raise MissingColumns(missing, sorted(present) if have is None else have)


def _from_columns(values: Mapping[str, Any], columns: Mapping[str, str]) -> pl.DataFrame:
    import polars as pl

    series = []
    errors = []
    for name, kind in columns.items():
        raw = values[name]
        raw = raw.to_list() if isinstance(raw, pl.Series) else (raw.tolist() if hasattr(raw, "tolist") else list(raw))
        try:
            if kind == "number":
                series.append(pl.Series(name, [_number(v) for v in raw], dtype=pl.Float64, strict=True))
            elif kind == "category":
                series.append(pl.Series(name, [None if v is None else str(v) for v in raw], dtype=pl.String))
            else:
                series.append(pl.Series(name, raw, strict=False) if any(not isinstance(v, str) for v in raw if v is not None)
                              else pl.Series(name, raw, dtype=pl.String))
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            errors.append({"name": name, "detail": f"expected a {kind}: {exc}"})
    if errors:
        raise BadColumns(errors)
    return pl.DataFrame(series)


def _number(value: Any) -> Any:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None


def _cast(frame: pl.DataFrame, columns: Mapping[str, str]) -> pl.DataFrame:
    import polars as pl

    exprs = []
    errors = []
    for name, kind in columns.items():
        dtype = frame.schema[name]
        col = pl.col(name)
        if kind == "number":
            expr = col.cast(pl.Float64, strict=True).fill_null(float("nan"))
        elif kind == "category":
            expr = col.cast(pl.String).fill_null(NULL_CATEGORY)
        elif kind == "date":
            expr = col.str.to_date(strict=True) if dtype == pl.String else col.cast(pl.Date, strict=True)
        else:
            expr = col.str.to_datetime(time_unit="us", strict=True) if dtype == pl.String else col
            expr = expr.cast(pl.Datetime("us"), strict=True) if not (isinstance(dtype, pl.Datetime) and dtype.time_zone) \
                else expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.Datetime("us"))
        exprs.append(expr.alias(name))
    try:
        out = frame.select(exprs)
    except (pl.exceptions.PolarsError, ValueError, TypeError):
        # find the culprit(s) column by column to name them
        for expr, (name, kind) in zip(exprs, columns.items(), strict=True):
            try:
                frame.select(expr)
            except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
                errors.append({"name": name, "detail": f"expected a {kind}: {str(exc).splitlines()[0]}"})
        raise BadColumns(errors or [{"name": "(data)", "detail": "values do not convert"}]) from None
    infinite = [n for n, kind in columns.items() if kind == "number" and out[n].is_infinite().any()]
    if infinite:  # estimators refuse them (sklearn: "Input X contains infinity"); name them here instead
        raise BadColumns([{"name": n, "detail": "expected a finite number: got infinity (or a number beyond "
                           "the 64-bit float range, such as 1e400)"} for n in infinite])
    return out


__all__ = ["KINDS", "NULL_CATEGORY", "BadColumns", "MissingColumns", "column_kind", "to_frame"]
