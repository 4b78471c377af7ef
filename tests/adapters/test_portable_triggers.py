"""One app file with logical sources and queues (tests/apps/portable) through AWS, GCP and Azure
object-created and message events, and through each cloud's emulator: no per-cloud decorator,
the bindings in its nubes.toml."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from cloudevents.conversion import to_binary
from tests.adapters.test_azure_support import Indexed

import nubes
from nubes.adapters.aws import handler
from nubes.adapters.aws.builders import LambdaContext
from nubes.adapters.azure.builders import blob_input_stream, invocation_context, queue_message
from nubes.adapters.azure.functions import function_app
from nubes.adapters.emulator import Emulator
from nubes.adapters.gcp.builders import pubsub_event, storage_finalized_event
from nubes.core import triggers
from nubes.core.loader import load_app
from nubes.errors import ConfigError, NoHandler

APP = Path(__file__).resolve().parents[1] / "apps" / "portable" / "app.py"
AWS_DATA = Path(__file__).resolve().parents[1] / "data" / "aws"
WANT_OBJECT = {"key": "raw/2026/day 1.csv", "source": "landing"}
ROOTS = {"aws": "s3://acme-landing/incoming", "gcp": "gs://acme-landing-gcs/incoming", "azure": "az://landing/incoming"}
QUEUES = {"aws": "orders-prod", "gcp": "orders-topic", "azure": "orders-queue"}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> nubes.App:
    for name in ("NUBES_SOURCES", "NUBES_QUEUES", "NUBES_CONFIG", "K_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    return load_app(f"{APP}:app")


def sam_event(name: str) -> dict[str, Any]:
    """An event rendered by `sam local generate-event` (tests/data/aws/render.sh)."""
    return copy.deepcopy(json.loads((AWS_DATA / name).read_text(encoding="utf-8")))


# -- AWS: the SAM-rendered S3 and SQS events through the Lambda handler --------------------------------
def test_aws_s3_and_sqs(app: nubes.App) -> None:
    event = sam_event("s3_put_sam.json")
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = "acme-landing"
    record["s3"]["bucket"]["arn"] = "arn:aws:s3:::acme-landing"
    record["s3"]["object"]["key"] = "incoming/raw/2026/day+1.csv"
    assert handler(app)(event, LambdaContext()) is None
    sqs = sam_event("sqs_sam.json")
    for r in sqs["Records"]:
        r["eventSourceARN"] = "arn:aws:sqs:us-east-1:123456789012:orders-prod"
    assert handler(app)(sqs, LambdaContext()) == {"batchItemFailures": []}
    seen = app.handle_event(nubes.ObjectCreated("s3://acme-landing", "incoming/raw/2026/day 1.csv"),
                            platform=nubes.Platform("aws"))
    assert seen == [{**WANT_OBJECT, "store": ROOTS["aws"]}]


def test_aws_unbound_places_and_queues_name_the_filters(app: nubes.App) -> None:
    with pytest.raises(NoHandler) as caught:
        app.handle_event(nubes.ObjectCreated("s3://acme-landing", "elsewhere/x.csv"), platform=nubes.Platform("aws"))
    text = str(caught.value)
    assert "on aws" in text and "source 'landing' (= s3://acme-landing/incoming)" in text and "prefix 'raw/'" in text
    assert "message on queue 'orders' (= orders-prod)" in text
    with pytest.raises(NoHandler):  # the logical name is not the SQS queue on AWS: orders-prod is
        app.handle_event(nubes.Message("m", b"x", queue="orders"), platform=nubes.Platform("aws"))


# -- GCP: CloudEvents through the functions-framework ---------------------------------------------------
def test_gcp_storage_and_pubsub(app: nubes.App, tmp_path: Path) -> None:
    main = tmp_path / "main.py"
    main.write_text(f"from nubes.adapters.gcp import cloud_event_function\nfrom nubes.core.loader import load_app\n"
                    f"on_event = cloud_event_function(load_app({str(APP) + ':app'!r}))\n", encoding="utf-8")
    out = tmp_path / "seen.jsonl"
    os.environ["NUBES_PORTABLE_OUT"] = str(out)
    try:
        client = functions_framework.create_app("on_event", str(main), "cloudevent").test_client()
        for ce in (storage_finalized_event("acme-landing-gcs", "incoming/raw/2026/day 1.csv", 5),
                   pubsub_event(b"two teas", topic="orders-topic")):
            headers, body = to_binary(ce)
            assert client.post("/", headers=dict(headers), data=body).status_code == 200
        headers, body = to_binary(pubsub_event(b"lost", topic="orders"))  # unbound on GCP: not the topic
        assert client.post("/", headers=dict(headers), data=body).status_code == 500
    finally:
        del os.environ["NUBES_PORTABLE_OUT"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [
        {"provider": "gcp", "handler": "landed", "store": ROOTS["gcp"], **WANT_OBJECT},
        {"provider": "gcp", "handler": "order", "body": "two teas", "queue": "orders-topic", "source": "orders"},
    ]


# -- Azure: the FunctionApp registers the bound container and queue -------------------------------------
def test_azure_blob_and_queue(app: nubes.App) -> None:
    idx = Indexed(function_app(app))
    assert idx.trigger("blob_landing")["path"] == "landing/incoming/raw/{name}"
    assert idx.trigger("queue_orders_queue")["queueName"] == "orders-queue"
    results: list[Any] = []
    original = app.handle_event

    def spy(event: Any, **kw: Any) -> list[Any]:
        results.extend(original(event, **kw))
        return results

    app.handle_event = spy  # type: ignore[method-assign]
    idx["blob_landing"](blob_input_stream("landing", "incoming/raw/2026/day 1.csv", b"abc"), invocation_context())
    idx["queue_orders_queue"](queue_message(b"two teas"), invocation_context())
    assert results == [{**WANT_OBJECT, "store": ROOTS["azure"]},
                       {"body": "two teas", "queue": "orders-queue", "source": "orders"}]


def test_azure_bad_binding_is_refused_naming_the_rule(app: nubes.App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBES_QUEUES", json.dumps({"orders": "Orders_Queue"}))
    with pytest.raises(ConfigError) as caught:
        function_app(app)
    assert "Orders_Queue" in str(caught.value) and "Storage queue" in str(caught.value)
    monkeypatch.setenv("NUBES_QUEUES", "{}")
    monkeypatch.setenv("NUBES_SOURCES", json.dumps({"landing": "s3://wrong-cloud"}))
    with pytest.raises(ConfigError, match="az://BUCKET"):
        function_app(app)


@pytest.mark.parametrize(("cloud", "sources", "queues", "bad"), [
    ("aws", {"l": "s3://Bad_Bucket"}, {}, "Bad_Bucket"),
    ("aws", {}, {"o": "x" * 81}, "SQS queue"),
    ("gcp", {"l": "gs://google-data"}, {}, "google"),
    ("gcp", {}, {"o": "goog-topic"}, "goog"),
    ("azure", {"l": "az://a--b"}, {}, "a--b"),
])
def test_each_cloud_checks_its_naming_rules(cloud: str, sources: dict[str, str], queues: dict[str, str], bad: str) -> None:
    from nubes.core import clouds

    problems = clouds.get(cloud).binding_problems(sources, queues)
    assert len(problems) == 1 and bad in problems[0]
    assert clouds.get(cloud).binding_problems({"l": f"{ROOTS[cloud]}/x"}, {"o": QUEUES[cloud]}) == []


def test_environment_bindings_win_over_the_file(app: nubes.App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBES_SOURCES", json.dumps({"landing": "s3://other-landing"}))
    bound = triggers.read(app, "aws")
    assert bound.source_uri("landing") == "s3://other-landing" and bound.queue_name("orders") == "orders-prod"
    seen = app.handle_event(nubes.ObjectCreated("s3://other-landing", "raw/a.csv"), platform=nubes.Platform("aws"))
    assert seen == [{"key": "raw/a.csv", "store": "s3://other-landing", "source": "landing"}]


def test_source_and_store_together_are_refused() -> None:
    app = nubes.App("x")
    with pytest.raises(ConfigError, match="not both"):
        app.on_object_created("a/", source="landing", store="s3://b")
    with pytest.raises(ConfigError, match="logical name"):
        app.on_message("orders queue")


# -- through each cloud's emulator ----------------------------------------------------------------------
@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_emulated_events_with_logical_names(app: nubes.App, cloud: str) -> None:
    with Emulator(app, cloud, isolate=False) as emulator:
        created = emulator.emit("object-created", "raw/2026/day 1.csv", source="landing", size=3)
        message = emulator.emit("message", "two teas", queue="orders")
        missed = emulator.emit("object-created", "other/x.csv", source="landing")
    assert created.ok and message.ok, (created.output, message.output)
    assert not missed.ok and missed.error_type in ("NoHandler", "FunctionError", "NoFunction")  # azure: no trigger there


def test_nubes_emit_in_a_worker_process(tmp_path: Path) -> None:
    out = tmp_path / "seen.jsonl"
    env = {**os.environ, "NUBES_PORTABLE_OUT": str(out), "PYTHONPATH": os.pathsep.join(sys.path)}
    nubes_cli = str(Path(sys.executable).with_name("nubes"))
    for cloud in ("aws", "gcp", "azure"):
        r = subprocess.run([nubes_cli, "emit", str(APP), "object-created", "raw/k.csv", "--source", "landing", "--emulate", cloud],
                           capture_output=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        r = subprocess.run([nubes_cli, "emit", str(APP), "message", "tea", "--queue", "orders", "--emulate", cloud],
                           capture_output=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["provider"], x["handler"], x.get("store") or x.get("queue")) for x in lines] == [
        (c, h, v) for c in ("aws", "gcp", "azure") for h, v in (("landed", ROOTS[c]), ("order", QUEUES[c]))]
    assert all(x["source"] in ("landing", "orders") for x in lines)


def test_local_emit_names_the_logical_source(tmp_path: Path) -> None:
    nubes_cli = str(Path(sys.executable).with_name("nubes"))
    env = {**os.environ, "NUBES_LOG_LEVEL": "off"}
    r = subprocess.run([nubes_cli, "emit", str(APP), "object-created", "raw/k.csv", "--source", "landing"],
                       capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    (got,) = json.loads(r.stdout)["result"]
    assert (got["key"], got["source"]) == ("raw/k.csv", "landing")  # no cloud here: the emitter names the source
    r = subprocess.run([nubes_cli, "emit", str(APP), "object-created", "other/k.csv", "--source", "landing"],
                       capture_output=True, env=env, timeout=120)
    assert r.returncode == 1 and "prefix 'raw/'" in json.loads(r.stdout)["errorMessage"]


def test_the_home_store_is_the_default_source() -> None:
    app = nubes.App("homed", storage="s3://acme-home/app", openapi=False)

    @app.on_object_created(prefix="incoming/")
    def incoming(ctx: nubes.Context, event: nubes.ObjectCreated) -> tuple[str, str]:
        return event.store, event.key

    aws = nubes.Platform("aws")
    under_home = app.handle_event(nubes.ObjectCreated("s3://acme-home", "app/incoming/a.csv"), platform=aws)
    assert under_home == [("s3://acme-home/app", "incoming/a.csv")]  # re-based on the home store
    in_bucket = app.handle_event(nubes.ObjectCreated("s3://acme-home", "incoming/b.csv"), platform=aws)
    assert in_bucket == [("s3://acme-home", "incoming/b.csv")]  # elsewhere in its bucket: as it arrives
    with pytest.raises(NoHandler, match="home store s3://acme-home/app"):
        app.handle_event(nubes.ObjectCreated("s3://other-bucket", "incoming/c.csv"), platform=aws)
