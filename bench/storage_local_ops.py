"""Per-operation latency of ``file://`` against plain ``os`` calls doing the same work unconfined.

The raw side is what a user would write without nubes and without any protection: ``open(...).read()``
of ``root/key``, ``os.stat``, ``os.path.exists``, an ``os.scandir`` walk, ``open/write/os.replace``
and ``os.unlink``. nubes does the same and more: it checks the key, resolves it one name at a time
from folder descriptors (``O_NOFOLLOW``), refuses links that leave the root, reads its etag record,
and (for puts) writes a temporary file with an extended attribute and takes a lock for conditional
writes. The ratio is that price. Both sides run with ``fsync=False``; nubes and raw alternate (and
swap which goes first every round), and each cell is the fastest of ``--rounds`` rounds, which is
the most stable figure on a shared machine; ``--cpu`` times the thread's CPU (user + system) rather
than the wall clock, which other processes on a busy machine disturb far less.

    .venv/bin/python bench/storage_local_ops.py [--rounds 15] [--ops 1.0] [--cpu]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable
from typing import Any

import nubes.storage as storage

SMALL = os.urandom(1024)


def _cases(store: Any, raw: str) -> list[tuple[str, Callable[[], Any], Callable[[], Any], int]]:
    """(label, nubes call, raw call, calls per round) on the same keys under two roots."""

    def path(key: str) -> str:
        return os.path.join(raw, *key.split("/"))

    def raw_get(key: str) -> bytes:
        with open(path(key), "rb") as f:
            return f.read()

    def raw_put(key: str, data: bytes) -> None:
        tmp = os.path.join(raw, ".tmp", uuid.uuid4().hex)
        with open(tmp, "wb") as out:
            out.write(data)
        os.makedirs(os.path.dirname(path(key)), exist_ok=True)
        os.replace(tmp, path(key))

    def raw_list(folder: str) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for dirpath, dirnames, filenames in os.walk(path(folder)):
            dirnames.sort()
            found += [(name, os.stat(os.path.join(dirpath, name)).st_size) for name in sorted(filenames)]
        return found

    def raw_put_delete() -> None:
        raw_put("d/x/y", SMALL)
        os.unlink(path("d/x/y"))
        os.rmdir(path("d/x"))
        os.rmdir(path("d"))

    def nubes_put_delete() -> None:
        store.put("d/x/y", SMALL)
        store.delete("d/x/y")

    return [
        ("get 1 KiB (top level)", lambda: store.get("top"), lambda: raw_get("top"), 2000),
        ("get 1 KiB (a/b/c/d/key)", lambda: store.get("a/b/c/d/key"), lambda: raw_get("a/b/c/d/key"), 2000),
        ("get_range 10 bytes", lambda: store.get_range("bench/small", 10, 20), lambda: raw_get("bench/small")[10:20], 2000),
        ("head", lambda: store.head("bench/small"), lambda: os.stat(path("bench/small")), 2000),
        ("exists (missing)", lambda: store.exists("bench/nothing"), lambda: os.path.exists(path("bench/nothing")), 2000),
        ("list 500 keys", lambda: list(store.list("many/")), lambda: raw_list("many"), 10),
        ("put 1 KiB", lambda: store.put("bench/put", SMALL), lambda: raw_put("bench/put", SMALL), 300),
        ("put + delete (nested, pruned)", nubes_put_delete, raw_put_delete, 200),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds per case; each cell is the fastest (default 15)")
    parser.add_argument("--ops", type=float, default=1.0, help="scale the calls per round (default 1.0)")
    parser.add_argument("--cpu", action="store_true", help="time the thread's CPU, not the wall clock")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="nubes-bench-local-")
    try:
        store = storage.open(f"file://{base}/nubes", fsync=False)
        raw = os.path.join(base, "raw")
        os.makedirs(os.path.join(raw, ".tmp"))
        for key in ["top", "a/b/c/d/key", "bench/small", *(f"many/{i % 5}/{i:04d}" for i in range(500))]:
            store.put(key, SMALL)
            os.makedirs(os.path.dirname(os.path.join(raw, key)) or raw, exist_ok=True)
            with open(os.path.join(raw, key), "wb") as f:
                f.write(SMALL)
        clock = "thread CPU time" if args.cpu else "wall time"
        print(f"file:// vs unconfined os calls, fsync off, {clock}, fastest of {args.rounds} rounds; "
              f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
        print(f"{'operation':32} {'nubes us':>10} {'raw us':>10} {'nubes/raw':>10}")
        print(f"{'-' * 32} {'-' * 10} {'-' * 10} {'-' * 10}")
        for label, nubes_call, raw_call, n in _cases(store, raw):
            calls = max(1, int(n * args.ops))
            best = {"nubes": float("inf"), "raw": float("inf")}
            for r in range(args.rounds):
                order = [("nubes", nubes_call), ("raw", raw_call)]
                for name, call in order if r % 2 == 0 else order[::-1]:
                    timer = timeit.Timer(call, timer=time.thread_time if args.cpu else time.perf_counter)
                    best[name] = min(best[name], timer.timeit(number=calls) / calls * 1e6)
            print(f"{label:32} {best['nubes']:10.1f} {best['raw']:10.1f} {best['nubes'] / best['raw']:10.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
