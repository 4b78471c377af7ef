"""``POST /_nubes/sql``: ad-hoc, read-only SQL over the catalog, for the lab.

Off unless the app says ``nubes.App(name, sql_endpoint=True)`` (or ``sql_endpoint=SqlEndpoint(...)``
to change the limits). The body is ``{"sql": "...", "limit": 100, "timeout_s": 2}``; the answer is
``{"columns": [{"name", "type"}], "rows": [records], "row_count", "truncated", "limit", "elapsed_ms",
"bytes_read", "datasets"}``.

The sandbox contract, in two independent layers:

1. **Validation** (DuckDB's own parser, never regexes): exactly one statement, a SELECT; every table
   it names is a catalog dataset or one of its own CTEs; no schema- or catalog-qualified names; no
   table functions except pure row generators (:data:`TABLE_FUNCTIONS`); no function that reads
   state outside the query (settings, variables, the database catalog, the session) or has side
   effects (:func:`denied_function`); no ``SHOW``/``DESCRIBE`` of anything but a query; no CTE named
   like a system view. A refusal is a 403 naming what was refused; a syntax error is a 400 with
   DuckDB's message.
2. **A locked connection** (:class:`Sandbox`): a fresh in-memory DuckDB database per request in
   which only the referenced datasets exist, as views over the exact ``nubes://`` objects they have
   now; then ``allowed_paths`` is set to exactly those objects, ``enable_external_access=false``
   (no other file, URL, extension, ATTACH or COPY), extension auto-install/auto-load and community
   extensions off, the local filesystem disabled, no spilling to disk, bounded memory and threads,
   and ``lock_configuration=true`` so the query cannot undo any of it. Even SQL that slipped past
   layer 1 can read nothing but those objects.

Limits: a time limit (default 10 s; DuckDB's ``interrupt()`` from a watchdog thread) answered with
422 — the outcome is deterministic, so a retry cannot help, and 408/504 are statuses HTTP clients
(nubes' own storage clients included) treat as transient and retry automatically; a row limit
(default 10,000): ``limit + 1`` rows are fetched to report ``truncated``. Every query is audited on
``ctx.log`` (``"sql endpoint"`` with the SQL, rows, datasets, refusal) and the datasets it read are
recorded in the app's lineage like any other invocation's reads.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

# Context is needed at run time: the route's annotations are resolved when it is registered.
from nubes.core.context import Context
from nubes.data.sqltext import literal
from nubes.errors import HTTPError, StorageError

if TYPE_CHECKING:
    import duckdb

    from nubes.core.app import App
    from nubes.data.session import Session

__all__ = ["Sandbox", "SqlEndpoint", "SqlRequest", "Validated", "denied_function", "sql_route", "validate"]

MAX_SQL_CHARS = 100_000

#: Table functions a query may call: pure row generators that read nothing outside the query.
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})

#: Scalar/aggregate/window functions refused by name: they read settings, variables, the database
#: catalog or the session (information the lock does not hide), or they have side effects.
DENIED_FUNCTIONS = frozenset({
    # settings, variables, environment
    "current_setting", "getvariable", "getenv",
    # the session, the database and its catalog
    "current_database", "current_catalog", "current_schema", "current_schemas", "current_user",
    "current_role", "session_user", "user", "current_query", "current_query_id",
    "current_connection_id", "current_transaction_id", "txid_current", "in_search_path", "version",
    "get_block_size", "col_description", "obj_description", "shobj_description", "format_pg_type",
    "format_type", "map_to_pg_oid", "map_type_id_to_pg_oid", "inet_client_addr", "inet_client_port",
    "inet_server_addr", "inet_server_port",
    # side effects, sequences, sleeping, plans of other SQL
    "nextval", "currval", "setval", "setseed", "sleep_ms", "pg_sleep", "write_log", "stats",
    "vector_type", "json_serialize_plan",
})
DENIED_PREFIXES = ("duckdb_", "pg_", "pragma_", "__internal", "has_")
ALLOWED_DESPITE_PREFIX = frozenset({"pg_typeof", "pg_size_pretty"})
#: Functions DuckDB flags ``has_side_effects`` that only make values (nondeterministic, harmless).
ALLOWED_SIDE_EFFECTS = frozenset({"random", "uuid", "gen_random_uuid", "uuidv4", "uuidv7", "error"})
_SAFE_TABLE_REFS = frozenset({"BASE_TABLE", "SUBQUERY", "JOIN", "TABLE_FUNCTION", "EXPRESSION_LIST", "EMPTY", "PIVOT", "SHOW_REF"})
_TABLE_REFS = _SAFE_TABLE_REFS | {"CTE", "COLUMN_DATA", "DELIM_GET", "BOUND_TABLE_REF", "INVALID"}


# -- configuration and request ----------------------------------------------------------------------
@dataclass(frozen=True)
class SqlEndpoint:
    """Limits of ``POST /_nubes/sql``; enable with ``nubes.App(name, sql_endpoint=SqlEndpoint(...))``.

    ``timeout_s``: the time limit when the request names none; ``max_timeout_s`` caps what a request
    may ask (default: ``timeout_s``). ``max_rows`` caps ``limit`` (and is the default limit; the app's
    ``max_rows`` caps it too). ``memory_limit`` is DuckDB's (default: half the function's memory when
    the platform says, else ``"1GB"``); ``threads`` DuckDB's worker threads (default: up to 4).
    """

    timeout_s: float = 10.0
    max_timeout_s: float | None = None
    max_rows: int = 10_000
    memory_limit: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or (self.max_timeout_s is not None and self.max_timeout_s <= 0):
            raise ValueError("SqlEndpoint time limits must be positive")
        if self.max_rows < 0:
            raise ValueError("SqlEndpoint max_rows must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError("SqlEndpoint threads must be >= 1")
        if self.memory_limit is not None:
            _setting(self.memory_limit)


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


def config(app: App) -> SqlEndpoint:
    """The app's :class:`SqlEndpoint` (``sql_endpoint=True`` means the defaults)."""
    setting = app.options.get("sql_endpoint")
    return setting if isinstance(setting, SqlEndpoint) else SqlEndpoint()


# -- layer 1: validation -----------------------------------------------------------------------------
class Refused(HTTPError):
    """403: the SQL does something the endpoint does not allow; ``violations`` lists each thing refused."""

    def __init__(self, violations: list[str]) -> None:
        self.violations = violations
        super().__init__(403, "; ".join(violations), title="SQL Refused", violations=violations)


@dataclass
class Validated:
    """What a validated query reads: catalog dataset names (as declared in the catalog)."""

    datasets: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=1)
def _engine_facts() -> tuple[frozenset[str], frozenset[str]]:
    """(functions DuckDB flags as having side effects, relation names resolvable without a schema)."""
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        effects = {r[0].lower() for r in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE has_side_effects").fetchall()}
        system = {r[0].lower() for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = 'system' AND schema_name IN ('main', 'pg_catalog') "
            "UNION SELECT table_name FROM duckdb_tables() WHERE database_name = 'system'").fetchall()}
    finally:
        con.close()
    return frozenset(effects), frozenset(system)


def denied_function(name: str) -> bool:
    """True for a function a query may not call (see :data:`DENIED_FUNCTIONS` and the module docstring)."""
    name = name.lower()
    if name in ALLOWED_DESPITE_PREFIX:
        return False
    if name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES) or "execute" in name:
        return True
    return name in _engine_facts()[0] and name not in ALLOWED_SIDE_EFFECTS


def validate(connection: duckdb.DuckDBPyConnection, sql: str, catalog_names: Iterable[str]) -> Validated:
    """Check ``sql`` against the endpoint's rules with DuckDB's parser (nothing is executed).

    Raises a 400 :class:`HTTPError` for a syntax error or an empty query, :class:`Refused` (403) for
    anything not allowed; returns the catalog datasets the query reads.
    """
    import duckdb

    from nubes.data.sqlparse import NotASelect, shape

    try:
        statements = connection.extract_statements(sql)
    except duckdb.ParserException as exc:
        raise HTTPError(400, f"the query does not parse: {exc}", title="Invalid Query") from exc
    if not statements:
        raise HTTPError(400, "the query is empty (only whitespace or comments)", title="Invalid Query")
    kinds = [str(s.type).rsplit(".", 1)[-1] for s in statements]
    not_select = sorted({k for k in kinds if k != "SELECT"})
    if not_select:
        raise Refused([f"only SELECT statements are allowed, not {', '.join(not_select)}"])
    if len(statements) != 1:
        raise Refused([f"exactly one statement is allowed, not {len(statements)}"])
    try:
        found = shape(connection, sql)
        raw = json.loads(connection.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    except NotASelect as exc:
        raise Refused([f"the query could not be analysed: {exc}"]) from exc

    by_lower: dict[str, str] = {}
    for name in catalog_names:
        by_lower.setdefault(name.lower(), name)
    system = _engine_facts()[1]
    violations: list[str] = []
    ctes = {c.lower() for c in found.ctes}
    for cte in sorted(ctes & system):
        violations.append(f"CTE name {cte} is the name of a system view; rename it")
    for name in sorted(found.qualified):
        violations.append(f"qualified table name {name} is not allowed; name catalog datasets alone")
    datasets: set[str] = set()
    unknown: list[str] = []
    for table in sorted(found.tables):
        key = table.lower()
        if key in by_lower:
            datasets.add(by_lower[key])
        elif key in ctes:
            continue
        elif any(ch in table for ch in "./\\:*?"):
            violations.append(f"reading files by path ({table!r}) is not allowed; query catalog datasets by name")
        else:
            unknown.append(table)
    if unknown:
        known = ", ".join(sorted(by_lower.values())) or "none"
        violations.append(f"unknown dataset{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; known: {known}")
    for fn in sorted(found.table_functions - TABLE_FUNCTIONS):
        violations.append(f"table function {fn} is not allowed (allowed: {', '.join(sorted(TABLE_FUNCTIONS))})")
    violations.extend(_node_violations(raw.get("statements", [])))
    if violations:
        raise Refused(list(dict.fromkeys(violations)))
    return Validated(sorted(datasets))


def _node_violations(tree: Any) -> Iterator[str]:
    """Refusals found by walking the parse tree: functions (incl. windows), table-reference kinds, SHOW."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        stack.extend(item.values())
        cls, kind = item.get("class"), item.get("type")
        if cls in ("FUNCTION", "WINDOW") and "function_name" in item:
            name = str(item["function_name"]).lower()
            if item.get("schema") or item.get("catalog"):
                qualified = ".".join(str(p) for p in (item.get("catalog"), item.get("schema"), name) if p)
                yield f"qualified function name {qualified} is not allowed"
            if denied_function(name):
                yield f"function {name} is not allowed (it reads state outside the query or has side effects)"
        elif cls is None and kind in _TABLE_REFS:
            if kind not in _SAFE_TABLE_REFS:
                yield f"table reference of kind {kind} is not allowed"
            elif kind == "SHOW_REF" and (item.get("table_name") or not item.get("query")):
                yield "SHOW is not allowed (GET /_nubes/catalog lists the datasets); DESCRIBE/SUMMARIZE a query instead"


# -- layer 2: the locked connection ------------------------------------------------------------------
@dataclass
class Result:
    """A query's answer, ready for JSON."""

    columns: list[dict[str, str]]
    rows: list[dict[str, Any]]
    truncated: bool
    elapsed_ms: float


class Sandbox:
    """A fresh DuckDB database for one query: the named datasets as views, then locked down.

    ``prepare(datasets)`` creates the views (enforcing the datasets' error checks, like ``ctx.sql``)
    and then locks the connection: after it, DuckDB can read the exact objects of those datasets and
    nothing else, and no setting can change. :meth:`run` executes one query under a time and row
    limit. The caller must :meth:`close` it (or use ``with``).
    """

    def __init__(self, app: App, settings: SqlEndpoint | None = None, *, memory_mb: int | None = None) -> None:
        from nubes.data.session import Session

        self.settings = settings or config(app)
        # private: a database of its own, since prepare() locks its configuration (never the app's shared one)
        self.session: Session = Session(app, enforce_checks=True, private=True)
        self.locked = False
        self.allowed: list[str] = []
        memory = self.settings.memory_limit or (f"{max(128, memory_mb // 2)}MB" if memory_mb else "1GB")
        threads = self.settings.threads or min(4, os.cpu_count() or 1)
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
            f"SET memory_limit = '{_setting(memory)}'",
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

    def run(self, sql: str, *, limit: int, timeout_s: float) -> Result:
        """Run ``sql`` on the locked connection: at most ``limit`` rows, interrupted after ``timeout_s``.

        DuckDB's errors become HTTP answers: 403 for what the lock refused, 422 for a timeout, too
        much memory or a value that does not convert, 400 for other errors of the query text.
        """
        import duckdb

        if not self.locked:
            raise RuntimeError("prepare() the sandbox before running SQL in it")
        con = self.connection
        started = time.perf_counter()
        with _Watchdog(con, timeout_s) as watchdog:
            try:
                with self.session.bridge.translate_errors():
                    relation = con.sql(sql)
                    if relation is None:  # not a query: validation should have refused it
                        raise Refused(["only SELECT statements are allowed"])
                    names = list(relation.columns)
                    types = [str(t) for t in relation.types]
                    rows = relation.limit(limit + 1).fetchall()
            except duckdb.InterruptException as exc:
                if not watchdog.fired:
                    raise
                raise HTTPError(
                    422, f"the query ran longer than its time limit of {timeout_s:g} s; narrow it or aggregate",
                    title="Query Timeout", timeout_s=timeout_s,
                ) from exc
            except duckdb.Error as exc:
                _raise_query_error(exc)
                raise
        elapsed = (time.perf_counter() - started) * 1000
        truncated = len(rows) > limit
        keys = _unique(names)
        maps = [i for i, t in enumerate(types) if "MAP(" in t]
        records = []
        for row in rows[:limit]:
            values = list(row)
            for i in maps:
                values[i] = _json_keys(values[i])
            records.append(dict(zip(keys, values)))
        return Result([{"name": k, "type": t} for k, t in zip(keys, types)], records, truncated, round(elapsed, 3))

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
            except Exception:  # noqa: BLE001  (the connection is gone: nothing left to stop)
                return
            self._done.wait(0.05)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def _raise_query_error(exc: Exception) -> None:
    import duckdb

    if isinstance(exc, duckdb.PermissionException):
        raise Refused([f"the sandbox refused: {exc}"]) from exc
    if isinstance(exc, duckdb.OutOfMemoryException):
        raise HTTPError(422, f"the query needs more memory than the endpoint allows: {exc}", title="Query Too Large") from exc
    if isinstance(exc, (duckdb.ConversionException, duckdb.InvalidInputException, duckdb.OutOfRangeException)):
        raise HTTPError(422, f"the query failed on the data: {exc}", title="Query Failed") from exc
    if isinstance(exc, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
                        duckdb.NotImplementedException, duckdb.ProgrammingError)):
        raise HTTPError(400, f"the query failed: {exc}", title="Invalid Query") from exc


def _unique(names: list[str]) -> list[str]:
    """Column names made unique for JSON records (``id``, ``id_1`` ...), as a join's ``SELECT *`` repeats them."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 0
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def _json_keys(value: Any) -> Any:
    """MAP values arrive as dicts whose keys may be any type; JSON objects need string keys."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else json.dumps(k, default=str)): _json_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_keys(v) for v in value]
    return value


def _setting(value: str) -> str:
    if not value or not all(ch.isalnum() or ch in " ._" for ch in value):
        raise ValueError(f"invalid DuckDB memory limit {value!r}; write e.g. '512MB' or '2GB'")
    return value


# -- the route ---------------------------------------------------------------------------------------
def sql_route(ctx: Context, body: SqlRequest) -> dict[str, Any]:
    """Run one read-only SQL query over the catalog in a locked-down DuckDB database.

    Body ``{"sql": ..., "limit": n, "timeout_s": s}`` (limit and time are capped by the app's
    ``SqlEndpoint``). Only a single SELECT over catalog datasets (by name) and their CTEs runs; files,
    URLs, extensions, settings, system tables and most table functions are refused with 403; syntax
    errors are 400; a query over its time limit is 422.
    """
    settings = config(ctx.app)
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
            result = sandbox.run(body.sql, limit=limit, timeout_s=timeout)
        audit.update(rows=len(result.rows), truncated=result.truncated, elapsed_ms=result.elapsed_ms,
                     bytes_read=measured.bytes_read)
        return {
            "columns": result.columns,
            "rows": result.rows,
            "row_count": len(result.rows),
            "truncated": result.truncated,
            "limit": limit,
            "elapsed_ms": result.elapsed_ms,
            "bytes_read": measured.bytes_read,
            "datasets": validated.datasets,
        }
    except HTTPError as exc:
        audit.update(status=exc.status, refused=exc.detail if exc.status == 403 else None,
                     error=exc.detail if exc.status != 403 else None)
        raise
    except StorageError as exc:
        audit.update(status=exc.http_status, error=str(exc))
        raise
    finally:
        ctx.log.info("sql endpoint", **{"refused": None, **audit})
        _record_lineage(ctx, sandbox.session)
        sandbox.close()


def _record_lineage(ctx: Context, session: Session) -> None:
    """Record what the query read, as the app does for ``ctx.sql`` (never fails the request)."""
    try:
        entry = session.lineage()
        if entry is not None:
            from nubes.data import lineage

            lineage.record(ctx.app.storage, {"request_id": ctx.request_id, "app": ctx.app.name, "route": ctx.route, **entry})
    except Exception:
        ctx.log.exception("could not record lineage", route=ctx.route)

