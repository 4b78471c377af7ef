"""Layer 1 of the SQL endpoint's sandbox: what a query may say, decided by DuckDB's own parser.

:func:`validate` accepts exactly one SELECT statement whose tables are catalog datasets (by name) or
its own CTEs; no schema- or catalog-qualified names; no table functions but pure row generators
(:data:`TABLE_FUNCTIONS`); no function that reads state outside the query (settings, variables, the
database catalog, the session) or has side effects (:func:`denied_function`); no ``SHOW``/``DESCRIBE``
of anything but a query; no CTE named like a system view. A refusal is :class:`Refused` (403) naming
each thing refused; text that does not parse, or nests deeper than the parser or JSON reader allow, is a
400. Nothing is executed here: the locked connection (:mod:`nubes.data.sql_sandbox`) is the second,
independent layer.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nubes.errors import HTTPError

if TYPE_CHECKING:
    import duckdb

__all__ = ["DENIED_FUNCTIONS", "TABLE_FUNCTIONS", "Refused", "Validated", "denied_function", "validate"]

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


class Refused(HTTPError):
    """403: the SQL does something the endpoint does not allow; ``violations`` lists each thing refused."""

    def __init__(self, violations: list[str]) -> None:
        self.violations = violations
        super().__init__(403, "; ".join(violations), title="SQL Refused", violations=violations)


@dataclass
class Validated:
    """What a validated query reads: catalog dataset names (as declared in the catalog)."""

    datasets: list[str] = field(default_factory=list)


def _invalid(detail: str) -> HTTPError:
    return HTTPError(400, detail, title="Invalid Query")


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

    Raises a 400 :class:`HTTPError` for a syntax error, an empty query or one nested too deeply to
    analyse, :class:`Refused` (403) for anything not allowed; returns the catalog datasets the query reads.
    """
    import duckdb

    from nubes.data.sqlparse import NotASelect, shape

    try:
        statements = connection.extract_statements(sql)
    except duckdb.Error as exc:
        raise _invalid(f"the query does not parse: {exc}") from exc
    if not statements:
        raise _invalid("the query is empty (only whitespace or comments)")
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
    except RecursionError as exc:
        raise _invalid("the query nests expressions too deeply to be analysed; flatten it (CTEs, fewer nested calls)") from exc
    except duckdb.Error as exc:
        raise _invalid(f"the query could not be analysed: {exc}") from exc

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
    """Refusals found by walking the parse tree: functions (incl. windows), table-reference kinds, SHOW.

    Only string ``type`` values name node kinds: some nodes (a sample's size, a constant) carry a
    ``type`` object describing a value instead."""
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
        elif cls is None and isinstance(kind, str) and kind in _TABLE_REFS:
            if kind not in _SAFE_TABLE_REFS:
                yield f"table reference of kind {kind} is not allowed"
            elif kind == "SHOW_REF" and (item.get("table_name") or not item.get("query")):
                yield "SHOW is not allowed (GET /_nubes/catalog lists the datasets); DESCRIBE/SUMMARIZE a query instead"
