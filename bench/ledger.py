"""The ledger at scale: write N synthetic records through the public API, then bill them.

For each size (default 10k, 100k, 1M records, all on one day, file:// home in a temporary folder):

* ``write`` — ``Ledger(store).append(record)`` for every record, then ``flush()`` (which compacts
  into Parquet rollups when due, as a long-running process's flusher does): seconds and records/s;
* ``bill`` — ``bill(app, by="route")`` in this process (DuckDB over the rollups and the raw tail):
  seconds, and the storage requests it made (LIST, GET, HEAD) on a fresh store handle — the goal is a
  count that does not grow with the records per day;
* ``nubes costs`` — the same bill through the CLI in a new process (interpreter start, app load and
  imports included), seconds.

The baseline is the layout before rollups: one NDJSON object per invocation read by DuckDB; its
storage reads are one GET (+ HEAD) per record, shown for comparison as ``per-record objects``.

    .venv/bin/python bench/ledger.py [--sizes 10000,100000,1000000] [--no-cli]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["NUBES_LOG_LEVEL"] = "off"

import nubes
from nubes.metering.bills import bill
from nubes.metering.ledger import Ledger, new_record_id

ROUTES = ["/revenue", "/orders/{id}", "/daily/rebuild", "/ping", "/regions/{region}/days"]
TENANTS = ["acme", "globex", "initech", None]
APP = 'import nubes\napp = nubes.App("ledger-bench")\n'


def synthetic(n: int, day: str = "2026-11-25") -> list[dict]:
    rnd = random.Random(n)
    out = []
    for i in range(n):
        d = rnd.lognormvariate(3, 1)
        billed = max(1, int(d) + 1)
        gb_s = 0.5 * billed / 1000
        compute = gb_s * 0.0000166667
        out.append({
            "record_id": new_record_id(), "request_id": f"{i:032x}", "app": "ledger-bench", "kind": "http", "method": "GET",
            "path": "/p", "route": rnd.choice(ROUTES), "status": 200, "provider": "aws", "plan": "lambda", "front": "http",
            "gateway": "http", "platform": "aws", "emulated": False, "function_name": "bench", "region": "us-east-1",
            "memory_mb": 512, "architecture": "x86_64",
            "start_time": f"{day}T12:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}000+00:00",
            "day": day, "duration_ms": d, "billed_duration_ms": billed, "billed_memory_mb": 512, "peak_rss_mb": 180.0,
            "cold_start": i % 500 == 0, "ops_put": 0, "ops_get": rnd.randint(0, 6), "ops_head": 1, "ops_list": 0,
            "ops_delete": 0, "ops_delete_many": 0, "bytes_read": rnd.randint(0, 10**6), "bytes_written": 0, "http_bytes": 900,
            "body_digest": None, "tenant": rnd.choice(TENANTS), "bookkeeping_puts": 0.05, "bookkeeping_gets": 0.05,
            "gb_seconds": gb_s, "vcpu_seconds": 0.0, "cost_compute_usd": compute, "cost_request_usd": 2e-7,
            "cost_gateway_usd": 1e-6, "cost_storage_usd": 4e-7, "cost_bookkeeping_usd": 2.7e-7,
            "cost_usd": compute + 2e-7 + 1e-6 + 4e-7 + 2.7e-7,
        })
    return out


def reads(stats: dict) -> str:
    ops = stats["ops"]
    return ", ".join(f"{ops.get(k, 0)} {k.upper()}" for k in ("list", "get", "head"))


def run(n: int, cli: bool) -> dict:
    tmp = tempfile.mkdtemp(prefix="nubes-bench-ledger-")
    try:
        home = f"file://{tmp}/home"
        records = synthetic(n)
        ledger = Ledger(nubes.storage.open(home))
        t0 = time.perf_counter()
        for r in records:
            ledger.append(r)
        ledger.flush()
        write_s = time.perf_counter() - t0
        del records
        app_file = Path(tmp) / "app.py"
        app_file.write_text(APP, encoding="utf-8")
        os.environ["NUBES_STORAGE"] = home
        from nubes.core.loader import load_app

        app = load_app(f"{app_file}:app")
        bill(app, by="route")  # warm: imports, DuckDB
        store = nubes.storage.open(home)
        t0 = time.perf_counter()
        result = bill(app, by="route", store=store)
        bill_s = time.perf_counter() - t0
        assert result["total"]["invocations"] == n, result["total"]
        out = {"n": n, "write_s": write_s, "bill_s": bill_s, "reads": reads(store.stats.snapshot())}
        if cli:
            nubes_cli = str(Path(sys.executable).with_name("nubes"))
            t0 = time.perf_counter()
            subprocess.run([nubes_cli, "costs", str(app_file), "--by", "route", "--format", "json"], check=True,
                           capture_output=True, env={**os.environ, "NUBES_STORAGE": home})
            out["cli_s"] = time.perf_counter() - t0
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--no-cli", action="store_true", help="skip timing `nubes costs` in a new process")
    args = parser.parse_args()
    rows = [run(int(n), not args.no_cli) for n in args.sizes.split(",")]
    print(f"nubes ledger at scale: records written through Ledger.append + flush, billed by route; Python {sys.version.split()[0]}")
    print(f"{'records':>10} {'write s':>9} {'rec/s':>9} {'bill s':>8} {'nubes costs s':>14}  {'bill storage reads':<26} "
          f"{'per-record objects':>20}")
    for r in rows:
        cli = f"{r['cli_s']:.2f}" if "cli_s" in r else "-"
        baseline = f"{r['n']:,} GET + {r['n']:,} HEAD"
        print(f"{r['n']:>10,} {r['write_s']:>9.2f} {r['n'] / r['write_s']:>9,.0f} {r['bill_s']:>8.2f} {cli:>14}  {r['reads']:<26} "
              f"{baseline:>20}")
    print("goal: bill < 2 s at 1,000,000 records; storage reads independent of the records per day")


if __name__ == "__main__":
    main()
