"""Exports: CloudFormation and SAM validated by cfn-lint and aws-sam-translator, Terraform JSON for the
three clouds, and the same resources as `nubes deploy` manages (one model, two renderings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nubes.deploy.engine import Deployment

CONFIG = """
[deploy.aws]
region = "eu-west-1"
memory = 1769
timeout = 60
architecture = "arm64"
storage = "s3://shop-home/apps/shop"
http = "{http}"
[deploy.aws.routes."POST /train"]
timeout = {train}
[deploy.aws.sources]
landing = "s3://shop-landing/raw/"
[deploy.aws.queues]
orders = "shop-orders"
"""


def _deployment(project: Any, http: str = "http-api") -> Deployment:
    project.write_config(CONFIG.format(http=http, train=25 if http != "function-url" else 50))
    return Deployment.open(project.app(), "aws", config=project.config, artifact=project.artifact("aws", arch="arm64"))


def _lint(template: dict[str, Any]) -> list[str]:
    from cfnlint.api import ManualArgs, lint

    return [str(m) for m in lint(json.dumps(template), config=ManualArgs(regions=["eu-west-1"]))]


class _NoManagedPolicies:
    """The translator asks IAM for managed policy ARNs only when a template names policies; ours names none."""

    def load(self) -> dict[str, str]:
        return {}


def _translate(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    packaged = json.loads(json.dumps(template))
    for resource in packaged["Resources"].values():  # what `sam package` does: the local zip becomes an S3 URI
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://shop-artifacts/shop.zip"
    return transform(packaged, {}, _NoManagedPolicies())  # type: ignore[arg-type]


@pytest.mark.parametrize("http", ["http-api", "function-url", "rest"])
def test_cloudformation_and_sam_pass_cfn_lint_and_the_sam_translator(project_factory: Any, http: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    d = _deployment(project_factory(), http)
    cfn = d.export("cloudformation")
    assert _lint(cfn) == []
    sam = d.export("sam")
    assert sam["Transform"] == "AWS::Serverless-2016-10-31"
    assert _lint(sam) == []
    translated = _translate(sam, monkeypatch)
    assert _lint(translated) == []
    types = sorted(r["Type"] for r in translated["Resources"].values())
    assert "AWS::Lambda::Function" in types and "AWS::Events::Rule" in types and "AWS::Lambda::EventSourceMapping" in types


def _unsub(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            return value["Fn::Sub"]
        return {k: _unsub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsub(v) for v in value]
    return value


def test_the_export_and_the_deploy_plan_describe_the_same_resources(project_factory: Any) -> None:
    d = _deployment(project_factory())
    model = {r.kind: r for r in d.desired()}
    resources = d.export("cloudformation")["Resources"]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources.values():
        by_type.setdefault(r["Type"], []).append(r["Properties"])
    [fn] = by_type["AWS::Lambda::Function"]
    want = model["aws.lambda.function"].properties
    assert (fn["FunctionName"], fn["MemorySize"], fn["Timeout"], fn["Architectures"], fn["Runtime"], fn["Handler"]) == (
        "shop", want["memory"], want["timeout"], [want["architecture"]], want["runtime"], want["handler"])
    assert fn["Environment"]["Variables"] == want["environment"]
    [role] = by_type["AWS::IAM::Role"]
    assert role["RoleName"] == model["aws.iam.role"].name
    assert _unsub(role["Policies"][0]["PolicyDocument"]) == model["aws.iam.role"].properties["policy"]
    [rule] = by_type["AWS::Events::Rule"]
    assert (rule["Name"], rule["ScheduleExpression"]) == (model["aws.events.rule"].name, model["aws.events.rule"].properties["schedule"])
    [esm] = by_type["AWS::Lambda::EventSourceMapping"]
    assert _unsub(esm["EventSourceArn"]) == model["aws.lambda.event_source_mapping"].properties["queue_arn"]
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    routes = {r["RouteKey"] for r in by_type["AWS::ApiGatewayV2::Route"]}
    assert routes == set(model["aws.apigatewayv2.api"].properties["routes"])
    timeouts = sorted(i["TimeoutInMillis"] for i in by_type["AWS::ApiGatewayV2::Integration"])
    assert timeouts == sorted(s * 1000 for s in model["aws.apigatewayv2.api"].properties["routes"].values())
    [group] = by_type["AWS::Logs::LogGroup"]
    assert group["LogGroupName"] == model["aws.logs.log_group"].name
    manual = d.export("cloudformation")["Metadata"]["nubes"]["manual"]
    assert [m["bucket"] for m in manual] == [model["aws.s3.notification"].name]
    # every managed (not retained) resource of the model has its rendering
    rendered = {"aws.logs.log_group", "aws.iam.role", "aws.lambda.function", "aws.apigatewayv2.api", "aws.s3.notification",
                "aws.lambda.event_source_mapping", "aws.events.rule"}
    assert {r.kind for r in d.desired() if not r.retain} == rendered


def test_terraform_for_aws_renders_every_model_resource(project_factory: Any) -> None:
    d = _deployment(project_factory())
    tf = d.export("terraform")
    res = tf["resource"]
    fn = res["aws_lambda_function"]["function"]
    assert (fn["function_name"], fn["memory_size"], fn["architectures"]) == ("shop", 1769, ["arm64"])
    assert res["aws_cloudwatch_event_rule"]["nubes_shop_nightly"]["schedule_expression"] == "cron(30 2 ? * MON-FRI *)"
    assert res["aws_lambda_event_source_mapping"]["shop_orders"]["function_response_types"] == ["ReportBatchItemFailures"]
    assert res["aws_s3_bucket_notification"]["shop_home"]["lambda_function"][0]["filter_prefix"] == "raw/"
    text = json.dumps(tf)
    assert "${AWS::AccountId}" not in text and "${data.aws_caller_identity.current.account_id}" in text
    policy = json.loads(res["aws_iam_role_policy"]["nubes"]["policy"])
    assert {s["Sid"] for s in policy["Statement"]} >= {"OwnLogs", "HomeStore", "Queues"}


def test_export_command_writes_a_template_and_refuses_unknown_formats(project_factory: Any, tmp_path: Path) -> None:
    project = project_factory()
    project.write_config(CONFIG.format(http="http-api", train=25))
    nubes = str(Path(sys.executable).with_name("nubes"))
    out = tmp_path / "template.json"
    r = subprocess.run([nubes, "export", project.spec, "--cloud", "aws", "--format", "cloudformation", "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["Resources"]
    r = subprocess.run([nubes, "export", project.spec, "--cloud", "aws", "--format", "pulumi"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "sam, cloudformation, terraform" in r.stderr
