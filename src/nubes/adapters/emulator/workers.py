"""Worker processes: one function instance each, serving one invocation at a time, in a pool.

A worker is ``python -c '...workers.main()' IN OUT``: a fresh interpreter (so every
worker start is a real cold start: imports, app load, the adapter's first call) that reads
frames from pipe ``IN`` and answers on pipe ``OUT``. A frame is an 8-byte header (meta length,
body length, big-endian) then the meta JSON and the raw body. The first frame configures the
worker (app spec, provider, settings); it answers ``{"ok": true, "init_ms": ...}`` once the app is
loaded and wrapped, then one answer per invocation. The worker's stdout goes to stderr, so prints
in user code cannot corrupt the protocol; it exits when the parent's pipe closes or the parent
process dies.

The parent side, :class:`Worker`, waits for an answer up to a deadline while sampling the
worker's resident memory; on a timeout or a memory overrun it kills the worker (the next
invocation starts a new one, a cold start). ``RLIMIT_AS`` is not used: Python with duckdb and
polars maps ~1.4 GB of address space for ~115 MB resident, so an address-space cap at a function's
memory size would fail imports; the resident set is what the providers meter.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any, BinaryIO

_HEADER = struct.Struct(">II")


def write_frame(out: BinaryIO, meta: dict[str, Any], body: bytes = b"") -> None:
    data = json.dumps(meta, separators=(",", ":"), default=str).encode("utf-8")
    out.write(_HEADER.pack(len(data), len(body)))
    out.write(data)
    if body:
        out.write(body)
    out.flush()


def _read_exact(src: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = src.read(left)
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(src: BinaryIO) -> tuple[dict[str, Any], bytes]:
    meta_len, body_len = _HEADER.unpack(_read_exact(src, _HEADER.size))
    meta = json.loads(_read_exact(src, meta_len))
    return meta, _read_exact(src, body_len) if body_len else b""


# -- the worker process --------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Exit when the parent process goes away, even in the middle of a handler.

    (``PR_SET_PDEATHSIG`` is not usable: it fires when the parent *thread* that started the worker
    ends, and workers are started from short-lived request threads.)
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="nubes-worker-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    fd_in, fd_out = int(args[0]), int(args[1])
    _die_with_parent()
    os.dup2(2, 1)  # user prints go to the log stream, not into the protocol
    src = os.fdopen(fd_in, "rb", buffering=1 << 16)
    out = os.fdopen(fd_out, "wb", buffering=1 << 16)
    config, _ = read_frame(src)
    started = time.perf_counter()
    try:
        from nubes.adapters.emulator.targets import make_target
        from nubes.core.job_runs import collect
        from nubes.core.loader import load_app

        target = make_target(config["provider"], load_app(config["spec"]), config["settings"])
    except BaseException as exc:
        write_frame(out, {"ok": False, "error_type": "Runtime.InitError", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    write_frame(out, {"ok": True, "init_ms": round((time.perf_counter() - started) * 1000, 1), "pid": os.getpid()})
    while True:
        try:
            meta, body = read_frame(src)
        except EOFError:
            return 0
        try:
            with collect() as sent:  # the jobs this invocation dispatched go back to the emulator with the reply
                reply, data = target.invoke(meta, body)
            if sent:
                reply["jobs"] = sent
        except BaseException as exc:
            reply, data = {"ok": False, "error_type": type(exc).__name__, "error": str(exc)}, b""
        write_frame(out, reply, data)


# -- the parent side -----------------------------------------------------------------------------
class WorkerFailed(Exception):
    """The worker could not answer: ``kind`` is timeout, out_of_memory, crash or init."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MB (Linux /proc), None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return None


def _pss_mb(pid: int) -> float | None:
    """Proportional set size of ``pid`` in MB: shared pages divided among their sharers (so a forked
    child's copy-on-write pages are not counted twice)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux: /proc/PID/task/TID/children), children first."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    kids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            queue.extend(kids)
    return found


def tree_memory_mb(pid: int) -> float | None:
    """Memory of ``pid`` and every process it started: the worker's RSS alone when it has no children
    (the common case, one read), else the sum of the tree's proportional set sizes."""
    children = descendants(pid)
    if not children:
        return rss_mb(pid)
    total = 0.0
    for each in (pid, *children):
        size = _pss_mb(each)
        if size is None:
            size = rss_mb(each)
        total += size or 0.0
    return total


_ENTRY = "import sys; from nubes.adapters.emulator.workers import main; sys.exit(main())"


class Worker:
    """One worker process; :meth:`call` runs one invocation in it."""

    SAMPLE_S = 0.02

    def __init__(self, spec: str, provider: str, settings: dict[str, Any], env: dict[str, str], *,
                 init_timeout: float = 60.0) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        child_env = {**os.environ, **env}
        try:
            stdout: Any = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            stdout = None
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ENTRY, str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=stdout, env=child_env,
            start_new_session=os.name == "posix",  # its own process group: a kill reaches what the handler started
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.pid = self.proc.pid
        self._out = os.fdopen(to_child_w, "wb")
        self._in = os.fdopen(from_child_r, "rb", buffering=0)
        self._fd = from_child_r
        self.invocations = 0
        self.max_rss_mb = 0.0
        self.alive = True
        started = time.perf_counter()
        try:
            write_frame(self._out, {"spec": spec, "provider": provider, "settings": settings})
            meta, _ = self._wait(time.monotonic() + init_timeout, None)
        except WorkerFailed:
            self.kill()
            raise
        except OSError as exc:
            self.kill()
            raise WorkerFailed("init", str(exc)) from None
        if not meta.get("ok"):
            self.kill()
            raise WorkerFailed("init", str(meta.get("error")))
        self.init_ms = float(meta.get("init_ms") or 0.0)
        self.start_ms = round((time.perf_counter() - started) * 1000, 1)

    def _wait(self, deadline: float, memory_mb: int | None) -> tuple[dict[str, Any], bytes]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerFailed("timeout")
            ready, _, _ = select.select([self._fd], [], [], min(self.SAMPLE_S, left))
            if ready:
                try:
                    return read_frame(self._in)
                except (EOFError, OSError, ValueError) as exc:
                    code = self.proc.poll()
                    raise WorkerFailed("crash", f"worker exited ({code})" if code is not None else str(exc)) from None
            rss = tree_memory_mb(self.pid)
            if rss is not None:
                self.max_rss_mb = max(self.max_rss_mb, rss)
                if memory_mb is not None and rss > memory_mb:
                    raise WorkerFailed("out_of_memory", f"{rss:.0f} MB resident over {memory_mb} MB")
            if self.proc.poll() is not None:
                raise WorkerFailed("crash", f"worker exited ({self.proc.returncode})")

    def call(self, meta: dict[str, Any], body: bytes, *, deadline: float, memory_mb: int | None) -> tuple[dict[str, Any], bytes]:
        """Send one invocation and wait for its answer until ``deadline`` (monotonic).

        Raises :class:`WorkerFailed` (the worker is then dead or must be killed by the caller).
        """
        self.invocations += 1
        try:
            write_frame(self._out, meta, body)
        except OSError as exc:
            raise WorkerFailed("crash", str(exc)) from None
        return self._wait(deadline, memory_mb)

    def kill(self) -> None:
        """Kill the worker and every process it started (its process group, and any descendant that
        left the group), then reap the worker."""
        self.alive = False
        if self.proc.poll() is None:
            tree = descendants(self.pid)  # before the kill: orphans are re-parented and lost from view
            if os.name == "posix":
                with contextlib.suppress(OSError):
                    os.killpg(self.pid, signal.SIGKILL)
            self.proc.kill()
            for pid in tree:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for f in (self._out, self._in):
            with contextlib.suppress(OSError):
                f.close()


class Pool:
    """Up to ``size`` workers; :meth:`acquire` hands out an idle one, or starts one (a cold start)
    while under ``size``, or waits for one to be released."""

    def __init__(self, spec: str, provider: str, settings: dict[str, Any], env: dict[str, str], size: int) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        self.spec, self.provider, self.settings, self.env, self.size = spec, provider, settings, env, size
        self._idle: list[Worker] = []
        self._all: set[Worker] = set()
        self._count = 0  # live workers plus workers being started
        self._cond = threading.Condition()
        self._closed = False

    def acquire(self, timeout: float | None = None) -> tuple[Worker, bool]:
        """``(worker, cold)``: ``cold`` when the worker was started for this invocation."""
        end = time.monotonic() + timeout if timeout is not None else None
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the emulator is closed")
                if self._idle:
                    return self._idle.pop(), False
                if self._count < self.size:
                    self._count += 1
                    break
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("no worker became free")
                self._cond.wait(left)
        try:
            worker = Worker(self.spec, self.provider, self.settings, self.env)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._all.add(worker)
            if self._closed:
                worker.kill()
                raise RuntimeError("the emulator is closed")
        return worker, True

    def release(self, worker: Worker) -> None:
        with self._cond:
            if worker.alive and not self._closed:
                self._idle.append(worker)
            else:
                self._count -= 1
                self._all.discard(worker)
                if worker.alive:
                    worker.kill()
            self._cond.notify()

    def discard(self, worker: Worker) -> None:
        worker.kill()
        with self._cond:
            self._count -= 1
            self._all.discard(worker)
            self._cond.notify()

    @property
    def workers(self) -> int:
        return self._count

    def close(self) -> None:
        with self._cond:
            self._closed = True
            everyone, self._idle = list(self._all), []
            self._all.clear()
            self._cond.notify_all()
        for worker in everyone:
            worker.kill()


if __name__ == "__main__":
    sys.exit(main())
