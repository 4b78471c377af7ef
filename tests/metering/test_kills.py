"""The ledger under kills: real `nubes serve` processes (plain and emulated) under load, killed with SIGKILL or
SIGTERM after about 1,000 answered requests, then restarted. Every answered request must be in the ledger
exactly once; the only records without an answer are the invocations in flight when the kill came (they ran,
so they are billed)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from nubes.testing.servers import free_port, port_open, wait_until

NUBES = str(Path(sys.executable).with_name("nubes"))
APP = """
import nubes

app = nubes.App("killed")

@app.get("/work/{i}")
def work(ctx, i: int):
    return {"i": i}
"""
THREADS = 8


def start(app: Path, home: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "NUBES_STORAGE": home, "NUBES_LOG_LEVEL": "off"}
    env.pop("NUBES_LEDGER_FLUSH", None)
    proc = subprocess.Popen([NUBES, "serve", str(app), "--port", str(port), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    wait_until(lambda: port_open(port), timeout=60, what="nubes serve")
    return proc, port


def load_until_killed(proc: subprocess.Popen[bytes], port: int, answered_before_kill: int, sig: int) -> set[str]:
    """Request ids of every answered request; ``sig`` is sent once ``answered_before_kill`` were answered."""
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                conn.request("GET", f"/work/{n * 1_000_000 + i}")
                r = conn.getresponse()
                r.read()
            except (OSError, http.client.HTTPException):
                return  # the server is gone
            if r.status == 200:
                with lock:
                    answered.append(r.getheader("x-nubes-request-id") or "")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    wait_until(lambda: len(answered) >= answered_before_kill, timeout=120, what=f"{answered_before_kill} answers")
    os.killpg(proc.pid, sig)  # the server and, under emulation, its workers
    proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert all(answered)
    assert len(set(answered)) == len(answered)
    return set(answered)


def ledger_ids(app: Path, home: str) -> list[str]:
    """Request ids in the ledger, read by a new process (`nubes costs`, which replays dead writers' spools)."""
    env = {**os.environ, "NUBES_STORAGE": home, "NUBES_LOG_LEVEL": "off"}
    out = subprocess.run([NUBES, "costs", str(app), "--by", "request", "--format", "json"], capture_output=True,
                         env=env, timeout=120, check=True)
    return [r["request_id"] for r in json.loads(out.stdout)["rows"]]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("emulate", [None, "aws"], ids=["serve", "serve-emulate-aws"])
def test_every_answered_request_is_in_the_ledger_once_after_a_kill(tmp_path: Path, sig: int, emulate: str | None) -> None:
    app = tmp_path / "killed_app.py"
    app.write_text(APP, encoding="utf-8")
    home = f"file://{tmp_path / 'home'}"
    args = ("--emulate", emulate, "--workers", "2") if emulate else ()
    proc, port = start(app, home, *args)
    try:
        answered = load_until_killed(proc, port, 1000 if not emulate else 300, sig)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    spool = tmp_path / "home" / ".nubes-internal" / "spool" / "ledger"
    ids = ledger_ids(app, home)
    counts = Counter(ids)
    assert counts.most_common(1)[0][1] == 1, "a record was counted twice"
    missing = answered - set(ids)
    assert not missing, f"{len(missing)} of {len(answered)} answered requests are not in the ledger"
    in_flight = set(ids) - answered  # ran and recorded, but the kill came before the answer left
    assert len(in_flight) <= THREADS
    # Restarted, the server replays what the killed one left and keeps counting exactly once.
    proc, port = start(app, home, *args)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/work/7")
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        after = r.getheader("x-nubes-request-id")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    ids = ledger_ids(app, home)
    assert Counter(ids).most_common(1)[0][1] == 1
    assert answered | {after} <= set(ids)
    assert not list(spool.glob("*.seg"))  # every spool file is gone once its records are in the store
