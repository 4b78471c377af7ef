"""Data quality checks for datasets: ``from nubes import checks; checks.not_null("id")``.

Declared on a dataset (``app.dataset(name, uri, checks=[...])``) and evaluated inside DuckDB, so
only counts and at most five sample rows per check reach Python. See :mod:`nubes.core.checks`
for the contracts. Importing this module loads no data library.
"""

from nubes.core.checks import (
    SAMPLE_ROWS,
    Check,
    CheckResult,
    accepted_values,
    format_report,
    freshness,
    in_range,
    not_null,
    row_count,
    run_checks,
    schema,
    sql,
    unique,
)

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
