"""Object storage decoupled from compute: one interface, a backend per URI scheme.

``nubes.storage.open("s3://bucket/prefix")`` returns an :class:`ObjectStore`; see its docstring
for the contract every backend keeps. Backends subclass :class:`BaseStore` (the declared backend
interface) and import their SDK only when first opened.
"""

from nubes.storage.base import BaseStore, IOStats, ObjectInfo, ObjectStore, RangeReader
from nubes.storage.keys import check_key
from nubes.storage.registry import open, register, registered

__all__ = ["BaseStore", "IOStats", "ObjectInfo", "ObjectStore", "RangeReader", "check_key", "open", "register", "registered"]
