"""The analytics engine: DuckDB and Polars over object stores, counted (see :mod:`.bridge`).

Modules: :mod:`.bridge` (the :class:`Bridge`), :mod:`.database` (connections and the warm instance's
shared :class:`Database`), :mod:`.access` (counted, cached store access), :mod:`.caches`,
:mod:`.filesystem` (the ``nubes://`` fsspec filesystem, imported only when needed),
:mod:`.polars_source` (``Bridge.scan``), :mod:`.parquet_footer`, :mod:`.pruning`, :mod:`.measure`.
Importing this package loads none of them; the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Bridge": "bridge", "connect": "bridge", "PROTOCOL": "bridge", "Database": "database",
    "Measurement": "measure", "MeasurementHandle": "measure", "NubesFileSystem": "filesystem",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'nubes.data.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nubes.data.engine.{module}"), name)
