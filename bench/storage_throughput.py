"""Throughput and latency of ``nubes.storage`` stores against the raw cloud SDK doing the same work.

For each backend (``s3``, ``gs``, ``az``, ``file``, ``mem``) and in the same run, this measures:

* ``put bytes``: ``store.put(key, data)`` against the SDK's plain one-call upload of the same bytes
  with its default settings (boto3 ``put_object``; GCS ``blob.upload_from_string``; Azure
  ``upload_blob(data, overwrite=True)``; local ``open``/``write``/``fsync``/``os.replace``, since
  nubes fsyncs by default) -- what a user would write without nubes;
* ``put stream``: ``store.put(key, BytesIO)`` against the SDK's streaming upload configured the way
  nubes streams (boto3 ``upload_fileobj`` with an 8 MiB part size and one thread, as nubes sends one
  8 MiB part at a time; GCS ``upload_from_file`` on a blob with nubes' 8 MiB ``chunk_size``; Azure
  ``upload_blob(stream, length=...)`` on a client with nubes' 4 MiB block / single-put sizes and
  ``max_concurrency=4``; local ``shutil.copyfileobj`` to a temporary file, ``fsync``, ``os.replace``);
* ``get``: ``store.get(key)`` against ``get_object()['Body'].read()``, ``blob.download_as_bytes()``,
  ``download_blob().readall()``, ``open().read()``, all of the same object;
* ``put 1KiB`` / ``get 1KiB``: per-operation latency of 1 KiB objects (median over ``--ops``).

``mem://`` has no raw counterpart (a dict assignment measures nothing) and is reported alone.

Large-object rows report the median MiB/s over ``--repeat`` runs; nubes and raw runs alternate (and
swap which goes first every run) so drift hits both alike, after untimed warm-ups of each. The
``within 10%`` column is the goal of the issue: nubes at least 90% of raw throughput (or at most
110% of raw latency).

The loopback servers are started here and stopped at the end, even on error: ``moto_server`` (S3),
``gcp-storage-emulator`` (GCS, in memory) and Azurite (``npm ci`` in the repo root installs it).
Server and client share the machine, so absolute numbers say little about the cloud; the ratios say
how much nubes adds on top of the SDK.

    .venv/bin/python bench/storage_throughput.py [--size-mb 16] [--repeat 7] [--ops 100]
        [--backends s3,gs,az,file,mem]
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import nubes.storage as storage

MiB = 1024 * 1024
SMALL = 1024
ALL_BACKENDS = ("s3", "gs", "az", "file", "mem")
BUCKET = "nubes-bench"


@dataclass
class Row:
    backend: str
    op: str
    size: int
    kind: str  # "tput" (MiB/s, higher is better) or "lat" (ms, lower is better)
    nubes: float
    raw: float | None
    note: str = ""


@dataclass
class Case:
    """One operation, done by nubes and by the raw SDK; ``setup`` runs untimed before each call."""

    op: str
    size: int
    kind: str
    nubes: Callable[[], Any]
    raw: Callable[[], Any] | None
    setup: Callable[[], Any] | None = None
    note: str = ""
    check: Callable[[Any, Any], None] | None = None


# -- timing ------------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any], setup: Callable[[], Any] | None) -> tuple[float, Any]:
    if setup is not None:
        setup()
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def measure(case: Case, runs: int) -> tuple[float, float | None]:
    """Median seconds per call of nubes and raw, interleaved, after one untimed warm-up of each."""
    fns: list[tuple[str, Callable[[], Any]]] = [("nubes", case.nubes)]
    if case.raw is not None:
        fns.append(("raw", case.raw))
    results: dict[str, Any] = {}
    for name, fn in fns:  # warm-up: connections, imports, first-object server paths
        for _ in range(3 if case.kind == "lat" else 1):
            _, results[name] = _timed(fn, case.setup)
    if case.check is not None and case.raw is not None:
        case.check(results["nubes"], results["raw"])
    times: dict[str, list[float]] = {name: [] for name, _ in fns}
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            order = fns if i % 2 == 0 else fns[::-1]
            for name, fn in order:
                elapsed, _ = _timed(fn, case.setup)
                times[name].append(elapsed)
    finally:
        if was_enabled:
            gc.enable()
    nubes_t = statistics.median(times["nubes"])
    raw_t = statistics.median(times["raw"]) if "raw" in times else None
    return nubes_t, raw_t


def _same(expected: bytes) -> Callable[[Any, Any], None]:
    def check(a: Any, b: Any) -> None:
        if bytes(a) != expected or bytes(b) != expected:
            raise AssertionError("nubes and raw reads did not both return the object written")

    return check


def run_cases(backend: str, cases: list[Case], repeat: int, ops: int) -> list[Row]:
    rows = []
    for case in cases:
        runs = ops if case.kind == "lat" else repeat
        n, r = measure(case, runs)
        if case.kind == "tput":  # seconds per call -> MiB/s
            value: Callable[[float], float] = lambda t, size=case.size: size / MiB / t  # noqa: E731
        else:  # seconds per call -> ms
            value = lambda t: t * 1e3  # noqa: E731
        rows.append(Row(backend, case.op, case.size, case.kind, value(n), None if r is None else value(r), case.note))
        print(f"  {backend:5} {case.op:11} done", file=sys.stderr, flush=True)
    return rows


# -- per-backend cases -------------------------------------------------------------------------
def _common_cases(
    store: Any,
    big: bytes,
    small: bytes,
    raw_put: Callable[[str, bytes], Any] | None,
    raw_put_stream: Callable[[str, io.BytesIO], Any] | None,
    raw_get: Callable[[str], bytes] | None,
    notes: dict[str, str],
) -> list[Case]:
    """The five cases on ``store``; raw callables take the same key (the store has no prefix)."""
    streams = [io.BytesIO(big)]

    def fresh() -> None:  # a new stream each call: boto3's upload_fileobj closes the one it is given
        streams[0] = io.BytesIO(big)

    store.put("bench/big", big)
    store.put("bench/small", small)
    cases = [
        Case("put bytes", len(big), "tput", lambda: store.put("bench/put", big),
             None if raw_put is None else (lambda: raw_put("bench/put", big)), note=notes.get("put bytes", "")),
        Case("put stream", len(big), "tput", lambda: store.put("bench/put", streams[0]),
             None if raw_put_stream is None else (lambda: raw_put_stream("bench/put", streams[0])), setup=fresh,
             note=notes.get("put stream", "")),
        Case("get", len(big), "tput", lambda: store.get("bench/big"),
             None if raw_get is None else (lambda: raw_get("bench/big")), check=_same(big), note=notes.get("get", "")),
        Case("put 1KiB", len(small), "lat", lambda: store.put("bench/put-small", small),
             None if raw_put is None else (lambda: raw_put("bench/put-small", small)), note=notes.get("put 1KiB", "")),
        Case("get 1KiB", len(small), "lat", lambda: store.get("bench/small"),
             None if raw_get is None else (lambda: raw_get("bench/small")), check=_same(small),
             note=notes.get("get 1KiB", "")),
    ]
    return cases


def bench_s3(stack: ExitStack, big: bytes, small: bytes, repeat: int, ops: int) -> list[Row]:
    import boto3
    from boto3.s3.transfer import TransferConfig

    from nubes.storage.s3 import S3Store
    from nubes.testing.servers.moto import MotoServer

    moto = MotoServer()
    stack.callback(moto.stop)
    moto.start()
    os.environ.update(moto.env())
    moto.create_bucket(BUCKET)
    store = storage.open(f"s3://{BUCKET}")
    client = boto3.client("s3")  # the SDK's defaults, configured by the same environment
    stack.callback(client.close)
    part = S3Store.part_size
    like_nubes = TransferConfig(multipart_threshold=part, multipart_chunksize=part, use_threads=False)

    def raw_put(key: str, data: bytes) -> None:
        client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def raw_put_stream(key: str, f: io.BytesIO) -> None:
        client.upload_fileobj(f, BUCKET, key, Config=like_nubes)

    def raw_get(key: str) -> bytes:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
        try:
            return body.read()
        finally:
            body.close()

    notes = {
        "put bytes": "put_object",
        "put stream": f"upload_fileobj, {part // MiB} MiB parts, 1 thread",
        "get": "get_object()['Body'].read()",
        "put 1KiB": "put_object",
        "get 1KiB": "get_object()['Body'].read()",
    }
    cases = _common_cases(store, big, small, raw_put, raw_put_stream, raw_get, notes)
    # for reference: boto3's default transfer (8 MiB parts, 10 threads) against nubes' sequential parts
    streams = [io.BytesIO(big)]

    def fresh() -> None:
        streams[0] = io.BytesIO(big)

    cases.insert(2, Case("put stream", len(big), "tput", lambda: store.put("bench/put", streams[0]),
                         lambda: client.upload_fileobj(streams[0], BUCKET, "bench/put"), setup=fresh,
                         note="upload_fileobj, boto3 defaults (10 threads) [info]"))
    return run_cases("s3", cases, repeat, ops)


def bench_gs(stack: ExitStack, big: bytes, small: bytes, repeat: int, ops: int) -> list[Row]:
    from google.cloud import storage as gcs

    from nubes.testing.servers.gcs import GCSEmulator

    emulator = GCSEmulator()
    stack.callback(emulator.stop)
    emulator.start()
    os.environ.update(emulator.env())
    emulator.create_bucket(BUCKET)
    store = storage.open(f"gs://{BUCKET}")
    chunk = store.chunk_size  # type: ignore[attr-defined]
    client = gcs.Client()  # STORAGE_EMULATOR_HOST: anonymous, no project
    bucket = client.bucket(BUCKET)

    def raw_put(key: str, data: bytes) -> None:
        bucket.blob(key).upload_from_string(data)

    def raw_put_stream(key: str, f: io.BytesIO) -> None:
        bucket.blob(key, chunk_size=chunk).upload_from_file(f, size=len(big))

    def raw_get(key: str) -> bytes:
        return bucket.blob(key).download_as_bytes()

    notes = {
        "put bytes": "upload_from_string",
        "put stream": f"upload_from_file, chunk_size={chunk // MiB} MiB",
        "get": "download_as_bytes()",
        "put 1KiB": "upload_from_string",
        "get 1KiB": "download_as_bytes()",
    }
    return run_cases("gs", _common_cases(store, big, small, raw_put, raw_put_stream, raw_get, notes), repeat, ops)


def bench_az(stack: ExitStack, big: bytes, small: bytes, repeat: int, ops: int) -> list[Row]:
    from azure.storage.blob import BlobServiceClient

    from nubes.storage.azure import _DEFAULTS
    from nubes.testing.servers.azurite import Azurite

    azurite = Azurite()
    stack.callback(azurite.close)
    azurite.start()
    os.environ.update(azurite.env())
    conn = azurite.connection_string
    service = BlobServiceClient.from_connection_string(conn)  # the SDK's defaults
    stack.callback(service.close)
    service.create_container(BUCKET)
    container = service.get_container_client(BUCKET)
    block, single, conc = _DEFAULTS["max_block_size"], _DEFAULTS["max_single_put_size"], _DEFAULTS["max_concurrency"]
    like_service = BlobServiceClient.from_connection_string(conn, max_block_size=block, max_single_put_size=single)
    stack.callback(like_service.close)
    like_container = like_service.get_container_client(BUCKET)
    store = storage.open(f"az://{BUCKET}")

    def raw_put(key: str, data: bytes) -> None:
        container.get_blob_client(key).upload_blob(data, overwrite=True)

    def raw_put_stream(key: str, f: io.BytesIO) -> None:
        like_container.get_blob_client(key).upload_blob(f, length=len(big), overwrite=True, max_concurrency=conc)

    def raw_get(key: str) -> bytes:
        return container.get_blob_client(key).download_blob().readall()

    notes = {
        "put bytes": "upload_blob, SDK defaults",
        "put stream": f"upload_blob, {single // MiB} MiB single put/blocks, max_concurrency={conc}",
        "get": "download_blob().readall()",
        "put 1KiB": "upload_blob",
        "get 1KiB": "download_blob().readall()",
    }
    return run_cases("az", _common_cases(store, big, small, raw_put, raw_put_stream, raw_get, notes), repeat, ops)


def bench_file(stack: ExitStack, big: bytes, small: bytes, repeat: int, ops: int) -> list[Row]:
    root = tempfile.mkdtemp(prefix="nubes-bench-file-")
    stack.callback(shutil.rmtree, root, True)
    store = storage.open(f"file://{root}/nubes")
    raw_root = os.path.join(root, "raw")
    tmp_dir = os.path.join(raw_root, ".tmp")
    os.makedirs(tmp_dir)

    def _place(key: str, write: Callable[[Any], None]) -> None:
        dest = os.path.join(raw_root, *key.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = os.path.join(tmp_dir, uuid.uuid4().hex)
        with open(tmp, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())  # nubes fsyncs by default: compare like with like
        os.replace(tmp, dest)

    def raw_put(key: str, data: bytes) -> None:
        _place(key, lambda out: out.write(data))

    def raw_put_stream(key: str, f: io.BytesIO) -> None:
        _place(key, lambda out: shutil.copyfileobj(f, out, MiB))

    def raw_get(key: str) -> bytes:
        with open(os.path.join(raw_root, *key.split("/")), "rb") as f:
            return f.read()

    raw_put("bench/big", big)
    raw_put("bench/small", small)
    notes = {
        "put bytes": "open/write/fsync/os.replace",
        "put stream": "copyfileobj/fsync/os.replace",
        "get": "open().read()",
        "put 1KiB": "open/write/fsync/os.replace",
        "get 1KiB": "open().read()",
    }
    rows = run_cases("file", _common_cases(store, big, small, raw_put, raw_put_stream, raw_get, notes), repeat, ops)

    # the same without fsync on either side: what nubes itself costs on top of the file system
    nofsync = storage.open(f"file://{root}/nubes-nofsync", fsync=False)

    def raw_put_nofsync(key: str, data: bytes) -> None:
        dest = os.path.join(raw_root, *key.split("/"))
        tmp = os.path.join(tmp_dir, uuid.uuid4().hex)
        with open(tmp, "wb") as out:
            out.write(data)
        os.replace(tmp, dest)

    nofsync.put("bench/warm", small)
    cases = [
        Case("put bytes", len(big), "tput", lambda: nofsync.put("bench/put", big),
             lambda: raw_put_nofsync("bench/put", big), note="fsync=False both: open/write/os.replace"),
        Case("put 1KiB", len(small), "lat", lambda: nofsync.put("bench/put-small", small),
             lambda: raw_put_nofsync("bench/put-small", small), note="fsync=False both: open/write/os.replace"),
    ]
    return rows + run_cases("file", cases, repeat, ops)


def bench_mem(stack: ExitStack, big: bytes, small: bytes, repeat: int, ops: int) -> list[Row]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    store = storage.open(f"mem://{name}")
    stack.callback(type(store).drop, name)  # type: ignore[attr-defined]
    notes = {"get": "returns the stored bytes, no copy", "get 1KiB": "returns the stored bytes, no copy"}
    return run_cases("mem", _common_cases(store, big, small, None, None, None, notes), repeat, ops)


BENCHES = {"s3": bench_s3, "gs": bench_gs, "az": bench_az, "file": bench_file, "mem": bench_mem}


# -- report ------------------------------------------------------------------------------------
def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // 1024} KiB"


def table(rows: list[Row]) -> str:
    head = ["backend", "operation", "size", "nubes", "raw", "nubes/raw", "within 10%", "raw call"]
    lines = []
    for r in rows:
        unit = "MiB/s" if r.kind == "tput" else "ms"
        fmt = (lambda v, unit=unit: f"{v:,.1f} {unit}") if r.kind == "tput" else (lambda v, unit=unit: f"{v:.3f} {unit}")
        if r.raw is None:
            ratio, ok = "-", "-"
        else:
            ratio_v = r.nubes / r.raw
            ratio = f"{ratio_v:.2f}"
            good = ratio_v >= 0.9 if r.kind == "tput" else ratio_v <= 1.1
            ok = "yes" if good else "NO"
        raw = "-" if r.raw is None else fmt(r.raw)
        lines.append([r.backend, r.op, _size(r.size), fmt(r.nubes), raw, ratio, ok, r.note])
    widths = [max(len(x) for x in col) for col in zip(head, *lines, strict=True)]
    right = {3, 4, 5}

    def render(cells: list[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    out = [render(head), render(["-" * w for w in widths])]
    out += [render(line) for line in lines]
    return "\n".join(out)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=16, help="large-object size in MiB (default 16)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per large-object case (default 7)")
    parser.add_argument("--ops", type=int, default=100, help="timed operations per 1 KiB latency case (default 100)")
    parser.add_argument(
        "--backends", default=",".join(ALL_BACKENDS), help="comma-separated subset of " + ",".join(ALL_BACKENDS)
    )
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(ALL_BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")

    # a plain SIGTERM would skip the finally blocks that stop the servers: make it unwind like Ctrl-C
    signal.signal(signal.SIGTERM, _terminate)
    big = os.urandom(args.size_mb * MiB)
    small = os.urandom(SMALL)
    rows: list[Row] = []
    failed: list[str] = []
    saved_env = dict(os.environ)
    t0 = time.perf_counter()
    for backend in backends:
        t = time.perf_counter()
        print(f"{backend}: starting", file=sys.stderr, flush=True)
        with ExitStack() as stack:  # stops this backend's server (and its clients), even on error
            try:
                rows += BENCHES[backend](stack, big, small, args.repeat, args.ops)
            except Exception as exc:
                failed.append(f"{backend}: {type(exc).__name__}: {exc}")
                traceback.print_exc()
            finally:
                os.environ.clear()
                os.environ.update(saved_env)
        print(f"{backend}: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)

    print(
        f"\nnubes.storage vs raw SDK: {args.size_mb} MiB objects, median of {args.repeat} "
        f"(1 KiB: median of {args.ops} ops), nubes/raw interleaved; {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, {time.perf_counter() - t0:.0f}s total\n"
    )
    print(table(rows))
    print("\nMiB/s: higher is better (within 10%: nubes/raw >= 0.90); ms: lower is better (nubes/raw <= 1.10).")
    for line in failed:
        print(f"FAILED {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
