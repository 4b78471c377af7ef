"""What a SQL query refers to, from DuckDB's own parser (``json_serialize_sql``), never from regexes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class QueryShape:
    """The tables, table functions and functions a single SELECT statement uses (CTE names excluded)."""

    tables: set[str] = field(default_factory=set)
    qualified: set[str] = field(default_factory=set)  # tables named with a schema or catalog
    table_functions: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    ctes: set[str] = field(default_factory=set)
    statements: int = 0


class NotASelect(ValueError):
    """The text is not a single read-only SELECT (or does not parse); the message is DuckDB's."""


def shape(connection: Any, query: str) -> QueryShape:
    """Parse ``query`` with DuckDB (passed as a bound parameter) and collect what it refers to.

    Raises :class:`NotASelect` for anything DuckDB cannot serialize as SELECT statements (DDL,
    DML, PRAGMA, SET, ATTACH, COPY ...) or for a syntax error.
    """
    raw = connection.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0]
    doc = json.loads(raw)
    if doc.get("error"):
        raise NotASelect(doc.get("error_message") or "not a SELECT statement")
    out = QueryShape(statements=len(doc.get("statements", [])))
    for node in _walk(doc.get("statements", [])):
        for cte in (node.get("cte_map") or {}).get("map", []) or []:
            if isinstance(cte, dict) and "key" in cte:
                out.ctes.add(str(cte["key"]))
        kind = node.get("type")
        if kind == "BASE_TABLE":
            name = str(node.get("table_name", ""))
            out.tables.add(name)
            if node.get("schema_name") or node.get("catalog_name"):
                out.qualified.add(".".join(str(p) for p in (node.get("catalog_name"), node.get("schema_name"), name) if p))
        elif kind == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            out.table_functions.add(str(fn.get("function_name", "")).lower())
        if node.get("class") == "FUNCTION" and "function_name" in node:
            out.functions.add(str(node["function_name"]).lower())
    out.tables -= out.ctes
    return out


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
