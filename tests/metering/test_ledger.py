"""Ledger integrity: concurrent invocations, failing stores, lost answers, the bounded buffer, DuckDB reads."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import nubes
from nubes.errors import StorageUnavailable
from nubes.core.events import Platform
from nubes.metering import configure, flush, meter_of
from nubes.metering.ledger import PREFIX, Ledger, records
from nubes.core.request import Request
from nubes.storage.memory import MemoryStore

AWS = Platform("aws", function_name="f", memory_mb=256, region="us-east-1", emulated=True)


class Flaky:
    """A store that fails its first ``failures`` puts (``lose_answer``: writes, then fails anyway)."""

    def __init__(self, base: MemoryStore, failures: int, *, lose_answer: bool = False) -> None:
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


def make_app(name: str) -> nubes.App:
    app = nubes.App(name, storage=f"mem://{name}")

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


@pytest.mark.parametrize("mode, platform", [("background", None), ("invocation", AWS)])
def test_200_concurrent_invocations_give_exactly_200_records(mode: str, platform: Platform | None) -> None:
    name = f"ledger-concurrent-{mode}"
    MemoryStore.drop(name)
    app = make_app(name)
    if mode == "background":
        configure(app, batch_size=16, flush_interval_s=0.05)
    ids = fire(app, 200, 8, platform)
    assert flush(app)
    got = [r["request_id"] for r in records(app.storage)]
    assert len(got) == 200
    assert Counter(got).most_common(1)[0][1] == 1  # no duplicates
    assert set(got) == set(ids)
    keys = [o.key for o in app.storage.list(PREFIX)]
    assert len(keys) == len(set(keys)) and all(k.endswith(".ndjson") and "/day=" in k for k in keys)
    if mode == "invocation":
        assert len(keys) <= 200  # one new object per flush, never an overwrite


def test_a_failing_store_is_retried_and_nothing_is_lost(caplog: pytest.LogCaptureFixture) -> None:
    name = "ledger-flaky"
    MemoryStore.drop(name)
    app = make_app(name)
    flaky = Flaky(MemoryStore(name), failures=3)
    app._storage = flaky  # type: ignore[assignment]
    ids = fire(app, 40, 4, AWS)  # per-invocation flushes: the first ones fail
    assert flush(app, timeout=10)
    got = [r["request_id"] for r in records(flaky.base)]
    assert sorted(got) == sorted(ids)
    assert flaky.puts > 3
    ledger = meter_of(app).ledger(background=False)
    assert ledger.failures == 3 and ledger.buffered == 0
    assert sum("metering ledger flush failed" in r.getMessage() for r in caplog.records) == 3


def test_a_lost_answer_is_not_stored_twice() -> None:
    name = "ledger-lost-answer"
    MemoryStore.drop(name)
    app = make_app(name)
    flaky = Flaky(MemoryStore(name), failures=1, lose_answer=True)
    app._storage = flaky  # type: ignore[assignment]
    rid = fire(app, 1, 1, AWS)[0]
    assert flush(app, timeout=10)
    assert [r["request_id"] for r in records(flaky.base)] == [rid]


def test_records_stay_buffered_while_the_store_is_down_then_all_arrive() -> None:
    store = MemoryStore("ledger-down")
    flaky = Flaky(store, failures=10**9)
    log = nubes.App("x").log
    ledger = Ledger(lambda: flaky, log, background=False)
    for i in range(5):
        ledger.append({"request_id": f"r{i}", "day": "2026-11-25"})
        ledger.flush()
    assert ledger.buffered == 5
    assert not ledger.close(timeout=0.3)
    flaky.failures = 0
    assert ledger.close(timeout=2)
    assert sorted(r["request_id"] for r in records(store)) == [f"r{i}" for i in range(5)]
    MemoryStore.drop("ledger-down")


def test_a_full_buffer_drops_oldest_with_an_error_log(caplog: pytest.LogCaptureFixture) -> None:
    ledger = Ledger(lambda: MemoryStore("ledger-full"), nubes.App("x").log, background=False, batch_size=2, max_buffer=3)
    for i in range(5):
        ledger.append({"request_id": f"r{i}", "day": "2026-11-25"})
    assert ledger.dropped == 2 and ledger.buffered == 3
    assert any("records dropped" in r.getMessage() for r in caplog.records)
    MemoryStore.drop("ledger-full")


def test_one_object_per_day_and_duckdb_reads_it_through_the_bridge() -> None:
    from nubes.data import Bridge

    store = MemoryStore("ledger-days")
    ledger = Ledger(lambda: store, nubes.App("x").log, background=False)
    for day, n in (("2026-11-24", 2), ("2026-11-25", 3)):
        for i in range(n):
            ledger.append({"request_id": f"{day}-{i}", "day": day, "cost_usd": 0.5})
    assert ledger.flush()
    keys = sorted(o.key for o in store.list(PREFIX))
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
    assert not list(app.storage.list(PREFIX))  # still buffered
    assert meter_of(app).ledger(background=True).buffered == 10
    assert flush(app)
    assert len(list(records(app.storage))) == 10
