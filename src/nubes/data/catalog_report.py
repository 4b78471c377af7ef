"""What ``nubes catalog``, ``nubes check`` and ``GET /_nubes/catalog`` report about an app's datasets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nubes.errors import NubesError

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.data.checks import CheckResult


def describe_catalog(app: App, names: list[str] | None = None, *, run_checks: bool = True) -> list[dict[str, Any]]:
    """One entry per dataset: declaration, live schema, objects, bytes, rows (Parquet: from footers) and checks.

    A dataset that cannot be read is reported with ``status: "unavailable"`` and the reason; the
    others are still described.
    """
    from nubes.data.session import Session
    from nubes.data.sqltext import ident as quote_ident

    out = []
    datasets = [app.catalog.get(n) for n in names] if names else list(app.catalog)
    session = Session(app, enforce_checks=False)
    try:
        for dataset in datasets:
            entry = dataset.describe()
            try:
                resolved = session.view(dataset.name)
                relation = session.connection.sql(f"SELECT * FROM {quote_ident(dataset.name)}")
                entry["schema"] = dict(zip(relation.columns, map(str, relation.types), strict=True))
                entry["objects"] = len(resolved.objects)
                entry["bytes"] = resolved.size
                fmt = (resolved.manifest or {}).get("format", dataset.format)
                entry["rows"] = (
                    session.connection.sql(f"SELECT count(*) FROM {quote_ident(dataset.name)}").fetchall()[0][0]
                    if fmt == "parquet" else None
                )
                results = session.check(dataset, resolved) if (run_checks and dataset.checks) else []
                entry["checks"] = [r.to_dict() for r in results] or entry["checks"]
                entry["status"] = _status(results)
            except NubesError as exc:
                entry.update(status="unavailable", error=str(exc))
            except Exception as exc:  # a DuckDB error reading the data: report it, keep going
                entry.update(status="unavailable", error=f"{type(exc).__name__}: {exc}")
            out.append(entry)
    finally:
        session.close()
    return out


def _status(results: list[CheckResult]) -> str:
    if any(not r.passed and r.severity == "error" for r in results):
        return "failing"
    if any(not r.passed for r in results):
        return "warning"
    return "ok" if results else "unchecked"
