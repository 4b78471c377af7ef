"""The Azure adapter's blob, queue and timer functions, driven with real azure.functions objects."""

from __future__ import annotations

import json
import runpy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.adapters.test_azure_support import EVENTS_APP, Indexed, assert_worker_loads, fresh

import nubes
from nubes.adapters.azure.builders import blob_input_stream, invocation_context, queue_message, timer_request
from nubes.adapters.azure.functions import HTTP_FUNCTION, function_app, write_project
from nubes.core.events import Message, ObjectCreated, Scheduled
from nubes.errors import ConfigError, UnknownEvent


class Events:
    """The events app, freshly loaded and indexed, with the list its handlers record into."""

    def __init__(self, **options: Any) -> None:
        self.app = fresh(EVENTS_APP)
        self.indexed = Indexed(function_app(self.app, **options))
        self.seen: list[tuple[str, Any]] = self.app.event_routes[0].handler.__globals__["SEEN"]

    def fire(self, name: str, payload: Any, invocation_id: str | None = None) -> None:
        assert self.indexed[name](payload, invocation_context(invocation_id, function_name=name)) is None


@pytest.fixture
def events() -> Events:
    return Events()


# -- indexing ------------------------------------------------------------------------------------
def test_functions_and_their_bindings(events: Events) -> None:
    idx = events.indexed
    assert sorted(idx.functions) == sorted(
        [HTTP_FUNCTION, "blob_raw_data", "blob_home_data", "queue_orders", "queue_fragile", "timer_nightly"])
    assert idx.trigger("blob_raw_data") == {"direction": "IN", "type": "blobTrigger", "name": "blob",
                                            "path": "raw-data/{name}", "connection": "AzureWebJobsStorage"}
    assert idx.trigger("blob_home_data")["path"] == "home-data/base/incoming/{name}"
    assert idx.trigger("queue_orders") == {"direction": "IN", "type": "queueTrigger", "name": "msg",
                                           "queueName": "orders", "connection": "AzureWebJobsStorage"}
    assert idx.trigger("timer_nightly") == {"direction": "IN", "type": "timerTrigger", "name": "timer",
                                            "schedule": "0 0 2 * * *"}
    for fn in idx.functions.values():
        assert_worker_loads(fn)


def test_connection_and_blob_source_are_configurable() -> None:
    idx = Events(connection="DataStorage", blob_source="EventGrid").indexed
    assert idx.trigger("blob_raw_data")["connection"] == "DataStorage"
    assert idx.trigger("blob_raw_data")["source"] == "EventGrid"
    assert idx.trigger("queue_orders")["connection"] == "DataStorage"


def test_routes_on_other_clouds_are_skipped_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    idx = Events().indexed
    assert not [n for n in idx.functions if "elsewhere" in n]
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert any(line["level"] == "warning" and "another cloud" in line["msg"] and line["store"] == "s3://elsewhere"
               and line["route"] == "azure_events_app:on_s3" for line in lines)


def test_one_blob_function_per_container_watches_the_common_prefix() -> None:
    app = nubes.App("prefixes", storage="file://.nubes")

    @app.on_object_created("uploads/csv/", store="az://data")
    def a(ctx: nubes.Context, event: ObjectCreated) -> None: ...

    @app.on_object_created("uploads/json/", store="az://data")
    def b(ctx: nubes.Context, event: ObjectCreated) -> None: ...

    @app.on_object_created("{odd}/", store="az://other-data/p")
    def c(ctx: nubes.Context, event: ObjectCreated) -> None: ...

    idx = Indexed(function_app(app))
    assert idx.trigger("blob_data")["path"] == "data/uploads/{name}"
    assert idx.trigger("blob_other_data")["path"] == "other-data/p/{{odd}}/{name}"


# -- blob ----------------------------------------------------------------------------------------
def test_blob_reaches_the_handler_as_object_created(events: Events) -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    blob = blob_input_stream("raw-data", "uploads/day 1.csv", b"a,b\n1,2\n", etag='"0x8DC1"', last_modified=when)
    events.fire("blob_raw_data", blob, "inv-1")
    assert events.seen == [("raw_upload", ObjectCreated(store="az://raw-data", key="uploads/day 1.csv", size=8,
                                                        etag='"0x8DC1"', time=when))]
    events.seen.clear()
    events.fire("blob_raw_data", blob_input_stream("raw-data", "archive/x.parquet", b"PAR1"))
    assert [name for name, _ in events.seen] == ["raw_archive"]


def test_blob_in_the_home_store_gets_a_key_relative_to_it(events: Events) -> None:
    events.fire("blob_home_data", blob_input_stream("home-data", "base/incoming/a.json", b"{}"))
    ((name, event),) = events.seen
    assert name == "home_incoming"
    assert (event.store, event.key, event.url) == ("az://home-data/base", "incoming/a.json",
                                                   "az://home-data/base/incoming/a.json")


def test_blob_between_route_prefixes_is_ignored_not_retried(events: Events) -> None:
    events.fire("blob_raw_data", blob_input_stream("raw-data", "tmp/scratch.bin", b"x"))
    assert events.seen == []


def test_blob_without_container_in_its_name_is_logged_not_raised(events: Events, capsys: pytest.CaptureFixture[str]) -> None:
    from nubes.adapters.azure import object_created_event

    blob = func.blob.InputStream(data=b"x", name="nocontainer", length=1)
    with pytest.raises(UnknownEvent, match="CONTAINER/BLOB_NAME"):
        object_created_event(blob)
    events.fire("blob_raw_data", blob)  # consumed: a retry cannot make it readable
    assert events.seen == []
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    line = next(entry for entry in logged if entry.get("msg") == "unreadable event")
    assert line["level"] == "error" and line["trigger"] == "blob" and "CONTAINER/BLOB_NAME" in line["detail"]


def test_blob_properties_without_length_use_content_length(events: Events) -> None:
    blob = func.blob.InputStream(data=b"abc", name="raw-data/uploads/n.txt",
                                 blob_properties={"ContentLength": 3, "ETag": "0x8DC2"})
    events.fire("blob_raw_data", blob)
    event = events.seen[0][1]
    assert (event.size, event.etag, event.time) == (3, '"0x8DC2"', None)


# -- queue ---------------------------------------------------------------------------------------
def test_queue_message_reaches_every_handler_of_its_queue_once(events: Events) -> None:
    msg = queue_message(json.dumps({"order": 7}), id="m-1", dequeue_count=2)
    events.fire("queue_orders", msg, "inv-q")
    names = [name for name, _ in events.seen]
    assert names == ["order", "order_ctx", "order_audit"]
    message = events.seen[0][1]
    assert isinstance(message, Message)
    assert (message.id, message.queue, message.json()) == ("m-1", "orders", {"order": 7})
    assert message.attributes["dequeue_count"] == "2"
    assert set(message.attributes) == {"dequeue_count", "insertion_time", "expiration_time", "time_next_visible",
                                       "pop_receipt"}
    assert all(isinstance(v, str) for v in message.attributes.values())
    assert events.seen[1][1] == ("inv-q", "azure")


def test_plain_func_queue_message_works_too(events: Events) -> None:
    events.fire("queue_orders", func.QueueMessage(id="m-2", body=b"\x00\x01"))
    assert events.seen[0][1] == Message(id="m-2", body=b"\x00\x01", attributes={}, queue="orders", source="orders")


def test_failing_queue_handler_raises_so_azure_retries(events: Events) -> None:
    with pytest.raises(RuntimeError, match="cannot process boom"):
        events.fire("queue_fragile", queue_message("boom"))


# -- timer ---------------------------------------------------------------------------------------
def test_timer_fires_the_schedule_at_its_due_time(events: Events) -> None:
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    events.fire("timer_nightly", timer_request(past_due=True, last=due - timedelta(days=1), next=due))
    assert events.seen == [("nightly", Scheduled(name="nightly", time=due))]


def test_timer_without_schedule_status_is_due_now(events: Events) -> None:
    before = datetime.now(UTC)
    events.fire("timer_nightly", timer_request())
    event = events.seen[0][1]
    assert event.name == "nightly" and before <= event.time <= datetime.now(UTC)


# -- declarations Azure cannot bind --------------------------------------------------------------
def test_schedule_without_cron_is_a_config_error_naming_it() -> None:
    app = nubes.App("nocron")

    @app.on_schedule("hourly")
    def tick(ctx: nubes.Context, event: Scheduled) -> None: ...

    with pytest.raises(ConfigError, match=r"'hourly'.*tick.*cron="):
        function_app(app)


@pytest.mark.parametrize("cron", ["0 2 * * *", "every day"])
def test_cron_must_be_ncrontab(cron: str) -> None:
    app = nubes.App("badcron")
    app.on_schedule("daily", cron=cron)(lambda ctx, event: None)
    with pytest.raises(ConfigError, match="six-field NCRONTAB"):
        function_app(app)


def test_one_schedule_name_with_two_crons_is_a_config_error() -> None:
    app = nubes.App("twocron")
    app.on_schedule("daily", cron="0 0 1 * * *")(lambda ctx, event: None)
    app.on_schedule("daily", cron="0 0 2 * * *")(lambda ctx, event: None)
    with pytest.raises(ConfigError, match="different crons"):
        function_app(app)


@pytest.mark.parametrize(("queue", "match"), [(None, "name it"), ("*", "name it"), ("Orders_1", "not a valid"),
                                           ("orders\n", "not a valid"), ("ab", "not a valid"), ("orders-", "not a valid")])
def test_message_route_needs_a_valid_queue_name(queue: str | None, match: str) -> None:
    app = nubes.App("anyqueue")
    app.on_message(queue)(lambda ctx, message: None)
    with pytest.raises(ConfigError, match=match):
        function_app(app)


def test_object_created_with_no_store_and_a_local_home_is_skipped() -> None:
    app = nubes.App("localhome", storage="file://.nubes")
    app.on_object_created("x/")(lambda ctx, event: None)
    assert list(Indexed(function_app(app)).functions) == [HTTP_FUNCTION]


# -- deployment files ----------------------------------------------------------------------------
def test_write_project_writes_an_entry_script_the_worker_can_index(tmp_path: Path) -> None:
    app_file = tmp_path / "azure_events_app.py"
    app_file.write_text(EVENTS_APP.read_text())
    written = write_project(f"{app_file}:app", tmp_path, connection="DataStorage")
    assert [p.name for p in written] == ["host.json", "function_app.py"]
    host = json.loads((tmp_path / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == "" and host["functionTimeout"] == "00:05:00"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    module = runpy.run_path(str(tmp_path / "function_app.py"))
    indexed = Indexed(module["app"])
    assert indexed.trigger("queue_orders")["connection"] == "DataStorage"
    assert HTTP_FUNCTION in indexed.functions


def test_write_project_module_spec_is_kept(tmp_path: Path) -> None:
    write_project("tests.apps.azure_events_app:app", tmp_path)
    assert "load_app('tests.apps.azure_events_app:app')" in (tmp_path / "function_app.py").read_text()


def test_write_project_refuses_an_app_file_outside_the_folder(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    with pytest.raises(ConfigError, match="outside"):
        write_project(f"{EVENTS_APP}:app", tmp_path / "deploy")


def test_write_project_fails_early_on_unbindable_routes(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("import nubes\napp = nubes.App('bad')\n"
                                     "app.on_schedule('x')(lambda ctx, event: None)\n")
    with pytest.raises(ConfigError, match="no cron"):
        write_project(str(tmp_path / "bad.py"), tmp_path)
    assert not (tmp_path / "function_app.py").exists()


def test_write_project_refuses_an_app_named_like_the_entry_script(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text("import nubes\napp = nubes.App('clash')\n")
    with pytest.raises(ConfigError, match="rename"):
        write_project(str(tmp_path / "function_app.py"), tmp_path)


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=90))
def test_the_jobs_queue_name_of_any_app_is_a_valid_queue_name(name: str) -> None:
    """deploy creates it and the jobs function listens on it: one function names it, and the name passes the one rule."""
    from nubes.adapters.azure import deploy, jobs, triggers

    queue = triggers.jobs_queue_name(name)
    assert triggers.queue_problem(queue) is None and queue.endswith("-jobs")
    assert deploy.jobs_queue_name is jobs.jobs_queue_name is triggers.jobs_queue_name


def test_has_jobs_is_what_deploy_plans_for() -> None:
    from nubes.adapters.azure.jobs import has_jobs
    from nubes.adapters.deployment import jobs

    plain, with_jobs = nubes.App("plain"), nubes.App("trainer")
    plain.get("/x")(lambda ctx: {})
    with_jobs.job("/train")(lambda ctx: {})
    assert (has_jobs(plain), jobs(plain)) == (False, None)
    assert has_jobs(with_jobs) and jobs(with_jobs) is not None

