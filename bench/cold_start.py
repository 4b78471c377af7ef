"""Cold start: a fresh interpreter to the first answer of a ``ctx.sql`` route, against a raw DuckDB script.

Both answer the issue's metric query (group-by on 3 of 12 columns of a 1M-row Parquet file on
``file://``). ``raw`` is the script a user would write without nubes: ``import duckdb``, connect,
query, print the rows as JSON. ``nubes`` imports an app module (one dataset, one ``ctx.sql`` route) and
answers one request through ``nubes.testing.Client`` with nubes' defaults (metering on, lineage in a
``file://`` home store). ``nubes-table`` / ``polars`` do the same for the ``ctx.table`` route against a raw
Polars script (for information). Each runs ``--runs`` times, interleaved; wall time of the whole process.
Goal (issue 14): nubes / raw <= 1.25x. The script also reports which heavy modules the SQL route's
process imported (goal: neither polars nor fsspec).

    python bench/cold_start.py [--runs 15] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analytics_data import SQL, generate

QUERY = SQL["group-by"]

RAW = """
import duckdb, json
con = duckdb.connect()
cur = con.execute({query!r})
names = [d[0] for d in cur.description]
print(json.dumps([dict(zip(names, row)) for row in cur.fetchall()], default=str))
"""
RAW_POLARS = """
import polars as pl
print(pl.scan_parquet({path!r}).group_by("category").agg(pl.len().alias("n"), pl.col("amount").sum().alias("amount"),
      pl.col("price").mean().alias("avg_price")).sort("category").collect().write_json())
"""
APP = """
import nubes
app = nubes.App("cold", storage={home!r})
app.dataset("facts", {uri!r})

@app.get("/sql")
def by_sql(ctx):
    return ctx.sql({query!r})

@app.get("/table")
def by_table(ctx):
    import polars as pl
    return (ctx.table("facts").group_by("category").agg(pl.len().alias("n"), pl.col("amount").sum().alias("amount"),
            pl.col("price").mean().alias("avg_price")).sort("category"))
"""
DRIVER = """
import sys
sys.path.insert(0, {folder!r})
from nubes.testing import Client
import coldapp
r = Client(coldapp.app).get({route!r})
assert r.status_code == 200, r.text
print(r.text)
if {report!r}:
    print("MODULES", sorted(m for m in ("polars", "fsspec", "duckdb", "pyarrow", "numpy") if m in sys.modules), file=sys.stderr)
"""


def run(script: Path, cwd: Path) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(script)], cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{script.name} failed:\n{out.stderr[-2000:]}")
    return elapsed * 1000, out.stdout, out.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--data", help="folder for the generated files (kept; default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nubes-cold-") as tmp_name:
        tmp = Path(tmp_name)
        data = Path(args.data) if args.data else tmp / "data"
        facts = generate(data, ["1M"])["facts_1m"]
        home = (tmp / "home").as_uri()
        scripts = {
            "raw": RAW.format(query=QUERY.format(facts=f"read_parquet('{facts}')")),
            "nubes": DRIVER.format(folder=str(tmp), route="/sql", report=False),
            "polars": RAW_POLARS.format(path=str(facts)),
            "nubes-table": DRIVER.format(folder=str(tmp), route="/table", report=False),
        }
        (tmp / "coldapp.py").write_text(textwrap.dedent(APP.format(home=home, uri=facts.as_uri(), query=QUERY.format(facts="facts"))))
        paths = {}
        for name, text in scripts.items():
            paths[name] = tmp / f"cold_{name.replace('-', '_')}.py"
            paths[name].write_text(textwrap.dedent(text))
        report = tmp / "report.py"
        report.write_text(textwrap.dedent(DRIVER.format(folder=str(tmp), route="/sql", report=True)))
        answers = {name: json.loads(run(path, tmp)[1]) for name, path in paths.items()}  # also warms the page cache
        times: dict[str, list[float]] = {name: [] for name in paths}
        names = list(paths)
        for i in range(args.runs):
            for name in names[i % 4:] + names[: i % 4]:
                times[name].append(run(paths[name], tmp)[0])
        modules = run(report, tmp)[2].strip().splitlines()[-1]
        print(f"nubes cold-start bench: {args.runs} fresh processes each, interleaved; {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}")
        head = f"{'variant':<12} {'min ms':>8} {'median ms':>10} {'x raw (median)':>15} {'x raw (min)':>12}"
        print(head)
        print("-" * len(head))
        for name, base in (("raw", None), ("nubes", "raw"), ("polars", None), ("nubes-table", "polars")):
            t = times[name]
            ratio = f"{statistics.median(t) / statistics.median(times[base]):14.2f}x" if base else ""
            rmin = f"{min(t) / min(times[base]):11.2f}x" if base else ""
            print(f"{name:<12} {min(t):8.1f} {statistics.median(t):10.1f} {ratio:>15} {rmin:>12}")
        same = [len(answers["nubes"]) == len(answers["raw"]), len(answers["nubes-table"]) == len(answers["polars"])]
        print(f"answers have the raw row counts: {all(same)}; ctx.sql route process imported: {modules}")
        print("goal: nubes / raw <= 1.25x (issue 14)")


if __name__ == "__main__":
    main()
