"""``POST /_nubes/sql``: ad-hoc, read-only SQL over the catalog, for the lab.

Off unless the app says ``nubes.App(name, sql_endpoint=True)`` (or ``sql_endpoint=SqlEndpoint(...)``
to change the limits) or ``NUBES_SQL_ENDPOINT=1``. The body is ``{"sql": "...", "limit": 100,
"timeout_s": 2}``; the answer is ``{"columns": [{"name", "type"}], "rows": [records], "row_count",
"truncated", "limit", "elapsed_ms", "bytes_read", "datasets"}``.

The sandbox, in two independent layers: validation by DuckDB's own parser
(:mod:`nubes.data.sql_validation`: one SELECT over catalog datasets, no files, settings or system
state; 403 naming what was refused, 400 for syntax) and a fresh database per request locked to exactly
the objects of the datasets named (:mod:`nubes.data.sql_sandbox`). Limits (:class:`SqlEndpoint`) cover
the whole query, from execution to the last encoded byte: time (422), DuckDB memory and the process's
growth (422), rows (the answer is truncated and says so) and the answer's JSON size (413, checked while
rows are fetched and encoded; :mod:`nubes.data.sql_results`).

Every query is audited on ``ctx.log`` (``"sql endpoint"`` with the SQL, rows, datasets, refusal); the
datasets it read are recorded in the app's lineage and its storage reads in the invocation's metering,
like any other invocation's.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# Context is needed at run time: the route's annotations are resolved when it is registered.
from nubes.core.context import Context
from nubes.core.encoding import dumps
from nubes.core.response import Response
from nubes.data.sql_memory import parse_size
from nubes.data.sql_sandbox import Result, Sandbox
from nubes.data.sql_validation import TABLE_FUNCTIONS, Refused, Validated, denied_function, validate
from nubes.errors import ConfigError, HTTPError, StorageError

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.data.session import Session

__all__ = ["TABLE_FUNCTIONS", "Refused", "Result", "Sandbox", "SqlEndpoint", "SqlRequest", "Validated", "config",
           "denied_function", "sql_route", "validate"]

MAX_SQL_CHARS = 100_000
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
#: ``NUBES_SQL_*`` variables and the :class:`SqlEndpoint` field each sets (also the keys of ``[sql]``).
ENVIRONMENT = {
    "NUBES_SQL_TIMEOUT_S": "timeout_s",
    "NUBES_SQL_MAX_TIMEOUT_S": "max_timeout_s",
    "NUBES_SQL_MAX_ROWS": "max_rows",
    "NUBES_SQL_MAX_BYTES": "max_bytes",
    "NUBES_SQL_MEMORY_LIMIT": "memory_limit",
    "NUBES_SQL_THREADS": "threads",
}


# -- configuration and request ----------------------------------------------------------------------
@dataclass(frozen=True)
class SqlEndpoint:
    """Limits of ``POST /_nubes/sql``; enable with ``nubes.App(name, sql_endpoint=SqlEndpoint(...))``.

    ``timeout_s``: the time limit when the request names none (default 10); ``max_timeout_s`` caps
    what a request may ask (default: ``timeout_s``). ``max_rows`` caps ``limit`` and is the default
    limit (default 10,000; the app's ``max_rows`` caps it too). ``max_bytes``: the largest answer, in
    bytes of JSON (default 4 MiB; an int or a size such as ``"8MB"``). ``memory_limit`` is DuckDB's
    (default: a quarter of the function's memory, 64 MB to 1 GB, when the platform says, else
    ``"256MB"``); while a query runs the process may grow by about that plus 64 MiB. ``threads``: DuckDB's
    worker threads (default: up to 2).

    A field left ``None`` comes from ``NUBES_SQL_<FIELD>`` in the environment, else from ``[sql]`` in
    ``nubes.toml``, else the default: code wins, then the environment, then the file.
    """

    timeout_s: float | None = None
    max_timeout_s: float | None = None
    max_rows: int | None = None
    max_bytes: int | str | None = None
    memory_limit: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("timeout_s", "max_timeout_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"SqlEndpoint {name} must be a positive number of seconds, not {value!r}")
        if self.max_rows is not None and (not isinstance(self.max_rows, int) or self.max_rows < 0):
            raise ValueError(f"SqlEndpoint max_rows must be an int >= 0, not {self.max_rows!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"SqlEndpoint threads must be an int >= 1, not {self.threads!r}")
        if self.memory_limit is not None:
            parse_size(self.memory_limit)
        if self.max_bytes is not None:
            size = parse_size(self.max_bytes) if isinstance(self.max_bytes, str) else self.max_bytes
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ValueError(f"SqlEndpoint max_bytes must be a positive number of bytes, not {self.max_bytes!r}")
            object.__setattr__(self, "max_bytes", size)

    @property
    def complete(self) -> bool:
        """Whether every field with a fixed default is set (as after :meth:`resolved`)."""
        return None not in (self.timeout_s, self.max_rows, self.max_bytes)

    @property
    def byte_limit(self) -> int:
        """``max_bytes`` in bytes (the default when unset)."""
        return int(self.max_bytes) if self.max_bytes is not None else DEFAULT_MAX_BYTES

    def resolved(self, app: App) -> SqlEndpoint:
        """These settings with every field filled: code, then ``NUBES_SQL_*``, then ``[sql]`` in
        ``nubes.toml``, then the defaults (``memory_limit`` and ``threads`` may stay None: the sandbox
        derives them from the platform)."""
        from nubes.core import config as project

        merged: dict[str, Any] = {"timeout_s": 10.0, "max_rows": 10_000, "max_bytes": DEFAULT_MAX_BYTES}
        table = project.section("sql", app.root)
        unknown = set(table) - set(ENVIRONMENT.values())
        if unknown:
            raise ConfigError(f"[sql] in nubes.toml: unknown setting(s) {sorted(unknown)}; known: {sorted(ENVIRONMENT.values())}")
        merged.update(_checked(table, "[sql] in nubes.toml"))
        env = {field: os.environ[name] for name, field in ENVIRONMENT.items() if os.environ.get(name, "").strip()}
        merged.update(_checked(env, "the environment (NUBES_SQL_*)", text=True))
        merged.update({k: v for k, v in dataclasses.asdict(self).items() if v is not None})
        return SqlEndpoint(**merged)


def _checked(values: dict[str, Any], where: str, *, text: bool = False) -> dict[str, Any]:
    """``values`` converted (from text, for the environment) and checked; a mistake names ``where``."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        try:
            if text and name in ("timeout_s", "max_timeout_s"):
                value = float(value)
            elif text and name in ("max_rows", "threads"):
                value = int(value)
            elif text and name == "max_bytes":
                value = int(value) if value.strip().isdigit() else value
            SqlEndpoint(**{name: value})
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {name} = {value!r} is not valid: {exc}") from None
        out[name] = value
    return out


_RESOLVED: weakref.WeakKeyDictionary[Any, SqlEndpoint] = weakref.WeakKeyDictionary()


def config(app: App) -> SqlEndpoint:
    """The app's resolved :class:`SqlEndpoint` (``sql_endpoint=True`` means the defaults), read once."""
    found = _RESOLVED.get(app)
    if found is None:
        setting = app.options.get("sql_endpoint")
        found = _RESOLVED[app] = (setting if isinstance(setting, SqlEndpoint) else SqlEndpoint()).resolved(app)
    return found


@dataclass
class SqlRequest:
    """The body of ``POST /_nubes/sql``: the SQL, an optional row ``limit`` and time limit (both capped)."""

    sql: str
    limit: int | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not self.sql.strip():
            raise ValueError("sql is empty")
        if len(self.sql) > MAX_SQL_CHARS:
            raise ValueError(f"sql is longer than {MAX_SQL_CHARS:,} characters")
        if "\x00" in self.sql:
            raise ValueError("sql contains a NUL character")
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must be >= 0")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError("timeout_s must be > 0")


# -- the route ---------------------------------------------------------------------------------------
def sql_route(ctx: Context, body: SqlRequest) -> Response:
    """Run one read-only SQL query over the catalog in a locked-down DuckDB database.

    Body ``{"sql": ..., "limit": n, "timeout_s": s}`` (limit and time are capped by the app's
    ``SqlEndpoint``). Only a single SELECT over catalog datasets (by name) and their CTEs runs; files,
    URLs, extensions, settings, system tables and most table functions are refused with 403; syntax
    errors are 400; a query over its time or memory limit is 422; an answer over the byte limit is 413.
    """
    settings = config(ctx.app)
    assert settings.max_rows is not None and settings.timeout_s is not None
    limit = min(x for x in (settings.max_rows, ctx.app.max_rows, body.limit) if x is not None)
    cap = settings.max_timeout_s if settings.max_timeout_s is not None else settings.timeout_s
    timeout = min(body.timeout_s, cap) if body.timeout_s is not None else min(settings.timeout_s, cap)
    remaining = ctx.remaining()
    if remaining is not None:  # leave the provider's deadline time to answer
        timeout = max(0.05, min(timeout, remaining - 0.5))
    audit: dict[str, Any] = {"sql": body.sql, "limit": limit, "timeout_s": timeout}
    sandbox = Sandbox(ctx.app, settings, memory_mb=getattr(ctx.platform, "memory_mb", None))
    try:
        validated = validate(sandbox.connection, body.sql, [d.name for d in ctx.app.catalog])
        audit["datasets"] = validated.datasets
        with sandbox.session.bridge.measure() as measured:
            sandbox.prepare(validated.datasets)
            # what follows the rows: counted in the byte limit (bytes_read and elapsed_ms at their widest)
            tail = _tail(limit, validated.datasets, 10**15, 10.0**9, truncated=False)
            result = sandbox.run(body.sql, limit=limit, timeout_s=timeout, reserved=len(tail) + 64)
        audit.update(rows=result.row_count, truncated=result.truncated, elapsed_ms=result.elapsed_ms,
                     bytes_read=measured.bytes_read)
        head = b'{"columns":' + dumps(result.columns) + b',"rows":[' + result.rows + b"],"
        tail = _tail(limit, validated.datasets, measured.bytes_read, result.elapsed_ms, truncated=result.truncated,
                     rows=result.row_count)
        audit["bytes"] = len(head) + len(tail)
        return Response(head + tail, media_type="application/json")
    except HTTPError as exc:
        audit.update(status=exc.status, refused=exc.detail if exc.status == 403 else None,
                     error=exc.detail if exc.status != 403 else None)
        raise
    except StorageError as exc:
        audit.update(status=exc.http_status, error=str(exc))
        raise
    finally:
        ctx.log.info("sql endpoint", **{"refused": None, **audit})
        _account(ctx, sandbox.session)
        sandbox.close()


def _tail(limit: int, datasets: list[str], bytes_read: int, elapsed_ms: float, *, truncated: bool, rows: int = 0) -> bytes:
    """The answer's fields after ``rows``, without the opening brace."""
    return dumps({"row_count": rows, "truncated": truncated, "limit": limit, "elapsed_ms": elapsed_ms,
                  "bytes_read": bytes_read, "datasets": datasets})[1:]


def _account(ctx: Context, session: Session) -> None:
    """Count the sandbox's storage reads in the invocation's I/O and record its lineage, as the app does
    for ``ctx.sql`` (never fails the request)."""
    try:
        session.account(ctx.request_id, ctx.route)
    except Exception:
        ctx.log.exception("could not record the query's reads", route=ctx.route)
