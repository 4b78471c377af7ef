"""``nubes serve`` against uvicorn + Starlette: requests/s under wrk on the same tiny JSON route.

Both are single processes on loopback, started once and measured in alternating rounds (nubes,
baseline, nubes, ...) so machine noise hits both alike; the table gives the median of the rounds and
the ratio per round. nubes runs with its defaults (metering on, one JSON log line per request, on
stderr sent to /dev/null). The baseline is what a competent user writes: an ``async def`` Starlette
endpoint returning a ``JSONResponse``, run by ``uvicorn app:app --no-access-log`` (the same uvicorn,
HTTP parser and event loop nubes gets); a second baseline row keeps uvicorn's default access log.
With ``--diagnostic``, more rows show what each nubes default costs (the ledger writes, metering,
the log line) and Starlette with a blocking ``def`` endpoint (run in its thread pool, as nubes runs
every handler).

CPU µs/req is the server process's user+system CPU time over the round divided by the requests it
answered: it shows where the time goes even when the machine is shared.

    python bench/serve.py [--rounds 5] [--seconds 5] [--connections 16] [--diagnostic]

Needs ``wrk`` (Debian: ``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nubes.testing.servers import free_port, port_open, wait_until

NUBES_APP = '''
import nubes
app = nubes.App("bench", openapi=False)

@app.get("/ping")
def ping(ctx):
    return {"ok": True}
'''

STARLETTE_APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def ping(request):
    return JSONResponse({"ok": True})

def ping_sync(request):  # a blocking handler, as nubes handlers are: Starlette runs it in its thread pool
    return JSONResponse({"ok": True})

app = Starlette(routes=[Route("/ping", ping)])
app_sync = Starlette(routes=[Route("/ping", ping_sync)])
'''


@dataclass
class Server:
    label: str
    cmd: list[str]
    env: dict[str, str]
    baseline: bool = False
    diagnostic: bool = False
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    errors: int = 0
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self) -> None:
        self.port = free_port()
        cmd = [arg.replace("{port}", str(self.port)) for arg in self.cmd]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_until(lambda: port_open(self.port), timeout=60, what=self.label)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        for _ in range(200):  # warm: imports, first-call caches, the metering settings
            conn.request("GET", "/ping")
            response = conn.getresponse()
            response.read()
            assert response.status == 200, (self.label, response.status)
        conn.close()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wrk(port: int, seconds: float, connections: int, threads: int) -> tuple[float, int, float, int]:
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
                          f"http://127.0.0.1:{port}/ping"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    found = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", out, re.M)
    p99 = float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)] if found else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, total, p99, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--diagnostic", action="store_true",
                        help="also nubes without ledger writes / metering / logs, and Starlette with a sync endpoint")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/serve.py needs wrk: apt-get install -y wrk")
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "nubes_app.py").write_text(NUBES_APP)
        (Path(tmp) / "starlette_app.py").write_text(STARLETTE_APP)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUBES_")}
        env["NUBES_STORAGE"] = f"file://{tmp}/home"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tmp, env.get("PYTHONPATH")]))
        nubes_cmd = [str(bin_dir / "nubes"), "serve", f"{tmp}/nubes_app.py", "--port", "{port}"]
        uvicorn_cmd = [str(bin_dir / "uvicorn"), "starlette_app:app", "--port", "{port}", "--log-level", "warning"]
        servers = [
            Server("nubes serve (defaults: metering on, logs on)", nubes_cmd, env),
            Server("uvicorn + Starlette (--no-access-log)", [*uvicorn_cmd, "--no-access-log"], env, baseline=True),
            Server("uvicorn + Starlette (uvicorn defaults)", uvicorn_cmd, env, baseline=True),
        ]
        if args.diagnostic:
            sync_cmd = [*uvicorn_cmd, "--no-access-log"]
            sync_cmd[1] = "starlette_app:app_sync"
            servers += [
                Server("uvicorn + Starlette, sync def endpoint", sync_cmd, env, diagnostic=True),
                Server("nubes serve, NUBES_LEDGER_FLUSH=off", nubes_cmd, {**env, "NUBES_LEDGER_FLUSH": "off"}, diagnostic=True),
                Server("nubes serve, NUBES_METERING=off", nubes_cmd, {**env, "NUBES_METERING": "off"}, diagnostic=True),
                Server("nubes serve, metering and logs off", nubes_cmd,
                       {**env, "NUBES_METERING": "off", "NUBES_LOG_LEVEL": "off"}, diagnostic=True),
            ]
        try:
            for server in servers:
                server.start()
            for _ in range(args.rounds):
                for server in servers:
                    before = server.cpu_seconds()
                    rps, total, p99, errors = wrk(server.port, args.seconds, args.connections, args.threads)
                    server.rps.append(rps)
                    server.cpu_us.append((server.cpu_seconds() - before) / max(total, 1) * 1e6)
                    server.p99.append(p99)
                    server.errors += errors
        finally:
            for server in servers:
                server.stop()
    import uvicorn

    from nubes.adapters.local import protocol_class

    parser_name = protocol_class(1).__mro__[1].__name__
    print(f"nubes serve vs uvicorn + Starlette: wrk -t{args.threads} -c{args.connections}, {args.seconds:g} s x "
          f"{args.rounds} alternating rounds; uvicorn {uvicorn.__version__} ({parser_name}); {os.cpu_count()} CPUs")
    print(f"{'server':<46}{'req/s (median)':>15}{'CPU µs/req':>12}{'p99':>10}{'errors':>8}{'vs baseline':>13}")
    strongest = max((s for s in servers if s.baseline), key=lambda s: statistics.median(s.rps))
    for server in servers:
        if server.diagnostic and not servers[servers.index(server) - 1].diagnostic:
            print("diagnostic:")
        ratio = "1.00" if server is strongest else f"{statistics.median(server.rps) / statistics.median(strongest.rps):.2f}"
        print(f"{server.label:<46}{statistics.median(server.rps):>15.0f}{statistics.median(server.cpu_us):>12.0f}"
              f"{statistics.median(server.p99):>8.1f}ms{server.errors:>8}{ratio:>13}")
    nubes = servers[0]
    per_round = [n / b for n, b in zip(nubes.rps, strongest.rps, strict=True)]
    print(f"nubes / {strongest.label}, per round: " + " ".join(f"{r:.2f}" for r in per_round)
          + f"  (goal >= 0.90; median {statistics.median(per_round):.2f})")


if __name__ == "__main__":
    main()
