"""The emulator's limits cover the whole process tree: a handler's child dies with its worker on a
timeout, and the children's memory counts against the function's memory, on all three clouds."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

import nubes
from nubes.core.loader import load_app
from nubes.testing import Client

TREE_APP = textwrap.dedent('''
    """Handlers that start child processes, as a careless handler (or a library) would."""
    import subprocess
    import sys
    import time

    import nubes
    from nubes import Context

    app = nubes.App("tree", storage="mem://tree")

    HOG = "import time; data = bytearray({mb} * 1024 * 1024); data[::4096] = b'x' * len(data[::4096]); time.sleep(60)"

    @app.get("/orphan")
    def orphan(ctx: Context, pidfile: str, mb: int = 50, sleep: float = 5) -> dict:
        child = subprocess.Popen([sys.executable, "-c", HOG.format(mb=mb)])
        with open(pidfile, "w") as f:
            f.write(str(child.pid))
        time.sleep(sleep)
        return {"child": child.pid}

    @app.get("/escape")
    def escape(ctx: Context, pidfile: str, sleep: float = 5) -> dict:
        # a child that leaves the worker's process group (its own session), then the handler overruns
        child = subprocess.Popen([sys.executable, "-c", HOG.format(mb=10)], start_new_session=True)
        with open(pidfile, "w") as f:
            f.write(str(child.pid))
        time.sleep(sleep)
        return {"child": child.pid}
''')


@pytest.fixture(scope="module")
def tree_app(tmp_path_factory: pytest.TempPathFactory) -> nubes.App:
    path = tmp_path_factory.mktemp("tree") / "tree_app.py"
    path.write_text(TREE_APP)
    return load_app(f"{path}:app")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # a zombie is dead, waiting to be reaped
    except OSError:
        return False


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _child(pidfile: Path) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if pidfile.exists() and pidfile.read_text():
            return int(pidfile.read_text())
        time.sleep(0.05)
    raise AssertionError("the handler never started its child")


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="process trees are read from Linux /proc")
@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
@pytest.mark.parametrize("route", ["orphan", "escape"])
def test_a_timeout_kills_what_the_handler_started(tree_app: nubes.App, tmp_path: Path, provider: str, route: str) -> None:
    pidfile = tmp_path / "child.pid"
    with Client(tree_app, emulate=provider, timeout=1.5, workers=1, isolate=True) as client:
        r = client.get(f"/{route}", params={"pidfile": str(pidfile), "sleep": 30})
        assert r.status_code >= 500
        child = _child(pidfile)
        assert _wait_gone(child), f"{provider}: the handler's child {child} outlived the timeout kill"


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="process trees are read from Linux /proc")
@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_childrens_memory_counts_against_the_function(tree_app: nubes.App, tmp_path: Path, provider: str) -> None:
    pidfile = tmp_path / "child.pid"
    # the worker alone stays well under 512 MB; its child's 600 MB puts the tree over
    with Client(tree_app, emulate=provider, timeout=60, memory=512, workers=1, isolate=True) as client:
        started = time.monotonic()
        r = client.get("/orphan", params={"pidfile": str(pidfile), "mb": 600, "sleep": 30})
        assert r.status_code >= 500
        assert time.monotonic() - started < 25, "the tree's memory was not watched: the handler ran on"
        child = _child(pidfile)
        assert _wait_gone(child)
