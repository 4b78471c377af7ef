"""Lineage batched like the ledger: one object per batch, not per invocation; as durable (spooled before the
response); per invocation or per dataset version with counts; history() reads the new layout and the old one."""

from __future__ import annotations

import json
from pathlib import Path

from tests.stores import Recording

import nubes
from nubes.data import lineage
from nubes.metering import flush
from nubes.testing import Client


def lineage_objects(app: nubes.App) -> list[str]:
    return [o.key for o in app.storage.list(lineage.PREFIX)]


def test_one_object_per_batch_and_every_invocation_in_history(app: nubes.App) -> None:
    c = Client(app)
    ids = [c.get("/summary").headers["x-nubes-request-id"] for _ in range(12)]
    assert not lineage_objects(app)  # buffered (and spooled), not one PUT per request
    spool = Path(app.storage.url("x")[len("file://"):]).parent / ".nubes-internal" / "spool" / "lineage"
    assert list(spool.glob("*.seg"))  # on disk before the answers left: as durable as the ledger
    entries = [e for e in lineage.history(app.storage, "trips") if e["request_id"] in ids]
    assert len(entries) == 12  # the live spool is read
    assert flush(app)
    assert len(lineage_objects(app)) == 1
    entries = list(lineage.history(app.storage, "trips"))
    assert sorted(e["request_id"] for e in entries) == sorted(ids)
    read = entries[0]["reads"][0]
    assert read["dataset"] == "trips" and read["objects"][0]["etag"] and read["bytes_read"] > 0


def test_version_granularity_counts_invocations_per_dataset_version(app: nubes.App) -> None:
    lineage.configure(app, granularity="version")
    c = Client(app)
    ids = [c.get("/summary").headers["x-nubes-request-id"] for _ in range(15)]
    assert flush(app)
    entries = [e for e in lineage.history(app.storage, "trips") if e.get("granularity") == "version"]
    assert len(entries) == 1
    e = entries[0]
    assert e["count"] == 15 and e["route"] == "/summary" and set(e["request_ids"]) <= set(ids)
    assert e["first"] <= e["last"] and e["reads"][0]["objects"][0]["etag"]
    lineage.configure(app, granularity="off")
    c.get("/summary")
    assert flush(app)
    assert [x["count"] for x in lineage.history(app.storage) if x.get("granularity") == "version"] == [15]


def test_the_old_layout_is_still_read(app: nubes.App) -> None:
    old = {"time": "2026-11-01T10:00:00+00:00", "request_id": "old-1", "app": app.name, "route": "/summary",
           "reads": [{"dataset": "trips", "store": "file:///x", "objects": [], "bytes_read": 10}], "writes": []}
    app.storage.put("_nubes/lineage/day=2026-11-01/100000000000-old-1.json", json.dumps(old).encode())
    Client(app).get("/summary")
    found = [e["request_id"] for e in lineage.history(app.storage, "trips")]
    assert found[-1] == "old-1" and len(found) == 2  # newest first


def test_history_reads_only_the_newest_days_it_needs(app: nubes.App) -> None:
    for day in range(1, 11):  # ten days, three entries each (one batch object a day)
        lines = [json.dumps({"entry_id": f"d{day}-{i}", "time": f"2026-11-{day:02d}T10:00:0{i}+00:00",
                             "request_id": f"d{day}-{i}", "app": app.name, "route": "/summary",
                             "reads": [{"dataset": "trips" if i else "zones", "objects": []}], "writes": []})
                 for i in range(3)]
        app.storage.put(f"_nubes/lineage/day=2026-11-{day:02d}/20261101T000000000000-ab-0.ndjson",
                        "\n".join(lines).encode())
    store = Recording(app.storage)
    found = [e["request_id"] for e in lineage.history(store, "trips", limit=4)]  # type: ignore[arg-type]
    assert found == ["d10-2", "d10-1", "d9-2", "d9-1"]
    assert [k.split("/")[2] for k, _n in store.got] == ["day=2026-11-10", "day=2026-11-09"]
    everything = [e["request_id"] for e in lineage.history(app.storage)]
    assert len(everything) == 30 and everything[0] == "d10-2" and everything[-1] == "d1-0"
