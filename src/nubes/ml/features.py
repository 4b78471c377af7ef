"""Feature engineering for sequential data (time series, sensor readings) on Polars frames.

Every helper takes a Polars ``DataFrame`` or ``LazyFrame`` and returns the same kind with new
columns appended (rows keep their order). ``order_by`` names the column(s) that give the sequence
(rows are taken in their current order when it is None); ``by`` computes each feature within each
group (a sensor, a store, a ticker) so no value leaks from one series into another::

    from nubes.ml import features as F

    frame = F.lags(frame, "temp", [1, 2, 7], order_by="date")
    frame = F.rolling(frame, "temp", [7, 28], ["mean", "std"], order_by="date", shift=1)
    frame = F.date_parts(frame, "date")
    frame = F.leads(frame, "temp", 1, order_by="date")          # the target: tomorrow's value

Names: ``{col}_lag{n}``, ``{col}_lead{n}``, ``{col}_diff{n}``, ``{col}_pct{n}``,
``{col}_roll{w}_{stat}``, ``{col}_{part}``. Rows at the start (or end, for leads) of each series
get nulls; :func:`drop_incomplete` removes them. Features meant to predict a *future* value must
only look back: lags, and rolling windows with ``shift=1`` when the current row's value is the
one being forecast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from nubes.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

Frame = TypeVar("Frame", "pl.DataFrame", "pl.LazyFrame")

ROLLING_STATS = ("mean", "std", "min", "max", "sum", "median", "var")
DATE_PARTS = ("year", "quarter", "month", "week", "day", "weekday", "dayofyear")
TIME_PARTS = ("hour", "minute", "second")


def _names(columns: str | Iterable[str]) -> list[str]:
    names = [columns] if isinstance(columns, str) else list(columns)
    if not names or not all(isinstance(c, str) for c in names):
        raise ConfigError(f"name the column(s) as a string or a list of strings, not {columns!r}")
    return names


def _ints(values: int | Iterable[int], what: str, *, positive: bool = True) -> list[int]:
    out = [values] if isinstance(values, int) else list(values)
    if not out or not all(isinstance(v, int) and not isinstance(v, bool) and (v >= 1 or not positive) for v in out):
        raise ConfigError(f"{what} must be positive integers, not {values!r}")
    return out


def _window(expr: pl.Expr, by: str | Sequence[str] | None, order_by: str | Sequence[str] | None) -> pl.Expr:
    """``expr`` evaluated per group of ``by`` (if any), in the order of ``order_by`` (if any)."""
    if by is None and order_by is None:
        return expr
    partition = ([by] if isinstance(by, str) else list(by)) if by is not None else None
    order = ([order_by] if isinstance(order_by, str) else list(order_by)) if order_by is not None else None
    return expr.over(partition_by=partition, order_by=order)


def _check(frame: Any, columns: list[str]) -> None:
    import polars as pl

    if not isinstance(frame, pl.DataFrame | pl.LazyFrame):
        raise ConfigError(f"nubes.ml.features works on Polars DataFrames and LazyFrames, not {type(frame).__name__}")
    have = frame.collect_schema().names()
    missing = [c for c in columns if c not in have]
    if missing:
        raise ConfigError(f"no column(s) {', '.join(missing)} in the frame; it has: {', '.join(have)}")


def lags(frame: Frame, columns: str | Iterable[str], periods: int | Iterable[int] = 1, *,
         by: str | Sequence[str] | None = None, order_by: str | Sequence[str] | None = None) -> Frame:
    """Add ``{col}_lag{n}``: the value ``n`` rows earlier in the sequence (of its group)."""
    import polars as pl

    cols, ns = _names(columns), _ints(periods, "lag periods")
    _check(frame, cols + _keys(by, order_by))
    return frame.with_columns(
        _window(pl.col(c).shift(n), by, order_by).alias(f"{c}_lag{n}") for c in cols for n in ns
    )


def leads(frame: Frame, columns: str | Iterable[str], periods: int | Iterable[int] = 1, *,
          by: str | Sequence[str] | None = None, order_by: str | Sequence[str] | None = None) -> Frame:
    """Add ``{col}_lead{n}``: the value ``n`` rows later (the usual forecasting target)."""
    import polars as pl

    cols, ns = _names(columns), _ints(periods, "lead periods")
    _check(frame, cols + _keys(by, order_by))
    return frame.with_columns(
        _window(pl.col(c).shift(-n), by, order_by).alias(f"{c}_lead{n}") for c in cols for n in ns
    )


def diffs(frame: Frame, columns: str | Iterable[str], periods: int | Iterable[int] = 1, *,
          by: str | Sequence[str] | None = None, order_by: str | Sequence[str] | None = None,
          pct: bool = False) -> Frame:
    """Add ``{col}_diff{n}`` (value minus the value ``n`` rows earlier), or ``{col}_pct{n}``
    (the relative change) with ``pct=True``."""
    import polars as pl

    cols, ns = _names(columns), _ints(periods, "difference periods")
    _check(frame, cols + _keys(by, order_by))
    if pct:
        return frame.with_columns(
            _window(pl.col(c).pct_change(n), by, order_by).alias(f"{c}_pct{n}") for c in cols for n in ns
        )
    return frame.with_columns(_window(pl.col(c).diff(n), by, order_by).alias(f"{c}_diff{n}") for c in cols for n in ns)


def rolling(frame: Frame, columns: str | Iterable[str], windows: int | Iterable[int] = 7,
            stats: str | Iterable[str] = "mean", *, by: str | Sequence[str] | None = None,
            order_by: str | Sequence[str] | None = None, shift: int = 0, min_periods: int | None = None) -> Frame:
    """Add ``{col}_roll{w}_{stat}``: a statistic over the last ``w`` rows (of the group).

    The window ends at the current row (``shift=0``) or ``shift`` rows before it (``shift=1``: only
    past values, for forecasting the current one). ``min_periods`` (default: the whole window)
    is how many non-null values a window needs, else null. ``stats``: mean, std, min, max, sum,
    median, var.
    """
    import polars as pl

    cols, ws = _names(columns), _ints(windows, "rolling windows")
    names = [stats] if isinstance(stats, str) else list(stats)
    unknown = [s for s in names if s not in ROLLING_STATS]
    if unknown or not names:
        raise ConfigError(f"unknown rolling statistic(s) {unknown or names}; use: {', '.join(ROLLING_STATS)}")
    if not isinstance(shift, int) or shift < 0:
        raise ConfigError(f"shift must be a non-negative integer, not {shift!r}")
    _check(frame, cols + _keys(by, order_by))
    exprs = []
    for c in cols:
        for w in ws:
            for stat in names:
                source = pl.col(c).shift(shift) if shift else pl.col(c)
                expr = getattr(source, f"rolling_{stat}")(window_size=w, min_samples=min_periods or w)
                exprs.append(_window(expr, by, order_by).alias(f"{c}_roll{w}_{stat}"))
    return frame.with_columns(exprs)


def date_parts(frame: Frame, column: str, parts: Iterable[str] | None = None, *, prefix: str | None = None,
               cyclical: bool = False) -> Frame:
    """Add ``{col}_{part}`` for each date/time part: year, quarter, month, week, day, weekday
    (Monday=1), dayofyear, and hour, minute, second for datetimes (default: all that apply).
    ``cyclical=True`` also adds ``_sin``/``_cos`` of those of month, weekday, dayofyear and hour
    that are chosen, so that December sits next to January. A string column is parsed as an ISO date or date-time."""
    import polars as pl

    _check(frame, [column])
    dtype: Any = frame.collect_schema()[column]
    col = pl.col(column)
    if dtype == pl.String:
        sample = frame.select(pl.col(column).drop_nulls().first())
        value = (sample.collect() if isinstance(sample, pl.LazyFrame) else sample).item()
        is_datetime = isinstance(value, str) and ("T" in value or " " in value.strip())
        col = col.str.to_datetime() if is_datetime else col.str.to_date()
        dtype = pl.Datetime if is_datetime else pl.Date
    if not (dtype == pl.Date or isinstance(dtype, pl.Datetime)):
        raise ConfigError(f"column {column!r} is {dtype}, not a date or date-time")
    available = DATE_PARTS + (TIME_PARTS if isinstance(dtype, pl.Datetime) or dtype == pl.Datetime else ())
    chosen = list(parts) if parts is not None else list(available)
    unknown = [p for p in chosen if p not in available]
    if unknown:
        raise ConfigError(f"unknown date part(s) {unknown} for a {dtype} column; use: {', '.join(available)}")
    stem = prefix if prefix is not None else column
    exprs = [part_expr(col, p).alias(f"{stem}_{p}") for p in chosen]
    if cyclical:
        import math

        periods = {"month": 12, "weekday": 7, "dayofyear": 366, "hour": 24}
        for p, period in periods.items():
            if p in chosen:
                angle = part_expr(col, p).cast(pl.Float64) * (2 * math.pi / period)
                exprs += [angle.sin().alias(f"{stem}_{p}_sin"), angle.cos().alias(f"{stem}_{p}_cos")]
    return frame.with_columns(exprs)


def part_expr(col: pl.Expr, part: str) -> pl.Expr:
    """The Polars expression for one date part of ``col`` (a Date or Datetime expression)."""
    dt = col.dt
    return {
        "year": dt.year, "quarter": dt.quarter, "month": dt.month, "week": dt.week, "day": dt.day,
        "weekday": dt.weekday, "dayofyear": dt.ordinal_day, "hour": dt.hour, "minute": dt.minute,
        "second": dt.second,
    }[part]()


def drop_incomplete(frame: Frame, columns: Iterable[str] | None = None) -> Frame:
    """Drop the rows where any of ``columns`` (default: every column) is null: the start of each
    series, which has no lags yet, and the end, which has no lead."""
    return frame.drop_nulls(subset=list(columns) if columns is not None else None)


def _keys(by: str | Sequence[str] | None, order_by: str | Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for keys in (by, order_by):
        if keys is not None:
            out += [keys] if isinstance(keys, str) else list(keys)
    return out


def __getattr__(name: str) -> Any:
    """``Features``: the pipeline step that computes these features inside a model (see
    :class:`nubes.ml.pipeline.SequenceFeatures`); imported on first use (it needs scikit-learn)."""
    if name == "Features":
        from nubes.ml.pipeline import SequenceFeatures

        return SequenceFeatures
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DATE_PARTS", "ROLLING_STATS", "TIME_PARTS", "date_parts", "diffs", "drop_incomplete", "lags", "leads",
           "part_expr", "rolling"]
