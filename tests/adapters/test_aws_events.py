"""The AWS adapter on non-HTTP payloads (S3, SQS, EventBridge schedule), unknown events, and the
Lambda context (request id, deadline, platform, cold start)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import nubes
from nubes.adapters.aws import handler
from nubes.adapters.aws.builders import (
    LambdaContext,
    s3_put_event,
    schedule_event,
    sqs_event,
)
from nubes.adapters.aws.context import reset_cold_start
from nubes.errors import ConfigError, NoHandler

DATA = Path(__file__).parent.parent / "data" / "aws"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


class Recorder:
    """An app whose event handlers record what they got (and fail on request)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.contexts: list[nubes.Context] = []
        self.app = app = nubes.App("events", openapi=False)

        @app.on_object_created("incoming/")
        def created(ctx: nubes.Context, event: nubes.ObjectCreated) -> None:
            self.seen.append(event)

        @app.on_message("orders")
        def order(ctx: nubes.Context, message: nubes.Message) -> None:
            self.seen.append(message)
            self.contexts.append(ctx)
            if b"fail" in message.body:
                raise RuntimeError(f"cannot take order {message.id}")

        @app.on_message("jobs.fifo")
        def job(ctx: nubes.Context, message: nubes.Message) -> None:
            self.seen.append(message)
            if message.text() == "bad":
                raise ValueError("bad job")

        @app.on_schedule("nightly-rollup", cron="0 0 2 * * *")
        def rollup(ctx: nubes.Context, event: nubes.Scheduled) -> str:
            self.seen.append(event)
            self.contexts.append(ctx)
            return "done"


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def run(rec: Recorder, event: Any, context: Any = None) -> Any:
    return handler(rec.app)(copy.deepcopy(event), context if context is not None else LambdaContext())


# -- S3 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["s3_put.json", "s3_put_sam.json"])  # '+' (as S3 sends) and %20 (sam's template)
def test_s3_key_with_spaces_and_unicode(rec: Recorder, name: str) -> None:
    assert run(rec, load(name)) is None
    assert rec.seen == [
        nubes.ObjectCreated(
            store="s3://nubes-data",
            key="incoming/my report été.csv",
            size=1024,
            etag="0123456789abcdef0123456789abcdef",
            time=EPOCH,
        )
    ]
    assert rec.seen[0].url == "s3://nubes-data/incoming/my report été.csv"


def test_s3_builder_round_trips_awkward_keys(rec: Recorder) -> None:
    key = "incoming/a+b c/ü%20?.csv"
    event = s3_put_event("bkt", key, 5, "abc")
    assert event["Records"][0]["s3"]["object"]["key"] == "incoming/a%2Bb+c/%C3%BC%2520%3F.csv"
    run(rec, event)
    assert rec.seen[0].key == key and rec.seen[0].store == "s3://bkt" and rec.seen[0].size == 5


def test_s3_records_are_handled_one_at_a_time_and_removals_skipped(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    event = load("s3_put.json")
    second = copy.deepcopy(event["Records"][0])
    second["s3"]["object"]["key"] = "incoming/second.csv"
    removed = copy.deepcopy(second)
    removed["eventName"] = "ObjectRemoved:Delete"
    event["Records"] += [removed, second]
    run(rec, event)
    assert [e.key for e in rec.seen] == ["incoming/my report été.csv", "incoming/second.csv"]
    assert "not ObjectCreated" in capsys.readouterr().err


def test_s3_without_a_matching_handler_raises(rec: Recorder) -> None:
    with pytest.raises(NoHandler):
        run(rec, s3_put_event("bkt", "elsewhere/x.csv"))


# -- SQS ------------------------------------------------------------------------------------------------
def test_sqs_batch_reports_only_the_failing_message(rec: Recorder) -> None:
    result = run(rec, load("sqs_batch.json"))
    assert result == {"batchItemFailures": [{"itemIdentifier": "00000000-0000-4000-8000-000000000002"}]}
    assert [m.id[-1] for m in rec.seen] == ["1", "2", "3"]  # all handled, one at a time
    first, _, third = rec.seen
    assert first.json() == {"order": 1} and first.queue == "orders"
    assert third.attributes["tenant"] == "acme"  # string message attribute
    assert "blob" not in third.attributes  # binary attributes are not strings
    assert third.attributes["ApproximateReceiveCount"] == "1"  # system attributes
    assert third.attributes["SenderId"] == "123456789012"


def test_sqs_rendered_event(rec: Recorder) -> None:
    assert run(rec, load("sqs_sam.json")) == {"batchItemFailures": []}
    assert rec.seen[0].text() == "Hello from SQS!" and rec.seen[0].id == "19dd0b57-b21e-4ac1-bd88-01bbb068cb78"


def test_sqs_message_without_handler_is_a_failure(rec: Recorder) -> None:
    event = sqs_event(["x"], queue_arn="arn:aws:sqs:us-east-1:123456789012:nobody")
    ident = event["Records"][0]["messageId"]
    assert run(rec, event) == {"batchItemFailures": [{"itemIdentifier": ident}]}


def test_sqs_fifo_stops_at_the_first_failure(rec: Recorder) -> None:
    event = sqs_event(["ok", "bad", "later"], queue_arn="arn:aws:sqs:us-east-1:123456789012:jobs.fifo")
    ids = [r["messageId"] for r in event["Records"]]
    result = run(rec, event)
    assert result == {"batchItemFailures": [{"itemIdentifier": ids[1]}, {"itemIdentifier": ids[2]}]}
    assert [m.text() for m in rec.seen] == ["ok", "bad"]  # "later" is retried, not handled out of order


def test_sqs_builder_attributes(rec: Recorder) -> None:
    arn = "arn:aws:sqs:us-east-1:123456789012:orders"
    event = sqs_event([{"body": b'{"fail": false}', "attributes": {"tenant": "t1"}, "id": "m-1"}, "fine"], queue_arn=arn)
    assert run(rec, event) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}  # body contains "fail"
    assert rec.seen[0].attributes["tenant"] == "t1" and rec.seen[0].queue == "orders"
    assert rec.seen[1].text() == "fine"


# -- schedule -------------------------------------------------------------------------------------------
def test_schedule_rendered_event(rec: Recorder) -> None:
    assert run(rec, load("schedule.json")) is None
    assert rec.seen == [nubes.Scheduled(name="nightly-rollup", time=EPOCH)]


def test_schedule_builder_and_handler_errors_propagate(rec: Recorder) -> None:
    when = datetime(2025, 3, 4, 2, 0, tzinfo=UTC)
    run(rec, schedule_event("nightly-rollup", when))
    assert rec.seen == [nubes.Scheduled(name="nightly-rollup", time=when)]
    with pytest.raises(NoHandler):
        run(rec, schedule_event("weekly", when))


# -- unknown events ------------------------------------------------------------------------------------
@pytest.mark.parametrize("event", [{"foo": 1}, {"Records": [{"eventSource": "aws:dynamodb"}]}, "just text", None])
def test_unknown_event_is_logged_and_answered_without_raising(rec: Recorder, event: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(rec, event)
    assert set(result) == {"errorType", "errorMessage"} and result["errorType"] == "UnknownEvent"
    for source in ("REST API", "HTTP API", "Load Balancer", "Function URL", "S3", "SQS", "Scheduled Event"):
        assert source in result["errorMessage"]
    assert "Traceback" not in result["errorMessage"]
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert any(line["msg"] == "unreadable event" and line["level"] == "error" for line in lines)
    assert rec.seen == []


def test_handler_needs_an_app() -> None:
    with pytest.raises(ConfigError):
        handler(object())  # type: ignore[arg-type]


# -- the Lambda context -----------------------------------------------------------------------------------
def test_context_feeds_request_id_deadline_and_platform(rec: Recorder) -> None:
    reset_cold_start()
    ctx = LambdaContext(function_name="rollup-fn", memory_mb=2048, timeout_s=10, request_id="req-1", region="eu-west-1")
    run(rec, schedule_event("nightly-rollup"), ctx)
    run(rec, schedule_event("nightly-rollup"), LambdaContext(function_name="rollup-fn", memory_mb=2048, region="eu-west-1"))
    first, second = rec.contexts
    assert first.request_id == "req-1"
    assert first.remaining() is not None and 9.0 < first.remaining() <= 10.0
    p = first.platform
    assert (p.provider, p.function_name, p.memory_mb, p.region, p.emulated) == ("aws", "rollup-fn", 2048, "eu-west-1", True)
    assert p.cold_start is True
    assert second.platform.cold_start is False  # only the first invocation in the process
    assert second.request_id != "req-1"


def test_context_on_http_reaches_the_response_header() -> None:
    from nubes.adapters.aws.builders import http_api_event

    app = nubes.App("ctx", openapi=False)

    @app.get("/who")
    def who(ctx: nubes.Context) -> dict[str, Any]:
        return {"id": ctx.request_id, "memory": ctx.platform.memory_mb, "remaining": ctx.remaining()}

    result = handler(app)(http_api_event(nubes.Request("GET", "/who")), LambdaContext(memory_mb=512, timeout_s=3, request_id="abc"))
    body = json.loads(result["body"])
    assert body["id"] == "abc" and body["memory"] == 512 and 2.0 < body["remaining"] <= 3.0
    assert result["headers"]["x-nubes-request-id"] == "abc"


def test_region_and_architecture_from_the_environment(rec: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    monkeypatch.setenv("NUBES_ARCHITECTURE", "arm64")
    reset_cold_start()
    run(rec, load("sqs_sam.json"), object())  # a context without the usual attributes
    p = rec.contexts[0].platform
    assert (p.region, p.architecture, p.memory_mb, p.emulated, p.cold_start) == ("ap-south-1", "arm64", None, False, True)
    assert rec.contexts[0].deadline is None
    reset_cold_start()
