"""What `nubes build` produces and what it costs: artifact sizes per cloud and per app, build time,
and AWS cold starts (init + first DuckDB answer) under the real Lambda RIE with and without target
bytecode.

Apps: the quickstart (DuckDB + Polars, and scikit-learn to seed its data), the classification example
(scikit-learn training and serving), and ``bench/apps/analytics.py`` (DuckDB SQL only). Each is built
with nubes' defaults (derived footprints, slimming, sourceless target bytecode, split by footprint when
one zip is over Lambda's limit; an app that cannot split is reported over the limit and built as a
container image context instead). The baseline for the cold start is the same artifact without
bytecode (what a plain ``pip install --target`` + zip gives on a read-only task root).

    python bench/build.py                       # every app on every cloud, 3 cold starts each way
    python bench/build.py --apps analytics --clouds aws --cold 5

Needs: a Python of the target version (3.12 by default), the package index, and for cold starts the
RIE at ../shared/tools/aws-lambda-rie/aws-lambda-rie plus moto (``pip install 'moto[server]'``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nubes.deploy.build import BuildError, BuildOptions, build  # noqa: E402

APPS = {
    "quickstart": ROOT / "examples" / "quickstart" / "app.py",
    "analytics": ROOT / "bench" / "apps" / "analytics.py",
    "classification": ROOT / "examples" / "classification" / "app.py",
}
STORES = {"aws": "s3://nubes-bench/app", "gcp": "gs://nubes-bench/app", "azure": "az://nubes-bench/app"}
RIE = Path(os.environ.get("NUBES_LAMBDA_RIE") or ROOT.parent / "shared" / "tools" / "aws-lambda-rie" / "aws-lambda-rie")
if not RIE.exists():
    RIE = Path("/work/shared/tools/aws-lambda-rie/aws-lambda-rie")


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def build_one(app: str, cloud: str, out: Path, python: str, wheelhouse: Path, **options: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = build(BuildOptions(f"{APPS[app]}:app", cloud, python=python, out=out, storage=STORES[cloud],
                                    wheelhouse=wheelhouse, **options))
    except BuildError as exc:
        return {"error": str(exc).split(";")[0], "seconds": time.perf_counter() - started}
    m = result.manifest
    return {"manifest": m, "seconds": time.perf_counter() - started, "timings": result.timings}


def size_rows(args: argparse.Namespace, work: Path) -> list[list[str]]:
    rows = []
    for app in args.apps:
        for cloud in args.clouds:
            got = build_one(app, cloud, work / f"{app}-{cloud}", args.python, work / "wheels")
            if "error" in got and cloud == "aws":
                rows.append([app, cloud, "zip", "—", "—", "—", f"{got['seconds']:.0f}", got["error"][:70]])
                got = build_one(app, cloud, work / f"{app}-{cloud}-image", args.python, work / "wheels", format="image")
            if "error" in got:
                rows.append([app, cloud, "?", "—", "—", "—", f"{got['seconds']:.0f}", got["error"][:70]])
                continue
            m = got["manifest"]
            for fn in m["functions"]:
                top = ", ".join(f"{p['name']} {mb(p['unzipped_bytes'])}" for p in fn["packages"][:3])
                rows.append([app, cloud, m["format"], Path(fn["path"]).name, mb(fn["unzipped_bytes"]), mb(fn["zipped_bytes"]),
                             f"{got['seconds']:.0f}", top])
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cold_starts(args: argparse.Namespace, work: Path) -> list[list[str]]:
    """Init + first DuckDB answer for the analytics app's DuckDB function, with and without bytecode."""
    from nubes.deploy.build.bytecode import find_interpreter
    from nubes.deploy.build.resolve import Target, download
    from nubes.testing.servers.moto import MotoServer

    exe = find_interpreter(args.python)
    if exe is None or not RIE.exists():
        return [[f"(skipped: no Python {args.python} or no RIE at {RIE})", "", "", "", ""]]
    venv = work / "ric"
    subprocess.run([exe, "-m", "venv", str(venv)], check=True)
    download(["awslambdaric"], Target(args.python, "x86_64", ("manylinux_2_28_x86_64", "manylinux2014_x86_64")), work / "wheels")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(work / "wheels"), "awslambdaric"],
                   check=True)
    rows = []
    with MotoServer() as moto:
        moto.create_bucket("nubes-bench")
        _seed(moto)
        for label, bytecode in (("target bytecode (nubes default)", True), ("no bytecode (baseline)", False)):
            got = build_one("analytics", "aws", work / f"cold-{bytecode}", args.python, work / "wheels", bytecode=bytecode)
            m = got["manifest"]
            fn = next(f for f in m["functions"] if any("/regions" in r for r in f["routes"]))
            task = work / f"task-{bytecode}"
            with zipfile.ZipFile(fn["path"]) as zf:
                zf.extractall(task)
            for p in sorted(task.rglob("*"), reverse=True):
                p.chmod(0o555 if p.is_dir() else 0o444)
            samples = [_cold(task, venv / "bin" / "python", moto.env()) for _ in range(args.cold)]
            inits = sorted(s[0] for s in samples if s[0] is not None)
            firsts = sorted(s[1] for s in samples)
            warms = sorted(s[2] for s in samples)
            rows.append([label, mb(fn["unzipped_bytes"]), f"{inits[len(inits) // 2]:.0f}" if inits else "?",
                         f"{firsts[len(firsts) // 2]:.0f}", f"{warms[len(warms) // 2]:.1f}"])
    return rows


def _seed(moto: Any) -> None:
    import polars as pl

    frame = pl.DataFrame({"region": ["north", "south", "east", "west"] * 25_000, "amount": [float(i % 97) for i in range(100_000)]})
    buf = io.BytesIO()
    frame.write_parquet(buf)
    moto.client().put_object(Bucket="nubes-bench", Key="app/sales.parquet", Body=buf.getvalue())


def _cold(task: Path, python: Path, env: dict[str, str]) -> tuple[float | None, float, float]:
    """(INIT REPORT ms, first invocation wall ms incl. init, second invocation wall ms) of one fresh runtime."""
    port, api = free_port(), free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NUBES_", "PYTHON", "AWS_"))}
    full.update({"LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
                 "AWS_LAMBDA_FUNCTION_TIMEOUT": "60", "AWS_REGION": "us-east-1", "NUBES_METERING": "off",
                 # Lambda's task root is read-only; as root here chmod is not enough, so no bytecode cache may be written
                 "PYTHONDONTWRITEBYTECODE": "1", **env})
    proc = subprocess.Popen([str(RIE), "--runtime-interface-emulator-address", f"127.0.0.1:{port}", "--runtime-api-address",
                             f"127.0.0.1:{api}", str(python), "-m", "awslambdaric", "lambda_function.handler"], cwd=task, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        event = {"version": "2.0", "routeKey": "$default", "rawPath": "/regions", "rawQueryString": "", "headers": {"host": "x"},
                 "requestContext": {"http": {"method": "GET", "path": "/regions", "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4",
                                             "userAgent": "bench"}, "requestId": "r", "routeKey": "$default", "stage": "$default",
                                    "domainName": "x", "accountId": "1", "apiId": "a", "time": "", "timeEpoch": 0},
                 "isBase64Encoded": False}
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations",
                                         data=json.dumps(event).encode(), method="POST")
            with urllib.request.urlopen(req, timeout=120) as resp:
                answer = json.loads(resp.read())
            timings.append((time.perf_counter() - started) * 1000)
            if answer.get("statusCode") != 200:
                raise SystemExit(f"the analytics function answered {answer}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=10)[0].decode("utf-8", "replace")
    init = re.search(r"INIT REPORT\(durationMs: ([\d.]+)\)", out)
    return (float(init.group(1)) if init else None), timings[0], timings[1]


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", nargs="+", default=list(APPS), choices=list(APPS))
    parser.add_argument("--clouds", nargs="+", default=["aws", "gcp", "azure"], choices=["aws", "gcp", "azure"])
    parser.add_argument("--python", default="3.12")
    parser.add_argument("--cold", type=int, default=3, help="cold starts per variant (0: skip)")
    parser.add_argument("--no-sizes", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nubes-bench-build-") as tmp:
        work = Path(tmp)
        if not args.no_sizes:
            table("Artifacts (MB; build seconds include resolving wheels)", ["app", "cloud", "format", "artifact", "unzipped",
                  "zipped", "build s", "largest packages / why not"], size_rows(args, work))
        if args.cold:
            table(f"AWS cold start under the RIE, analytics app's DuckDB function (median of {args.cold}; ms)",
                  ["variant", "unzipped MB", "init", "first answer (init + DuckDB)", "warm answer"], cold_starts(args, work))


if __name__ == "__main__":
    main()
