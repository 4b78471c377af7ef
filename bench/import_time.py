"""What `import nubes` costs a cold interpreter, against a bare interpreter start, in the same run.

Runs both commands interleaved N times (default 30) in fresh processes and prints a table of
min/median wall time, the difference, and which heavy libraries `import nubes` loaded beyond
what the bare interpreter already had (goal: +60 ms at most, and none of the heavy ones).

    python bench/import_time.py [N]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

HEAVY = ("duckdb", "polars", "sklearn", "numpy", "pyarrow", "boto3", "botocore", "google.cloud.storage",
         "azure", "functions_framework", "flask", "typer", "rich", "asyncio")
PROBE = "import sys, json; before=set(sys.modules); {stmt}; print(json.dumps(sorted(set(sys.modules)-before)))"


def wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    bare, nubes = [], []
    for _ in range(n):
        bare.append(wall("pass"))
        nubes.append(wall("import nubes"))
    added = json.loads(subprocess.run([sys.executable, "-c", PROBE.format(stmt="import nubes")], check=True,
                                      capture_output=True, text=True).stdout)
    heavy = sorted({m for m in added for h in HEAVY if m == h or m.startswith(h + ".")})
    rows = [("python -c pass", bare), ("python -c 'import nubes'", nubes)]
    print(f"{'command':<28}{'min ms':>10}{'median ms':>12}")
    for name, xs in rows:
        print(f"{name:<28}{min(xs):>10.1f}{statistics.median(xs):>12.1f}")
    diff_min = min(nubes) - min(bare)
    diff_med = statistics.median(nubes) - statistics.median(bare)
    print(f"{'import nubes adds':<28}{diff_min:>10.1f}{diff_med:>12.1f}   (goal <= 60 ms)")
    print(f"modules added: {len(added)}; heavy among them: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
