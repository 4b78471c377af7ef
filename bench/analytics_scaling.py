"""Time and peak memory of warm ``ctx.sql`` / ``ctx.table`` routes as the data grows, against raw DuckDB / Polars.

For each size (default 1M, 5M, 20M rows of the 12-column ``facts``) and each of four variants --
``nubes-sql`` (a warm App's ``ctx.sql`` route via ``nubes.testing.Client``, nubes' defaults), ``duckdb``
(one warm connection, rows -> JSON), ``nubes-table`` (the ``ctx.table`` route) and ``polars``
(``pl.scan_parquet(...).collect()`` -> JSON) -- a FRESH process imports what it needs, answers once
(warm-up), answers ``--repeat`` more times, and reports the median time and its peak RSS
(``ru_maxrss``: imports, warm-up and runs included). Variants run interleaved, ``--rounds`` times per
size; the table shows medians over rounds. Goals (issue 14): ``ctx.table`` peak RSS at 20M <= 1.5x
raw Polars, memory bounded by the result rather than the rows scanned.

    python bench/analytics_scaling.py [--sizes 1M,5M,20M] [--shape group-by] [--rounds 3] [--repeat 5] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analytics_data import SHAPES, SIZES, filter_bounds, generate

VARIANTS = ("nubes-sql", "duckdb", "nubes-table", "polars")


def child(variant: str, size: str, shape: str, data: Path, repeat: int) -> None:
    """One fresh process: set up, answer once, time ``repeat`` answers, print JSON {ms, rss_mb}."""
    from analytics_data import WarmDuckDB, make_app, quiet_log, raw_polars

    key = size.lower()
    facts, dims = data / f"facts_{key}.parquet", data / "dims.parquet"
    lo, hi = filter_bounds(SIZES[size])
    if variant.startswith("nubes"):
        from nubes.testing import Client

        quiet_log()
        home = Path(tempfile.mkdtemp(prefix="nubes-scale-home-"))
        app = make_app(home, data.as_uri(), [f"facts_{key}", "dims"], name="scale")
        client = Client(app)
        route = f"/{'sql' if variant == 'nubes-sql' else 'table'}/{shape}/{key}"
        params = {"lo": lo, "hi": hi} if shape == "filter" else {}

        def run() -> int:
            response = client.get(route, params=params)
            if response.status_code != 200:
                raise SystemExit(f"{route}: HTTP {response.status_code}: {response.text[:300]}")
            return len(response.content)
    elif variant == "duckdb":
        warm = WarmDuckDB()

        def run() -> int:
            return len(warm(shape, facts, dims, lo, hi))
    else:
        def run() -> int:
            return len(raw_polars(shape, facts, dims, lo, hi))

    run()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"ms": statistics.median(times) * 1000, "rss_mb": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,5M,20M")
    parser.add_argument("--shape", default="group-by", choices=SHAPES)
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per variant and size")
    parser.add_argument("--repeat", type=int, default=5, help="timed answers per process (after one warm-up)")
    parser.add_argument("--data", help="folder for the generated files (kept; default: a temporary folder)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size, args.shape, Path(args.data), args.repeat)
        return
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="nubes-scale-") as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        generate(data, sizes)
        print(f"nubes scaling bench: shape {args.shape}, {args.rounds} fresh processes per cell, {args.repeat} warm answers "
              f"each; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        head = f"{'size':<4} {'variant':<12} {'ms':>8} {'x raw':>6} {'peak RSS MiB':>12} {'x raw':>6}"
        print(head)
        print("-" * len(head))
        for size in sizes:
            results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
            for r in range(args.rounds):
                order = list(VARIANTS[r % 4:] + VARIANTS[: r % 4])
                for variant in order:
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", variant, "--size", size, "--shape", args.shape,
                         "--data", str(data), "--repeat", str(args.repeat)],
                        capture_output=True, text=True, check=False)
                    if out.returncode != 0:
                        raise SystemExit(f"{variant} {size} failed:\n{out.stderr[-2000:]}")
                    results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
            med = {v: {k: statistics.median(x[k] for x in results[v]) for k in ("ms", "rss_mb")} for v in VARIANTS}
            for variant in VARIANTS:
                base = {"nubes-sql": "duckdb", "nubes-table": "polars"}.get(variant)
                m = med[variant]
                rt = f"{m['ms'] / med[base]['ms']:5.2f}x" if base else ""
                rr = f"{m['rss_mb'] / med[base]['rss_mb']:5.2f}x" if base else ""
                print(f"{size:<4} {variant:<12} {m['ms']:8.1f} {rt:>6} {m['rss_mb']:12.1f} {rr:>6}")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
