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

import math
from collections.abc import Mapping, Sequence
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


# the dataset-level checks live in their own module; they are part of this one's API
from nubes.data.dataset_checks import _format_duration, _parse_duration, freshness, row_count, schema  # noqa: E402, F401
