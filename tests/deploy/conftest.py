"""Deploy test helpers: a project (app + nubes.toml) in a temporary folder and a small real artifact.

The artifact is the build's contract without its slow steps (resolving and vendoring wheels): a zip
holding the app and the entry files the cloud's packaging writes (``entry_files``, as ``nubes build``
does), with a ``manifest.json`` beside it. ``tests/build`` covers the full build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nubes
from nubes.core.loader import load_app

APPS = Path(__file__).parent / "apps"

class Project:
    """``app.py`` (a copy of one of ``apps/``) and ``nubes.toml`` in a folder; ``spec`` is what the CLI takes."""

    def __init__(self, root: Path, source: str) -> None:
        self.root = root
        self.file = root / f"{source}.py"
        shutil.copy(APPS / f"{source}.py", self.file)
        self.module = source
        self.spec = f"{self.file}:app"
        self.config = root / "nubes.toml"

    def write_config(self, text: str) -> Path:
        self.config.write_text(text, encoding="utf-8")
        return self.config

    def app(self) -> nubes.App:
        return load_app(self.spec)

    def artifact(self, cloud: str = "aws", *, arch: str = "x86_64", extra: bytes = b"", fmt: str = "zip") -> Path:
        """Build a small real zip for ``cloud`` and its manifest; ``extra`` changes the code (a new hash)."""
        return make_artifact(self.root / "build" / cloud, cloud, self.file, arch=arch, extra=extra, fmt=fmt)


def make_artifact(out: Path, cloud: str, app_file: Path, *, arch: str = "x86_64", extra: bytes = b"", fmt: str = "zip") -> Path:
    """A zip holding ``app_file`` and the cloud's entry files, and its ``manifest.json`` (the build contract)."""
    from nubes.deploy.build import packaging_for

    pkg = packaging_for(cloud)
    module = app_file.stem
    entry = pkg.entry_files(f"{module}:app", storage=f"{pkg.store_schemes[0]}://nubes-test/home", settings={}, arch=arch)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{module}-{cloud}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in (*((name, text.encode()) for name, text in sorted(entry.items())),
                             (app_file.name, app_file.read_bytes()), ("extra.bin", extra)):
            z.writestr(zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0)), data)
    data = path.read_bytes()
    manifest = {"cloud": cloud, "format": fmt, "path": path.name, "python": "3.12", "arch": arch,
                "unzipped_bytes": sum(i.file_size for i in zipfile.ZipFile(path).infolist()), "zipped_bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "packages": [{"name": "nubes", "version": "0.1.0", "unzipped_bytes": 1}]}
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out / "manifest.json"


@pytest.fixture
def project_factory(tmp_path: Path) -> Iterator[type]:
    def make(source: str = "shop") -> Project:
        return Project(tmp_path, source)

    yield make  # type: ignore[misc]


@pytest.fixture(scope="module")
def moto() -> Iterator[Any]:
    """A moto_server for the module, with the AWS environment pointing at it."""
    from nubes.testing.servers.moto import MotoServer

    with MotoServer() as server, server.environment():
        yield server


@pytest.fixture
def aws(moto: Any) -> Iterator[Any]:
    """``aws("lambda")``: a boto3 client of the freshly reset moto_server."""
    import urllib.request

    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{moto.endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = boto3.client(service, region_name="us-east-1")
        return clients[service]

    yield client


@contextlib.contextmanager
def azure_double(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, account: str) -> Iterator[Any]:
    """The Azure double (``azure_double.py``) holding the storage account ``account`` (an ARM id), with the
    environment sending the management calls and the zip deploy there."""
    from tests.deploy.azure_double import AzureDouble, StaticToken

    from nubes.adapters.azure import deploy_state

    with AzureDouble(tmp_path) as server:
        server.store[account] = {"id": account, "name": account.rsplit("/", 1)[1], "location": "westeurope", "kind": "StorageV2",
                                 "sku": {"name": "Standard_LRS"}, "properties": {}}
        monkeypatch.setenv("NUBES_AZURE_ENDPOINT", server.endpoint)
        monkeypatch.setenv("NUBES_AZURE_SCM_ENDPOINT", f"{server.endpoint}/scm")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca))
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca))
        monkeypatch.setattr(deploy_state, "credential", StaticToken)  # no identity service on loopback
        yield server


def count_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """``module.name`` replaced by a wrapper appending to the returned list on each call."""
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls
