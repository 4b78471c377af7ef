"""What metering adds to a warm invocation: the same trivial route with and without the metering hook.

Each variant answers ``GET /ping`` through ``App.handle`` (warm: a few hundred calls first), in the
same run, interleaved in rounds so drift hits every variant alike; the table shows the median and
p90 per call and the median overhead over the app without the hook.

* ``no metering`` — ``app.hooks = []``: the core's own path.
* ``metering, local`` — the default hook on a local run: price, headers, log fields, an append to the
  ledger buffer (flushed by a background thread).
* ``metering, cloud, flush per invocation to mem://`` / ``file://`` — the default on AWS/GCP/Azure:
  the same plus one synchronous PUT of the ledger object before the answer leaves.

Run: ``python bench/metering_overhead.py [--calls N]`` (logging is off while measuring).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ["NUBES_LOG_LEVEL"] = "off"

import nubes  # noqa: E402
from nubes.core.events import Platform  # noqa: E402
from nubes.metering import flush  # noqa: E402
from nubes.core.request import Request  # noqa: E402

AWS = Platform("aws", function_name="bench", memory_mb=512, region="us-east-1", emulated=True)


def make(name: str, storage: str, metered: bool) -> nubes.App:
    app = nubes.App(name, storage=storage, openapi=False)

    @app.get("/ping")
    def ping(ctx: nubes.Context) -> dict[str, bool]:
        return {"ok": True}

    if not metered:
        app.hooks = []
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="measured calls per variant")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="nubes-bench-metering-")
    variants = [
        ("no metering", make("plain", "mem://bench-plain", False), None),
        ("metering, local (background flush)", make("local", "mem://bench-local", True), None),
        ("metering, cloud, flush per invocation to mem://", make("cloud-mem", "mem://bench-cloud", True), AWS),
        ("metering, cloud, flush per invocation to file://", make("cloud-file", f"file://{tmp}", True), AWS),
    ]
    request = Request("GET", "/ping", headers=[("host", "bench")])
    for _, app, platform in variants:  # warm up
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
    base = statistics.median(samples["no metering"])
    print(f"nubes metering overhead: GET /ping through App.handle, {per_round * args.rounds} calls per variant, "
          f"Python {sys.version.split()[0]}")
    print(f"{'variant':<52} {'median us':>10} {'p90 us':>10} {'overhead us':>12}")
    for name, _, _ in variants:
        xs = sorted(samples[name])
        med = statistics.median(xs)
        p90 = xs[int(0.9 * (len(xs) - 1))]
        print(f"{name:<52} {med:>10.1f} {p90:>10.1f} {med - base:>+12.1f}")
    for _, app, _ in variants:
        flush(app)


if __name__ == "__main__":
    main()
