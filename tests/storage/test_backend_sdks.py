"""Each cloud backend's SDK: loaded only when its scheme is opened, and named with its extra when missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nubes.errors import BackendMissing

BACKENDS = [
    # scheme URI, the SDK module blocked, the extra named, the loopback server helper (must not load the SDK)
    ("s3://bucket/prefix", "boto3", "aws", "nubes.testing.servers.moto"),
    ("gs://bucket/prefix", "google.cloud.storage", "gcp", "nubes.testing.servers.gcs"),
    ("az://some-container/prefix", "azure.storage.blob", "azure", "nubes.testing.servers.azurite"),
]


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.mark.parametrize(("uri", "sdk", "extra", "server"), BACKENDS, ids=[b[2] for b in BACKENDS])
def test_missing_sdk_is_backend_missing_naming_the_extra(uri: str, sdk: str, extra: str, server: str) -> None:
    out = run(
        f"import sys; sys.modules[{sdk!r}] = None\n"
        "import nubes.storage\n"
        "from nubes.errors import BackendMissing\n"
        "try:\n"
        f"    nubes.storage.open({uri!r})\n"
        "except BackendMissing as exc:\n"
        "    print('MISSING', exc)\n"
    )
    assert out.startswith("MISSING") and f"pip install 'nubes[{extra}]'" in out, out
    assert issubclass(BackendMissing, ImportError)


@pytest.mark.parametrize(("uri", "sdk", "extra", "server"), BACKENDS, ids=[b[2] for b in BACKENDS])
def test_importing_nubes_and_the_server_helper_does_not_import_the_sdk(uri: str, sdk: str, extra: str, server: str) -> None:
    assert run(f"import sys, nubes, nubes.storage, {server}; print({sdk!r} in sys.modules)").strip() == "False"
