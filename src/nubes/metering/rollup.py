"""Ledger rollups: records compacted into Parquet per day, found through a manifest changed by conditional writes.

Layout (under ``_nubes/ledger/`` in the home store)::

    day=D/<segment>-<chunk>.ndjson      new records, as the journal writes them ("raw objects")
    rollup/day=D/<uuid>.parquet         compacted records of day D ("parts")
    manifest.json                       {"version": 1,
                                         "parts":   {D: [part keys]},
                                         "covered": {D: {raw key: delete-after time}},
                                         "retired": {part key: delete-after time}}

A day's records are its parts plus its raw objects that the manifest does not list as ``covered``.
Every record has a unique ``record_id`` and readers keep one record per id, so even a record stored
twice (a spool replayed after its raw object was compacted and deleted, a reconciliation run twice)
is counted once.

**Compaction** (:func:`compact`), safe to crash at any step and to run concurrently:

1. LIST the ledger; HEAD then GET the manifest (its etag ``E``; content at least as new as ``E``).
2. Delete what the manifest lets go: ``covered`` raw objects and ``retired`` parts whose time has
   passed, and parts in no manifest entry older than the grace (orphans of crashed compactions).
   A crash here leaves entries naming missing objects: readers skip them.
3. For each day with raw objects not covered: read them, keep one record per id, write them as a
   new part under a new unique key (``if_none_match``). A day that would have more than
   ``merge_over`` parts gets one merged part instead, and its old parts are retired. A crash here
   leaves a part no manifest names: invisible, later deleted as an orphan.
4. The commit: PUT the manifest with ``if_match=E`` listing the new parts, the raw objects they
   hold as ``covered`` and superseded parts as ``retired`` (both deleted after ``grace_s``). Before
   this write readers see the raw objects, after it the parts. If another compactor committed
   first, our parts are deleted and we start again from 1.

**Reading** (:func:`ledger_view`): LIST the raw objects of the days asked, then GET the manifest,
then every part and uncovered raw object of those days (one GET each, into a local temporary folder
read by DuckDB), plus the records still in local spools (:func:`nubes.storage.journal.spooled`).
Listing before reading the manifest means a raw object missing from the listing is in a part the
manifest names; a listed raw object deleted before it is read (compacted meanwhile) makes the read
start again. Storage reads per bill: one LIST page per 1,000 raw objects not yet compacted (or still
in their grace), one GET for the manifest, one per part (a day has at most ``merge_over``) and one
per raw object — not one per invocation.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nubes.data.sqltext import literal
from nubes.errors import NotFound, PreconditionFailed
from nubes.metering.ledger import COLUMNS, PREFIX
from nubes.storage.current import CURRENT_IO
from nubes.storage.swap import read_with_etag, swap

if TYPE_CHECKING:
    import duckdb

    from nubes.storage.base import ObjectStore

RAW = PREFIX + "day="
PARTS = PREFIX + "rollup/"
MANIFEST = PREFIX + "manifest.json"
GRACE_S = 120.0  # longer than any read of the ledger takes: superseded objects stay readable this long
MERGE_OVER = 8
RID = "coalesce(record_id, request_id || '|' || start_time)"  # the id of a record written before ids existed


def _empty_sql() -> str:
    return "SELECT " + ", ".join(f"NULL::{t} AS {k}" for k, t in COLUMNS.items()) + " WHERE false"


def _now() -> datetime:
    return datetime.now(UTC)


def raw_day(key: str) -> str:
    """``2026-11-25`` from ``_nubes/ledger/day=2026-11-25/...``."""
    return key[len(RAW):len(RAW) + 10]


def read_manifest(store: ObjectStore, *, with_etag: bool = False) -> tuple[dict[str, Any], str | None]:
    """The manifest (empty if none) and, with ``with_etag``, its etag (HEAD before GET)."""
    if with_etag:
        content, etag = read_with_etag(store, MANIFEST)
    else:
        content, etag = _get(store, MANIFEST), None
    if content is None:
        return {"version": 1, "parts": {}, "covered": {}, "retired": {}}, None
    data = json.loads(content)
    for section in ("parts", "covered", "retired"):
        data.setdefault(section, {})
    return data, etag


def check_bound(name: str, value: str | None) -> str | None:
    """``value`` of the ``since``/``until`` bound ``name`` checked: a day (``YYYY-MM-DD``) as it is, or an
    ISO time (``YYYY-MM-DDTHH:MM[:SS][+HH:MM]``; none given is UTC) as a UTC ISO time. ConfigError otherwise."""
    from datetime import date

    from nubes.errors import ConfigError

    if value is None or value == "":
        return None
    text = value.strip()
    try:
        date.fromisoformat(text[:10])  # the day every bound starts with: what partitions are chosen by
        if len(text) == 10:
            return text
        if text[10:11] not in ("T", "t", " "):
            raise ValueError(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--{name} must be a day (YYYY-MM-DD) or an ISO time (YYYY-MM-DDTHH:MM[:SS][+HH:MM]), "
                          f"not {value!r}") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat()


def _get(store: ObjectStore, key: str) -> bytes | None:
    try:
        return store.get(key)
    except NotFound:
        return None


def _in_range(day: str, since: str | None, until: str | None) -> bool:
    return not ((since and day < since[:10]) or (until and day > until[:10]))


# -- compaction --------------------------------------------------------------------------------------
def compact(store: ObjectStore, *, grace_s: float = GRACE_S, merge_over: int = MERGE_OVER, log: Any = None,
            attempts: int = 5) -> dict[str, Any]:
    """Compact the ledger in ``store`` (see the module docstring); returns what was done."""
    token = CURRENT_IO.set(None)  # bookkeeping, not the current invocation's storage operations
    try:
        for _ in range(attempts):
            result = _compact_once(store, grace_s, merge_over)
            if result is not None:
                if log is not None and (result["records"] or result["deleted"]):
                    log.info("metering ledger compacted", **{k: v for k, v in result.items() if k != "parts"})
                return result
        raise PreconditionFailed("the ledger manifest kept changing under compaction; try again", uri=store.uri, key=MANIFEST)
    finally:
        CURRENT_IO.reset(token)


def _compact_once(store: ObjectStore, grace_s: float, merge_over: int) -> dict[str, Any] | None:
    listing = list(store.list(PREFIX))
    manifest, etag = read_manifest(store, with_etag=True)
    now = _now()
    stamp = now.isoformat()
    after = (now + timedelta(seconds=grace_s)).isoformat()
    parts: dict[str, list[str]] = {d: list(v) for d, v in manifest["parts"].items()}
    covered: dict[str, dict[str, str]] = {d: dict(v) for d, v in manifest["covered"].items()}
    retired: dict[str, str] = dict(manifest["retired"])
    # 2. what may go
    doomed = [k for d in covered for k, t in covered[d].items() if t <= stamp]
    doomed += [k for k, t in retired.items() if t <= stamp]
    named = {k for v in parts.values() for k in v} | set(retired)
    young = (now - timedelta(seconds=grace_s))
    doomed += [o.key for o in listing if o.key.startswith(PARTS) and o.key not in named and o.last_modified < young]
    if doomed:
        store.delete_many(doomed)
        gone = set(doomed)
        covered = {d: {k: t for k, t in v.items() if k not in gone} for d, v in covered.items()}
        covered = {d: v for d, v in covered.items() if v}
        retired = {k: t for k, t in retired.items() if k not in gone}
    # 3. new parts
    raw: dict[str, list[str]] = {}
    for o in listing:
        if o.key.startswith(RAW) and o.key.endswith(".ndjson"):
            day = raw_day(o.key)
            if o.key not in covered.get(day, {}):
                raw.setdefault(day, []).append(o.key)
    written: list[str] = []
    records = 0
    try:
        for day, keys in sorted(raw.items()):
            existing = parts.get(day, [])
            merge = existing if len(existing) + 1 > merge_over else []
            key, n = _write_part(store, day, keys, existing, bool(merge))
            written.append(key)
            records += n
            for old in merge:
                retired[old] = after
            parts[day] = [k for k in parts.get(day, []) if k not in merge] + [key]
            covered.setdefault(day, {}).update(dict.fromkeys(keys, after))
    except NotFound:  # a raw object vanished: another compactor is ahead; start again
        store.delete_many(written)
        return None
    if not written and not doomed:
        return {"days": 0, "records": 0, "parts": [], "deleted": 0}
    # 4. the commit
    body = json.dumps({"version": 1, "parts": parts, "covered": covered, "retired": retired}, indent=1).encode()
    try:
        swap(store, MANIFEST, body, etag)
    except PreconditionFailed:
        store.delete_many(written)
        return None
    return {"days": len(raw), "records": records, "parts": written, "deleted": len(doomed)}


def _write_part(store: ObjectStore, day: str, raw_keys: list[str], parts: list[str], merge: bool) -> tuple[str, int]:
    """A new part of ``day``: the records of ``raw_keys`` whose ids no existing part of the day holds
    (so a day's parts stay disjoint), one per id; with ``merge``, the existing parts' records too."""
    import duckdb

    tmp = tempfile.mkdtemp(prefix="nubes-rollup-")
    try:
        tail = os.path.join(tmp, "tail.ndjson")
        with open(tail, "wb") as f:
            for key in raw_keys:
                data = store.get(key)
                f.write(data if data.endswith(b"\n") or not data else data + b"\n")
        olds = []
        for i, key in enumerate(parts):
            path = os.path.join(tmp, f"old{i}.parquet")
            try:
                data = store.get(key)
            except NotFound:  # deleted after its grace: its records are in a newer part
                continue
            with open(path, "wb") as f:
                f.write(data)
            olds.append(path)
        out = os.path.join(tmp, "part.parquet")
        con = duckdb.connect(config={"threads": "2"})
        try:
            _union_view(con, olds, [tail] if raw_keys else [])
            typed = ", ".join(f"CAST({k} AS {t}) AS {k}" for k, t in COLUMNS.items())
            source = "ledger_all" if merge else ("(SELECT * FROM ledger_all WHERE _src = 'tail' AND record_id NOT IN "
                                                 "(SELECT record_id FROM ledger_all WHERE _src = 'part'))")
            con.execute(f"COPY (SELECT {typed} FROM {source} QUALIFY row_number() OVER (PARTITION BY record_id) = 1 "
                        f"ORDER BY start_time) TO {literal(out)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 262144)")
            n = con.execute(f"SELECT count(*) FROM read_parquet({literal(out)})").fetchone()
        finally:
            con.close()
        key = f"{PARTS}day={day}/{_now():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:16]}.parquet"
        with open(out, "rb") as f:
            store.put(key, f, content_type="application/vnd.apache.parquet", if_none_match=True)
        return key, int(n[0]) if n else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _union_view(con: duckdb.DuckDBPyConnection, parquet: list[str], ndjson: list[str]) -> None:
    """A view ``ledger_all``: every COLUMNS column, from parts (any schema version) and NDJSON files, and
    ``_src`` (``part`` or ``tail``). A record without a ``record_id`` (the layout before ids) gets one
    from its request id and start time."""
    sources = [f"SELECT *, NULL::VARCHAR AS _src FROM ({_empty_sql()})"]
    names = ", ".join(COLUMNS)
    if parquet:
        files = "[" + ", ".join(map(literal, parquet)) + "]"
        sources.append(f"SELECT {names}, 'part' AS _src FROM (SELECT * FROM ({_empty_sql()}) UNION ALL BY NAME "
                       f"SELECT * FROM read_parquet({files}, union_by_name = true))")
    tails = [p for p in ndjson if os.path.getsize(p)]
    if tails:
        files = "[" + ", ".join(map(literal, tails)) + "]"
        cols = ", ".join(f"{RID} AS record_id" if k == "record_id" else k for k in COLUMNS)
        sources.append(f"SELECT {cols}, 'tail' AS _src FROM read_json({files}, format = 'newline_delimited', "
                       f"hive_partitioning = false, columns = {literal(COLUMNS)})")
    con.execute(f"CREATE OR REPLACE TEMP VIEW ledger_all AS {' UNION ALL '.join(sources)}")


# -- reading ----------------------------------------------------------------------------------------
@contextmanager
def ledger_view(store: ObjectStore, since: str | None = None, until: str | None = None, *, compact: bool = True,
                spool: bool = True, compact_over: int = 256) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with a view ``ledger`` of the records of ``[since, until]`` (days, or ISO
    times: ``until`` exclusive), one per ``record_id`` (see the module docstring for the reads).
    A bound that is neither is a ConfigError (:func:`check_bound`), raised before anything is read.

    ``compact``: first compact when ``compact_over`` or more raw objects wait (bills stay fast when
    nothing else compacts). ``spool``: also the records local spools hold (replaying dead writers').
    """
    import duckdb

    since, until = check_bound("since", since), check_bound("until", until)
    token = CURRENT_IO.set(None)
    tmp = tempfile.mkdtemp(prefix="nubes-ledger-")
    try:
        extra = _spooled(store, since, until) if spool else []
        for _attempt in range(5):
            try:
                files = _fetch(store, since, until, tmp, extra, compact_over if compact else None)
                break
            except NotFound:  # compacted meanwhile: read again
                continue
        else:
            raise NotFound("the ledger kept changing while being read; try again", uri=store.uri, key=PREFIX)
        con = duckdb.connect(config={"threads": "2"})
        try:
            _union_view(con, files["parquet"], files["ndjson"])
            where = []
            for bound, op in ((since, ">="), (until, "<=")):
                if not bound:
                    continue
                if len(bound) == 10:
                    where.append(f"day {op} {literal(bound)}")
                else:
                    strict = "<" if op == "<=" else ">="
                    where.append(f"CAST(start_time AS TIMESTAMPTZ) {strict} CAST({literal(bound)} AS TIMESTAMPTZ)")
            clause = (" WHERE " + " AND ".join(where)) if where else ""
            con.execute(f"CREATE OR REPLACE TEMP VIEW ledger_in AS SELECT * FROM ledger_all{clause}")
            _dedupe(con, files["overlap"])
            yield con
        finally:
            con.close()
    finally:
        CURRENT_IO.reset(token)
        shutil.rmtree(tmp, ignore_errors=True)


def _dedupe(con: duckdb.DuckDBPyConnection, days: list[str]) -> None:
    """The view ``ledger``: ``ledger_in`` with one record per id. A day's parts are disjoint (compaction
    keeps them so), so only ids of the tail (raw objects and spools) can repeat: within the tail, or
    in a part of the same day. Days read from a single source need no check at all."""
    if days:
        within = "day IN (" + ", ".join(map(literal, days)) + ")"
        con.execute(f"""CREATE OR REPLACE TEMP TABLE ledger_dups AS
            SELECT record_id FROM ledger_in WHERE _src = 'tail' AND {within} GROUP BY 1 HAVING count(*) > 1
            UNION
            SELECT record_id FROM ledger_in WHERE _src = 'part' AND {within}
                AND record_id IN (SELECT record_id FROM ledger_in WHERE _src = 'tail' AND {within})""")
        found = con.execute("SELECT count(*) FROM ledger_dups").fetchone()
        if found and found[0]:  # the few repeated ids: one copy each, the rest as they are
            con.execute("""CREATE OR REPLACE TEMP VIEW ledger AS
                SELECT * EXCLUDE (_src) FROM ledger_in WHERE record_id NOT IN (SELECT record_id FROM ledger_dups)
                UNION ALL
                SELECT * EXCLUDE (_src) FROM (SELECT * FROM ledger_in WHERE record_id IN (SELECT record_id FROM ledger_dups)
                               QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY _src) = 1)""")
            return
    con.execute("CREATE OR REPLACE TEMP VIEW ledger AS SELECT * EXCLUDE (_src) FROM ledger_in")


def _spooled(store: ObjectStore, since: str | None, until: str | None) -> list[tuple[str, bytes]]:
    """Records in local spools (after replaying dead writers' segments into the store)."""
    from nubes.metering.ledger import Ledger
    from nubes.storage.spool import spooled_lines

    ledger = Ledger(store)
    directory = ledger.journal.spool
    if directory is None or not os.path.isdir(directory):
        return []
    ledger.journal.replay()
    out = []
    for _sid, partition, line in spooled_lines(directory):  # as written: DuckDB reads them, nothing here need decode
        if _in_range(partition[4:], since, until):
            out.append((partition[4:], line))
    return out


def _fetch(store: ObjectStore, since: str | None, until: str | None, tmp: str, extra: list[tuple[str, bytes]],
           compact_over: int | None) -> dict[str, Any]:
    listing = [o.key for o in store.list(RAW) if o.key.endswith(".ndjson") and _in_range(raw_day(o.key), since, until)]
    manifest, _ = read_manifest(store)
    covered = manifest["covered"]
    tail = [k for k in listing if k not in covered.get(raw_day(k), {})]
    if compact_over is not None and len(tail) >= compact_over:
        compact(store)
        return _fetch(store, since, until, tmp, extra, None)
    parquet: list[str] = []
    sources: dict[str, int] = {}  # objects (and spools) a day's records come from: ids repeat only across them
    for day in [raw_day(k) for k in tail] + sorted({day for day, _line in extra}):
        sources[day] = sources.get(day, 0) + 1
    for day, keys in sorted(manifest["parts"].items()):
        if not _in_range(day, since, until):
            continue
        sources[day] = sources.get(day, 0) + len(keys)
        for key in keys:
            path = os.path.join(tmp, f"part-{len(parquet)}.parquet")
            try:
                data = store.get(key)
            except NotFound:
                if key in manifest.get("retired", {}):
                    continue
                raise
            with open(path, "wb") as f:
                f.write(data)
            parquet.append(path)
    path = os.path.join(tmp, "tail.ndjson")
    with open(path, "wb") as f:
        for key in tail:
            data = store.get(key)
            f.write(data if data.endswith(b"\n") or not data else data + b"\n")
        for _day, line in extra:
            f.write(line + b"\n")
    overlap = [day for day, n in sorted(sources.items()) if n > 1]
    return {"parquet": parquet, "ndjson": [path], "overlap": overlap}


def manifest_days(manifest: Mapping[str, Any]) -> list[str]:
    return sorted(manifest.get("parts", {}))
