"""A local Azure Blob server (Azurite) on 127.0.0.1 for tests and benchmarks, started and stopped by PID.

::

    with Azurite() as azurite, azurite.environment():
        azurite.create_container("container")
        store = nubes.storage.open("az://container/prefix")

Azurite is the npm package pinned in the repo's ``package.json``; install it with ``npm ci`` in the
repo root. Its ``node_modules/.bin/azurite-blob`` script is run directly (``npx`` would leave an
orphan ``node`` process behind). Data persists in ``location`` on disk, so ``stop(); start()``
(same port, same location) keeps containers and blobs: that is how an outage is simulated.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from nubes.testing.servers.process import ServerProcess

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


class Azurite(ServerProcess):
    """One ``azurite-blob`` process on ``127.0.0.1:port`` storing its data in ``location``, managed as
    :class:`ServerProcess` describes.

    Ready once the blob endpoint answers HTTP. On SIGTERM Azurite flushes its metadata to disk, so
    :meth:`restart` and :meth:`outage` bring the same data back on the same endpoint. A ``location``
    created here (the default) is deleted by :meth:`close` / leaving the ``with`` block.
    """

    name = "Azurite"
    ambient = ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCOUNT_URL")

    def __init__(
        self,
        port: int | None = None,
        *,
        location: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(port, log_path=log_path)
        self._own_location = location is None
        self.location = Path(location) if location is not None else Path(tempfile.mkdtemp(prefix="nubes-azurite-"))

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

    def command(self) -> list[str]:
        """The ``azurite-blob`` command line; creates ``location`` if it is missing."""
        executable = azurite_executable()
        self.location.mkdir(parents=True, exist_ok=True)
        return [
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
        ]

    def env(self) -> dict[str, str]:
        """The standard Azure SDK variable that points azure-storage-blob (and the az CLI) here."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def _probe(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}?comp=list", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer (an unsigned request gets 403) means it is serving

    def create_container(self, name: str) -> None:
        """Create container ``name`` on this server (no-op if it exists). Imports azure-storage-blob."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(self.connection_string) as service, contextlib.suppress(ResourceExistsError):
            service.create_container(name)

    def close(self) -> None:
        """Stop the server and delete its location if this object created it."""
        self.stop()
        if self._own_location:
            shutil.rmtree(self.location, ignore_errors=True)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} location={self.location}>"


class AzuriteQueue(Azurite):
    """Azurite's queue service (``azurite-queue``, beside ``azurite-blob``) on ``127.0.0.1:port``: the
    Storage queues Azure Functions' queue triggers read (jobs, ``on_message``)."""

    name = "Azurite queue"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
                f"QueueEndpoint={self.endpoint};")

    def command(self) -> list[str]:
        executable = azurite_executable().with_name(azurite_executable().name.replace("blob", "queue"))
        self.location.mkdir(parents=True, exist_ok=True)
        return [str(executable), "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--location", str(self.location),
                "--queueHost", self.host, "--queuePort", str(self.port)]

    def env(self) -> dict[str, str]:
        return {"AzureWebJobsStorage": self.connection_string}


__all__ = ["DEV_ACCOUNT", "DEV_ACCOUNT_KEY", "Azurite", "AzuriteQueue", "azurite_executable", "find_azurite"]
