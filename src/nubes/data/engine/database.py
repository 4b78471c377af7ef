"""DuckDB databases for the engine: how a connection is configured, and the warm instance's shared one.

A :class:`Database` is opened once per warm app (lazily) and serves every invocation on a cursor of
its own (see :class:`~nubes.data.engine.bridge.Bridge`). What it keeps for the warm instance:

* **Native reads of local files, counted.** Objects of a store that are files on this machine
  (``file://``) are read by DuckDB itself, as a hand-written query would: no Python in the read path.
  DuckDB's own ``FileSystem`` log records every read with the connection that made it, so each
  session's bytes and requests are its own even while others run (:meth:`native_reads`).
* **Dataset views shared across invocations.** A dataset's view is created once per dataset
  version and used by every session that resolved that same version (:meth:`pin_view`); a session
  that resolved another version while the shared view is in use gets a TEMP view of its own.
* **Parquet metadata cached.** ``parquet_metadata_cache`` is on: DuckDB keeps a footer for a path
  and trusts it only while the file's modification time is unchanged and more than 10 seconds old
  (DuckDB's own rule), so a file replaced in place is never read with an old footer.

Other stores are read through the ``nubes://`` fsspec filesystem (imported on first need) under a
per-session token, counted by the session's bridge. Never lock a shared database's configuration:
a sandbox that must lock its connection uses a :class:`~nubes.data.engine.bridge.Bridge` of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

    from nubes.data.engine.bridge import Bridge
    from nubes.data.engine.filesystem import NubesFileSystem
    from nubes.storage.base import ObjectStore

LOG_TRUNCATE_AT = 20_000  # log entries read since the last truncation (done when no session is open) ...
LOG_TRUNCATE_SESSIONS = 1_000  # ... or sessions closed since then (their writes are logged too, and never read)

_LOG_SQL = (  # the reads of this cursor's connection
    "SELECT l.context_id, l.message FROM duckdb_logs() AS l JOIN duckdb_log_contexts() AS c "
    "ON l.context_id = c.context_id WHERE c.connection_id = current_connection_id() "
    "AND l.context_id > $1 AND l.type = 'FileSystem'"
)
_LOG_ALONE_SQL = "SELECT context_id, message FROM duckdb_logs() WHERE context_id > $1 AND type = 'FileSystem'"


def new_connection(**config: Any) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection as the engine uses it: extensions are never downloaded (parquet
    and json are built in) and DuckDB's external file cache is off (a Python filesystem's modification
    times are too coarse for it to tell two versions of an object apart)."""
    import duckdb

    return duckdb.connect(config={
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "enable_external_file_cache": False,
        **config,
    })


class Database:
    """One in-memory DuckDB database shared by the sessions of a warm instance (see the module docstring)."""

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self._fs: NubesFileSystem | None = None
        self._lock = threading.Lock()
        self._view_lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._salt = os.urandom(3).hex()
        self._open_sessions = 0
        self._alone: dict[str, bool] = {}  # open session -> no other session was open during its life
        self._seen = 0  # the last log context any session has counted
        self._logged = 0
        self._closes = 0
        self._views: dict[str, tuple[Any, int]] = {}  # dataset -> (fingerprint of the shared view, sessions using it)
        from nubes.data.engine.caches import Bounded

        self.footers: Bounded[Any] = Bounded(4096)  # (store URI, key, etag) -> parsed Parquet footer
        self.queries: Bounded[frozenset[str] | None] = Bounded(1024)  # SQL text -> the tables it names

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = new_connection()
            con.execute("SET parquet_metadata_cache = true")
            con.execute("CALL enable_logging('FileSystem')")
            self._con = con
        return self._con

    @property
    def fs(self) -> NubesFileSystem:
        """The ``nubes://`` filesystem of this database (imports fsspec; registered on first use)."""
        if self._fs is None:
            from nubes.data.engine.filesystem import NubesFileSystem

            with self._lock:
                if self._fs is None:
                    fs = NubesFileSystem()
                    self._connection().register_filesystem(fs)
                    self._fs = fs
        return self._fs

    def _open(self) -> str:
        """A new session's token (its cursor is made by :meth:`_cursor`, when it first needs one)."""
        with self._lock:
            token = f"s{self._salt}{next(self._tokens):x}"
            self._open_sessions += 1
            for other in self._alone:
                self._alone[other] = False
            self._alone[token] = len(self._alone) == 0
        return token

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:  # a connection serves one call at a time, cursor() included
            cursor = self._connection().cursor()
        # DuckDB logs a fresh cursor's first relation bind without its connection id: one statement first, so
        # that every read of the session carries it (about 0.1 ms; needed whenever sessions overlap)
        cursor.execute("SELECT 1").fetchall()
        return cursor

    def _closed(self, token: str) -> None:
        with self._lock:
            self._open_sessions -= 1
            self._closes += 1
            self._alone.pop(token, None)
            full = self._logged > LOG_TRUNCATE_AT or self._closes >= LOG_TRUNCATE_SESSIONS
            if self._open_sessions == 0 and full and self._con is not None:
                self._con.execute("CALL truncate_duckdb_logs()")
                self._logged = self._closes = 0

    def session(self, stores: ObjectStore | Mapping[str, ObjectStore], **kwargs: Any) -> Bridge:
        """A :class:`~nubes.data.engine.bridge.Bridge` over ``stores`` on a new cursor of this database."""
        from nubes.data.engine.bridge import Bridge

        return Bridge(stores, database=self, **kwargs)

    @property
    def sessions(self) -> int:
        """Session bridges open now."""
        return self._open_sessions

    def native_reads(self, token: str, cursor: duckdb.DuckDBPyConnection, after: int) -> tuple[int, dict[str, tuple[int, int]]]:
        """Reads DuckDB made of local files on session ``token``'s cursor since log context ``after``:
        ``(last context seen, {path: (reads, bytes)})``. A session that has been the only one open since it
        opened owns every read logged since the last one counted (a cheaper query than by connection)."""
        with self._lock:
            alone, seen = self._alone.get(token, False), self._seen
        rows = (cursor.execute(_LOG_ALONE_SQL, [max(after, seen)]) if alone else cursor.execute(_LOG_SQL, [after])).fetchall()
        out: dict[str, tuple[int, int]] = {}
        last = after
        for context, message in rows:
            last = max(last, context)
            entry = json.loads(message)
            if entry.get("op") == "READ":
                reads, nbytes = out.get(entry["path"], (0, 0))
                out[entry["path"]] = (reads + 1, nbytes + int(entry.get("bytes", 0)))
        with self._lock:
            self._logged += len(rows)
            self._seen = max(self._seen, last)
        return last, out

    # -- dataset views shared by sessions -------------------------------------------------------
    def pin_view(self, cursor: duckdb.DuckDBPyConnection, name: str, fingerprint: Any, create_sql: str) -> bool:
        """Use the shared view ``name`` at ``fingerprint`` (created or replaced now if no session uses another
        version): True if the session may use it, False if it needs a TEMP view of its own."""
        with self._view_lock:  # a view is made once per version: others wait for it rather than race it
            with self._lock:
                current = self._views.get(name)
                if current is not None and current[0] == fingerprint:
                    self._views[name] = (fingerprint, current[1] + 1)
                    return True
                if current is not None and current[1] > 0:
                    return False
            cursor.execute(create_sql)
            with self._lock:
                self._views[name] = (fingerprint, 1)
        return True

    def unpin_view(self, name: str) -> None:
        """A session that :meth:`pin_view` let use the shared view ``name`` is done with it."""
        with self._lock:
            current = self._views.get(name)
            if current is not None:
                self._views[name] = (current[0], max(0, current[1] - 1))

    def close(self) -> None:
        """Close the database (open session bridges stop working)."""
        with self._lock:
            if self._con is not None:
                with contextlib.suppress(Exception):
                    self._con.close()
                self._con = None
