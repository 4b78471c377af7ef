"""The thread pool that runs an ASGI server's blocking handler calls (:class:`ThreadPool`).

nubes handlers are synchronous and may block (storage, DuckDB, models), so :mod:`nubes.core.asgi`
never calls them on the event loop; this pool runs them in threads and hands each result back to
the coroutine awaiting it, sized and scheduled for Python's GIL.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

DEFAULT_THREADS = 40


class ThreadPool:
    """At most ``size`` daemon threads running blocking calls for an event loop.

    :meth:`run` awaits ``fn(arg)`` computed in a thread. While calls are quick (under ``quick``
    seconds on average) and a thread is busy, a new call waits in a backlog that busy threads
    drain, instead of waking another thread: under the GIL a second thread adds no speed to quick
    Python calls, only context switches. Otherwise (slow, blocking calls, or nothing busy) it goes
    to the thread that became idle last, else to a new thread while there are fewer than ``size``.
    If the backlog makes no progress for ``stall`` seconds (a quick handler suddenly blocks), its
    calls are spread over idle and new threads at once. Results come back in batches: a thread
    wakes the loop only when no earlier result is still waiting. Lighter than ``run_in_executor``.
    """

    def __init__(self, size: int = DEFAULT_THREADS, name: str = "nubes-handler", *, quick: float = 0.001,
                 stall: float = 0.02) -> None:
        if size < 1:
            raise ValueError(f"a thread pool needs at least one thread, not {size}")
        self.size = size
        self.name = name
        self.quick = quick
        self.stall = stall
        self._idle: list[SimpleQueue[tuple[Any, ...] | None]] = []  # each idle thread's inbox, the last idle on top
        self._backlog: deque[tuple[Any, ...]] = deque()  # calls waiting for a thread
        self._done: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._lock = threading.Lock()
        self._threads = 0
        self._busy = 0  # threads running a call
        self._typical = 0.0  # moving average of call durations, seconds
        self._finished = 0  # calls finished, ever
        self._watching: object = None  # the loop a stall check is scheduled on (a closed loop drops it)
        self._generation = 0  # bumped by close(): threads of an earlier generation exit after their call
        self._waking = False  # a delivery is scheduled on the loop and has not started yet

    @property
    def threads(self) -> int:
        """How many threads the pool has started (and not closed)."""
        return self._threads

    async def run(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        job = (future, fn, arg)
        with self._lock:
            watch = False
            if self._busy and self._typical < self.quick:
                inbox, start = None, False
                self._backlog.append(job)
                watch, self._watching = self._watching is not loop, loop
            else:
                inbox = self._idle.pop() if self._idle else None
                start = inbox is None and self._threads < self.size
                if inbox is not None or start:
                    self._busy += 1
                    self._threads += start
                else:
                    self._backlog.append(job)
            finished = self._finished
        if inbox is not None:
            inbox.put(job)
        elif start:
            self._start(job)
        elif watch:
            loop.call_later(self.stall, self._check, finished)
        return await future

    def _check(self, finished: int) -> None:
        """On the loop, ``stall`` seconds after a call was queued behind busy threads: if none has
        finished since, spread the backlog over idle and new threads; else look again later."""
        handed: list[tuple[SimpleQueue[tuple[Any, ...] | None] | None, tuple[Any, ...]]] = []
        with self._lock:
            again = bool(self._backlog) and self._finished != finished
            self._watching = self._watching if again else None
            finished = self._finished
            while not again and self._backlog and (self._idle or self._threads < self.size):
                inbox = self._idle.pop() if self._idle else None
                self._threads += inbox is None
                self._busy += 1
                handed.append((inbox, self._backlog.popleft()))
        if again:
            import asyncio

            asyncio.get_running_loop().call_later(self.stall, self._check, finished)
        for inbox, job in handed:
            if inbox is not None:
                inbox.put(job)
            else:
                self._start(job)

    def _start(self, job: tuple[Any, ...]) -> None:
        threading.Thread(target=self._work, args=(job, self._generation), name=f"{self.name}-{self._threads}",
                         daemon=True).start()

    def _work(self, job: tuple[Any, ...] | None, generation: int) -> None:
        inbox: SimpleQueue[tuple[Any, ...] | None] = SimpleQueue()
        done, clock = self._done, time.perf_counter
        while job is not None:
            future, fn, arg = job
            started = clock()
            try:
                result, error = fn(arg), None
            except BaseException as exc:
                result, error = None, exc
            took = clock() - started
            done.append((future, result, error))
            with self._lock:
                self._typical += (took - self._typical) * 0.1
                self._finished += 1
                current = generation == self._generation
                job = self._backlog.popleft() if self._backlog and current else None
                if job is None and current:
                    self._busy -= 1
                    self._idle.append(inbox)
                wake, self._waking = not self._waking, True
            if wake:
                try:
                    future.get_loop().call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    with self._lock:
                        self._waking = False
            if job is None and current:
                job = inbox.get()

    def _deliver(self) -> None:
        """On a loop: hand every finished result to its awaiting coroutine (forwarding those of
        another loop, should two servers share the pool)."""
        import asyncio

        here = asyncio.get_running_loop()
        with self._lock:
            self._waking = False
        done = self._done
        while done:
            future, result, error = done.popleft()
            owner = future.get_loop()
            if owner is here:
                _settle(future, result, error)
            else:
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                    owner.call_soon_threadsafe(_settle, future, result, error)

    def close(self) -> None:
        """Let every thread finish its current call and exit (calls still in the backlog are dropped)."""
        with self._lock:
            idle, self._idle = self._idle, []
            dropped = list(self._backlog)
            self._backlog.clear()
            self._threads = self._busy = 0
            self._generation += 1
        for inbox in idle:
            inbox.put(None)
        for future, _, _ in dropped:  # their callers get an error rather than waiting forever
            with contextlib.suppress(RuntimeError):  # that loop is closed already
                future.get_loop().call_soon_threadsafe(_fail, future)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled: the client went away
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _fail(future: asyncio.Future[Any]) -> None:
    _settle(future, None, RuntimeError("the handler thread pool was closed before this call ran"))
