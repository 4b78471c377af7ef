"""Object storage decoupled from compute: one interface, a backend per URI scheme.

``nubes.storage.open("s3://bucket/prefix")`` returns an :class:`ObjectStore`; see its docstring
for the contract every backend keeps. Backends subclass :class:`BaseStore` (the declared backend
interface) and import their SDK only when first opened. The names below load on first use, so
``import nubes`` (which needs only :mod:`nubes.storage.current`) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nubes.storage.base import BaseStore, IOStats, ObjectInfo, ObjectStore, RangeReader
    from nubes.storage.keys import check_key
    from nubes.storage.registry import open, register, registered

_EXPORTS = {
    "BaseStore": "base", "IOStats": "base", "ObjectInfo": "base", "ObjectStore": "base", "RangeReader": "base",
    "check_key": "keys", "open": "registry", "register": "registry", "registered": "registry",
}

__all__ = ["BaseStore", "IOStats", "ObjectInfo", "ObjectStore", "RangeReader", "check_key", "open", "register", "registered"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nubes.storage' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nubes.storage.{module}"), name)
    globals()[name] = value
    return value
