"""The Cloud Functions CloudEvent adapter: payload translation, and a user file served by create_app in-process."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from werkzeug.test import Client as WerkzeugClient

import nubes
from nubes.adapters.gcp import functions as gcp
from nubes.adapters.gcp.builders import pubsub_event, scheduler_event, storage_finalized_event
from nubes.errors import UnknownEvent

APPS = Path(__file__).resolve().parents[1] / "apps"
WHEN = datetime(2026, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE", "K_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUBES_GCP_TEST_OUT", str(tmp_path))


def serve(signature_type: str = "cloudevent") -> WerkzeugClient:
    return functions_framework.create_app("events", str(APPS / "gcp_events.py"), signature_type).test_client()


def records(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def post(client: WerkzeugClient, event: CloudEvent, *, binary: bool = True) -> Any:
    headers, body = (to_binary if binary else to_structured)(event)
    return client.post("/", headers=dict(headers), data=body)


# -- translation ----------------------------------------------------------------------------------
def test_storage_finalized_becomes_object_created() -> None:
    event = gcp.event_from_cloud_event(storage_finalized_event("sales-raw", "uploads/2026 Q1/é.csv", 1234, 1700000000000001, time=WHEN))
    assert event == nubes.ObjectCreated(store="gs://sales-raw", key="uploads/2026 Q1/é.csv", size=1234,
                                        etag="1700000000000001", time=WHEN)


def test_storage_event_shape_matches_eventarc() -> None:
    event = storage_finalized_event("b", "k/x y.csv", data=b"hello", generation=7)
    assert event["source"] == "//storage.googleapis.com/projects/_/buckets/b"
    assert event["subject"] == "objects/k/x y.csv"
    assert event["bucket"] == "b"
    assert event.data["size"] == "5" and event.data["generation"] == "7"  # int64 as JSON strings
    assert event.data["md5Hash"] == "XUFAKrxLKna5cZ2REBfFkg=="
    assert event.data["selfLink"].endswith("/b/b/o/k%2Fx%20y.csv")


def test_storage_event_without_generation_uses_the_etag() -> None:
    event = storage_finalized_event("b", "k", 1)
    del event.data["generation"]
    assert gcp.event_from_cloud_event(event).etag == event.data["etag"]


def test_pubsub_message() -> None:
    event = pubsub_event(b"\x00\xffbinary", {"origin": "pos"}, "eventarc-sub", topic="orders", message_id="42", publish_time=WHEN)
    assert event.data["subscription"] == "projects/nubes-test/subscriptions/eventarc-sub"
    assert event.data["message"]["message_id"] == "42"
    message = gcp.event_from_cloud_event(event)
    assert message == nubes.Message(id="42", body=b"\x00\xffbinary", attributes={"origin": "pos"}, queue="orders")


def test_pubsub_queue_falls_back_to_the_subscription() -> None:
    event = pubsub_event("x", subscription="projects/p/subscriptions/orders-sub")
    event["source"] = "//pubsub.googleapis.com/"
    assert gcp.event_from_cloud_event(event).queue == "orders-sub"


def test_pubsub_without_data_or_attributes() -> None:
    event = CloudEvent({"type": gcp.PUBSUB_PUBLISHED, "source": "//pubsub.googleapis.com/projects/p/topics/t", "id": "9"},
                       {"message": {"messageId": "9"}})
    assert gcp.event_from_cloud_event(event) == nubes.Message(id="9", body=b"", attributes={}, queue="t")


def test_structured_dict_with_data_base64() -> None:
    data = {"message": {"data": base64.b64encode(b"hi").decode(), "messageId": "1"}}
    payload = {"type": gcp.PUBSUB_PUBLISHED, "source": "//pubsub.googleapis.com/projects/p/topics/t", "id": "1",
               "specversion": "1.0", "data_base64": base64.b64encode(json.dumps(data).encode()).decode()}
    assert gcp.event_from_cloud_event(payload).body == b"hi"


def test_scheduler_convention() -> None:
    event = gcp.event_from_cloud_event(scheduler_event("nightly", time=WHEN))
    assert event == nubes.Scheduled("nightly", WHEN)


@pytest.mark.parametrize("kind", ["google.cloud.storage.object.v1.deleted", "google.cloud.firestore.document.v1.written"])
def test_unknown_type_names_the_supported_ones(kind: str) -> None:
    event = CloudEvent({"type": kind, "source": "//x", "id": "1"}, {})
    with pytest.raises(UnknownEvent) as info:
        gcp.event_from_cloud_event(event)
    assert kind in str(info.value)
    assert gcp.STORAGE_FINALIZED in str(info.value) and gcp.PUBSUB_PUBLISHED in str(info.value)


@pytest.mark.parametrize(
    "event",
    [
        CloudEvent({"type": gcp.PUBSUB_PUBLISHED, "source": "//x", "id": "1"}, {"no": "message"}),
        CloudEvent({"type": gcp.PUBSUB_PUBLISHED, "source": "//x", "id": "1"}, {"message": {"data": "not base64!"}}),
        CloudEvent({"type": gcp.STORAGE_FINALIZED, "source": "//x", "id": "1"}, {"size": "1"}),
        CloudEvent({"type": gcp.STORAGE_FINALIZED, "source": "//x", "id": "1"}, {"bucket": "b", "name": "k", "size": "x"}),
        CloudEvent({"type": gcp.STORAGE_FINALIZED, "source": "//x", "id": "1"}, "not json"),
    ],
)
def test_malformed_payloads_are_unknown_events(event: CloudEvent) -> None:
    with pytest.raises(UnknownEvent):
        gcp.event_from_cloud_event(event)


def test_not_a_cloud_event() -> None:
    with pytest.raises(UnknownEvent):
        gcp.event_from_cloud_event(42)


def test_parse_time() -> None:
    assert gcp.parse_time("2020-09-29T11:32:00.000123456Z") == datetime(2020, 9, 29, 11, 32, 0, 123, tzinfo=UTC)
    assert gcp.parse_time("2020-09-29T11:32:00") == datetime(2020, 9, 29, 11, 32, tzinfo=UTC)
    assert gcp.parse_time("yesterday") is None and gcp.parse_time(None) is None


# -- served by functions-framework in-process -------------------------------------------------------
def test_binary_mode_storage_event_runs_the_handler(tmp_path: Path) -> None:
    r = post(serve(), storage_finalized_event("raw", "uploads/a b.csv", 10, 5), binary=True)
    assert r.status_code == 200, r.get_data(as_text=True)
    [rec] = records(tmp_path)
    assert (rec["kind"], rec["store"], rec["key"], rec["size"], rec["etag"]) == ("object_created", "gs://raw", "uploads/a b.csv", 10, "5")
    assert rec["platform"]["provider"] == "gcp" and rec["platform"]["function_name"] == "events"


def test_structured_mode_pubsub_event_runs_the_handler(tmp_path: Path) -> None:
    r = post(serve(), pubsub_event({"sku": "x1"}, {"a": "1"}, topic="orders"), binary=False)
    assert r.status_code == 200, r.get_data(as_text=True)
    [rec] = records(tmp_path)
    assert (rec["kind"], rec["queue"], json.loads(rec["body"]), rec["attributes"]) == ("message", "orders", {"sku": "x1"}, {"a": "1"})
    assert len(rec["request_id"]) == 12  # the framework's execution id


def test_failing_handler_fails_the_invocation(tmp_path: Path) -> None:
    r = post(serve(), pubsub_event("bad", topic="poison"))
    assert r.status_code == 500
    assert records(tmp_path) == []


def test_no_handler_fails_the_invocation() -> None:
    assert post(serve(), pubsub_event("x", topic="nobody-listens")).status_code == 500
    assert post(serve(), storage_finalized_event("raw", "elsewhere/x.csv", 1)).status_code == 500


def test_unknown_type_is_logged_and_acknowledged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = CloudEvent({"type": "google.cloud.storage.object.v1.deleted", "source": "//storage.googleapis.com/projects/_/buckets/b",
                        "id": "1", "subject": "objects/uploads/x"}, {"bucket": "b", "name": "uploads/x"})
    assert post(serve(), event).status_code == 200  # redelivery cannot make it readable
    assert records(tmp_path) == []
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    line = next(entry for entry in logged if entry.get("msg") == "unreadable event")
    assert line["level"] == "error" and "object.v1.deleted" in line["detail"] and "uploads/x" in line["event_excerpt"]


def test_legacy_pubsub_push_is_converted_by_the_framework(tmp_path: Path) -> None:
    push = {"subscription": "projects/p/subscriptions/s",
            "message": {"data": base64.b64encode(b"legacy").decode(), "messageId": "77", "attributes": {"k": "v"}}}
    r = serve().post("/projects/p/topics/orders", json=push)
    assert r.status_code == 200, r.get_data(as_text=True)
    [rec] = records(tmp_path)
    assert (rec["id"], rec["body"], rec["queue"], rec["attributes"]) == ("77", "legacy", "orders", {"k": "v"})


def test_scheduler_message_fires_the_schedule(tmp_path: Path) -> None:
    assert post(serve(), scheduler_event("nightly", time=WHEN)).status_code == 200
    [rec] = records(tmp_path)
    assert (rec["kind"], rec["name"], rec["time"]) == ("schedule", "nightly", WHEN.isoformat())


def test_served_with_the_http_signature_it_parses_the_event_itself(tmp_path: Path) -> None:
    client = serve("http")
    assert post(client, pubsub_event("hello", topic="orders")).status_code == 200
    assert records(tmp_path)[0]["body"] == "hello"
    no_event = client.get("/")  # no CloudEvent in a GET
    assert no_event.status_code == 400 and no_event.content_type == "application/problem+json"
    assert post(client, pubsub_event("x", topic="poison")).status_code == 500


def test_request_id_is_the_event_id_outside_a_request(tmp_path: Path) -> None:
    from nubes.core.loader import load_app

    target = gcp.cloud_event_function(load_app(f"{APPS / 'gcp_events.py'}:app"))
    assert target(pubsub_event("direct", topic="orders", message_id="555")) is None
    assert records(tmp_path)[0]["request_id"] == "555"
    with pytest.raises(RuntimeError):
        target(pubsub_event("x", topic="poison"))
    with pytest.raises(nubes.errors.NoHandler):
        target(pubsub_event("x", topic="nobody"))
