"""Jobs on AWS: the dispatcher's asynchronous Invoke against moto_server's Lambda API, and the
delivery it sends run by the Lambda handler (the JobDelivery source), retries raised to Lambda."""

from __future__ import annotations

import contextlib
import io
import json
import urllib.request
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

import nubes
from nubes.adapters.aws import handler
from nubes.adapters.aws.builders import LambdaContext, http_api_event
from nubes.adapters.aws.jobs import JobAttemptFailed, lambda_client
from nubes.core.request import Request
from nubes.errors import ConfigError
from nubes.testing.servers.moto import MotoServer


class OnLambda(LambdaContext):
    """A Lambda context as the real runtime hands it (not marked emulated)."""

    emulated = False


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        # moto runs Lambda code in Docker, which is not here: its docker-less backend accepts the
        # invocation, answers 202 for InvocationType=Event and echoes the payload it received.
        req = urllib.request.Request(f"{server.endpoint}/moto-api/config", method="POST",
                                     data=json.dumps({"lambda": {"use_docker": False}}).encode())
        urllib.request.urlopen(req, timeout=10).close()
        yield server


@pytest.fixture
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    import boto3

    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    iam = boto3.client("iam")
    try:
        role = iam.create_role(RoleName="nubes-jobs", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName="nubes-jobs")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("main.py", "def handler(event, context):\n    return event\n")
    fn = boto3.client("lambda")
    with contextlib.suppress(fn.exceptions.ResourceConflictException):
        fn.create_function(FunctionName="trainer", Runtime="python3.12", Role=role, Handler="main.handler",
                           Code={"ZipFile": code.getvalue()}, Timeout=900)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "trainer")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    import nubes.adapters.aws.jobs as jobs_module

    jobs_module._CLIENT.clear()  # a client for this server's endpoint
    received: list[dict[str, Any]] = []

    def keep(http_response: Any, parsed: dict[str, Any], **kw: Any) -> None:
        received.append({"status": parsed.get("StatusCode"), "payload": json.loads(parsed["Payload"].read())})

    lambda_client().meta.events.register("after-call.lambda.Invoke", keep)
    yield received
    jobs_module._CLIENT.clear()


def make_app(fail_times: int = 0) -> tuple[nubes.App, list[int]]:
    app = nubes.App("aws-jobs", storage=f"mem://aws-jobs-{id(object())}", auth=False)
    runs: list[int] = []

    @app.job("/train")
    def train(ctx: nubes.Context, rows: int = 1) -> dict:
        runs.append(rows)
        if len(runs) <= fail_times:
            raise RuntimeError("spot instance lost")
        return {"rows": rows}

    return app, runs


def test_submit_invokes_the_same_function_asynchronously_and_the_delivery_runs_the_job(aws: list[dict[str, Any]]) -> None:
    app, runs = make_app()
    lam = handler(app)
    answer = lam(http_api_event(Request("POST", "/train", query="rows=7")), OnLambda("trainer"))
    assert answer["statusCode"] == 202 and runs == []
    job = json.loads(answer["body"])
    assert aws and aws[0]["status"] == 202
    delivered = aws[0]["payload"]
    assert delivered["nubes-job"]["id"] == job["id"] and len(delivered["nubes-job"]["token"]) == 32
    assert lam(delivered, OnLambda("trainer")) == {"job": job["id"], "outcome": "done"}  # Lambda runs it
    status = lam(http_api_event(Request("GET", job["location"])), OnLambda("trainer"))
    doc = json.loads(status["body"])
    assert doc["status"] == "succeeded" and doc["result"] == {"rows": 7} and runs == [7]
    assert lam(delivered, OnLambda("trainer")) == {"job": job["id"], "outcome": "done"}  # a duplicate delivery
    assert runs == [7]


def test_failed_attempts_raise_to_lambda_until_its_retries_are_spent(aws: list[dict[str, Any]]) -> None:
    app, runs = make_app(fail_times=5)
    lam = handler(app)
    job = json.loads(lam(http_api_event(Request("POST", "/train")), OnLambda("trainer"))["body"])
    delivered = aws[-1]["payload"]
    for _ in range(2):  # the first attempt and Lambda's first retry fail: Lambda must retry
        with pytest.raises(JobAttemptFailed):
            lam(delivered, OnLambda("trainer"))
    assert lam(delivered, OnLambda("trainer"))["outcome"] == "done"  # the second retry is Lambda's last
    doc, _ = app.jobs.load(job["id"])
    assert doc["status"] == "failed" and doc["attempts"] == 3 and "spot instance lost" not in json.dumps(doc["problem"])
    assert len(runs) == 3


def test_a_forged_delivery_is_dropped(aws: list[dict[str, Any]]) -> None:
    app, runs = make_app()
    lam = handler(app)
    lam(http_api_event(Request("POST", "/train")), OnLambda("trainer"))
    forged = {"nubes-job": {"id": aws[-1]["payload"]["nubes-job"]["id"], "token": "f" * 32}}
    assert lam(forged, OnLambda("trainer"))["outcome"] == "refused" and runs == []


def test_without_the_function_name_submit_is_a_503_naming_it(aws: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    app, _ = make_app()
    answer = handler(app)(http_api_event(Request("POST", "/train")), OnLambda("trainer"))
    detail = json.loads(answer["body"])["detail"]
    # the caller sees the error's type and the request id; the message naming the fix is in the log
    assert answer["statusCode"] == 503 and "ConfigError" in detail and answer["headers"]["x-nubes-request-id"] in detail
    assert "AWS_LAMBDA_FUNCTION_NAME" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        from nubes.adapters.aws.jobs import LambdaDispatcher

        LambdaDispatcher.from_environment()
