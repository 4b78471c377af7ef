"""Measuring what a block of work cost in storage: requests and bytes through one bridge."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nubes.storage.base import IOStats


@dataclass
class Measurement:
    """Storage requests and bytes caused through one bridge during a ``measure()`` block.

    Live while the block runs, frozen when it ends. ``bytes_read`` is what was fetched from
    storage (range-cache hits are not fetched and appear only in ``cache_hits``/``bytes_cached``).
    """

    ops: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    bytes_written: int = 0
    cache_hits: int = 0
    bytes_cached: int = 0
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        """Total storage requests (GET, HEAD, LIST, PUT, ...)."""
        return sum(self.ops.values())


class Meter:
    """Differences of a bridge's counters since the meter started (``sync`` brings them up to date first)."""

    def __init__(self, stats: IOStats, cache_counters: Callable[[], tuple[int, int]], sync: Callable[[], None]) -> None:
        self._stats = stats
        self._cache = cache_counters
        self._sync = sync
        sync()
        self._start = stats.snapshot()
        self._cache_start = cache_counters()
        self._t0 = time.perf_counter()
        self._frozen: Measurement | None = None

    def current(self) -> Measurement:
        if self._frozen is not None:
            return self._frozen
        self._sync()
        now = self._stats.snapshot()
        hits, cached = self._cache()
        ops = {k: v - self._start["ops"].get(k, 0) for k, v in now["ops"].items()}
        return Measurement(
            ops={k: v for k, v in ops.items() if v},
            bytes_read=now["bytes_read"] - self._start["bytes_read"],
            bytes_written=now["bytes_written"] - self._start["bytes_written"],
            cache_hits=hits - self._cache_start[0],
            bytes_cached=cached - self._cache_start[1],
            seconds=time.perf_counter() - self._t0,
        )

    def freeze(self) -> None:
        self._frozen = self.current()


class MeasurementHandle:
    """What ``with bridge.measure() as m`` yields: attributes of :class:`Measurement`, live until the block ends."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter

    def result(self) -> Measurement:
        return self._meter.current()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._meter.current(), name)

    def __repr__(self) -> str:
        return f"<MeasurementHandle {self._meter.current()!r}>"
