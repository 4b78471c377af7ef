"""Layer 2 of the SQL endpoint's sandbox: a fresh, locked DuckDB database per query, with bounded
time, memory, threads and answer size.

:class:`Sandbox` makes a database of its own in which only the referenced datasets exist, as views over
the exact ``nubes://`` objects they have now; then ``allowed_paths`` is set to exactly those objects,
``enable_external_access=false`` (no other file, URL, extension, ATTACH or COPY), extension
auto-install/auto-load and community extensions off, the local filesystem disabled, no spilling to
disk (no temp directory), DuckDB's ``memory_limit`` and thread count set, and ``lock_configuration=true``
so the query cannot undo any of it. Even SQL that slipped past validation reads nothing but those objects.

:meth:`Sandbox.run` bounds the rest, from the first byte executed to the last byte encoded:

* time: one deadline; a watchdog thread calls DuckDB's ``interrupt()`` when it passes, and the fetch
  loop checks it between batches (so conversion and encoding count too) -> 422 ``Query Timeout``;
* memory: DuckDB's ``memory_limit`` for its buffer manager, and the data cap of
  :mod:`nubes.data.sql_memory` (that limit plus :data:`HEADROOM`) for everything else -> 422
  ``Query Too Large``;
* size: rows are fetched and encoded in batches, stopping past ``max_bytes`` -> 413
  (:mod:`nubes.data.sql_results`); past the row limit the answer is truncated and says so.

422 rather than 408/504: the outcome is deterministic, so a retry cannot help, and 408/504 are statuses
HTTP clients (nubes' own storage clients included) retry automatically.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from nubes.data.sql_memory import capped, parse_size
from nubes.data.sql_results import ResponseTooLarge, fetch_encoded, size_text
from nubes.data.sql_validation import Refused
from nubes.data.sqltext import literal
from nubes.errors import HTTPError

if TYPE_CHECKING:
    import duckdb

    from nubes.core.app import App
    from nubes.data.session import Session
    from nubes.data.sql_endpoint import SqlEndpoint

__all__ = ["HEADROOM", "ResponseTooLarge", "Result", "Sandbox", "memory_setting", "query_timeout"]

#: Bytes the process may grow by beyond DuckDB's ``memory_limit`` while a query runs: DuckDB's own
#: allocations outside its buffer manager, one batch of Python values, the encoded answer.
HEADROOM = 64 * 1024 * 1024
DEFAULT_MEMORY = "256MB"
DEFAULT_THREADS = 2


@dataclass
class Result:
    """A query's answer: ``rows`` is the JSON records, comma-separated, without brackets."""

    columns: list[dict[str, str]]
    rows: bytes
    row_count: int
    truncated: bool
    elapsed_ms: float


def memory_setting(settings: SqlEndpoint, memory_mb: int | None) -> str:
    """DuckDB's ``memory_limit`` for a sandbox: the setting, else a quarter of the function's memory
    (64 MB to 1 GB) when the platform says, else :data:`DEFAULT_MEMORY`."""
    if settings.memory_limit:
        return settings.memory_limit
    if memory_mb:
        return f"{min(1024, max(64, memory_mb // 4))}MB"
    return DEFAULT_MEMORY


def query_timeout(timeout_s: float) -> HTTPError:
    return HTTPError(
        422, f"the query ran longer than its time limit of {timeout_s:g} s; narrow it or aggregate",
        title="Query Timeout", timeout_s=timeout_s,
    )


class Sandbox:
    """A fresh DuckDB database for one query: the named datasets as views, then locked down.

    ``prepare(datasets)`` creates the views (enforcing the datasets' error checks, like ``ctx.sql``)
    and then locks the connection: after it, DuckDB can read the exact objects of those datasets and
    nothing else, and no setting can change. :meth:`run` executes one query within the limits above.
    The caller must :meth:`close` it (or use ``with``).
    """

    def __init__(self, app: App, settings: SqlEndpoint | None = None, *, memory_mb: int | None = None) -> None:
        from nubes.data.session import Session
        from nubes.data.sql_endpoint import config

        if settings is None:
            settings = config(app)
        self.settings = settings if settings.complete else settings.resolved(app)
        # private: a database of its own, since prepare() locks its configuration (never the app's shared one)
        self.session: Session = Session(app, enforce_checks=True, private=True)
        self.locked = False
        self.allowed: list[str] = []
        memory = memory_setting(self.settings, memory_mb)
        self.memory_limit = memory
        self.budget = parse_size(memory) + HEADROOM
        threads = self.settings.threads or min(DEFAULT_THREADS, os.cpu_count() or 1)
        con = self.connection
        # Before anything runs: no extension may be installed or loaded, no Python object scanned.
        for statement in (
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
            "SET allow_community_extensions = false",
            "SET allow_unsigned_extensions = false",
            "SET allow_persistent_secrets = false",
            "SET python_enable_replacements = false",
            "SET enable_progress_bar = false",
            "SET temp_directory = ''",
            f"SET memory_limit = {literal(memory)}",
            f"SET threads = {int(threads)}",
            "SET TimeZone = 'UTC'",
        ):
            con.execute(statement)

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        return self.session.connection

    def prepare(self, datasets: Iterable[str]) -> None:
        """Create the views of ``datasets``, then lock the connection (see the module docstring)."""
        if self.locked:
            raise RuntimeError("the sandbox is already locked")
        urls: list[str] = []
        for name in datasets:
            resolved = self.session.view(name)
            alias = self.session.alias(resolved.store)
            urls.extend(self.session.bridge.path(o.key, store=alias) for o in resolved.objects)
        self.allowed = sorted(set(urls))
        con = self.connection
        con.execute("SET allowed_paths = [" + ", ".join(literal(u) for u in self.allowed) + "]")
        con.execute("SET disabled_filesystems = 'LocalFileSystem'")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        self.locked = True

    def run(self, sql: str, *, limit: int, timeout_s: float, max_bytes: int | None = None, reserved: int = 0) -> Result:
        """Run ``sql`` on the locked connection: at most ``limit`` rows and ``max_bytes`` of JSON (default:
        the settings'; ``reserved`` of them taken by what surrounds the rows), all of it within ``timeout_s``.

        DuckDB's errors become HTTP answers: 403 for what the lock refused, 413 for an answer over the
        byte limit, 422 for a timeout, too much memory or a value that does not convert, 400 for other
        errors of the query text.
        """
        import duckdb

        if not self.locked:
            raise RuntimeError("prepare() the sandbox before running SQL in it")
        con = self.connection
        limit_bytes = max_bytes if max_bytes is not None else self.settings.byte_limit
        started = time.monotonic()
        deadline = started + timeout_s
        with _Watchdog(con, timeout_s) as watchdog, capped(self.budget):
            try:
                with self.session.bridge.translate_errors():
                    con.execute(sql)
                    if con.description is None:  # not a query: validation should have refused it
                        raise Refused(["only SELECT statements are allowed"])
                    rows = fetch_encoded(con, limit=limit, max_bytes=limit_bytes, deadline=deadline,
                                         on_timeout=lambda: query_timeout(timeout_s), reserved=reserved)
            except duckdb.InterruptException as exc:
                if not watchdog.fired:
                    raise
                raise query_timeout(timeout_s) from exc
            except duckdb.Error as exc:
                raise self._query_error(exc) from exc
            except MemoryError as exc:
                raise self._too_large() from exc
            except RecursionError as exc:
                raise HTTPError(422, "a value of the answer is nested too deeply to encode as JSON", title="Query Failed") from exc
            finally:
                _abort(con)
        elapsed = round((time.monotonic() - started) * 1000, 3)
        return Result(rows.columns, rows.body, rows.count, rows.truncated, elapsed)

    def _too_large(self, exc: Exception | None = None) -> HTTPError:
        said = f" ({str(exc).strip().splitlines()[0]})" if exc is not None and str(exc).strip() else ""
        return HTTPError(
            422,
            f"the query needs more memory than the endpoint allows (DuckDB memory_limit {self.memory_limit}, "
            f"{size_text(self.budget)} for the whole query){said}; narrow it (WHERE, fewer columns, smaller values) "
            "or raise memory_limit (SqlEndpoint(memory_limit=...), [sql] in nubes.toml or NUBES_SQL_MEMORY_LIMIT)",
            title="Query Too Large", memory_limit=self.memory_limit,
        )

    def _query_error(self, exc: Exception) -> HTTPError:
        """The problem answer for a DuckDB error of the query (none of them is the server's fault)."""
        import duckdb

        if isinstance(exc, duckdb.PermissionException):
            return Refused([f"the sandbox refused: {exc}"])
        if isinstance(exc, duckdb.OutOfMemoryException):
            return self._too_large(exc)
        if isinstance(exc, (duckdb.ConversionException, duckdb.InvalidInputException, duckdb.OutOfRangeException,
                            duckdb.DataError)):
            return HTTPError(422, f"the query failed on the data: {exc}", title="Query Failed")
        if isinstance(exc, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
                            duckdb.NotImplementedException, duckdb.ProgrammingError)):
            return HTTPError(400, f"the query failed: {exc}", title="Invalid Query")
        return HTTPError(422, f"DuckDB could not run the query: {exc}", title="Query Failed")

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _abort(con: duckdb.DuckDBPyConnection) -> None:
    """Drop what is left of the pending result (its memory goes with it); nothing to drop is fine."""
    import duckdb

    with contextlib.suppress(duckdb.Error, MemoryError):
        con.abort()


class _Watchdog:
    """Interrupt ``connection`` after ``seconds``, and keep interrupting until the block ends
    (an interrupt that lands between binding and execution must not be lost)."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self._con = connection
        self._seconds = seconds
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._watch, name="nubes-sql-watchdog", daemon=True)

    def _watch(self) -> None:
        if self._done.wait(self._seconds):
            return
        self.fired = True
        while not self._done.is_set():
            try:
                self._con.interrupt()
            except MemoryError:  # the query is at its memory cap: try again
                pass
            except Exception:  # the connection is gone: nothing left to stop
                return
            self._done.wait(0.05)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

