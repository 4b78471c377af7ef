"""Data quality checks, evaluated inside DuckDB against one dataset.

A :class:`Check` is declared once (usually in ``app.dataset(name, uri, checks=[...])``) and run
with ``check.run(conn, relation)``, where ``relation`` is an already-quoted identifier of a
view or table visible on ``conn``. Contracts every built-in check keeps:

* Counting happens in SQL (``COUNT(*) ... WHERE``); only counts and at most
  :data:`SAMPLE_ROWS` sample rows ever reach Python, whatever the size of the dataset.
* Column names are quoted as identifiers (embedded ``"`` doubled) and user values are bound as
  prepared-statement parameters, never formatted into SQL text.
* Arguments are validated when the check is built (:class:`~nubes.errors.ConfigError`);
  problems only DuckDB can see (an unknown column, a type mismatch) surface when it runs.
* ``Check.run`` may raise (e.g. a DuckDB binder error); :func:`run_checks` never does: it turns
  such an exception into a failed :class:`CheckResult` whose ``detail`` is the error.

Importing this module loads neither DuckDB nor Polars; :func:`format_report` imports rich lazily.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nubes.core.encoding import jsonable
from nubes.data.sqltext import ident
from nubes.errors import ConfigError

if TYPE_CHECKING:
    import duckdb
    from rich.table import Table

__all__ = [
    "SAMPLE_ROWS",
    "Check",
    "CheckResult",
    "accepted_values",
    "format_report",
    "freshness",
    "in_range",
    "not_null",
    "row_count",
    "run_checks",
    "schema",
    "sql",
    "unique",
]

SAMPLE_ROWS = 5
"""At most this many failing rows are fetched into :attr:`CheckResult.sample`."""

SEVERITIES = ("warn", "error")


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one dataset.

    ``check`` is the check's readable signature, ``severity`` ``"warn"`` or ``"error"``,
    ``failing`` the number of failing rows (None for checks that are not row-based: schema,
    row_count, freshness, or a check that errored), ``detail`` a human explanation and ``sample``
    up to :data:`SAMPLE_ROWS` failing rows as ``{column: value}`` dicts with DuckDB's Python values
    (``[]`` when passed or not row-based).
    """

    check: str
    severity: str
    passed: bool
    failing: int | None
    detail: str
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``"PASS"``, ``"WARN"`` (failed, severity warn) or ``"FAIL"`` (failed, severity error)."""
        if self.passed:
            return "PASS"
        return "WARN" if self.severity == "warn" else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: sample values become JSON types by the rules every nubes answer
        uses (:func:`nubes.core.encoding.jsonable`: ISO 8601 dates, decimals as numbers, NaN as null,
        bytes as base64)."""
        return {
            "check": self.check,
            "severity": self.severity,
            "passed": self.passed,
            "status": self.status,
            "failing": self.failing,
            "detail": self.detail,
            "sample": [{str(k): jsonable(v) for k, v in row.items()} for row in self.sample],
        }


# ---------------------------------------------------------------------------------------------
# helpers


def _check_severity(severity: str) -> str:
    if severity not in SEVERITIES:
        raise ConfigError(f"check severity must be 'warn' or 'error', not {severity!r}")
    return severity


def _check_column(column: Any, what: str = "column") -> str:
    if not isinstance(column, str) or not column.strip():
        raise ConfigError(f"check {what} must be a non-empty column name, not {column!r}")
    if "\x00" in column:
        raise ConfigError(f"check {what} {column!r} contains a NUL character")
    return column


def _short(values: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f", ... +{len(values) - limit}" if len(values) > limit else ""
    return f"[{shown}{more}]"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _fetch_dicts(conn: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Run ``query`` (which must carry its own LIMIT) and return its rows as dicts."""
    cur = conn.execute(query, list(params))
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]


def _scalar(conn: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] = ()) -> Any:
    rows = conn.execute(query, list(params)).fetchall()  # fetchall: DuckDB 2 keeps a fetchone()'d result open
    return rows[0][0] if rows else None


# ---------------------------------------------------------------------------------------------
# base classes


class Check:
    """A data quality check: a readable ``name``, a ``severity`` and :meth:`run`.

    Subclass it for a custom check in Python (or use :func:`sql` for one in SQL). ``run`` may
    raise; :func:`run_checks` turns exceptions into failed results.
    """

    name: str
    severity: str

    def __init__(self, name: str, severity: str = "error") -> None:
        self.name = name
        self.severity = _check_severity(severity)

    def run(self, conn: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        """Evaluate the check against ``relation`` (a quoted identifier visible on ``conn``)."""
        raise NotImplementedError

    def result(self, passed: bool, failing: int | None, detail: str,
               sample: list[dict[str, Any]] | None = None) -> CheckResult:
        """A :class:`CheckResult` for this check."""
        return CheckResult(self.name, self.severity, passed, failing, detail, list(sample or []))

    def __repr__(self) -> str:
        return f"<Check {self.name} severity={self.severity}>"


class _RowCheck(Check):
    """A check whose failing rows are ``SELECT * FROM relation WHERE <predicate>``."""

    def predicate(self) -> tuple[str, list[Any]]:
        """The SQL predicate selecting failing rows and its bound parameters."""
        raise NotImplementedError

    def describe(self, failing: int) -> str:
        raise NotImplementedError

    def run(self, conn: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        pred, params = self.predicate()
        failing = int(_scalar(conn, f"SELECT COUNT(*) FROM {relation} WHERE {pred}", params) or 0)
        if failing == 0:
            return self.result(True, 0, self.describe(0))
        sample = _fetch_dicts(conn, f"SELECT * FROM {relation} WHERE {pred} LIMIT {SAMPLE_ROWS}", params)
        return self.result(False, failing, self.describe(failing), sample)


# ---------------------------------------------------------------------------------------------
# row-based checks


class _NotNull(_RowCheck):
    def __init__(self, column: str, severity: str) -> None:
        self.column = _check_column(column)
        super().__init__(f"not_null({column})", severity)

    def predicate(self) -> tuple[str, list[Any]]:
        return f"{ident(self.column)} IS NULL", []

    def describe(self, failing: int) -> str:
        if not failing:
            return f"no NULL {self.column}"
        return f"{_plural(failing, 'row')} {'has' if failing == 1 else 'have'} NULL {self.column}"


def not_null(column: str, *, severity: str = "error") -> Check:
    """Every row has a non-NULL ``column``; ``failing`` counts the NULL rows."""
    return _NotNull(column, severity)


class _Unique(Check):
    def __init__(self, columns: str | Sequence[str], severity: str) -> None:
        cols = [columns] if isinstance(columns, str) else list(columns)
        if not cols:
            raise ConfigError("unique() needs at least one column")
        self.columns = [_check_column(c) for c in cols]
        if len(set(self.columns)) != len(self.columns):
            raise ConfigError(f"unique() names a column twice: {self.columns!r}")
        super().__init__(f"unique({', '.join(self.columns)})", severity)

    def run(self, conn: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        keys = ", ".join(ident(c) for c in self.columns)
        not_null = " AND ".join(f"{ident(c)} IS NOT NULL" for c in self.columns)
        dups = (f"SELECT {keys}, COUNT(*) AS _nubes_n FROM {relation} WHERE {not_null} "
                f"GROUP BY {keys} HAVING COUNT(*) > 1")
        groups, failing = conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM(_nubes_n), 0) FROM ({dups}) AS _nubes_d").fetchall()[0]
        failing, groups = int(failing), int(groups)
        label = self.columns[0] if len(self.columns) == 1 else "(" + ", ".join(self.columns) + ")"
        if failing == 0:
            return self.result(True, 0, f"every {label} is unique")
        sample = _fetch_dicts(conn, f"SELECT * FROM ({dups}) AS _nubes_d ORDER BY _nubes_n DESC LIMIT {SAMPLE_ROWS}")
        count_key = "count" if "count" not in self.columns else "_count"
        sample = [{**{k: v for k, v in row.items() if k != "_nubes_n"}, count_key: row["_nubes_n"]} for row in sample]
        detail = f"{_plural(failing, 'row')} share {groups} duplicated {label} value{'s' if groups != 1 else ''}"
        return self.result(False, failing, detail, sample)


def unique(columns: str | Sequence[str], *, severity: str = "error") -> Check:
    """No two rows share the same value of ``columns`` (one column or a combination).

    Rows with a NULL in any of the columns are ignored, as in a SQL UNIQUE constraint (pair with
    :func:`not_null` to forbid them). ``failing`` counts every row of a duplicated combination;
    ``sample`` holds up to 5 duplicated combinations, most frequent first, each with its ``count``
    (``_count`` if a checked column is itself named ``count``).
    """
    return _Unique(columns, severity)


class _AcceptedValues(_RowCheck):
    def __init__(self, column: str, values: Sequence[Any], severity: str) -> None:
        self.column = _check_column(column)
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, set, frozenset)):
            raise ConfigError(f"accepted_values({column}) needs a list of values, not {values!r}")
        vals = [v for v in values if v is not None]
        if not vals:
            raise ConfigError(f"accepted_values({column}) needs at least one non-NULL value")
        self.values = list(dict.fromkeys(vals)) if all(_hashable(v) for v in vals) else vals
        super().__init__(f"accepted_values({column}, {_short(self.values)})", severity)

    def predicate(self) -> tuple[str, list[Any]]:
        marks = ", ".join("?" for _ in self.values)
        return f"{ident(self.column)} NOT IN ({marks})", list(self.values)

    def describe(self, failing: int) -> str:
        if not failing:
            return f"every {self.column} is one of {_short(self.values)}"
        return f"{_plural(failing, 'row')} {'has' if failing == 1 else 'have'} {self.column} not in {_short(self.values)}"


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def accepted_values(column: str, values: Sequence[Any], *, severity: str = "error") -> Check:
    """Every non-NULL ``column`` is one of ``values``.

    NULLs pass (use :func:`not_null` to forbid them); ``None`` in ``values`` is ignored. The values
    are bound as prepared-statement parameters, so any string is compared as data.
    """
    return _AcceptedValues(column, values, severity)


class _InRange(_RowCheck):
    def __init__(self, column: str, min: Any, max: Any, severity: str) -> None:
        self.column = _check_column(column)
        if min is None and max is None:
            raise ConfigError(f"in_range({column}) needs min=, max= or both")
        if min is not None and max is not None:
            try:
                bad = min > max
            except TypeError as exc:
                raise ConfigError(f"in_range({column}): min {min!r} and max {max!r} are not comparable") from exc
            if bad:
                raise ConfigError(f"in_range({column}): min {min!r} is greater than max {max!r}")
        for bound in (min, max):
            if isinstance(bound, float) and math.isnan(bound):
                raise ConfigError(f"in_range({column}): a bound may not be NaN")
        self.min, self.max = min, max
        super().__init__(f"in_range({column}, {self._bounds()})", severity)

    def _bounds(self) -> str:
        parts = ([f"min={self.min!r}"] if self.min is not None else []) + (
            [f"max={self.max!r}"] if self.max is not None else [])
        return ", ".join(parts)

    def predicate(self) -> tuple[str, list[Any]]:
        col = ident(self.column)
        terms, params = [], []
        if self.min is not None:
            terms.append(f"{col} < ?")
            params.append(self.min)
        if self.max is not None:
            terms.append(f"{col} > ?")
            params.append(self.max)
        return "(" + " OR ".join(terms) + ")", params

    def describe(self, failing: int) -> str:
        if not failing:
            return f"every {self.column} is within {self._bounds()}"
        return f"{_plural(failing, 'row')} {'has' if failing == 1 else 'have'} {self.column} outside {self._bounds()}"


def in_range(column: str, min: Any = None, max: Any = None, *, severity: str = "error") -> Check:
    """Every non-NULL ``column`` satisfies ``min <= column <= max`` (inclusive; either bound may be
    omitted, not both). NULLs pass. Bounds (numbers, dates, strings...) are bound parameters."""
    return _InRange(column, min, max, severity)


class _Sql(Check):
    def __init__(self, query: str, name: str, severity: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("sql() check needs a non-empty name=")
        if not isinstance(query, str) or not query.strip():
            raise ConfigError(f"sql() check {name!r} needs a non-empty query")
        if "{dataset}" not in query:
            raise ConfigError(f"sql() check {name!r}: the query must reference the dataset as {{dataset}}")
        self.query = query.strip().rstrip(";").rstrip()
        super().__init__(name, severity)

    def run(self, conn: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        query = self.query.replace("{dataset}", relation)
        failing = int(_scalar(conn, f"SELECT COUNT(*) FROM ({query}) AS _nubes_q") or 0)
        if failing == 0:
            return self.result(True, 0, "query returned no rows")
        sample = _fetch_dicts(conn, f"SELECT * FROM ({query}) AS _nubes_q LIMIT {SAMPLE_ROWS}")
        return self.result(False, failing, f"query returned {_plural(failing, 'failing row')}", sample)


def sql(query: str, *, name: str, severity: str = "error") -> Check:
    """A custom check: ``query`` selects the FAILING rows and refers to the dataset as ``{dataset}``
    (e.g. ``"select * from {dataset} where amount < 0"``); it passes when the query returns no rows.

    ``{dataset}`` is replaced by the relation's quoted identifier (plain text replacement, so other
    braces in the SQL are left alone); a trailing ``;`` is dropped. The query is trusted developer
    SQL: it runs as written.
    """
    return _Sql(query, name, severity)


# ---------------------------------------------------------------------------------------------
# dataset-level checks


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


# ---------------------------------------------------------------------------------------------
# running and reporting


def run_checks(conn: duckdb.DuckDBPyConnection, relation: str, checks: Sequence[Check]) -> list[CheckResult]:
    """Run ``checks`` in order against ``relation``; one result per check, never raises.

    A check that raises (unknown column, type mismatch, bad SQL ...) yields a failed result with
    ``failing=None`` and ``detail`` naming the error; the remaining checks still run.
    """
    results: list[CheckResult] = []
    for check in checks:
        try:
            result = check.run(conn, relation)
            if not isinstance(result, CheckResult):
                raise TypeError(f"{type(check).__name__}.run returned {type(result).__name__}, not CheckResult")
        except Exception as exc:
            name = getattr(check, "name", None) or type(check).__name__
            severity = getattr(check, "severity", "error")
            severity = severity if severity in SEVERITIES else "error"
            result = CheckResult(str(name), severity, False, None, f"check errored: {_error_text(exc)}", [])
        results.append(result)
    return results


def _error_text(exc: Exception) -> str:
    """One line: DuckDB's own message (already "Binder Error: ...", minus the caret-pointed SQL
    excerpt) or ``Type: message`` for anything else."""
    text = str(exc).split("\nLINE ")[0]
    text = " ".join(text.split())
    if type(exc).__module__.lstrip("_").startswith("duckdb") and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def format_report(results: Mapping[str, list[CheckResult]]) -> Table:
    """A rich Table (dataset, check, severity, status, failing, detail) of ``{dataset: results}``.

    Status is PASS, WARN (failed, severity warn) or FAIL (failed, severity error). Cell text is
    never read as rich markup, so brackets in names or details print as they are.
    """
    from rich.table import Table
    from rich.text import Text

    styles = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}
    table = Table(title="Data quality checks")
    for header, justify in (("dataset", "left"), ("check", "left"), ("severity", "left"),
                            ("status", "left"), ("failing", "right"), ("detail", "left")):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for dataset, rows in results.items():
        for r in rows:
            table.add_row(
                Text(str(dataset)),
                Text(r.check),
                Text(r.severity),
                Text(r.status, style=styles[r.status]),
                Text("" if r.failing is None else f"{r.failing:,}"),
                Text(r.detail),
            )
    return table
