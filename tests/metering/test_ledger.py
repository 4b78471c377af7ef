"""Ledger integrity: concurrent invocations, failing stores, lost answers, the bounded buffer, the spool and its
replay (torn lines, crashes between write and delete, live writers), DuckDB reads."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import nubes
from nubes.core.events import Platform
from nubes.core.request import Request
from nubes.errors import StorageUnavailable
from nubes.metering import configure, flush, meter_of
from nubes.metering.ledger import PREFIX, Ledger, records
from nubes.storage.journal import Journal, batches
from nubes.storage.local import LocalStore
from nubes.storage.memory import MemoryStore

AWS = Platform("aws", function_name="f", memory_mb=256, region="us-east-1", emulated=True)


class Flaky:
    """A store that fails its first ``failures`` puts (``lose_answer``: writes, then fails anyway)."""

    def __init__(self, base: Any, failures: int, *, lose_answer: bool = False) -> None:
        self.base, self.failures, self.lose_answer = base, failures, lose_answer
        self.uri, self.stats = base.uri, base.stats
        self.puts = 0
        self._lock = threading.Lock()

    def put(self, key: str, data: Any, **kw: Any) -> Any:
        with self._lock:
            self.puts += 1
            fail = self.puts <= self.failures
        if fail and self.lose_answer:
            self.base.put(key, data, **kw)
        if fail:
            raise StorageUnavailable("injected outage", uri=self.uri, key=key)
        return self.base.put(key, data, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def make_app(name: str, storage: str | None = None) -> nubes.App:
    app = nubes.App(name, storage=storage or f"mem://{name}")

    @app.get("/work/{i}")
    def work(ctx: nubes.Context, i: int) -> dict[str, int]:
        return {"i": i}

    return app


def fire(app: nubes.App, n: int, threads: int, platform: Platform | None) -> list[str]:
    def one(i: int) -> str:
        response = app.handle(Request("GET", f"/work/{i}"), platform=platform)
        assert response.status == 200
        return response.headers["x-nubes-request-id"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def raw_keys(store: Any) -> list[str]:
    return [o.key for o in store.list(PREFIX + "day=")]


@pytest.mark.parametrize("mode, platform", [("background", None), ("invocation", AWS), ("batch", AWS)])
def test_200_concurrent_invocations_give_exactly_200_records(mode: str, platform: Platform | None, tmp_path: Path) -> None:
    app = make_app(f"ledger-concurrent-{mode}", f"file://{tmp_path / 'home'}")
    configure(app, flush=mode, batch_size=16, flush_interval_s=0.05, cloud_batch_size=16, cloud_max_age_s=0.05)
    ids = fire(app, 200, 8, platform)
    assert flush(app)
    got = [r["request_id"] for r in records(app.storage)]
    assert len(got) == 200 and Counter(got).most_common(1)[0][1] == 1
    assert set(got) == set(ids)
    keys = raw_keys(app.storage)
    assert len(keys) == len(set(keys)) and all(k.endswith(".ndjson") and "/day=" in k for k in keys)
    if mode == "invocation":
        assert len(keys) <= 200  # each invocation's record written before it answered (with concurrent ones)
    else:
        assert len(keys) < 200  # batched


def test_a_failing_store_is_retried_and_nothing_is_lost(caplog: pytest.LogCaptureFixture) -> None:
    name = "ledger-flaky"
    MemoryStore.drop(name)
    app = make_app(name)
    configure(app, flush="invocation")
    flaky = Flaky(MemoryStore(name), failures=3)
    app._storage = flaky  # type: ignore[assignment]
    ids = fire(app, 40, 4, AWS)
    assert flush(app, timeout=10)
    assert sorted(r["request_id"] for r in records(flaky.base)) == sorted(ids)
    journal = meter_of(app).ledger().journal
    assert journal.failures == 3 and journal.buffered == 0
    assert sum("journal write failed" in r.getMessage() for r in caplog.records) == 3


def test_a_lost_answer_is_not_stored_twice() -> None:
    name = "ledger-lost-answer"
    MemoryStore.drop(name)
    app = make_app(name)
    configure(app, flush="invocation")
    flaky = Flaky(MemoryStore(name), failures=1, lose_answer=True)
    app._storage = flaky  # type: ignore[assignment]
    rid = fire(app, 1, 1, AWS)[0]
    assert flush(app, timeout=10)
    assert [r["request_id"] for r in records(flaky.base)] == [rid]
    assert len(raw_keys(flaky.base)) == 1


def test_records_stay_buffered_while_the_store_is_down_then_all_arrive() -> None:
    store = MemoryStore("ledger-down")
    flaky = Flaky(store, failures=10**9)
    ledger = Ledger(flaky, spool=None)  # type: ignore[arg-type]
    for i in range(5):
        ledger.append({"request_id": f"r{i}", "day": "2026-11-25"})
        ledger.journal.flush()
    assert ledger.buffered == 5
    assert not ledger.close(timeout=0.3)
    flaky.failures = 0
    assert ledger.close(timeout=2)
    assert sorted(r["request_id"] for r in records(store)) == [f"r{i}" for i in range(5)]
    MemoryStore.drop("ledger-down")


def test_a_full_buffer_without_a_spool_drops_oldest_with_an_error_log(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore("ledger-full")
    flaky = Flaky(store, failures=10**9)
    journal = Journal(flaky, PREFIX, name="ledger", max_buffer=3)  # type: ignore[arg-type]
    for i in range(5):
        journal.append("day=2026-11-25", {"request_id": f"r{i}"})
        journal.flush(force=True)
    assert journal.dropped == 2 and journal.buffered == 3
    assert any("records dropped" in r.getMessage() for r in caplog.records)
    MemoryStore.drop("ledger-full")


def test_one_object_per_day_and_duckdb_reads_it_through_the_bridge() -> None:
    from nubes.data import Bridge

    store = MemoryStore("ledger-days")
    ledger = Ledger(store)
    for day, n in (("2026-11-24", 2), ("2026-11-25", 3)):
        for i in range(n):
            ledger.append({"request_id": f"{day}-{i}", "day": day, "cost_usd": 0.5})
    assert ledger.flush(compact=False)
    keys = sorted(raw_keys(store))
    assert [k.split("/")[2] for k in keys] == ["day=2026-11-24", "day=2026-11-25"]
    with Bridge({"home": store}) as bridge:
        rows = bridge.sql("SELECT day::VARCHAR, count(*), sum(cost_usd) FROM read_json('nubes://home/_nubes/ledger/*/*.ndjson', "
                          "format = 'newline_delimited', hive_partitioning = false) GROUP BY day ORDER BY day").fetchall()
    assert rows == [("2026-11-24", 2, 1.0), ("2026-11-25", 3, 1.5)]
    assert json.loads(store.get(keys[0]).splitlines()[0])["request_id"].startswith("2026-11-24")
    MemoryStore.drop("ledger-days")


def test_background_mode_never_writes_on_the_request_path() -> None:
    name = "ledger-background"
    MemoryStore.drop(name)
    app = make_app(name)
    configure(app, flush_interval_s=30.0, batch_size=1000)
    fire(app, 10, 2, None)
    assert not raw_keys(app.storage)  # still buffered
    assert meter_of(app).ledger().buffered == 10
    assert flush(app)
    assert len(list(records(app.storage))) == 10


def test_batch_mode_on_a_real_cloud_writes_off_the_request_path_and_has_no_spool(tmp_path: Path) -> None:
    app = make_app("ledger-cloud", f"file://{tmp_path / 'home'}")
    real = Platform("aws", function_name="f", memory_mb=256, region="us-east-1")
    configure(app, cloud_batch_size=5, cloud_max_age_s=30.0)
    store = app.storage
    puts_on_path = []
    original = store.put

    def put(key: str, data: Any, **kw: Any) -> Any:
        puts_on_path.append(threading.current_thread().name)
        return original(key, data, **kw)

    store.put = put  # type: ignore[method-assign]
    fire(app, 12, 1, real)
    assert flush(app)
    assert puts_on_path and all(name == "nubes-journal-flush" or name == "MainThread" for name in puts_on_path)
    assert "ThreadPoolExecutor" not in " ".join(puts_on_path)  # never on a request's thread
    assert meter_of(app).ledger().journal.spool is None
    assert len(list(records(store))) == 12


# -- the spool -------------------------------------------------------------------------------------------
def spool_journal(store: Any, directory: Path, **kw: Any) -> Journal:
    return Journal(store, PREFIX, name="ledger", spool=str(directory), **kw)


def replayed(journal: Journal) -> int:
    """What ``journal.replay()`` writes once the dead writer's file is free: the flusher may hold a
    duplicate of its descriptor for the length of an fsync (a real death takes those with it)."""
    deadline = time.monotonic() + 5
    while True:
        n = journal.replay()
        if n or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def die(journal: Journal, torn: bytes = b"") -> None:
    """The writer dies (after writing ``torn``, a line cut short): its open segment file is closed, its lock
    released, its memory gone. (Under the journal's lock: the flusher may be fsyncing that file.)"""
    with journal._lock:
        seg = journal._segment
        assert seg is not None and seg.fd is not None
        if torn:
            os.write(seg.fd, torn)
        os.close(seg.fd)
        journal._segment = None


def test_a_segment_is_on_disk_before_append_returns_and_replayed_once_its_writer_is_gone(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "home"))
    spool = tmp_path / "spool"
    writer = spool_journal(store, spool)
    for i in range(3):
        writer.append("day=2026-11-25", {"record_id": f"x{i}", "request_id": f"r{i}"})
    files = list(spool.glob("*.seg"))
    assert len(files) == 1 and files[0].read_bytes().count(b"\n") == 4  # header + 3 records
    other = spool_journal(store, spool)
    assert other.replay() == 0  # the writer is alive (holds the lock): left alone
    die(writer)
    assert replayed(other) == 3
    assert not list(spool.glob("*.seg"))
    assert sorted(r["request_id"] for r in records(store)) == ["r0", "r1", "r2"]


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "home"))
    spool = tmp_path / "spool"
    writer = spool_journal(store, spool)
    writer.append("day=2026-11-25", {"record_id": "a", "request_id": "a"})
    die(writer, torn=b'day=2026-11-25\t{"record_id": "b", "requ')  # killed inside this write
    assert replayed(spool_journal(store, spool)) == 1
    assert [r["request_id"] for r in records(store)] == ["a"]


def test_a_crash_between_the_write_and_the_spool_delete_does_not_double_count(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "home"))
    spool = tmp_path / "spool"
    writer = spool_journal(store, spool, chunk=2, mode="background", batch_size=1000, max_age_s=600)
    for i in range(5):
        writer.append("day=2026-11-25", {"record_id": f"x{i}", "request_id": f"r{i}"})
    seg = writer._segment
    # the objects of the segment are written (keys fixed by its content), then the process dies
    for key, payload, _n in batches(PREFIX, seg.id, seg.groups, 2):
        store.put(key, payload, if_none_match=True)
    die(writer)
    before = sorted(raw_keys(store))
    assert replayed(spool_journal(store, spool)) == 5  # written again: the same keys, so nothing new
    assert sorted(raw_keys(store)) == before and len(before) == 3
    assert sorted(r["request_id"] for r in records(store)) == [f"r{i}" for i in range(5)]


def test_concurrent_replays_store_each_record_once(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "home"))
    spool = tmp_path / "spool"
    for w in range(6):  # six dead writers
        writer = spool_journal(store, spool)
        for i in range(50):
            writer.append("day=2026-11-25", {"record_id": f"w{w}-{i}", "request_id": f"w{w}-{i}"})
        die(writer)
    with ThreadPoolExecutor(4) as pool:
        totals = list(pool.map(lambda _: spool_journal(store, spool).replay(), range(4)))
    assert sum(totals) >= 300
    ids = [r["request_id"] for r in records(store)]
    assert len(ids) == 300 and len(set(ids)) == 300


def test_readers_see_live_spools_and_count_each_record_once(tmp_path: Path) -> None:
    home = f"file://{tmp_path / 'home'}"
    app = make_app("ledger-live", home)
    configure(app, flush_interval_s=30.0, batch_size=1000)
    ids = fire(app, 20, 2, None)
    assert not raw_keys(app.storage)
    assert sorted(r["request_id"] for r in records(app.storage)) == sorted(ids)  # from the live spool
    meter_of(app).ledger().journal.flush()
    assert sorted(r["request_id"] for r in records(app.storage)) == sorted(ids)  # from the store, once
