"""Dataset-level quality checks (not row-based): ``row_count``, ``freshness`` and ``schema``.

Part of :mod:`nubes.data.checks` (which exports them); the contracts in its docstring apply.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from nubes.data.checks import Check, CheckResult, _check_column, _plural, _scalar
from nubes.data.sqltext import ident
from nubes.errors import ConfigError

if TYPE_CHECKING:
    import duckdb



class _RowCount(Check):
    def __init__(self, min: int | None, max: int | None, severity: str) -> None:
        if min is None and max is None:
            min = 1
        for label, bound in (("min", min), ("max", max)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 0):
                raise ConfigError(f"row_count({label}=...) must be a non-negative int, not {bound!r}")
        if min is not None and max is not None and min > max:
            raise ConfigError(f"row_count: min {min} is greater than max {max}")
        self.min, self.max = min, max
        bounds = ", ".join(([f"min={min}"] if min is not None else []) + ([f"max={max}"] if max is not None else []))
        super().__init__(f"row_count({bounds})", severity)

    def run(self, conn: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        n = int(_scalar(conn, f"SELECT COUNT(*) FROM {relation}") or 0)
        if self.min is not None and n < self.min:
            return self.result(False, None, f"expected at least {_plural(self.min, 'row')}, found {n}")
        if self.max is not None and n > self.max:
            return self.result(False, None, f"expected at most {_plural(self.max, 'row')}, found {n}")
        return self.result(True, None, f"{_plural(n, 'row')}")


def row_count(min: int | None = None, max: int | None = None, *, severity: str = "error") -> Check:
    """The dataset has between ``min`` and ``max`` rows (inclusive). With neither bound it checks
    that the dataset is not empty (``min=1``). Not row-based: ``failing`` is None."""
    return _RowCount(min, max, severity)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_duration(text: str) -> _dt.timedelta:
    """``"30m"``, ``"24h"``, ``"7d"``, ``"2w"``, ``"90s"`` or a sum such as ``"1d12h"`` -> timedelta.

    Raises ConfigError for anything else (including zero or negative durations)."""
    s = text.strip() if isinstance(text, str) else ""
    pos, seconds = 0, 0.0
    for m in _DURATION.finditer(s):
        if s[pos:m.start()].strip():
            break
        seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
        pos = m.end()
    else:
        if pos and not s[pos:].strip() and seconds > 0:
            return _dt.timedelta(seconds=seconds)
    raise ConfigError(
        f"bad duration {text!r}: use a number and a unit (ms, s, m, h, d, w), e.g. '30m', '24h', '7d', '1d12h'")


def _format_duration(td: _dt.timedelta) -> str:
    """A compact rendering of ``td``: ``"1d2h"``, ``"30m"``, ``"45s"`` (sub-second parts dropped)."""
    total = int(td.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("", total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return sign + ("".join(parts) or "0s")


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class _Freshness(Check):
    def __init__(self, column: str, max_age: _dt.timedelta | str,
                 now: Callable[[], _dt.datetime] | None, severity: str) -> None:
        self.column = _check_column(column)
        if isinstance(max_age, str):
            label, self.max_age = max_age.strip(), _parse_duration(max_age)
        elif isinstance(max_age, _dt.timedelta):
            if max_age <= _dt.timedelta(0):
                raise ConfigError(f"freshness({column}): max_age must be positive, not {max_age!r}")
            label, self.max_age = _format_duration(max_age), max_age
        else:
            raise ConfigError(f"freshness({column}): max_age must be a timedelta or a string like '24h', "
                              f"not {max_age!r}")
        if now is not None and not callable(now):
            raise ConfigError(f"freshness({column}): now= must be a callable returning a datetime")
        self.now = now or _utc_now
        super().__init__(f"freshness({column}, max_age={label})", severity)

    def run(self, conn: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        col = ident(self.column)
        # epoch() reads TIMESTAMPTZ as the instant it is and a naive TIMESTAMP/DATE as UTC, so the
        # session TimeZone never matters; only two scalars reach Python.
        latest, text = conn.execute(
            f"SELECT epoch(MAX({col})), CAST(MAX({col}) AS VARCHAR) FROM {relation}").fetchall()[0]
        if latest is None:
            return self.result(False, None, f"no non-NULL {self.column} to judge freshness by")
        now = self.now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=_dt.UTC)
        age = _dt.timedelta(seconds=now.timestamp() - float(latest))
        if age > self.max_age:
            return self.result(False, None, f"latest {self.column} is {text} ({_format_duration(age)} old), "
                                            f"older than {_format_duration(self.max_age)}")
        return self.result(True, None, f"latest {self.column} is {text} ({_format_duration(age)} old)")


def freshness(column: str, max_age: _dt.timedelta | str, *, severity: str = "error",
              now: Callable[[], _dt.datetime] | None = None) -> Check:
    """``MAX(column)`` is no older than ``max_age`` relative to ``now()`` (default: current UTC time).

    ``column`` is a TIMESTAMP (read as UTC), TIMESTAMPTZ or DATE (midnight UTC); a naive ``now()``
    is read as UTC. ``max_age`` is a timedelta or a string such as ``"30m"``, ``"24h"``, ``"7d"``.
    Fails when the column has no non-NULL value. Not row-based: ``failing`` is None.
    """
    return _Freshness(column, max_age, now, severity)


_BARE_DECIMAL = re.compile(r"^\s*(DECIMAL|NUMERIC|DEC)\s*$", re.IGNORECASE)


class _Schema(Check):
    def __init__(self, expected: Mapping[str, str], exact: bool, severity: str) -> None:
        if not isinstance(expected, Mapping) or not expected:
            raise ConfigError("schema() needs a non-empty mapping of column -> DuckDB type name")
        for col, typ in expected.items():
            _check_column(col)
            if not isinstance(typ, str) or not typ.strip():
                raise ConfigError(f"schema(): column {col!r} needs a DuckDB type name, not {typ!r}")
        folded = [c.lower() for c in expected]
        if len(set(folded)) != len(folded):
            raise ConfigError("schema() names a column twice (column names are case-insensitive)")
        self.expected = {c: t.strip() for c, t in expected.items()}
        self.exact = exact
        shown = ", ".join(f"{c} {t}" for c, t in list(self.expected.items())[:4])
        more = f", ... +{len(self.expected) - 4}" if len(self.expected) > 4 else ""
        super().__init__(f"schema({shown}{more}{', exact' if exact else ''})", severity)

    @staticmethod
    def _canonical(conn: duckdb.DuckDBPyConnection, type_name: str) -> str:
        if _BARE_DECIMAL.match(type_name):
            return "DECIMAL"  # any precision/scale
        try:
            return str(conn.sqltype(type_name)).upper()
        except Exception as exc:
            raise ConfigError(f"schema(): unknown DuckDB type {type_name!r}") from exc

    def run(self, conn: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        rel = conn.sql(f"SELECT * FROM {relation}")  # binds only: no rows are read
        actual = {name: str(typ).upper() for name, typ in zip(rel.columns, rel.types, strict=False)}
        by_folded = {name.lower(): name for name in actual}
        problems = []
        seen = set()
        for col, typ in self.expected.items():
            name = col if col in actual else by_folded.get(col.lower())
            if name is None:
                problems.append(f"missing column {col} ({typ})")
                continue
            seen.add(name)
            want, found = self._canonical(conn, typ), actual[name]
            if want == "DECIMAL" and found.startswith("DECIMAL"):
                continue
            if want != found:
                problems.append(f"expected column {col} {want}, found {found}")
        if self.exact:
            problems += [f"unexpected column {name} {actual[name]}" for name in actual if name not in seen]
        if problems:
            return self.result(False, None, "; ".join(problems))
        return self.result(True, None, f"{_plural(len(self.expected), 'column')} as expected")


def schema(expected: Mapping[str, str], *, severity: str = "error", exact: bool = False) -> Check:
    """The dataset has each ``column`` of ``expected`` with the given DuckDB type.

    Column names match case-insensitively (as in DuckDB). Types are compared after DuckDB
    canonicalises them, so synonyms agree (INT8 = BIGINT, FLOAT8 = DOUBLE, TEXT = STRING = VARCHAR,
    INT = INT4 = INTEGER, TIMESTAMPTZ = TIMESTAMP WITH TIME ZONE ...); a bare ``DECIMAL``/``NUMERIC``
    accepts any precision and scale. ``exact=True`` also fails on columns not in ``expected``.
    Reads no rows. Not row-based: ``failing`` is None.
    """
    return _Schema(expected, exact, severity)
