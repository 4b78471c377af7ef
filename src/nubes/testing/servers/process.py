"""The process management the loopback servers share: :class:`ServerProcess` and port helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Self


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], bool], *, timeout: float = 30.0, what: str = "server") -> None:
    """Poll ``ready`` until it returns True; raise TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f} s")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _end_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM ``proc``'s process group, SIGKILL it after ``timeout`` s, reap ``proc``, then SIGKILL any
    process left in the group. ``proc`` must lead its own group (``start_new_session=True``)."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    _signal_group(proc.pid, signal.SIGKILL)


class ServerProcess:
    """One server child process on ``127.0.0.1:port`` in its own process group, restartable on that port.

    ``start()`` refuses a port already in use, launches :meth:`command` and returns once the port
    accepts connections and :meth:`_probe` is true (TimeoutError after ``startup_timeout`` s, a
    RuntimeError if the process exits first). ``stop()`` SIGTERMs the process group, SIGKILLs it
    after ``timeout`` s, reaps it and waits for the port to be free, so nothing is orphaned; a
    server dropped or left running at interpreter exit is ended the same way. The port is chosen
    once, so ``stop(); start()`` comes back on the same endpoint. Output goes to ``log_path``
    (appended) if given, else it is discarded. As a context manager: ``start()`` ... ``close()``.

    Subclasses supply :meth:`command` and :meth:`env`, and may refine :meth:`_probe`, ``name``
    (for messages) and ``ambient`` (variables :meth:`environment` removes).
    """

    host = "127.0.0.1"
    name = "server"
    ambient: tuple[str, ...] = ()
    """Environment variables that would point the SDK elsewhere if inherited from the shell."""

    def __init__(
        self,
        port: int | None = None,
        *,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- what a subclass supplies --------------------------------------------------------------
    def command(self) -> list[str]:
        """The command line that runs the server on ``self.host:self.port`` in the foreground."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The SDK's standard variables that point a client at this server."""
        raise NotImplementedError

    def _probe(self) -> bool:
        """Called once the port accepts connections: True when the server is ready to serve."""
        return True

    # -- process management --------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout: float | None = None) -> Self:
        """Start the server (a no-op if running) and wait until it is ready (see the class doc)."""
        if self.running:
            return self
        if port_open(self.port, self.host):
            raise RuntimeError(f"port {self.port} on {self.host} is already in use; cannot start {self.name}")
        args = self.command()
        out = self.log_path.open("ab") if self.log_path is not None else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a Ctrl-C misses it, stop() ends exactly it
            )
        finally:
            if not isinstance(out, int):
                out.close()  # the child holds its own copy
        self._finalizer = weakref.finalize(self, _end_group, self._proc, 5.0)
        try:
            wait_until(
                self._ready,
                timeout=self.startup_timeout if timeout is None else timeout,
                what=f"{self.name} on {self.endpoint}",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            see = f"; see {self.log_path}" if self.log_path is not None else ""
            raise RuntimeError(f"{self.name} exited with code {proc.returncode} before answering{see}")
        return port_open(self.port, self.host) and self._probe()

    def stop(self, *, timeout: float = 10.0) -> None:
        """End the process group this object started (a no-op if none) and wait until the port is free."""
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is None:
            return
        _end_group(proc, timeout)
        wait_until(lambda: not port_open(self.port, self.host), timeout=timeout, what=f"{self.name} port release")

    def restart(self, *, timeout: float | None = None) -> Self:
        """Stop and start again on the same port (what survives depends on the server)."""
        self.stop()
        return self.start(timeout=timeout)

    @contextmanager
    def outage(self) -> Iterator[None]:
        """Inside the block the server is down (connections refused); after it, it runs again on the same port."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextmanager
    def environment(self, **extra: str) -> Iterator[dict[str, str]]:
        """Inside the block ``os.environ`` has :meth:`env` and ``extra`` set and ``ambient`` removed;
        every variable touched is restored after. Yields the variables set."""
        values = {**self.env(), **extra}
        saved = {name: os.environ.get(name) for name in (*self.ambient, *values)}
        for name in self.ambient:
            os.environ.pop(name, None)
        os.environ.update(values)
        try:
            yield values
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def close(self) -> None:
        """Stop the server and release what this object holds (subclasses may add to this)."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.endpoint} pid={self.pid} {state}>"


__all__ = ["ServerProcess", "free_port", "port_open", "wait_until"]
