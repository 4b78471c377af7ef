"""A local Google Cloud Storage emulator (PyPI ``gcp-storage-emulator``) on 127.0.0.1.

``GCSEmulator`` runs the emulator's ``start --host 127.0.0.1 --port PORT --in-memory`` (or, given
``data_dir``, ``--data-dir DIR start ...``, which keeps buckets and objects across restarts) as a
:class:`~nubes.testing.servers.ServerProcess`: its own process group, stopped by that group (no orphans). It launches the
emulator's own ``main`` with two performance changes that do not touch its API (see ``_LAUNCH``).
Point the SDK at it with :meth:`GCSEmulator.env`: ``STORAGE_EMULATOR_HOST`` is the SDK's own
variable; with it set, ``google.cloud.storage.Client()`` uses anonymous credentials and needs no
project.

What the emulator does and does not do (gcp-storage-emulator 2026.7, checked by
``tests/storage/test_gcs_store.py``): simple, multipart, resumable and batch requests and byte ranges
work; object generations are unique per write. It does **not** enforce ``ifGenerationMatch`` (or any
other precondition) and does not page listings (``maxResults``/``pageToken`` are ignored, everything
comes back in one page). In memory, a restart forgets every bucket and object.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from nubes.testing.servers.process import ServerProcess

# The emulator's own entry point (what the ``gcp-storage-emulator`` script runs), with changes that
# leave its API behaviour alone and only make it keep up with the contract suite:
# * its single-threaded ``http.server.HTTPServer`` listens with the socketserver default backlog of
#   5, so a burst of concurrent clients gets SYNs dropped and multi-second connect stalls; a deeper
#   listen queue only lets connections wait their turn (requests are still served one at a time);
# * after every write it re-serialises its index of *all* objects as indented JSON (quadratic:
#   ~45 s for the contract's 1,537-key listing test). Here the index is written once, when the
#   server stops on SIGTERM (object contents are still written at once). After a SIGKILL the index
#   of a ``data_dir`` emulator is lost, so stop() sends SIGTERM first.
_LAUNCH = """
import signal, sys, http.server
http.server.HTTPServer.request_queue_size = 1024
from gcp_storage_emulator.storage import Storage
_write_index, _dirty = Storage._write_config_to_file, {}
Storage._write_config_to_file = lambda self: _dirty.setdefault(id(self), self)
def _interrupt(signum, frame):
    raise KeyboardInterrupt  # Server.run() stops the HTTP thread cleanly on KeyboardInterrupt
signal.signal(signal.SIGTERM, _interrupt)
from gcp_storage_emulator.__main__ import main
try:
    main(sys.argv[1:])
except KeyboardInterrupt:
    pass
finally:
    for storage in _dirty.values():
        _write_index(storage)
"""


class GCSEmulator(ServerProcess):
    """One emulator process on ``127.0.0.1:port``, managed as :class:`ServerProcess` describes.

    ``data_dir`` keeps state on disk across restarts (default: in memory, lost at every stop).
    ``log`` is a file path for the server's output (default: discarded). ``default_bucket`` is created
    by the server itself at every start. Ready once its port accepts connections.
    """

    name = "gcp-storage-emulator"
    ambient = (
        "API_ENDPOINT_OVERRIDE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_UNIVERSE_DOMAIN",
        "GCLOUD_PROJECT",
    )

    def __init__(
        self,
        port: int | None = None,
        *,
        default_bucket: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        log: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(port, log_path=log, startup_timeout=startup_timeout)
        self.default_bucket = default_bucket
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None

    @property
    def log(self) -> Path | None:
        """The log file given as ``log`` (the same as ``log_path``)."""
        return self.log_path

    def command(self) -> list[str]:
        args = [sys.executable, "-c", _LAUNCH]
        if self.data_dir is not None:
            args += ["--data-dir", str(self.data_dir), "start"]
        else:
            args += ["start", "--in-memory"]
        args += ["--host", self.host, "--port", str(self.port)]
        if self.log_path is None:
            args.append("--quiet")
        if self.default_bucket:
            args += ["--default-bucket", self.default_bucket]
        return args

    def env(self) -> dict[str, str]:
        """The SDK's standard variables pointing a client at this emulator."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` through the JSON API (no SDK needed); an existing bucket is fine.

        Soft delete is off (retention 0), so deleted and overwritten objects do not pile up.
        """
        request = urllib.request.Request(
            f"{self.endpoint}/storage/v1/b?project=nubes-test",
            data=json.dumps({"name": name, "softDeletePolicy": {"retentionDurationSeconds": "0"}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise


__all__ = ["GCSEmulator"]
