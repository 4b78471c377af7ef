"""The cost ledger: one record per invocation, journaled into the home store, compacted into Parquet.

Layout in the app's home store::

    _nubes/ledger/day=YYYY-MM-DD/<segment>-<chunk>.ndjson   new records, one JSON object per line
    _nubes/ledger/rollup/day=YYYY-MM-DD/<id>.parquet        compacted records (see nubes.metering.rollup)
    _nubes/ledger/manifest.json                             which rollups hold which records

**Writing.** Records go through a :class:`nubes.storage.journal.Journal` (the mechanism lineage
shares): appended in memory (and, on local runs, to an on-disk spool before the response leaves),
written as new objects whose keys are fixed by their content's segment, with ``if_none_match``, so
retries and replays never store a record twice; see that module for the guarantees and bounds.
Every record carries a unique ``record_id``; every reader (bills, compaction) keeps one record per
id, so no path can count a record twice — not a replay, not ``nubes costs --reconcile``.

**Public API** (what the meter uses, and what a bulk writer or a test uses)::

    ledger = Ledger(store)                  # or Ledger(store, spool=None) for no local spool
    ledger.append({...record...})           # COLUMNS; record_id and day are filled in if missing
    ledger.flush()                          # write what is buffered, then compact if due
    records(store)                          # every record (rollups, new objects, live spools)

``append`` encodes a record and (with a spool) writes one line: about 10 µs. A flush writes one
object per day and ``chunk`` records; ``flush`` compacts when at least ``compact_records`` records
or ``compact_objects`` objects were written since the last compaction, so a million appended
records end as a few Parquet rollups and a short tail.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from nubes.storage.journal import Journal, journal, policy_for

if TYPE_CHECKING:
    from nubes.storage.base import ObjectStore

PREFIX = "_nubes/ledger/"
STORAGE_OPS = ("put", "get", "head", "list", "delete", "delete_many")

COLUMNS: dict[str, str] = {
    "record_id": "VARCHAR", "request_id": "VARCHAR", "app": "VARCHAR", "kind": "VARCHAR", "method": "VARCHAR",
    "path": "VARCHAR", "route": "VARCHAR", "status": "INTEGER", "provider": "VARCHAR", "plan": "VARCHAR",
    "front": "VARCHAR", "gateway": "VARCHAR", "platform": "VARCHAR", "emulated": "BOOLEAN", "function_name": "VARCHAR",
    "region": "VARCHAR", "memory_mb": "DOUBLE", "architecture": "VARCHAR", "start_time": "VARCHAR", "day": "VARCHAR",
    "duration_ms": "DOUBLE", "billed_duration_ms": "BIGINT", "billed_memory_mb": "BIGINT", "peak_rss_mb": "DOUBLE",
    "cold_start": "BOOLEAN", **{f"ops_{op}": "BIGINT" for op in STORAGE_OPS}, "bytes_read": "BIGINT",
    "bytes_written": "BIGINT", "http_bytes": "BIGINT", "body_digest": "VARCHAR", "tenant": "VARCHAR",
    "bookkeeping_puts": "DOUBLE", "bookkeeping_gets": "DOUBLE", "gb_seconds": "DOUBLE", "vcpu_seconds": "DOUBLE",
    "cost_compute_usd": "DOUBLE", "cost_request_usd": "DOUBLE", "cost_gateway_usd": "DOUBLE",
    "cost_storage_usd": "DOUBLE", "cost_bookkeeping_usd": "DOUBLE", "cost_usd": "DOUBLE",
}
"""Every field of a ledger record and its DuckDB type (the rollups' schema)."""

_PROCESS = os.urandom(6).hex()
_COUNTER = itertools.count()


def new_record_id() -> str:
    """A record id unique across processes: 48 random bits per process, then a counter."""
    return f"{_PROCESS}{next(_COUNTER):x}"


def _new_process() -> None:
    global _PROCESS, _COUNTER
    _PROCESS, _COUNTER = os.urandom(6).hex(), itertools.count()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_process)


def day_of(record: Mapping[str, Any]) -> str:
    return str(record.get("day") or str(record.get("start_time") or "")[:10] or "unknown")


class Ledger:
    """The cost ledger over ``store`` (an object store, or a zero-argument callable opening it and
    then ``uri``). One per store and process is shared by every ``Ledger`` made for it.

    ``spool``: ``"auto"`` (default: :func:`nubes.storage.journal.spool_dir`), a folder, or None.
    ``policy``: the journal's ``mode`` (``manual`` by default: the caller flushes; ``background``:
    the process's flusher thread does), ``batch_size``, ``max_age_s``, ``chunk``, ``max_buffer``, ``sync``.
    """

    def __init__(
        self,
        store: ObjectStore | Callable[[], ObjectStore],
        *,
        uri: str | None = None,
        log: Any = None,
        spool: str | None = "auto",
        compact_records: int = 50_000,
        compact_objects: int = 64,
        **policy: Any,
    ) -> None:
        if uri is None:
            if callable(store) and not hasattr(store, "uri"):
                raise TypeError("Ledger(store_factory) needs uri=")
            uri = str(store.uri)
        self.uri = uri
        self.journal: Journal = journal(store, uri, PREFIX, name="ledger", log=log,
                                        **{"mode": "manual", "spool": spool, **policy})
        if policy or spool != "auto":
            self.journal.configure(**policy_for(uri, "ledger", {"spool": spool, **policy}))
        state = self.journal.extras
        if "compaction" not in state:
            state["compaction"] = {"base": 0, "objects": 0, "lock": threading.Lock()}
            self.journal.listeners.append(self._flushed)
        state["compact_at"] = (compact_records, compact_objects)

    @property
    def store(self) -> ObjectStore:
        return self.journal.store

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one record (fields of :data:`COLUMNS`; ``record_id`` and ``day`` are filled in if missing)."""
        if "record_id" not in record or "day" not in record:
            record = {**record}
            record.setdefault("record_id", new_record_id())
            record.setdefault("day", day_of(record))
        self.journal.append(f"day={record['day']}", record)

    def extend(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append every record of ``records``; returns how many."""
        n = 0
        for n, record in enumerate(records, 1):  # noqa: B007 - n is the count
            self.append(record)
        return n

    def flush(self, *, compact: bool | None = None) -> bool:
        """Write what is buffered; then compact when due (``compact=True``: always, False: never).
        True if every record was written."""
        ok = self.journal.flush(force=True)
        if ok and (compact or (compact is None and self._compaction_due())):
            self.compact()
        return ok

    def _compaction_due(self) -> bool:
        """Due after enough records or objects, and only where DuckDB is installed: a function built
        without it (its footprint has no table library) leaves compaction to one that has it, to the
        next bill, or to ``nubes costs --compact``."""
        if not _duckdb_installed():
            return False
        state = self.journal.extras["compaction"]
        limit_records, limit_objects = self.journal.extras["compact_at"]
        return bool(self.journal.written - state["base"] >= limit_records or state["objects"] >= limit_objects)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush, retrying failures until ``timeout``; True if everything was written."""
        return self.journal.close(timeout)

    def compact(self) -> dict[str, Any]:
        """Compact the store's ledger now (see :mod:`nubes.metering.rollup`)."""
        from nubes.metering.rollup import compact

        state = self.journal.extras["compaction"]
        with state["lock"]:
            state["base"], state["objects"] = self.journal.written, 0
            return compact(self.store, log=self.journal.log)

    def _flushed(self, keys: list[str]) -> None:
        self.journal.extras["compaction"]["objects"] += len(keys)
        # Locally (a spool: a long-lived process, a disk) the flusher compacts when due. On a real cloud
        # it does not: a compaction would compete with invocations for the CPU and may be frozen half
        # way; bills compact there when enough raw objects wait, or a schedule calls compact().
        if self.journal.mode == "background" and self.journal.spool is not None and self._compaction_due():
            self.compact()

    @property
    def buffered(self) -> int:
        return self.journal.buffered

    def records_per_put(self, nominal: float) -> float:
        """Records per object this process has written (``nominal`` before the first write)."""
        j = self.journal
        return j.written / j.puts if j.puts else max(nominal, 1.0)


# -- reading ---------------------------------------------------------------------------------------
def records(store: ObjectStore, since: str | None = None, until: str | None = None) -> Iterator[dict[str, Any]]:
    """Every record of the ledger (rollups, new objects and live spools; one per ``record_id``), by start time."""
    from nubes.metering.rollup import ledger_view

    with ledger_view(store, since, until, compact=False) as con:
        cur = con.execute("SELECT * FROM ledger ORDER BY start_time, request_id")
        names = [d[0] for d in cur.description]
        for row in cur.fetchall():
            yield dict(zip(names, row, strict=True))


def _duckdb_installed() -> bool:
    global _DUCKDB
    if _DUCKDB is None:
        import importlib.util

        _DUCKDB = importlib.util.find_spec("duckdb") is not None
    return _DUCKDB


_DUCKDB: bool | None = None
