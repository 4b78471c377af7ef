"""A local S3 (moto) server on 127.0.0.1 for tests and benchmarks, started and stopped by PID.

::

    with MotoServer() as moto, moto.environment():
        moto.create_bucket("bucket")
        store = nubes.storage.open("s3://bucket/prefix")

moto keeps everything in memory: a stopped and restarted server has no buckets.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nubes.testing.servers.process import ServerProcess

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


class MotoServer(ServerProcess):
    """One ``moto_server`` process on ``127.0.0.1:port``, managed as :class:`ServerProcess` describes.

    Ready once it answers ``GET /moto-api/``. moto is in-memory: :meth:`restart` loses all data;
    :meth:`outage` can carry chosen objects over the restart.
    """

    name = "moto_server"
    ambient = ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_MAX_ATTEMPTS")

    def command(self) -> list[str]:
        return [_moto_executable(), "-H", self.host, "-p", str(self.port)]

    def env(self) -> dict[str, str]:
        """The standard AWS SDK variables that point boto3 (and the AWS CLI) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
            "AWS_DEFAULT_REGION": DEFAULT_REGION,
        }

    def _probe(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2) as resp:
            return bool(resp.status == 200)

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
        try:
            with super().outage():
                yield
        finally:
            client = self.client()
            try:
                for bucket, objects in saved.items():
                    self.create_bucket(bucket)
                    for key, body, content_type in objects:
                        extra = {"ContentType": content_type} if content_type else {}
                        client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
            finally:
                client.close()


__all__ = ["MotoServer"]
