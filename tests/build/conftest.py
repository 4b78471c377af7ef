"""Session fixtures for the build tests: one build per cloud of ``buildapp/shop.py`` (small on purpose),
the wheels they resolved kept in a session wheelhouse, a Python of the target version with
``awslambdaric`` (installed from that wheelhouse), the Lambda RIE and a moto S3 server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nubes.deploy.build import BuildOptions, BuildResult, build
from nubes.deploy.build.bytecode import find_interpreter
from nubes.deploy.build.resolve import Target, download
from nubes.testing.servers.moto import MotoServer
from nubes.testing.servers.process import free_port, wait_until

HERE = Path(__file__).parent
APP = f"{HERE / 'buildapp' / 'shop.py'}:app"
PYTHON = "3.12"
BUCKET = "nubes-build-test"
STORE = f"s3://{BUCKET}/shop"
REPO = HERE.parents[1]
RIE = Path(os.environ.get("NUBES_LAMBDA_RIE") or REPO.parent / "shared" / "tools" / "aws-lambda-rie" / "aws-lambda-rie")
if not RIE.exists():
    RIE = Path("/work/shared/tools/aws-lambda-rie/aws-lambda-rie")


@pytest.fixture(scope="session")
def target_python() -> str:
    exe = find_interpreter(PYTHON)
    if exe is None:
        pytest.skip(f"no Python {PYTHON} interpreter on this machine to compile and run the artifacts")
    return exe


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheelhouse")


def _build(tmp: Path, cloud: str, storage: str, wheelhouse: Path, **options: object) -> BuildResult:
    return build(BuildOptions(APP, cloud, python=PYTHON, out=tmp, storage=storage, wheelhouse=wheelhouse, **options))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def aws_build(tmp_path_factory: pytest.TempPathFactory, target_python: str, wheelhouse: Path) -> BuildResult:
    return _build(tmp_path_factory.mktemp("aws"), "aws", STORE, wheelhouse)


@pytest.fixture(scope="session")
def gcp_build(tmp_path_factory: pytest.TempPathFactory, target_python: str, wheelhouse: Path) -> BuildResult:
    return _build(tmp_path_factory.mktemp("gcp"), "gcp", "gs://nubes-build-test/shop", wheelhouse)


@pytest.fixture(scope="session")
def azure_build(tmp_path_factory: pytest.TempPathFactory, target_python: str, wheelhouse: Path) -> BuildResult:
    return _build(tmp_path_factory.mktemp("azure"), "azure", "az://nubes-build-test/shop", wheelhouse)


def fresh_venv(target_python: str, where: Path, wheelhouse: Path, requirements: list[str]) -> Path:
    """A new virtual environment of the target Python with ``requirements`` installed from the wheelhouse only."""
    subprocess.run([target_python, "-m", "venv", str(where)], check=True, capture_output=True, timeout=300)
    python = where / "bin" / "python"
    if requirements:
        proc = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse),
                               "--disable-pip-version-check", "-q", *requirements], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return python


@pytest.fixture(scope="session")
def ric_python(tmp_path_factory: pytest.TempPathFactory, target_python: str, wheelhouse: Path) -> Path:
    """The runtime side of Lambda: a Python of the target version with only awslambdaric."""
    if not RIE.exists():
        pytest.skip(f"the Lambda Runtime Interface Emulator is not at {RIE} (see shared/tools/aws-lambda-rie/README.md)")
    download(["awslambdaric"], Target(PYTHON, "x86_64", ("manylinux_2_28_x86_64", "manylinux2014_x86_64")), wheelhouse)
    return fresh_venv(target_python, tmp_path_factory.mktemp("ric") / "venv", wheelhouse, ["awslambdaric"])


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        server.create_bucket(BUCKET)
        yield server


def unpack_read_only(archive: Path, dest: Path) -> Path:
    """Unzip ``archive`` into a fresh ``dest`` and make it read-only, as Lambda's task root is."""
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        zf.extractall(dest)
    for path in sorted(dest.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    dest.chmod(0o555)
    return dest


def make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


class Rie:
    """The real Lambda RIE serving a task directory through awslambdaric (stopped by its PID)."""

    def __init__(self, task: Path, python: Path, env: dict[str, str]) -> None:
        self.port, api = free_port(), free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "PYTHON", "AWS_"))}
        base.update({"LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_FUNCTION_NAME": "shop", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
                     "AWS_LAMBDA_FUNCTION_TIMEOUT": "30", "AWS_REGION": "us-east-1",
                     "PYTHONDONTWRITEBYTECODE": "1",  # read-only as on Lambda even for root, whom file modes do not stop
                     **env})
        self.proc = subprocess.Popen(
            [str(RIE), "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}", "--runtime-api-address",
             f"127.0.0.1:{api}", str(python), "-m", "awslambdaric", "lambda_function.handler"],
            cwd=task, env=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: _port_open(self.port), timeout=20, what="aws-lambda-rie")

    def invoke(self, event: object) -> tuple[dict[str, str], object]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations",
                                         data=json.dumps(event).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return dict(response.headers.items()), json.loads(response.read() or b"null")

    def stop(self) -> str:
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
        return out.decode("utf-8", "replace")


def _port_open(port: int) -> bool:
    from nubes.testing.servers.process import port_open

    return port_open(port)


@pytest.fixture
def rie_factory(ric_python: Path) -> Iterator[object]:
    started: list[Rie] = []

    def start(task: Path, env: dict[str, str]) -> Rie:
        rie = Rie(task, ric_python, env)
        started.append(rie)
        return rie

    yield start
    for rie in started:
        rie.stop()


__all__ = ["APP", "PYTHON", "STORE", "Rie", "fresh_venv", "make_writable", "shutil", "unpack_read_only"]
