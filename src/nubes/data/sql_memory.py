"""The SQL endpoint's memory bound: a cap on the process's data while sandboxed queries run.

DuckDB's ``memory_limit`` governs its buffer manager only (sorts, hash tables, aggregates, collected
results). The values a scalar function builds (``repeat('y', 1000000)`` over a 2,048-row vector,
``range(0, 30000000)`` as one list, ``lpad`` to 2 GB) and the Python objects a result becomes are
allocated outside it: measured, one such query grew the process by 1 to 12 GB whatever the
``memory_limit``. So while a query runs (execution, fetching, encoding), :func:`capped` lowers the
process's soft ``RLIMIT_DATA`` (its private writable memory: heap, anonymous mappings, malloc arenas):
an allocation past it fails, inside DuckDB (an ``OutOfMemoryException``; the connection stays usable) or
in Python (a ``MemoryError``), and the query ends with a problem answer instead of growing the process.

The limit is set from what the process really holds, not from its address space: malloc keeps memory a
finished query freed mapped (writable but no longer resident), and a limit of "current data + budget"
would let every hostile query ratchet the process up by its budget. So the limit is the resident
anonymous memory now, plus the writable memory that was not resident when the endpoint first ran
(libraries' data, thread stacks: measured once), plus the budget -- and never less than
:data:`FLOOR` above the current data, so a query can always start. The resident memory a query adds
is thus bounded by its budget (plus ``FLOOR`` right after other hostile queries), query after query.

The cap is process-wide: concurrent queries add their budgets, and the previous limit is restored when
the last one ends. While it is lowered it applies to every thread of the process (an unrelated
allocation that would cross it fails too, which can only happen while a query is using its whole
budget). Linux only (``/proc/self/status``); elsewhere :func:`capped` does nothing.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator

__all__ = ["FLOOR", "capped", "memory_status", "parse_size"]

#: New writable memory a query may always map, however much freed memory malloc keeps mapped.
FLOOR = 48 * 1024 * 1024
#: At most this much writable memory is taken as never resident (the rest may be malloc's free memory).
MAX_UNRESIDENT = 256 * 1024 * 1024
_UNITS = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*\Z")
_FIELDS = {"VmData": 1024, "RssAnon": 1024, "Threads": 1}


def parse_size(text: str) -> int:
    """Bytes in a DuckDB size setting (``'256MB'``, ``'1.5GiB'``, ``'512 MiB'``; kB/MB/GB are powers of 1000,
    KiB/MiB/GiB of 1024). Anything else is a ValueError naming the accepted forms."""
    match = _SIZE.match(text) if isinstance(text, str) else None
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"invalid memory size {text!r}; write e.g. '512MB' or '2GB' (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    size = int(float(match.group(1)) * unit)
    if size <= 0:
        raise ValueError(f"memory size {text!r} must be above zero")
    return size


def memory_status() -> dict[str, int] | None:
    """``VmData`` and ``RssAnon`` (bytes) and ``Threads`` of this process, or None where
    ``/proc/self/status`` cannot tell them (not Linux)."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                name, _, value = line.decode("ascii", "replace").partition(":")
                if name in _FIELDS:
                    found[name] = int(value.split()[0]) * _FIELDS[name]
    except (OSError, ValueError, IndexError):
        return None
    return found if len(found) == len(_FIELDS) else None


class _Cap:
    """The process's one data cap, shared by the queries running at the moment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.budgets = 0  # sum of the running queries' budgets
        self.base = 0  # the limit without budgets, fixed when the first of them started
        self.saved: tuple[int, int] | None = None  # RLIMIT_DATA before the first of them started
        self.unresident: int | None = None  # writable memory not resident when first measured
        self.threads = 0  # threads then
        self.stack = 8 * 1024 * 1024  # a thread's stack

    def _resident_base(self, status: dict[str, int]) -> int:
        """Resident anonymous memory now plus the writable memory that is never resident (measured once)."""
        import resource

        if self.unresident is None:
            self.unresident = min(MAX_UNRESIDENT, max(0, status["VmData"] - status["RssAnon"]))
            self.threads = status["Threads"]
            stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
            if 0 < stack < 1024**3:
                self.stack = stack
        return status["RssAnon"] + self.unresident + max(0, status["Threads"] - self.threads) * self.stack

    def _apply(self) -> None:
        import resource

        assert self.saved is not None
        soft, hard = self.saved
        limit = self.base + self.budgets
        for bound in (soft, hard):
            if bound != resource.RLIM_INFINITY:
                limit = min(limit, bound)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))

    def enter(self, budget: int) -> bool:
        with self.lock:
            try:
                import resource
            except ImportError:  # not a Unix
                return False
            if self.budgets == 0:
                status = memory_status()
                if status is None:
                    return False
                # limit: the resident base plus the budget, and at least FLOOR above the current data
                self.base = max(self._resident_base(status), status["VmData"] + FLOOR - budget)
                self.saved = resource.getrlimit(resource.RLIMIT_DATA)
            self.budgets += budget
            try:
                self._apply()
            except (OSError, ValueError):
                self.budgets -= budget
                return False
            return True

    def leave(self, budget: int) -> None:
        import resource

        with self.lock:
            self.budgets -= budget
            if self.budgets == 0:
                assert self.saved is not None
                resource.setrlimit(resource.RLIMIT_DATA, self.saved)
                self.saved = None
            else:
                self._apply()


_CAP = _Cap()


@contextlib.contextmanager
def capped(budget: int) -> Iterator[bool]:
    """Let the process's resident memory grow by at most about ``budget`` bytes (plus other running
    queries' budgets) inside the block; yields whether the cap is in force (False where it cannot be set)."""
    if budget <= 0:
        raise ValueError("a memory budget must be above zero")
    active = _CAP.enter(budget)
    try:
        yield active
    finally:
        if active:
            _CAP.leave(budget)
