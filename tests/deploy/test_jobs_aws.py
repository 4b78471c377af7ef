"""An app with jobs deployed to AWS (moto_server): its role may invoke its own function and nothing
more, and the asynchronous invocation's retries match ``[jobs] max_attempts``; an app without jobs
gets neither, and removing the jobs removes them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nubes.deploy.engine import Deployment
from nubes.errors import ConfigError

pytest.importorskip("boto3")

CONFIG = """
[deploy.aws]
name = "{name}"
region = "us-east-1"
timeout = 300
storage = "s3://lab-home/apps/lab"
http = "function-url"
"""


def _open(project: Any, name: str = "lab", extra: str = "") -> Deployment:
    project.write_config(CONFIG.format(name=name) + extra)
    return Deployment.open(project.app(), "aws", config=project.config, artifact=project.artifact("aws"))


def _statements(aws: Any, role: str) -> dict[str, Any]:
    policy = aws("iam").get_role_policy(RoleName=role, PolicyName="nubes")["PolicyDocument"]
    return {s["Sid"]: s for s in (json.loads(policy) if isinstance(policy, str) else policy)["Statement"]}


def test_a_job_app_may_invoke_itself_and_retries_as_many_times_as_its_jobs(project_factory: Any, aws: Any) -> None:
    project = project_factory("lab")
    d = _open(project)
    plan = d.plan()
    assert ("create", "aws.lambda.event_invoke_config", "lab") in [(c.action, c.resource.kind, c.resource.name) for c in plan.changes]
    d.apply(plan)
    account = aws("sts").get_caller_identity()["Account"]
    arn = aws("lambda").get_function(FunctionName="lab")["Configuration"]["FunctionArn"]
    invoke = _statements(aws, "lab-nubes")["InvokeSelf"]
    assert invoke["Action"] == ["lambda:InvokeFunction"]
    assert invoke["Resource"] == [arn, f"{arn}:*"] and account in arn  # its own function (and versions), nothing else
    config = aws("lambda").get_function_event_invoke_config(FunctionName="lab")
    assert (config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]) == (2, 21600)  # 3 attempts = max_attempts
    assert _open(project).plan().empty

    project.file.write_text(project.file.read_text().replace("@app.job(\"/train\")", "@app.post(\"/train\")"))
    without = _open(project)
    pending = {(c.action, c.resource.kind): set(c.fields) for c in without.plan().pending}
    assert pending == {("delete", "aws.lambda.event_invoke_config"): set(), ("update", "aws.iam.role"): {"policy"},
                       ("update", "aws.lambda.function"): {"code_sha256"}}  # the app file changed: new code
    without.apply(without.plan())
    assert "InvokeSelf" not in _statements(aws, "lab-nubes")
    with pytest.raises(Exception, match=r"EventInvokeConfig|ResourceNotFound"):
        aws("lambda").get_function_event_invoke_config(FunctionName="lab")
    assert _open(project).plan().empty


def test_an_app_without_jobs_gets_no_job_permission_or_retry_config(project_factory: Any, aws: Any) -> None:
    project = project_factory("plain")
    project.write_config(CONFIG.format(name="plain").replace("lab-home/apps/lab", "plain-home/p"))
    d = Deployment.open(project.app(), "aws", config=project.config, artifact=project.artifact("aws"))
    assert not [r for r in d.desired() if r.kind == "aws.lambda.event_invoke_config"]
    d.apply(d.plan())
    assert "InvokeSelf" not in _statements(aws, "plain-nubes")
    assert not any("lambda:" in a for s in _statements(aws, "plain-nubes").values() for a in s["Action"])


def test_more_attempts_than_lambda_makes_is_refused(project_factory: Any, aws: Any) -> None:
    project = project_factory("lab")
    with pytest.raises(ConfigError, match=r"max_attempts = 5.*at most 3"):
        _open(project, extra="[jobs]\nmax_attempts = 5\n")
    fewer = _open(project, extra="[jobs]\nmax_attempts = 1\n")
    [invoke] = [r for r in fewer.desired() if r.kind == "aws.lambda.event_invoke_config"]
    assert invoke.properties["maximum_retry_attempts"] == 0


def test_exports_carry_the_retry_config(project_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.deploy.test_export import _lint, _translate

    project = project_factory("lab")
    d = _open(project)
    assert _lint(d.export("cloudformation")) == [] and _lint(d.export("sam")) == []
    translated = _translate(d.export("sam"), monkeypatch)
    assert _lint(translated) == []
    assert [r["Properties"]["MaximumRetryAttempts"] for r in translated["Resources"].values()
            if r["Type"] == "AWS::Lambda::EventInvokeConfig"] == [2]
    sam = d.export("sam")["Resources"]
    [fn] = [v for v in sam.values() if v["Type"] == "AWS::Serverless::Function"]
    assert fn["Properties"]["EventInvokeConfig"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 21600}
    cfn = d.export("cloudformation")["Resources"]
    [cfg] = [v for v in cfn.values() if v["Type"] == "AWS::Lambda::EventInvokeConfig"]
    assert cfg["Properties"]["MaximumRetryAttempts"] == 2 and cfg["Properties"]["Qualifier"] == "$LATEST"
    tf = d.export("terraform")["resource"]
    assert tf["aws_lambda_function_event_invoke_config"]["jobs"]["maximum_retry_attempts"] == 2
    policy = json.loads(tf["aws_iam_role_policy"]["nubes"]["policy"])
    assert any(s["Sid"] == "InvokeSelf" for s in policy["Statement"])
