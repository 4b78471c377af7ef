"""The data extension: what :mod:`nubes.data` adds to an app (see :mod:`nubes.core.extensions`).

* ``app.catalog`` (the datasets, from ``app.dataset(...)`` and ``catalog.yaml``), ``app.dataset(...)``,
  ``app.check_cache`` (check results per dataset version, shared by a warm instance's invocations);
* ``ctx.sql``, ``ctx.table``, ``ctx.write`` and ``ctx.session`` (one :class:`~nubes.data.session.Session`
  per invocation, opened on first use, closed with its lineage recorded when the invocation ends);
* ``GET /_nubes/catalog`` and, when ``App(sql_endpoint=...)`` or ``NUBES_SQL_ENDPOINT`` says so,
  ``POST /_nubes/sql``;
* the commands ``nubes catalog``, ``nubes check`` and ``nubes lineage``.

Importing this module loads no data library.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nubes.core.context import Context  # at run time: binding resolves the routes' annotations
from nubes.core.extensions import Command

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from nubes.core.app import App
    from nubes.data.catalog import Dataset
    from nubes.data.session import Session

_SESSION = "data.session"


class DataExtension:
    """Catalog, queries, writes, checks, lineage and the SQL endpoint for an app."""

    name = "data"
    commands = (
        Command("catalog", "nubes.cli.data:catalog", "Datasets, schema, objects, owner, check status."),
        Command("check", "nubes.cli.data:check", "Run the datasets' quality checks."),
        Command("lineage", "nubes.cli.data:lineage", "What invocations read and wrote."),
    )

    def setup(self, app: App) -> None:
        from nubes.data.catalog import Catalog

        option = app.options.get("catalog")
        yaml_path = Path(app.root) / "catalog.yaml" if option is None else Path(option)
        app.add_attribute("catalog", Catalog(yaml_path))
        app.add_lazy_attribute("check_cache", _check_cache)
        app.add_attribute("dataset", _DatasetDeclarer(app))
        for name in ("sql", "table", "write"):
            app.add_context_attribute(name, globals()[f"_ctx_{name}"])
        app.add_context_attribute("session", property(session_of))
        app.add_internal_route("/_nubes/catalog", ["GET"], _catalog_route, summary="The data catalog")
        sql_endpoint = app.options.get("sql_endpoint")
        if sql_endpoint is None:  # not set in code: the environment decides (off by default)
            sql_endpoint = os.environ.get("NUBES_SQL_ENDPOINT", "").lower() in ("1", "true", "yes", "on")
        app.options["sql_endpoint"] = sql_endpoint
        if sql_endpoint:
            from nubes.data.sql_endpoint import sql_route

            app.add_internal_route("/_nubes/sql", ["POST"], sql_route, summary="Read-only SQL over the catalog")


def session_of(ctx: Context) -> Session:
    """This invocation's analytics session (opened on first use, closed when the invocation ends)."""
    state = ctx.extension_state
    session: Session | None = state.get(_SESSION)
    if session is None:
        from nubes.data.session import Session

        session = state[_SESSION] = Session(ctx.app, enforce_checks=ctx.options.get("checks", True))
        ctx.on_finish(_finish)
    return session


def _finish(ctx: Context) -> None:
    """End the invocation's session: count its I/O in the invocation's stats, then record its lineage."""
    session: Session | None = ctx.extension_state.pop(_SESSION, None)
    if session is None:
        return
    try:
        session.account(ctx.request_id, ctx.route)
    finally:
        session.close()


def _ctx_sql(ctx: Context, query: str, /, **params: Any) -> duckdb.DuckDBPyRelation:
    """Run DuckDB SQL with every catalog dataset visible as a view by its name.

    Keyword arguments are bound as prepared-statement parameters (``$name`` in the query), never
    formatted into the SQL text. Returns a lazy DuckDB relation (return it to answer with it).
    A dataset whose ``error`` checks fail makes this a 409 unless the route says ``checks=False``.
    """
    return session_of(ctx).sql(query, params or None)


def _ctx_table(ctx: Context, name: str) -> pl.LazyFrame:
    """Catalog dataset ``name`` as a Polars LazyFrame (projection and filters pushed into the reads)."""
    return session_of(ctx).table(name)


def _ctx_write(
    ctx: Context,
    target: str,
    frame: Any,
    *,
    format: str = "parquet",
    partition_by: Sequence[str] | str | None = None,
    mode: str = "overwrite",
) -> Dataset:
    """Write ``frame`` (Polars, DuckDB relation, Arrow table or SQL text) to a catalog dataset or a URI.

    Atomic: readers see the previous version or the new one, never a mix. A single-object URI is
    replaced whole; a prefix dataset (URI ending with ``/``) gets a new version of files under it
    and a manifest swap (``mode="append"`` adds files, ``partition_by`` writes hive folders).
    The dataset is registered in the catalog if it was not there.
    """
    return session_of(ctx).write(target, frame, format=format, partition_by=partition_by, mode=mode)


def _check_cache(app: App) -> Any:
    from nubes.data.session import CheckCache

    return CheckCache()


class _DatasetDeclarer:
    """``app.dataset(name, uri, ...)``: declare a catalog dataset (see the README's Data section)."""

    def __init__(self, app: App) -> None:
        self._app = app

    def __call__(
        self,
        name: str,
        uri: str,
        *,
        format: str | None = None,
        schema: dict[str, str] | None = None,
        description: str = "",
        owner: str = "",
        tags: Iterable[str] = (),
        checks: Iterable[Any] = (),
        partitioning: str | None = None,
    ) -> Dataset:
        """Declare a dataset: visible to ``ctx.sql`` as a view named ``name``, to ``ctx.table(name)``,
        listed by ``nubes catalog`` and ``GET /_nubes/catalog``; ``checks`` guard its readers."""
        from nubes.data.catalog import make_dataset

        dataset: Dataset = self._app.catalog.add(
            make_dataset(name, uri, format=format, schema=schema, description=description, owner=owner,
                         tags=tags, checks=checks, partitioning=partitioning)
        )
        return dataset


def _catalog_route(ctx: Context) -> dict[str, Any]:
    from nubes.data.catalog_report import describe_catalog

    return {"app": ctx.app.name, "datasets": describe_catalog(ctx.app)}
