"""Analytics over object storage: the catalog, the engine (DuckDB and Polars over any store), quality
checks, lineage and the sandboxed SQL endpoint. Attaches to an app as an extension; ``import nubes``
loads no data library, and neither does importing this package.

``nubes.data.Bridge`` (and ``Database``) are the engine's public entry points (:mod:`nubes.data.engine`),
loaded on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Bridge", "Database"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nubes.data import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'nubes.data' has no attribute {name!r}")
