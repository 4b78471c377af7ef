"""Requests per second through the local server and the cloud emulators, under a load tool.

Starts ``nubes serve`` (plain, then ``--emulate aws|gcp|azure``) on loopback for a trivial route, with
nubes' defaults (metering on), and drives it with ``wrk`` when it is installed (Debian package
``wrk``), else with a built-in keep-alive load generator (threads, ``http.client``). Prints
requests/s and latency percentiles per mode, so the cost of emulation (payload building, worker
processes, the adapter) is visible against the plain server in the same run. ``nubes serve``
against uvicorn + Starlette is ``bench/serve.py``.

    python bench/emulator_throughput.py [--seconds 5] [--connections 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from nubes.testing.servers import free_port, port_open, wait_until

APP = '''
import nubes
app = nubes.App("bench", openapi=False)

@app.get("/ping")
def ping(ctx):
    return {"ok": True}
'''


def builtin_load(port: int, seconds: float, connections: int) -> tuple[float, list[float], int]:
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            start = time.perf_counter()
            try:
                conn.request("GET", "/ping")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[i] += 1
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies[i].append((time.perf_counter() - start) * 1000)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [x for xs in latencies for x in xs]
    return len(flat) / (time.monotonic() - began), flat, sum(errors)


def wrk_load(port: int, seconds: float, connections: int) -> tuple[float, dict[str, str], int]:
    out = subprocess.run(
        ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
         f"http://127.0.0.1:{port}/ping"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    return rps, pct, errors


def _percentile(sorted_ms: list[float], q: float) -> str:
    return f"{sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]:.2f}ms" if sorted_ms else "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    nubes = str(Path(sys.executable).with_name("nubes"))
    tool = "wrk" if shutil.which("wrk") else "built-in (threads + http.client keep-alive)"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        app_file = Path(tmp) / "bench_app.py"
        app_file.write_text(APP)
        env = {**os.environ, "NUBES_STORAGE": f"file://{tmp}/home"}  # nubes defaults: metering on, logs on (to /dev/null)
        for mode in ("local", "aws", "gcp", "azure"):
            port = free_port()
            cmd = [nubes, "serve", str(app_file), "--port", str(port)]
            if mode != "local":
                cmd += ["--emulate", mode, "--workers", str(args.workers)]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                wait_until(lambda port=port: port_open(port), timeout=60, what=f"nubes serve ({mode})")
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                for _ in range(args.workers * 2):  # warm every worker (cold starts are not measured)
                    conn.request("GET", "/ping")
                    conn.getresponse().read()
                conn.close()
                if tool == "wrk":
                    rps, pct, errors = wrk_load(port, args.seconds, args.connections)
                    rows.append((mode, rps, pct.get("50", "-"), pct.get("99", "-"), errors))
                else:
                    rps, lat, errors = builtin_load(port, args.seconds, args.connections)
                    lat.sort()
                    rows.append((mode, rps, _percentile(lat, 0.5), _percentile(lat, 0.99), errors))
            finally:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    print(f"nubes serve under load: {tool}, {args.connections} connections, {args.seconds:g} s per mode, "
          f"--workers {args.workers} for emulated modes; {os.cpu_count()} CPUs")
    print(f"{'mode':<8}{'req/s':>10}{'p50':>12}{'p99':>12}{'errors':>8}{'vs local':>10}")
    base = rows[0][1]
    for mode, rps, p50, p99, errors in rows:
        print(f"{mode:<8}{rps:>10.0f}{p50:>12}{p99:>12}{errors:>8}{rps / base:>10.2f}")


if __name__ == "__main__":
    main()
