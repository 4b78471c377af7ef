"""The per-invocation context handed to every handler as its first argument."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nubes.core.logs import BoundLog
from nubes.core.request import Request

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from nubes.data.session import Session
    from nubes.core.app import App
    from nubes.data.catalog import Dataset
    from nubes.core.events import Event, Platform
    from nubes.ml.registry import ModelRegistry
    from nubes.storage.base import ObjectStore


class Context:
    """What a handler knows about its invocation.

    ``request`` (the :class:`~nubes.Request`; None for an event), ``event`` (the
    :class:`~nubes.ObjectCreated` / :class:`~nubes.Message` / :class:`~nubes.Scheduled` being handled;
    None for HTTP), ``platform`` (where this runs: provider, memory, cold start), ``app``, ``request_id`` (unique per invocation;
    the provider's id when a cloud adapter supplies one), ``log`` (structured log lines tagged
    with the request id), ``storage`` (the app's home object store), ``started`` (monotonic
    seconds), ``deadline`` (monotonic seconds by which the provider stops the invocation, or None)
    and ``state`` (a dict for the handler's own use during this invocation).
    """

    __slots__ = (
        "request", "event", "platform", "app", "request_id", "log", "started", "deadline", "state", "route", "options",
        "_session",
    )

    def __init__(
        self,
        request: Request | None,
        app: App,
        request_id: str,
        log: BoundLog,
        *,
        deadline: float | None = None,
        route: str | None = None,
        event: Event | None = None,
        platform: Platform | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.request = request
        self.event = event
        if platform is None:
            from nubes.core.events import LOCAL as platform
        self.platform = platform
        self.app = app
        self.request_id = request_id
        self.log = log
        self.started = time.monotonic()
        self.deadline = deadline
        self.state: dict[str, Any] = {}
        self.route = route
        self.options = options or {}
        self._session: Session | None = None

    @property
    def storage(self) -> ObjectStore:
        """The app's home store (``App(storage=...)``, ``NUBES_STORAGE``, else ``file://.nubes``)."""
        return self.app.storage

    @property
    def models(self) -> ModelRegistry:
        """The app's model registry (``ctx.app.models``): register, load, promote fitted models."""
        return self.app.models

    # -- analytics ------------------------------------------------------------------------
    @property
    def session(self) -> Session:
        """This invocation's analytics session (opened on first use, closed when the invocation ends)."""
        if self._session is None:
            from nubes.data.session import Session

            self._session = Session(self.app, enforce_checks=self.options.get("checks", True))
        return self._session

    def sql(self, query: str, /, **params: Any) -> duckdb.DuckDBPyRelation:
        """Run DuckDB SQL with every catalog dataset visible as a view by its name.

        Keyword arguments are bound as prepared-statement parameters (``$name`` in the query), never
        formatted into the SQL text. Returns a lazy DuckDB relation (return it to answer with it).
        A dataset whose ``error`` checks fail makes this a 409 unless the route says ``checks=False``.
        """
        return self.session.sql(query, params or None)

    def table(self, name: str) -> pl.LazyFrame:
        """Catalog dataset ``name`` as a Polars LazyFrame (projection and filters pushed into the reads)."""
        return self.session.table(name)

    def write(
        self,
        target: str,
        frame: Any,
        *,
        format: str = "parquet",  # noqa: A002
        partition_by: Sequence[str] | str | None = None,
        mode: str = "overwrite",
    ) -> Dataset:
        """Write ``frame`` (Polars, DuckDB relation, Arrow table or SQL text) to a catalog dataset or a URI.

        Atomic: readers see the previous version or the new one, never a mix. A single-object URI is
        replaced whole; a prefix dataset (URI ending with ``/``) gets a new version of files under it
        and a manifest swap (``mode="append"`` adds files, ``partition_by`` writes hive folders).
        The dataset is registered in the catalog if it was not there.
        """
        return self.session.write(target, frame, format=format, partition_by=partition_by, mode=mode)

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None when there is none."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def __repr__(self) -> str:
        what = f"{self.request.method} {self.request.path}" if self.request else type(self.event).__name__
        return f"<Context {self.request_id} {what}>"
