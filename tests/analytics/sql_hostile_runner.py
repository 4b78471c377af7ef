"""Run hostile SQL against POST /_nubes/sql in this process, one query per line of stdin, and print one
JSON line per query: status, content type, body size, seconds, and the peak RSS over the process's
resident size just before the query and over its idle size before the first (the kernel's high-water
mark, reset through /proc/self/clear_refs before each query).

Used by tests/analytics/test_sql_endpoint_limits.py in a subprocess of its own, so the numbers are
this process's alone."""

from __future__ import annotations

import json
import sys
import time
import uuid


def _status_mb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) // 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    import nubes
    from nubes.testing import Client

    timeout_s = float(sys.argv[1])
    app = nubes.App("hostile", storage=f"mem://hostile-{uuid.uuid4().hex}", sql_endpoint=True, auth=False)
    client = Client(app)
    client.post("/_nubes/sql", json={"sql": "SELECT 1"})  # warm: DuckDB loaded, one sandbox made and closed
    idle = _status_mb("VmRSS")
    for line in sys.stdin:
        sql = line.strip()
        if not sql:
            continue
        baseline = _status_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the high-water mark starts again from the current resident size
        started = time.monotonic()
        response = client.post("/_nubes/sql", json={"sql": sql, "timeout_s": timeout_s})
        seconds = time.monotonic() - started
        print(json.dumps({
            "sql": sql, "status": response.status_code, "type": response.headers.get("content-type", ""),
            "bytes": len(response.content), "seconds": round(seconds, 3),
            "peak_over_mb": _status_mb("VmHWM") - baseline, "peak_over_idle_mb": _status_mb("VmHWM") - idle,
            "title": response.json().get("title") if response.status_code != 200 else None,
        }), flush=True)


if __name__ == "__main__":
    main()
