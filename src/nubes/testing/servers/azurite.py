"""A local Azure Blob server (Azurite) on 127.0.0.1 for tests and benchmarks, started and stopped by PID.

::

    with Azurite() as azurite:
        os.environ.update(azurite.env())     # or monkeypatch.setenv for each item
        store = nubes.storage.open("az://container/prefix")

Azurite is the npm package pinned in the repo's ``package.json``; install it with ``npm ci`` in the
repo root. Its ``node_modules/.bin/azurite-blob`` script is run directly (``npx`` would leave an
orphan ``node`` process behind). Data persists in ``location`` on disk, so ``stop(); start()``
(same port, same location) keeps containers and blobs: that is how an outage is simulated.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO

from nubes.testing.servers import free_port, port_open, wait_until

DEV_ACCOUNT = "devstoreaccount1"
# The well-known, public key of Azurite's development account (not a secret).
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_BIN = Path("node_modules") / ".bin" / ("azurite-blob.cmd" if os.name == "nt" else "azurite-blob")


def find_azurite(start: str | os.PathLike[str] | None = None) -> Path | None:
    """``node_modules/.bin/azurite-blob`` found walking up from ``start`` (default: the working
    directory) and then from the installed ``nubes`` package; ``None`` if neither has it."""
    import nubes

    origins = [Path(start) if start is not None else Path.cwd(), Path(nubes.__file__).resolve().parent]
    for origin in origins:
        for folder in [origin.resolve(), *origin.resolve().parents]:
            candidate = folder / _BIN
            if candidate.exists():
                return candidate
    return None


def azurite_executable() -> Path:
    """The ``azurite-blob`` script, or FileNotFoundError saying how to install it."""
    found = find_azurite()
    if found is None:
        raise FileNotFoundError(
            "node_modules/.bin/azurite-blob not found (looked upwards from the working directory and from "
            "the nubes package); install Azurite with: npm ci   (in the repo root, needs Node.js >= 20)"
        )
    return found


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Last-resort cleanup: SIGKILL the process group started for ``proc`` (its own session)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


class Azurite:
    """One ``azurite-blob`` process on ``127.0.0.1:port`` storing its data in ``location``.

    ``start()`` returns once the blob endpoint answers HTTP; ``stop()`` sends SIGTERM to the process
    group it started (Azurite then flushes its metadata to disk and exits), kills it after
    ``timeout`` and waits, so nothing is orphaned. Port and location are chosen once: ``restart()``
    and :meth:`outage` bring the same data back on the same endpoint. A ``location`` created here
    (the default) is deleted by ``close()`` / leaving the ``with`` block.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        location: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._own_location = location is None
        self.location = Path(location) if location is not None else Path(tempfile.mkdtemp(prefix="nubes-azurite-"))
        self.log_path = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._finalizer: weakref.finalize | None = None  # type: ignore[type-arg]

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT/devstoreaccount1``, the dev account's blob endpoint."""
        return f"http://{self.host}:{self.port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """The standard Azure SDK variable that points azure-storage-blob (and the az CLI) here."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def start(self, *, timeout: float = 30.0) -> Azurite:
        """Start the server (no-op if running) and wait until it answers; raise TimeoutError if not."""
        if self.running:
            return self
        if port_open(self.port, self.host):
            raise RuntimeError(f"port {self.port} on {self.host} is already in use; cannot start Azurite")
        executable = azurite_executable()
        self.location.mkdir(parents=True, exist_ok=True)
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        out: IO[bytes] | int = self._log if self._log is not None else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [
                str(executable),
                "--silent",
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--location",
                str(self.location),
                "--blobHost",
                self.host,
                "--blobPort",
                str(self.port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if self._log is not None else subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() signals exactly that group
        )
        self._finalizer = weakref.finalize(self, _kill_group, self._proc)
        try:
            wait_until(self._ready, timeout=timeout, what=f"Azurite on {self.endpoint}")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"azurite-blob exited with code {self._proc.returncode} before answering")
        if not port_open(self.port, self.host):
            return False
        try:
            with urllib.request.urlopen(f"{self.endpoint}?comp=list", timeout=2):  # noqa: S310 - loopback
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer (an unsigned request gets 403) means it is serving

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM the process group this object started, wait (SIGKILL if it lingers), free the port."""
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
        if proc is not None:
            try:  # children of node, if any, die with the group
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        if proc is not None:
            wait_until(lambda: not port_open(self.port, self.host), timeout=timeout, what="Azurite port release")

    def restart(self, *, timeout: float = 30.0) -> Azurite:
        """Stop and start again on the same port and location (data survives)."""
        self.stop()
        return self.start(timeout=timeout)

    @contextmanager
    def outage(self) -> Iterator[None]:
        """Inside the block the server is down (connections refused); it is back, data intact, after."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def close(self) -> None:
        """Stop the server and delete its location if this object created it."""
        self.stop()
        if self._own_location:
            shutil.rmtree(self.location, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Azurite {self.endpoint} pid={self.pid} location={self.location}>"


__all__ = ["DEV_ACCOUNT", "DEV_ACCOUNT_KEY", "Azurite", "azurite_executable", "find_azurite"]
