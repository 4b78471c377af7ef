"""The fsspec filesystem DuckDB reads remote stores through: ``nubes://ALIAS/KEY`` by range reads.

Imported only when a bridge first needs it (a store DuckDB cannot read natively), so a function that
queries only local files never imports fsspec.
"""

from __future__ import annotations

import io
import threading
from typing import Any

from fsspec import AbstractFileSystem

from nubes.data.engine.access import StoreAccess
from nubes.errors import ConfigError, NotFound, StorageError
from nubes.storage.base import ObjectInfo, RangeReader

PROTOCOL = "nubes"


class ObjectFile(RangeReader):
    """A read-only seekable file over one object version: every ``read(n)`` is one exact range request
    (no read-ahead: DuckDB already asks for whole column chunks / large CSV buffers), through the
    bridge's counted, cached ranges; a storage error is noted so the DuckDB boundary can re-raise it."""

    def __init__(self, core: StoreAccess, alias: str, info: ObjectInfo) -> None:
        super().__init__(None, info.key, info.size, name=f"{PROTOCOL}://{core.host(alias)}/{info.key}")
        self._core = core
        self._alias = alias
        self._info = info

    def _fetch(self, start: int, end: int) -> bytes:
        try:
            return self._core.get_range(self._alias, self._info, start, end)
        except StorageError as exc:
            self._core.note(exc)
            raise


class NubesFileSystem(AbstractFileSystem):  # type: ignore[misc]  # fsspec has no type hints
    """fsspec filesystem over object stores: ``nubes://ALIAS/KEY`` is ``KEY`` in the store named ``ALIAS``.

    Read-only (writes go through :meth:`Bridge.write`, which is atomic). Folders are implied by ``/``
    in keys. ``ls``/``find``/``glob`` make one ``store.list`` call per listed prefix; ``info``,
    ``size`` and ``modified`` one HEAD, cached for the bridge's ``metadata_ttl``. Missing objects
    raise :class:`~nubes.errors.NotFound` (a ``FileNotFoundError``).

    A bridge's own filesystem serves its stores as ``nubes://ALIAS/``. The one filesystem of a shared
    :class:`Database` serves every open session bridge as ``nubes://TOKEN.ALIAS/`` and sends each request
    to that session's stores, counters and caches, so concurrent sessions are metered apart.
    """

    protocol = PROTOCOL
    root_marker = ""
    cachable = False
    async_impl = False

    def __init__(self, core: StoreAccess | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._core = core
        self._sessions: dict[str, StoreAccess] = {}  # shared database: TOKEN -> the session bridge's core
        self._lock = threading.Lock()

    def _bind(self, token: str, core: StoreAccess) -> None:
        with self._lock:
            self._sessions = {**self._sessions, token: core}  # copy on write: lookups take no lock

    def _unbind(self, token: str) -> None:
        with self._lock:
            self._sessions = {t: c for t, c in self._sessions.items() if t != token}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        if isinstance(path, (list, tuple)):
            return [cls._strip_protocol(p) for p in path]  # type: ignore[return-value, unused-ignore]
        path = str(path)
        if path.startswith(PROTOCOL + "://"):
            path = path[len(PROTOCOL) + 3 :]
        return path.strip("/")

    def _split(self, path: str) -> tuple[StoreAccess, str, str]:
        path = self._strip_protocol(path)
        host, _, key = path.partition("/")
        core, alias = self._core, host
        if core is None:
            token, dot, alias = host.partition(".")
            core = self._sessions.get(token) if dot else None
            if core is None:
                raise ConfigError(f"{PROTOCOL}://{host}/ is not a store of an open session on this database: {PROTOCOL}://{path}")
        if alias not in core.stores:
            known = ", ".join(f"{PROTOCOL}://{core.host(a)}/" for a in sorted(core.stores))
            raise ConfigError(f"no store named {alias!r} in this bridge (known: {known}): {PROTOCOL}://{path}")
        return core, alias, key

    @staticmethod
    def _file_entry(core: StoreAccess, alias: str, info: ObjectInfo) -> dict[str, Any]:
        return {
            "name": f"{core.host(alias)}/{info.key}",
            "size": info.size,
            "type": "file",
            "etag": info.etag,
            "mtime": info.last_modified,
        }

    @staticmethod
    def _guard(core: StoreAccess, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except StorageError as exc:
            core.note(exc)
            raise

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        core, alias, key = self._split(path)
        try:
            return self._info(core, alias, key)
        except NotFound:
            raise  # a probe (isfile, exists, glob); DuckDB reports a real miss itself, translated at the boundary
        except StorageError as exc:
            core.note(exc)
            raise

    def _info(self, core: StoreAccess, alias: str, key: str) -> dict[str, Any]:
        if not key:
            return {"name": core.host(alias), "size": 0, "type": "directory"}
        try:
            return self._file_entry(core, alias, core.head(alias, key))
        except NotFound as missing:
            if core.list(alias, key + "/"):
                return {"name": f"{core.host(alias)}/{key}", "size": 0, "type": "directory"}
            raise missing from None

    def exists(self, path: str, **kwargs: Any) -> bool:
        """True if ``path`` is an object or a non-empty folder; a miss is not noted as an error."""
        core, alias, key = self._split(path)
        try:
            self._info(core, alias, key)
        except NotFound:
            return False
        except StorageError as exc:
            core.note(exc)
            raise
        return True

    def size(self, path: str) -> int:
        return int(self.info(path)["size"])

    def modified(self, path: str) -> Any:
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(path)
        return info["mtime"]

    def ukey(self, path: str) -> str:
        return str(self.info(path).get("etag", ""))

    def _entries(self, core: StoreAccess, alias: str, key: str) -> list[ObjectInfo]:
        prefix = key + "/" if key else ""
        return [i for i in self._guard(core, core.list, alias, prefix) if i.key.startswith(prefix)]

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        core, alias, key = self._split(path)
        host = core.host(alias)
        prefix = key + "/" if key else ""
        out: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for info in self._entries(core, alias, key):
            rest = info.key[len(prefix) :]
            if "/" in rest:
                d = prefix + rest.split("/", 1)[0]
                if d not in dirs:
                    dirs.add(d)
                    out.append({"name": f"{host}/{d}", "size": 0, "type": "directory"})
            else:
                out.append(self._file_entry(core, alias, info))
        if not out:
            if not key:
                return []
            out = [self.info(path)]  # a file, or NotFound
            if out[0]["type"] != "file":
                out = []
        return out if detail else [o["name"] for o in out]

    def find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False, **kwargs: Any
    ) -> Any:
        core, alias, key = self._split(path)
        host = core.host(alias)
        prefix = key + "/" if key else ""
        found: dict[str, dict[str, Any]] = {}
        for info in self._entries(core, alias, key):
            parts = info.key[len(prefix) :].split("/")
            if maxdepth is not None and len(parts) > maxdepth:
                if withdirs:
                    for depth in range(1, maxdepth + 1):
                        d = prefix + "/".join(parts[:depth])
                        found.setdefault(f"{host}/{d}", {"name": f"{host}/{d}", "size": 0, "type": "directory"})
                continue
            if withdirs:
                for depth in range(1, len(parts)):
                    d = prefix + "/".join(parts[:depth])
                    found.setdefault(f"{host}/{d}", {"name": f"{host}/{d}", "size": 0, "type": "directory"})
            entry = self._file_entry(core, alias, info)
            found[entry["name"]] = entry
        if not found and key:
            try:
                single: dict[str, Any] | None = self.info(path)
            except FileNotFoundError:
                single = None
            if single is not None and single["type"] == "file":
                found[single["name"]] = single
        names = sorted(found)
        return {n: found[n] for n in names} if detail else names

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            raise PermissionError(
                f"{PROTOCOL}:// is read-only for DuckDB; write results with Bridge.write (atomic): {path}"
            )
        core, alias, key = self._split(path)
        info = self._guard(core, core.head, alias, key)
        return ObjectFile(core, alias, info)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:  # no fsspec read-ahead/text layers
        if "b" not in mode:
            return io.TextIOWrapper(io.BufferedReader(self._open(path, "rb")), encoding=kwargs.get("encoding"))
        return self._open(path, mode)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        f = self._open(path)
        size = f.size
        s = 0 if start is None else (start if start >= 0 else max(0, size + start))
        e = size if end is None else (end if end >= 0 else max(0, size + end))
        f.seek(s)
        return bytes(f.read(max(0, e - s)))

    def _rm(self, path: str) -> None:
        raise PermissionError(f"{PROTOCOL}:// is read-only for DuckDB: {path}")

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        raise PermissionError(f"{PROTOCOL}:// is read-only for DuckDB: {path}")


