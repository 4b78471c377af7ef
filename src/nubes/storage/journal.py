"""Append-only journals over an object store: records buffered, spooled to local disk, written in batches.

nubes' own bookkeeping (the cost ledger, dataset lineage) is a stream of small records that must be
*complete* (none lost once its invocation answered, none counted twice) and *cheap* (not one PUT per
record). A :class:`Journal` is one such stream over one store, shared in the process (:func:`journal`).

**Records and keys.** ``append(partition, record)`` takes a JSON-able mapping and a partition
(``day=YYYY-MM-DD``). Records are gathered in *segments*; a flush closes the current segment and
writes it as new NDJSON objects ``<prefix><partition>/<segment id>-<chunk:04d>.ndjson``: per
partition, in append order, ``chunk`` records per object. The key of a record's object is therefore
a pure function of the segment's content, fixed before anything is written, and every object is
written with ``if_none_match``: writing a segment twice (a retry after a lost answer, a replay after
a crash) finds the objects already there and adds nothing. An optional per-stream *transform*
(:func:`register_transform`, e.g. lineage aggregated per dataset version) rewrites each chunk before
it is written; a chunk written with or without it holds the same records, and only one version of
a key is ever stored.

**The spool** (``spool=DIR``, local runs). Each segment is also a file ``DIR/<segment id>.seg``
(a header line, then one ``partition<TAB>json`` line per record) written with ``write(2)`` inside
``append``, i.e. before the caller's response leaves: a process killed by SIGKILL or SIGTERM after
answering has its records in the kernel, and the file survives it. The file is deleted only once
all its objects are stored. ``sync="interval"`` (default) fsyncs open segments at every flusher
tick (``max_age_s``), so an operating-system crash or power loss can lose at most that window;
``sync="always"`` fsyncs each record (one disk flush per invocation). A live process holds an
exclusive ``flock`` on its segment files; any other process *replays* the files nobody holds (their
writer died): it writes their objects (same keys: idempotent) and deletes them. A journal replays
on its first flush; readers call :meth:`Journal.replay` and read live segments with
:func:`spooled` so a bill is exact while a server still buffers.

**When it writes** (``mode``):

* ``background`` — one daemon thread per process (for every journal) writes a journal when
  ``batch_size`` records wait or the oldest has waited ``max_age_s``; nothing on the request path
  but the append (a JSON encoding and, with a spool, one ``write(2)``).
* ``manual`` — the owner calls :meth:`flush` (e.g. at the end of every invocation); ``append``
  flushes by itself when a segment reaches ``chunk`` records (bulk writers).

**Failures.** A segment whose objects cannot all be written stays pending (same keys) and is
retried with backoff; every failure is logged once per attempt. Without a spool, pending records
are held in memory up to ``max_buffer`` (past it the oldest are dropped with an error log line);
with one, pending segments are re-read from their files, so memory holds only the open segment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from nubes.errors import PreconditionFailed
from nubes.storage.base import ObjectStore
from nubes.storage.current import CURRENT_IO
from nubes.storage.flusher import FLUSHER as _FLUSHER
from nubes.storage.spool import MAGIC, Segment, new_segment_id, read_segment, spool_dir, try_lock, write_all

_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode
RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
MODES = ("background", "manual")
Transform = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
_TRANSFORMS: dict[str, Transform] = {}

def register_transform(name: str, fn: Transform) -> None:
    """Register a chunk rewrite by name (a journal's ``transform``); replays look it up here."""
    _TRANSFORMS[name] = fn


def _log(log: Any, level: str, msg: str, **fields: Any) -> None:
    """To ``log`` (a nubes BoundLog) if given, else to the ``nubes`` logger (fields as its JSON lines carry them)."""
    if log is not None:
        getattr(log, level)(msg, **fields)
    else:
        logging.getLogger("nubes").log(getattr(logging, level.upper()), msg, extra={"nubes": fields})


def batches(prefix: str, sid: str, groups: Mapping[str, list[bytes]], chunk: int,
            transform: Transform | None = None) -> list[tuple[str, bytes, int]]:
    """``(key, payload, records)`` for every object a segment is written as (see the module docstring)."""
    out = []
    for partition in sorted(groups):
        lines = [x if isinstance(x, bytes) else _ENCODE(x).encode() for x in groups[partition]]
        for n, start in enumerate(range(0, len(lines), chunk)):
            part = lines[start:start + chunk]
            if transform is not None:
                part = [_ENCODE(r).encode() for r in transform([json.loads(x) for x in part])]
            out.append((f"{prefix}{partition}/{sid}-{n:04d}.ndjson", b"\n".join(part) + b"\n", min(chunk, len(lines) - start)))
    return out


# -- the journal ---------------------------------------------------------------------------------------
class Journal:
    """One stream of records over one store (see the module docstring). Thread-safe; never raises on write."""

    def __init__(
        self,
        store: ObjectStore | Callable[[], ObjectStore],
        prefix: str,
        *,
        name: str = "journal",
        log: Any = None,
        spool: str | None = None,
        mode: str = "manual",
        batch_size: int = 100,
        max_age_s: float = 1.0,
        chunk: int = 10_000,
        max_buffer: int = 100_000,
        sync: str = "interval",
        transform: str | None = None,
    ) -> None:
        self._store = store if callable(store) and not isinstance(store, ObjectStore) else (lambda s=store: s)
        self.prefix, self.name, self.log = prefix, name, log
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._segment: Segment | None = None
        self._pending: list[Segment] = []
        self._failing = 0
        self._retry_at = 0.0
        self._replayed = False
        self.spool: str | None = None
        self.mode, self.batch_size, self.max_age_s, self.chunk = mode, batch_size, max_age_s, chunk
        self.max_buffer, self.sync, self.transform = max_buffer, sync, transform
        self.written = 0  # records stored
        self.puts = 0  # objects stored
        self.dropped = 0  # records dropped past max_buffer (without a spool; each drop is logged)
        self.failures = 0  # failed put attempts
        self.listeners: list[Callable[[list[str]], None]] = []  # called with the keys of each flush
        self.follows_defaults = False  # set by journal(): takes set_defaults() changes
        self.uri = ""
        self.extras: dict[str, Any] = {}  # owners' per-journal state (e.g. the ledger's compaction counter)
        self.configure(mode=mode, batch_size=batch_size, max_age_s=max_age_s, chunk=chunk, max_buffer=max_buffer,
                       sync=sync, transform=transform, spool=spool)
        _FLUSHER.add(self)

    def configure(self, **policy: Any) -> Journal:
        """Change any of the constructor's policy arguments; applies to records appended from now on."""
        for key, value in policy.items():
            if key not in ("mode", "batch_size", "max_age_s", "chunk", "max_buffer", "sync", "transform", "spool"):
                raise TypeError(f"unknown journal setting {key!r}")
            setattr(self, key, value)
        if self.mode not in MODES:
            raise ValueError(f"journal mode must be one of {MODES}, not {self.mode!r}")
        if self.sync not in ("interval", "always"):
            raise ValueError(f"journal sync must be interval or always, not {self.sync!r}")
        if self.spool is not None:
            self._replayed = False
        _FLUSHER.wake()
        return self

    @property
    def store(self) -> ObjectStore:
        return self._store()

    # -- the request path ----------------------------------------------------------------------------
    def append(self, partition: str, record: Mapping[str, Any]) -> None:
        """Add ``record`` (JSON-able, not changed afterwards) to ``partition``; with a spool it is on disk
        when this returns (without one, it is encoded when written, off the caller's path)."""
        with self._lock:
            seg = self._segment
            if seg is None:
                seg = self._segment = self._open_segment()
            line: bytes | Mapping[str, Any] = record
            if seg.fd is not None:
                line = _ENCODE(record).encode()
                try:
                    write_all(seg.fd, partition.encode() + b"\t" + line + b"\n")
                    if self.sync == "always":
                        os.fsync(seg.fd)
                except OSError as exc:  # the record stays in memory; this segment is no longer spooled
                    self._spool_failed(seg, exc)
            groups = seg.groups
            assert groups is not None
            groups.setdefault(partition, []).append(line)  # type: ignore[arg-type]
            seg.count += 1
            count = seg.count
            over = count + self._pending_count() - self.max_buffer
        io = CURRENT_IO.get()
        if io is not None:
            io.record(f"journal:{self.name}", count=1)  # an invocation's bookkeeping, priced by metering
        if over > 0:
            self._drop(over)
        if self.mode == "manual":
            if count >= self.chunk:
                self.flush()
        elif count == self.batch_size:  # once per segment: the flusher takes it from here
            _FLUSHER.wake()

    def _open_segment(self) -> Segment:
        sid = new_segment_id()
        if self.spool is None:
            return Segment(sid, None, None)
        path = os.path.join(self.spool, sid + ".seg")
        try:
            os.makedirs(self.spool, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o600)
        except OSError as exc:
            _log(self.log, "error", "journal spool unavailable; records kept in memory only", journal=self.name,
                 spool=self.spool, error=str(exc))
            return Segment(sid, None, None)
        try_lock(fd)
        header = {"stream": self.name, "prefix": self.prefix, "chunk": self.chunk, "transform": self.transform}
        seg = Segment(sid, path, fd)
        try:
            write_all(fd, MAGIC + _ENCODE(header).encode() + b"\n")
        except OSError as exc:
            self._spool_failed(seg, exc)
        return seg

    def _spool_failed(self, seg: Segment, exc: OSError) -> None:
        # Stop writing this file: it keeps a prefix of the segment (per partition), whose chunks are
        # prefixes of the memory's; either version of a key is complete, and only one is ever stored.
        _log(self.log, "error", "journal spool write failed; this segment's records are in memory only",
             journal=self.name, spool=self.spool, error=str(exc))
        # The file holds a prefix of what memory holds: delete it (memory is the complete copy now), so
        # no replay can store a shorter version of a key before the flush stores the full one.
        seg.close(unlink=True)
        seg.path = None

    def _pending_count(self) -> int:
        return sum(s.count for s in self._pending if s.groups is not None)

    def _drop(self, over: int) -> None:
        lost: list[bytes] = []
        with self._lock:
            for seg in list(self._pending):
                if over <= 0:
                    break
                if seg.path is not None:  # on disk: free the memory, re-read it when retrying
                    over -= seg.count
                    seg.groups = None
                    continue
                groups = seg.load()
                for lines in groups.values():
                    take = min(over, len(lines))
                    lost += lines[:take]
                    del lines[:take]
                    over -= take
                seg.count = sum(len(v) for v in groups.values())
                if seg.count == 0:
                    self._pending.remove(seg)
            self.dropped += len(lost)
        if lost:
            _log(self.log, "error", "journal buffer full: records dropped (still in their log lines)", journal=self.name,
                 dropped=len(lost))

    @property
    def buffered(self) -> int:
        """Records not yet stored (open segment and pending ones)."""
        with self._lock:
            seg = self._segment
            return (seg.count if seg else 0) + sum(s.count for s in self._pending)

    def wait(self) -> float | None:
        """Seconds until this journal is due (0: now; None: nothing to write)."""
        with self._lock:
            seg, pending = self._segment, bool(self._pending)
        now = time.monotonic()
        waits = []
        if pending:
            waits.append(max(0.0, self._retry_at - now))
        if seg is not None and seg.count:
            waits.append(0.0 if seg.count >= self.batch_size else max(0.0, seg.started + self.max_age_s - now))
        return min(waits) if waits else None

    # -- writing -------------------------------------------------------------------------------------
    def flush(self, force: bool = False) -> bool:
        """Write every buffered record; True if nothing is left pending. Never raises.

        After a failure the store is left alone until its backoff has passed (``force`` tries now),
        so a broken store costs one attempt and one log line per backoff period.
        """
        if not force and self._failing and time.monotonic() < self._retry_at:
            return False
        with self._flush_lock:
            if not self._replayed and self.spool is not None:
                self._replayed = True
                self.replay()
            with self._lock:
                seg, self._segment = self._segment, None
                jobs, self._pending = self._pending, []
            if seg is not None and seg.count:
                jobs.append(seg)
            elif seg is not None:
                seg.close(unlink=True)
            failed = [s for s in jobs if not self._write(s)]
            if failed:
                with self._lock:
                    self._pending = failed + self._pending
                    self._failing += 1
                    delay = RETRY_BACKOFF_S[min(self._failing - 1, len(RETRY_BACKOFF_S) - 1)]
                    self._retry_at = time.monotonic() + delay
                _FLUSHER.wake()
                return False
            self._failing = 0
            return True

    def _write(self, seg: Segment) -> bool:
        groups = seg.load()
        keys = []
        for key, payload, count in batches(self.prefix, seg.id, groups, self.chunk, _TRANSFORMS.get(self.transform or "")):
            if key in seg.done:
                continue
            if not self._put(key, payload, count):
                return False
            seg.done.add(key)
            keys.append(key)
        seg.close(unlink=True)
        for listener in list(self.listeners):
            try:
                listener(keys)
            except Exception as exc:
                _log(self.log, "warning", "journal listener failed", journal=self.name, error=f"{type(exc).__name__}: {exc}")
        return True

    def _put(self, key: str, payload: bytes, count: int) -> bool:
        token = CURRENT_IO.set(None)  # bookkeeping writes are not the invocation's storage operations
        try:
            self.store.put(key, payload, content_type="application/x-ndjson", if_none_match=True)
        except PreconditionFailed:
            pass  # stored by an earlier attempt whose answer was lost, or by a replay: same key, same records
        except Exception as exc:
            self.failures += 1
            _log(self.log, "warning", "journal write failed; records kept and retried", journal=self.name, key=key,
                 records=count, error=f"{type(exc).__name__}: {exc}")
            return False
        finally:
            CURRENT_IO.reset(token)
        self.written += count
        self.puts += 1
        return True

    def replay(self) -> int:
        """Write the spool files no live process holds (their writer died), then delete them; returns
        how many records they held. Safe to run concurrently anywhere: keys are fixed by the files."""
        if self.spool is None:
            return 0
        try:
            names = sorted(n for n in os.listdir(self.spool) if n.endswith(".seg"))
        except FileNotFoundError:
            return 0
        total = 0
        for name in names:
            path = os.path.join(self.spool, name)
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except FileNotFoundError:
                continue
            if not try_lock(fd):  # a live writer holds it
                os.close(fd)
                continue
            try:
                header, groups = read_segment(path)
            except FileNotFoundError:  # its writer finished it meanwhile
                os.close(fd)
                continue
            except (OSError, ValueError) as exc:
                os.close(fd)
                _log(self.log, "error", "unreadable journal spool file left in place", path=path, error=str(exc))
                continue
            seg = Segment(name[:-4], path, fd)
            seg.groups = groups
            seg.count = sum(len(v) for v in groups.values())
            chunk, transform = int(header.get("chunk") or self.chunk), header.get("transform")
            ok = True
            for key, payload, count in batches(header.get("prefix", self.prefix), seg.id, groups, chunk,
                                               _TRANSFORMS.get(transform or "")):
                if not self._put(key, payload, count):
                    ok = False
                    break
            seg.close(unlink=ok)
            if ok:
                total += seg.count
                if seg.count:
                    _log(self.log, "info", "journal spool replayed", journal=self.name, records=seg.count, segment=seg.id)
            else:
                self._replayed = False  # try again at the next flush
        return total

    def sync_spool(self) -> None:
        """fsync the open segment file (the flusher does it every tick with ``sync="interval"``), without
        holding the journal's lock meanwhile: appends go on while the disk flushes."""
        with self._lock:
            seg = self._segment
            fd = os.dup(seg.fd) if seg is not None and seg.fd is not None else None  # lives past a close of seg.fd
        if fd is not None:
            try:
                with contextlib.suppress(OSError):
                    os.fsync(fd)
            finally:
                os.close(fd)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush, retrying failures until ``timeout``; True if everything was written (what is not stays
        in the spool, if any, for the next process to replay)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.flush(force=True):
                return True
            if time.monotonic() >= deadline:
                _log(self.log, "error", "journal records not written before exit" + (" (kept in the spool)" if self.spool else ""),
                     journal=self.name, records=self.buffered)
                return False
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _after_fork(self) -> None:
        # The child must not write to (or delete) the parent's segments: it starts empty.
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        for seg in [self._segment, *self._pending]:
            if seg is not None and seg.fd is not None:
                os.close(seg.fd)
        self._segment, self._pending = None, []


# -- the process's journals and its one flusher thread -------------------------------------------------
_REGISTRY: dict[tuple[str, str], Journal] = {}
_REGISTRY_LOCK = threading.Lock()
_POLICY_KEYS = ("mode", "batch_size", "max_age_s", "chunk", "max_buffer", "sync", "spool")
DEFAULTS: dict[str, Any] = {"mode": "background", "batch_size": 100, "max_age_s": 1.0, "chunk": 10_000,
                            "max_buffer": 100_000, "sync": "interval", "spool": "auto"}
"""The policy of journals made without one of their own (see :func:`set_defaults`)."""


def set_defaults(**policy: Any) -> None:
    """Change the process-wide default policy (``spool="auto"``: :func:`spool_dir`); journals that
    follow the defaults take it at once. The metering hook sets it from where the app runs, so
    every bookkeeping stream (ledger, lineage) follows the same policy."""
    unknown = set(policy) - set(_POLICY_KEYS)
    if unknown:
        raise TypeError(f"unknown journal setting(s) {sorted(unknown)}")
    if all(DEFAULTS.get(k) == v for k, v in policy.items()):
        return
    DEFAULTS.update(policy)
    with _REGISTRY_LOCK:
        followers = [(uri, j) for (uri, _p), j in _REGISTRY.items() if j.follows_defaults]
    for uri, j in followers:
        j.configure(**policy_for(uri, j.name, DEFAULTS))


def policy_for(uri: str, name: str, policy: Mapping[str, Any]) -> dict[str, Any]:
    """``policy`` with ``spool="auto"`` resolved for journal ``name`` over the store at ``uri``."""
    out = {k: policy[k] for k in _POLICY_KEYS if k in policy}
    if out.get("spool") == "auto":
        out["spool"] = spool_dir(uri, name)
    return out


def journal(store: ObjectStore | Callable[[], ObjectStore], uri: str, prefix: str, *, name: str,
            log: Any = None, transform: str | None = None, **policy: Any) -> Journal:
    """The process's journal ``name`` (key ``prefix``) over the store at ``uri``, made on first use.

    Without ``policy`` it follows :data:`DEFAULTS`; with one, that policy (on first use: later
    callers change it with :meth:`Journal.configure`). ``store`` may be a zero-argument callable so
    the store opens on the first write; the latest caller's ``store`` is the one written to (a store
    re-created under the same URI takes over).
    """
    key = (normalize_uri(uri), prefix)
    opener = store if callable(store) and not isinstance(store, ObjectStore) else (lambda s=store: s)
    with _REGISTRY_LOCK:
        found = _REGISTRY.get(key)
        if found is None:
            found = _REGISTRY[key] = Journal(opener, prefix, name=name, log=log, transform=transform,
                                             **policy_for(uri, name, {**DEFAULTS, **policy}))
            found.follows_defaults = not policy
            found.uri = uri
        else:
            found._store = opener
            if log is not None:
                found.log = log
    return found


def journals(uri: str | None = None) -> list[Journal]:
    """The process's journals (over the store at ``uri`` only, if given)."""
    key = normalize_uri(uri) if uri is not None else None
    with _REGISTRY_LOCK:
        return [j for (u, _p), j in _REGISTRY.items() if key is None or u == key]


def forget(uri: str) -> None:
    """Drop the process's journals over the store at ``uri`` (a temporary store gone for good), unwritten
    records included."""
    key = normalize_uri(uri)
    with _REGISTRY_LOCK:
        for k in [k for k in _REGISTRY if k[0] == key]:
            _FLUSHER.journals.discard(_REGISTRY.pop(k))


def normalize_uri(uri: str) -> str:
    """``uri`` as the store it opens names itself (``file://rel`` -> ``file:///abs/rel``, no trailing slash)."""
    if uri.startswith("file://"):
        return "file://" + os.path.abspath(os.path.expanduser(uri[len("file://"):]))
    return uri.rstrip("/")
