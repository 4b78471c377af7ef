"""The cost ledger: invocation records, buffered in memory and written as new NDJSON objects.

Layout in the app's home store::

    _nubes/ledger/day=YYYY-MM-DD/<HHMMSSffffff>-<uuid4 hex>.ndjson   (one JSON record per line)

**Never overwritten.** Each flush writes *new* objects with ``if_none_match=True``; keys carry a
random UUID, so concurrent invocations, threads and instances never touch each other's objects and
no record is lost to a last-writer-wins race.

**Never silently lost.** A flush takes the buffered records and turns them into batches (one per
day), each with its key fixed once. A batch whose ``put`` fails stays pending with the *same key
and bytes*, is retried (at the next flush and by a retry timer with backoff) and every failure is
logged. Because the retry reuses the key with ``if_none_match``, a put that succeeded but whose
answer was lost comes back as ``PreconditionFailed`` on retry and counts as written: a retried
batch is never stored twice. The buffer is bounded (``max_buffer`` records): past it the oldest
records are dropped *with an error log line*, and every record also lives in its invocation's log
line, so the ledger can be rebuilt from logs.

**When it flushes** (``flush`` setting):

* ``background`` — a daemon thread flushes every ``flush_interval_s`` or as soon as ``batch_size``
  records wait; at interpreter exit the rest is flushed. Nothing on the request path but an append.
  Default for local runs (``nubes serve``, ``nubes invoke``, the test client).
* ``invocation`` — a synchronous flush at the end of every invocation, after the response is
  computed (its headers are final) and before the adapter hands it back. Default under local
  emulation of AWS, GCP and Azure, so the ledger is exact the moment an invocation returns. It
  costs one PUT per invocation and that PUT's latency (``bench/metering_overhead.py``).
* ``batch`` — default on the real clouds. Once the handler returns, Lambda freezes the process
  and Cloud Run / Azure throttle it, so a background thread cannot be trusted; instead the end of
  an invocation writes the buffer synchronously only when ``cloud_batch_size`` records wait or the
  oldest has waited ``cloud_max_age_s``. One PUT per 20 invocations instead of one each (S3 PUTs
  cost $5 per million, more than Lambda's $0.20 per million requests), at the price that an
  instance reclaimed in between takes its last few records with it — they remain in the
  invocations' log lines, from which the ledger can be rebuilt.
* ``off`` — records only go to headers and the log line.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from nubes.storage.current import CURRENT_IO
from nubes.errors import PreconditionFailed

if TYPE_CHECKING:
    from nubes.core.logs import BoundLog
    from nubes.storage.base import ObjectStore

PREFIX = "_nubes/ledger/"
RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def key_for(day: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{PREFIX}day={day}/{now:%H%M%S%f}-{uuid.uuid4().hex}.ndjson"


@dataclass
class Batch:
    key: str
    payload: bytes
    count: int
    attempts: int = 0


class Ledger:
    """Buffered, append-only ledger over ``store()`` (called on each flush, so the home store opens lazily)."""

    def __init__(
        self,
        store: Callable[[], ObjectStore],
        log: BoundLog,
        *,
        background: bool,
        batch_size: int = 100,
        interval: float = 1.0,
        max_buffer: int = 100_000,
    ) -> None:
        self._store = store
        self.log = log
        self.background = background
        self.batch_size = batch_size
        self.interval = interval
        self.max_buffer = max_buffer
        self._buffer: list[dict[str, Any]] = []
        self._pending: list[Batch] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_timer: threading.Timer | None = None
        self.written = 0  # records stored
        self.dropped = 0  # records dropped past max_buffer (each drop is logged)
        self.failures = 0  # failed put attempts
        self._failing = 0  # consecutive failed flushes
        self._retry_at = 0.0
        self._oldest = 0.0  # monotonic time the oldest buffered record arrived
        self._flush_lock = threading.Lock()
        _LEDGERS.add(self)

    # -- the request path ------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> None:
        with self._lock:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(record)
            over = len(self._buffer) + sum(b.count for b in self._pending) - self.max_buffer
            if over > 0:
                lost = self._buffer[:over]
                del self._buffer[:over]
                self.dropped += len(lost)
            else:
                lost = []
            size = len(self._buffer)
        if lost:
            self.log.error("metering ledger buffer full: records dropped from the ledger (still in their log lines)",
                           dropped=len(lost), request_ids=[r.get("request_id") for r in lost][:20])
        if self.background:
            if self._thread is None or not self._thread.is_alive():
                self._start()
            if size >= self.batch_size:
                self._wake.set()

    def due(self, batch_size: int, max_age_s: float) -> bool:
        """True when ``batch_size`` records wait, the oldest has waited ``max_age_s``, or a retry is due."""
        with self._lock:
            waiting = len(self._buffer)
            oldest = self._oldest
            pending = bool(self._pending)
        if pending:
            return time.monotonic() >= self._retry_at
        return waiting >= batch_size or (waiting > 0 and time.monotonic() - oldest >= max_age_s)

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._buffer) + sum(b.count for b in self._pending)

    # -- flushing --------------------------------------------------------------------------------
    def flush(self, force: bool = False) -> bool:
        """Write every buffered record; True if nothing is left pending. Never raises.

        After a failed write the store is left alone until its backoff has passed (records keep
        accumulating in the buffer), so a broken store costs one attempt and one log line per
        backoff period, not one per invocation; ``force`` tries at once.
        """
        if not force and self._failing and time.monotonic() < self._retry_at:
            return False
        # One flush at a time: a caller that finds the buffer empty because another flush holds its
        # batches must wait for that flush's outcome, not report success before the write landed.
        with self._flush_lock:
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        with self._lock:
            records, self._buffer = self._buffer, []
            batches = self._pending + _batches(records)
            self._pending = []
        if not batches:
            return True
        failed: list[Batch] = []
        for batch in batches:
            if not self._put(batch):
                failed.append(batch)
        if failed:
            with self._lock:
                self._pending = failed + self._pending
                self._failing += 1
                delay = RETRY_BACKOFF_S[min(self._failing - 1, len(RETRY_BACKOFF_S) - 1)]
                self._retry_at = time.monotonic() + delay
            self._schedule_retry(delay)
            return False
        self._failing = 0
        return True

    def _put(self, batch: Batch) -> bool:
        batch.attempts += 1
        token = CURRENT_IO.set(None)  # the ledger's own writes are not the invocation's storage operations
        try:
            store = self._store()
            store.put(batch.key, batch.payload, content_type="application/x-ndjson", if_none_match=True)
        except PreconditionFailed:
            pass  # an earlier attempt was stored though its answer was lost: same key, same bytes
        except Exception as exc:  # noqa: BLE001 - the ledger never fails an invocation
            self.failures += 1
            self.log.warning("metering ledger flush failed; records kept and retried", key=batch.key,
                             records=batch.count, attempt=batch.attempts, error=f"{type(exc).__name__}: {exc}")
            return False
        finally:
            CURRENT_IO.reset(token)
        self.written += batch.count
        if batch.attempts > 1:
            self.log.info("metering ledger flush succeeded after retry", key=batch.key, records=batch.count,
                          attempt=batch.attempts)
        return True

    def _schedule_retry(self, delay: float) -> None:
        with self._lock:
            if self._retry_timer is not None and self._retry_timer.is_alive():
                return
            timer = threading.Timer(delay, self._retry)
            timer.daemon = True
            timer.name = "nubes-ledger-retry"
            self._retry_timer = timer
        timer.start()

    def _retry(self) -> None:
        with self._lock:
            self._retry_timer = None
        self.flush(force=True)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            ref = weakref.ref(self)
            self._thread = threading.Thread(target=_run, args=(ref, self._wake, self.interval),
                                            name="nubes-ledger-flush", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> bool:
        """Flush what is buffered, retrying failures until ``timeout``; True if everything was written."""
        deadline = time.monotonic() + timeout
        while True:
            if self.flush(force=True):
                return True
            if time.monotonic() >= deadline:
                with self._lock:
                    left = len(self._buffer) + sum(b.count for b in self._pending)
                self.log.error("metering ledger: records could not be written before exit (still in their log lines)",
                               records=left)
                return False
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _run(ref: weakref.ref[Ledger], wake: threading.Event, interval: float) -> None:
    while True:
        wake.wait(interval)
        wake.clear()
        ledger = ref()
        if ledger is None:
            return
        if ledger.buffered:
            ledger.flush()
        del ledger


def _batches(records: list[dict[str, Any]]) -> list[Batch]:
    by_day: dict[str, list[bytes]] = {}
    for record in records:
        day = str(record.get("day") or str(record.get("start_time", ""))[:10] or "unknown")
        by_day.setdefault(day, []).append(json.dumps(record, separators=(",", ":"), default=str).encode())
    return [Batch(key_for(day), b"\n".join(lines) + b"\n", len(lines)) for day, lines in sorted(by_day.items())]


_LEDGERS: weakref.WeakSet[Ledger] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for ledger in list(_LEDGERS):  # one forced attempt each: exit is not held up by a broken store
        if ledger.buffered:
            ledger.close(timeout=0.0)


# -- reading ---------------------------------------------------------------------------------------
def keys(store: ObjectStore, since: str | None = None, until: str | None = None) -> list[str]:
    """Ledger object keys, oldest first, for days in ``[since, until]`` (``YYYY-MM-DD`` prefixes)."""
    out = []
    for info in store.list(PREFIX):
        key = info.key
        if not key.endswith(".ndjson"):
            continue
        day = key[len(PREFIX) + 4 : len(PREFIX) + 14]
        if since and day < since[:10]:
            continue
        if until and day > until[:10]:
            continue
        out.append(key)
    return out


def records(store: ObjectStore, since: str | None = None, until: str | None = None) -> Iterable[dict[str, Any]]:
    """Every record in the ledger (plain Python; bills use DuckDB instead)."""
    for key in keys(store, since, until):
        for line in store.get(key).splitlines():
            if line.strip():
                yield json.loads(line)
