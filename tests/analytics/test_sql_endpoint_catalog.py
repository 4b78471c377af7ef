"""What POST /_nubes/sql (and every catalog reader) may see and how its reads are accounted: nubes'
own records are never part of a dataset, sampling answers, storage reads are metered and in lineage."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nubes
import nubes.storage
from nubes.data import lineage
from nubes.data.catalog import internal, make_dataset, resolve
from nubes.errors import ConfigError, InvalidKey
from nubes.testing import Client

USER_EVENTS = [b'{"kind": "click", "n": 1}\n{"kind": "view", "n": 2}\n', b'{"kind": "click", "n": 3}\n']


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[nubes.App]:
    """An app whose home store holds real ledger records (flushed per invocation) beside its own NDJSON
    events, and a dataset globbing every NDJSON file of the home store."""
    monkeypatch.setenv("NUBES_LEDGER_FLUSH", "invocation")
    app = nubes.App("home", storage=(tmp_path / "home").as_uri(), sql_endpoint=True, auth=False)

    @app.get("/ping")
    def ping(ctx: nubes.Context) -> dict[str, int]:
        return {"ok": 1}

    @app.get("/events/sql")
    def events_sql(ctx: nubes.Context) -> dict[str, int]:
        return {"n": ctx.sql("SELECT count(*) FROM events").fetchall()[0][0]}

    @app.get("/events/table")
    def events_table(ctx: nubes.Context) -> dict[str, int]:
        return {"n": ctx.table("events").collect().height}

    client = Client(app)
    for _ in range(3):
        assert client.get("/ping").status_code == 200
    app.storage.put("events/2024/a.ndjson", USER_EVENTS[0])
    app.storage.put("events/2024/b.ndjson", USER_EVENTS[1])
    app.dataset("events", (tmp_path / "home").as_uri() + "/**/*.ndjson")
    assert any(o.key.startswith("_nubes/ledger/") for o in app.storage.list("_nubes/"))  # the exposure being tested
    yield app


def test_a_glob_over_the_home_store_never_matches_nubes_records(home: nubes.App) -> None:
    resolved = resolve(home.catalog.get("events"), home.storage)
    assert sorted(o.key for o in resolved.objects) == ["events/2024/a.ndjson", "events/2024/b.ndjson"]


def test_the_sql_endpoint_sees_only_the_apps_data(home: nubes.App) -> None:
    client = Client(home)
    body = client.post("/_nubes/sql", json={"sql": "SELECT kind, sum(n) AS n FROM events GROUP BY kind ORDER BY kind"}).json()
    assert body["rows"] == [{"kind": "click", "n": 4}, {"kind": "view", "n": 2}]
    columns = client.post("/_nubes/sql", json={"sql": "SELECT * FROM events"}).json()["columns"]
    assert [c["name"] for c in columns] == ["kind", "n"]  # no ledger fields (request_id, cost ...) unioned in


def test_ctx_sql_and_ctx_table_see_only_the_apps_data(home: nubes.App) -> None:
    client = Client(home)
    assert client.get("/events/sql").json() == {"n": 3}
    assert client.get("/events/table").json() == {"n": 3}


def test_internal_folders_are_left_out_at_any_depth() -> None:
    store = nubes.storage.open(f"mem://internal-{uuid.uuid4().hex}")
    for key in ("a/x.ndjson", "_nubes/ledger/x.ndjson", "a/_nubes/x.ndjson", "a/_nubes_not/x.ndjson", "a/x_nubes/y.ndjson"):
        store.put(key, b'{"a": 1}\n')
    for key in (".nubes-internal/x.ndjson", "a/.nubes-internal/meta/x.ndjson"):  # no store takes these keys at all
        with pytest.raises(InvalidKey):
            store.put(key, b'{"a": 1}\n')
    dataset = make_dataset("everything", f"{store.uri}/**/*.ndjson")
    keys = sorted(o.key for o in resolve(dataset, store).objects)
    assert keys == ["a/_nubes_not/x.ndjson", "a/x.ndjson", "a/x_nubes/y.ndjson"]
    assert internal("_nubes/lineage/x.ndjson") and internal("x/.nubes-internal/y") and not internal("_nubes_x/y")


@pytest.mark.parametrize("uri", ["mem://b/_nubes/ledger/*.ndjson", "s3://bucket/_nubes/", "file://data/.nubes-internal/meta/x.csv",
                                 "gs://b/app/_nubes/lineage/**/*.ndjson"])
def test_declaring_a_dataset_inside_nubes_records_is_refused(uri: str) -> None:
    with pytest.raises(ConfigError, match="inside nubes' own records"):
        make_dataset("ledger", uri)


# -- sampling -----------------------------------------------------------------------------------------
@pytest.fixture
def lab() -> nubes.App:
    store_uri = f"mem://sample-{uuid.uuid4().hex}"
    store = nubes.storage.open(store_uri)
    store.put("numbers.csv", ("n\n" + "\n".join(str(i) for i in range(1000)) + "\n").encode())
    app = nubes.App("sample", storage=store_uri, sql_endpoint=True, auth=False)
    app.dataset("numbers", f"{store_uri}/numbers.csv")
    return app


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("SELECT count(*) AS n FROM numbers USING SAMPLE 10 ROWS", 10),
        ("SELECT count(*) AS n FROM numbers USING SAMPLE 10", 10),
        ("SELECT count(*) AS n FROM numbers TABLESAMPLE reservoir(25 ROWS)", 25),
        ("SELECT count(*) AS n FROM (SELECT * FROM numbers USING SAMPLE reservoir(5 ROWS) REPEATABLE (42))", 5),
        ("SELECT count(*) AS n FROM range(1000) t TABLESAMPLE reservoir(7 ROWS)", 7),
        ("SELECT count(*) AS n FROM numbers USING SAMPLE 100%", 1000),
        ("SELECT count(*) AS n FROM numbers TABLESAMPLE 0 PERCENT (bernoulli)", 0),
    ],
)
def test_sampling_answers(lab: nubes.App, sql: str, rows: int) -> None:
    response = Client(lab).post("/_nubes/sql", json={"sql": sql})
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [{"n": rows}]


def test_a_seeded_sample_is_repeatable(lab: nubes.App) -> None:
    client = Client(lab)
    sql = "SELECT n FROM numbers USING SAMPLE 5% (bernoulli, 7) ORDER BY n"
    first, second = (client.post("/_nubes/sql", json={"sql": sql}).json()["rows"] for _ in range(2))
    assert first == second and 0 < len(first) < 1000


def test_a_sample_does_not_hide_a_refused_function(lab: nubes.App) -> None:
    response = Client(lab).post("/_nubes/sql", json={"sql": "SELECT getenv('HOME') FROM numbers USING SAMPLE 1%"})
    assert response.status_code == 403 and "function getenv" in response.json()["detail"]


# -- accounting ---------------------------------------------------------------------------------------
class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append({"msg": record.getMessage(), **getattr(record, "nubes", {})})


def _logged(call: Callable[[], Any]) -> tuple[Any, dict[str, dict[str, Any]]]:
    """``call()``'s response and the log lines of its request, by message (``invocation``, ``sql endpoint``)."""
    lines = _Lines()
    logging.getLogger("nubes").addHandler(lines)
    try:
        response = call()
    finally:
        logging.getLogger("nubes").removeHandler(lines)
    rid = response.headers["x-nubes-request-id"]
    return response, {e["msg"]: e for e in lines.entries if e.get("request_id") == rid}


def test_the_querys_reads_are_metered_and_recorded(lab: nubes.App) -> None:
    response, logged = _logged(lambda: Client(lab).post("/_nubes/sql", json={"sql": "SELECT sum(n) AS total FROM numbers"}))
    assert response.json()["rows"] == [{"total": sum(range(1000))}]
    invocation, audit = logged["invocation"], logged["sql endpoint"]
    size = lab.storage.head("numbers.csv").size
    assert response.json()["bytes_read"] == audit["bytes_read"] >= size
    assert invocation["bytes_read"] == audit["bytes_read"]  # the sandbox's reads are metered, once
    assert invocation["ops_get"] >= 1
    assert audit["bytes"] == len(response.content)
    rid = response.headers["x-nubes-request-id"]
    reads = [e for e in lineage.history(lab.storage, "numbers") if e["request_id"] == rid]
    assert len(reads) == 1 and reads[0]["route"] == "/_nubes/sql"
    assert json.loads(json.dumps(reads[0]["reads"]))[0]["dataset"] == "numbers"


def test_engine_reads_on_the_invocations_thread_are_metered_once(lab: nubes.App) -> None:
    """DuckDB reads on the calling thread too; those reads were counted when made and again when the
    session ended (twice the object's bytes for one scan)."""
    @lab.get("/total")
    def total(ctx: nubes.Context) -> dict[str, int]:
        return {"total": ctx.sql("SELECT sum(n) FROM numbers").fetchall()[0][0]}

    response, logged = _logged(lambda: Client(lab).get("/total"))
    assert response.json() == {"total": sum(range(1000))}
    rid = response.headers["x-nubes-request-id"]
    reads = next(e for e in lineage.history(lab.storage, "numbers") if e["request_id"] == rid)["reads"]
    assert logged["invocation"]["bytes_read"] == reads[0]["bytes_read"] == lab.storage.head("numbers.csv").size


def test_engine_writes_are_metered_once() -> None:
    """ctx.write's put was counted by the store, by the bridge as it was recorded, and by the session's merge."""
    uri = f"mem://write-{uuid.uuid4().hex}"
    app = nubes.App("write", storage=uri, auth=False)

    @app.post("/write")
    def write(ctx: nubes.Context) -> dict[str, int]:
        ctx.write(f"{uri}/out/n.parquet", ctx.sql("SELECT range AS n FROM range(1000)"))
        return {"size": app.storage.head("out/n.parquet").size}

    response, logged = _logged(lambda: Client(app).post("/write"))
    lineage_bytes = sum(o.size for o in app.storage.list(lineage.PREFIX))
    assert logged["invocation"]["bytes_written"] == response.json()["size"] + lineage_bytes
    assert logged["invocation"]["ops_put"] == 1  # the file (lineage is journaled: its batched writes are priced as bookkeeping)
