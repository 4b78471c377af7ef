"""A local S3 (moto) server on 127.0.0.1 for tests and benchmarks, started and stopped by PID.

::

    with MotoServer() as moto:
        os.environ.update(moto.env())        # or monkeypatch.setenv for each item
        store = nubes.storage.open("s3://bucket/prefix")

moto keeps everything in memory: a stopped and restarted server has no buckets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from nubes.testing.servers import free_port, port_open, wait_until

DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"
DEFAULT_REGION = "us-east-1"


def _moto_executable() -> str:
    """The ``moto_server`` script next to the running interpreter (the venv's bin dir), else on PATH."""
    beside = Path(sys.executable).parent / ("moto_server.exe" if os.name == "nt" else "moto_server")
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if found is None:
        raise FileNotFoundError("moto_server not found; install it with: pip install 'moto[server]'")
    return found


class MotoServer:
    """One ``moto_server`` process on ``127.0.0.1:port``.

    ``start()`` returns once the server answers ``GET /moto-api/``; ``stop()`` terminates exactly
    the process it started (kill after ``timeout``) and waits for it, so nothing is orphaned.
    The port is chosen once, so ``stop(); start()`` restarts on the same endpoint. Server output
    goes to ``log_path`` if given, else it is discarded.
    """

    def __init__(self, port: int | None = None, *, log_path: str | os.PathLike[str] | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_path = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``, the value for ``AWS_ENDPOINT_URL``."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """The standard AWS SDK variables that point boto3 (and the AWS CLI) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
            "AWS_DEFAULT_REGION": DEFAULT_REGION,
        }

    def start(self, *, timeout: float = 30.0) -> MotoServer:
        """Start the server (no-op if running) and wait until it answers; raise TimeoutError if not."""
        if self.running:
            return self
        if port_open(self.port, self.host):
            raise RuntimeError(f"port {self.port} on {self.host} is already in use; cannot start moto_server")
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        out: IO[bytes] | int = self._log if self._log is not None else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [_moto_executable(), "-H", self.host, "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if self._log is not None else subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the test run does not hit it before stop()
        )
        try:
            wait_until(self._ready, timeout=timeout, what=f"moto_server on {self.endpoint}")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {self._proc.returncode} before answering")
        if not port_open(self.port, self.host):
            return False
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2) as resp:  # noqa: S310 - loopback
            return bool(resp.status == 200)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Terminate the process this object started and wait for it (kill if it lingers)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        if proc is not None:
            wait_until(lambda: not port_open(self.port, self.host), timeout=timeout, what="moto_server port release")

    def client(self) -> Any:
        """A boto3 S3 client for this server, whatever the environment says. Imports boto3."""
        import boto3  # only the S3 tests need it; importing nubes.testing must not

        env = self.env()
        return boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` on this server (no-op if it exists)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        finally:
            client.close()

    @contextmanager
    def outage(self, keep: Mapping[str, str] | None = None) -> Iterator[None]:
        """Inside the block the server is down; after it, it runs again on the same port.

        moto forgets everything when stopped, unlike S3 through a network outage. For each
        ``bucket: prefix`` in ``keep`` the objects under that prefix (body and content type) are
        copied out before and written back after, the bucket re-created, so a test can check that
        data written before the outage is readable after it. Single-part ETags (MD5) survive.
        """
        saved: dict[str, list[tuple[str, bytes, str | None]]] = {}
        if keep:
            client = self.client()
            try:
                for bucket, prefix in keep.items():
                    saved[bucket] = []
                    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                        for item in page.get("Contents", ()):
                            obj = client.get_object(Bucket=bucket, Key=item["Key"])
                            saved[bucket].append((item["Key"], obj["Body"].read(), obj.get("ContentType")))
            finally:
                client.close()
        self.stop()
        try:
            yield
        finally:
            self.start()
            client = self.client()
            try:
                for bucket, objects in saved.items():
                    self.create_bucket(bucket)
                    for key, body, content_type in objects:
                        extra = {"ContentType": content_type} if content_type else {}
                        client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
            finally:
                client.close()

    def restart(self, *, timeout: float = 30.0) -> MotoServer:
        """Stop and start again on the same port (all data is lost: moto is in-memory)."""
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __repr__(self) -> str:
        return f"<MotoServer {self.endpoint} pid={self.pid}>"


__all__ = ["MotoServer"]
