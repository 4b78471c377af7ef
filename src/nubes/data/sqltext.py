"""SQL text: the one place where identifiers and literals are quoted for DuckDB.

Every module that writes SQL text (the engine, sessions, checks, the catalog report, the SQL endpoint,
bills) quotes with these two functions. Values a user supplies at request time are never formatted
into SQL: they are bound as prepared-statement parameters; :func:`literal` is for values the code
itself owns (paths, reader options, type maps).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nubes.errors import ConfigError


def ident(name: str) -> str:
    """``name`` as an SQL identifier: wrapped in double quotes, embedded double quotes doubled."""
    if "\x00" in name:
        raise ConfigError(f"an SQL identifier may not contain a NUL character: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """``value`` as a DuckDB literal: strings quoted (``'`` doubled), numbers, booleans, NULL, lists and
    structs (``{'k': v}``) of those; anything else is a ConfigError."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise ConfigError(f"an SQL string literal may not contain a NUL character: {value!r}")
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{literal(str(k))}: {literal(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {type(value).__name__} {value!r} as an SQL literal")
