"""What metering adds to a warm invocation, with the home store on S3 (moto_server on loopback).

Each variant answers ``GET /ping`` through ``App.handle`` (warm: a few hundred calls first), in the
same run, interleaved in rounds so drift hits every variant alike; the table shows p50/p95/p99 per
call and what each adds to the same percentile of the app without metering (same S3 home).

* ``no metering`` — ``app.hooks = []``: the core's own path (the baseline).
* ``cloud (batch), s3`` — the default on AWS/GCP/Azure (a real platform, not emulated): price,
  headers, log fields, an append to memory; a background thread writes a batch when
  ``cloud_batch_size`` records wait or the oldest is ``cloud_max_age_s`` old — never on the request path.
* ``emulated (background + spool), s3`` — the default under local emulation: the same, plus the record
  written to the local spool (``write(2)``) before the answer.
* ``local (background + spool), file://`` — ``nubes serve`` / the test client with the default home.
* ``flush per invocation, s3`` — ``flush="invocation"``: one PUT before every answer (for comparison).

Run: ``python bench/metering_overhead.py [--calls N] [--rounds R]`` (logging is off while measuring).
Goal: p99 added <= 0.5 ms for the cloud default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ["NUBES_LOG_LEVEL"] = "off"

import nubes
from nubes.core.events import Platform
from nubes.core.request import Request
from nubes.metering import configure, flush
from nubes.testing.servers.moto import MotoServer

REAL = Platform("aws", function_name="bench", memory_mb=512, region="us-east-1")
EMULATED = Platform("aws", function_name="bench", memory_mb=512, region="us-east-1", emulated=True)


def make(name: str, storage: str, metered: bool, **settings: object) -> nubes.App:
    app = nubes.App(name, storage=storage, openapi=False)

    @app.get("/ping")
    def ping(ctx: nubes.Context) -> dict[str, bool]:
        return {"ok": True}

    if not metered:
        app.hooks = []
    elif settings:
        configure(app, **settings)
    return app


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="measured calls per variant")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="nubes-bench-metering-")
    os.environ["NUBES_SPOOL_DIR"] = os.path.join(tmp, "spool")  # the emulated variant's spool (S3 home)
    with MotoServer() as moto, moto.environment():
        moto.create_bucket("bench")
        s3 = "s3://bench/{}"
        variants = [
            ("no metering", make("plain", s3.format("plain"), False), REAL),
            ("cloud (batch), s3", make("cloud", s3.format("cloud"), True), REAL),
            ("emulated (background + spool), s3", make("emulated", s3.format("emulated"), True), EMULATED),
            ("local (background + spool), file://", make("local", f"file://{tmp}/home", True), None),
            ("flush per invocation, s3", make("each", s3.format("each"), True, flush="invocation"), REAL),
        ]
        request = Request("GET", "/ping", headers=[("host", "bench")])
        for _, app, platform in variants:  # warm up: imports, the S3 client, the first batches
            for _ in range(300):
                app.handle(request, platform=platform)
        samples: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        per_round = max(1, args.calls // args.rounds)
        clock = time.perf_counter_ns
        for _ in range(args.rounds):
            for name, app, platform in variants:
                out = samples[name]
                for _ in range(per_round):
                    t0 = clock()
                    app.handle(request, platform=platform)
                    out.append((clock() - t0) / 1000)
        for _, app, _ in variants:
            flush(app)
    base = sorted(samples["no metering"])
    print(f"nubes metering overhead: GET /ping through App.handle, {per_round * args.rounds:,} calls per variant, "
          f"home store on S3 (moto_server), Python {sys.version.split()[0]}")
    print(f"{'variant':<40} {'p50 us':>8} {'p95 us':>8} {'p99 us':>9} {'+p50':>7} {'+p95':>7} {'+p99':>8}")
    for name, _, _ in variants:
        xs = sorted(samples[name])
        row = [statistics.median(xs), pct(xs, 0.95), pct(xs, 0.99)]
        added = [row[0] - statistics.median(base), row[1] - pct(base, 0.95), row[2] - pct(base, 0.99)]
        print(f"{name:<40} {row[0]:>8.1f} {row[1]:>8.1f} {row[2]:>9.1f} {added[0]:>+7.1f} {added[1]:>+7.1f} {added[2]:>+8.1f}")
    print("goal: the cloud default adds <= 500 us at p99")


if __name__ == "__main__":
    main()
