"""AWS end to end against moto_server: create, read back, re-apply, update in place, interrupt, destroy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nubes.adapters.aws import deploy as aws_deploy
from nubes.deploy.engine import Deployment
from nubes.errors import ConfigError

pytest.importorskip("boto3")

CONFIG = """
[deploy.aws]
name = "{name}"
region = "us-east-1"
memory = {memory}
timeout = 20
architecture = "arm64"
storage = "s3://shop-home/apps/shop"
http = "{http}"
environment = {{ SHOP_MODE = "test", RETRIES = 3 }}
[deploy.aws.routes."POST /train"]
timeout = 15
[deploy.aws.sources]
landing = "s3://shop-landing/raw/"
[deploy.aws.queues]
orders = "shop-orders"
"""


def _open(project: Any, *, name: str = "shop", memory: int = 512, http: str = "http-api", artifact: bool = True, **kw: Any) -> Deployment:
    project.write_config(CONFIG.format(name=name, memory=memory, http=http))
    manifest = project.artifact("aws", arch="arm64", **kw) if artifact else None
    return Deployment.open(project.app(), "aws", config=project.config, artifact=manifest)


def test_deploy_creates_everything_and_reads_it_back(project_factory: Any, aws: Any) -> None:
    d = _open(project_factory())
    plan = d.plan()
    assert {c.action for c in plan.changes} == {"create"}
    d.apply(plan)

    fn = aws("lambda").get_function(FunctionName="shop")
    cfg = fn["Configuration"]
    assert (cfg["MemorySize"], cfg["Timeout"], cfg["Architectures"], cfg["Runtime"], cfg["Handler"]) == (
        512, 20, ["arm64"], "python3.12", "lambda_function.handler")
    assert cfg["Environment"]["Variables"]["SHOP_MODE"] == "test" and cfg["Environment"]["Variables"]["RETRIES"] == "3"
    assert cfg["Environment"]["Variables"]["NUBES_STORAGE"] == "s3://shop-home/apps/shop"
    assert fn["Tags"] == {"nubes:app": "shop", "nubes:version": "1.2.0"}

    role = aws("iam").get_role(RoleName="shop-nubes")["Role"]
    assert role["Path"] == "/nubes/" and cfg["Role"] == role["Arn"]
    policy = aws("iam").get_role_policy(RoleName="shop-nubes", PolicyName="nubes")["PolicyDocument"]
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert "*" not in resources and not any(r.endswith(":*:*") for r in resources)
    assert "arn:aws:s3:::shop-home/apps/shop/*" in resources  # the home prefix, not the bucket
    assert "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/shop:*" in resources
    assert "arn:aws:sqs:us-east-1:123456789012:shop-orders" in resources
    assert "arn:aws:s3:::shop-landing/raw/*" in resources
    writes = [s for s in policy["Statement"] if "s3:PutObject" in s["Action"]]
    assert [w["Resource"] for w in writes] == [["arn:aws:s3:::shop-home/apps/shop/*"]]

    api = next(a for a in aws("apigatewayv2").get_apis()["Items"] if a["Name"] == "shop")
    routes = {r["RouteKey"]: r for r in aws("apigatewayv2").get_routes(ApiId=api["ApiId"])["Items"]}
    assert set(routes) == {"$default", "POST /train"}
    integrations = {i["IntegrationId"]: i for i in aws("apigatewayv2").get_integrations(ApiId=api["ApiId"])["Items"]}
    train = integrations[routes["POST /train"]["Target"].split("/")[1]]
    assert train["TimeoutInMillis"] == 15000 and train["IntegrationUri"] == cfg["FunctionArn"]

    notes = aws("s3").get_bucket_notification_configuration(Bucket="shop-home")["LambdaFunctionConfigurations"]
    assert [(n["LambdaFunctionArn"], n["Filter"]["Key"]["FilterRules"][0]["Value"]) for n in notes] == [(cfg["FunctionArn"], "raw/")]
    [esm] = aws("lambda").list_event_source_mappings(FunctionName="shop")["EventSourceMappings"]
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and esm["EventSourceArn"].endswith(":shop-orders")
    rule = aws("events").describe_rule(Name="nubes-shop-nightly")
    assert rule["ScheduleExpression"] == "cron(30 2 ? * MON-FRI *)"
    assert [t["Arn"] for t in aws("events").list_targets_by_rule(Rule="nubes-shop-nightly")["Targets"]] == [cfg["FunctionArn"]]
    [group] = aws("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/shop")["logGroups"]
    assert group["retentionInDays"] == 30
    assert d.status()["url"] == api["ApiEndpoint"] and d.status()["drift"] == []


def test_reapply_is_an_empty_plan_that_touches_nothing(project_factory: Any, aws: Any) -> None:
    project = project_factory()
    d = _open(project)
    d.apply(d.plan())
    before = aws("lambda").get_function_configuration(FunctionName="shop")["LastModified"]
    again = _open(project)
    plan = again.plan()
    assert plan.empty and plan.counts()["unchanged"] == len(plan.changes) > 5
    assert again.apply(plan) == []
    assert aws("lambda").get_function_configuration(FunctionName="shop")["LastModified"] == before


def test_changing_memory_is_one_update_in_place(project_factory: Any, aws: Any) -> None:
    project = project_factory()
    d = _open(project)
    d.apply(d.plan())
    arn = aws("lambda").get_function_configuration(FunctionName="shop")["FunctionArn"]
    bigger = _open(project, memory=2048)
    plan = bigger.plan()
    assert [(c.action, c.resource.kind, dict(c.fields)) for c in plan.pending] == [
        ("update", "aws.lambda.function", {"memory": (512, 2048)})]
    bigger.apply(plan)
    cfg = aws("lambda").get_function_configuration(FunctionName="shop")
    assert cfg["MemorySize"] == 2048 and cfg["FunctionArn"] == arn
    assert _open(project, memory=2048).plan().empty


def test_an_image_function_reapplies_empty_and_a_new_image_is_one_code_update(project_factory: Any, aws: Any) -> None:
    """An image artifact deploys by its pushed ImageUri ([deploy.aws] image_uri), which is what the state reads back."""
    project = project_factory()
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop"

    def open_image(tag: str) -> Deployment:
        project.write_config(CONFIG.format(name="shop", memory=512, http="http-api").replace(
            'storage = "s3://shop-home/apps/shop"', f'storage = "s3://shop-home/apps/shop"\nimage_uri = "{registry}:{tag}"'))
        return Deployment.open(project.app(), "aws", config=project.config, artifact=project.artifact("aws", arch="arm64", fmt="image"))

    d = open_image("1")
    d.apply(d.plan())
    fn = aws("lambda").get_function(FunctionName="shop")
    assert fn["Configuration"]["PackageType"] == "Image" and fn["Code"]["ImageUri"] == f"{registry}:1"
    assert open_image("1").plan().empty and open_image("1").status()["drift"] == []
    [change] = open_image("2").plan().pending
    assert dict(change.fields) == {"code_sha256": (f"{registry}:1", f"{registry}:2")}


def test_new_code_updates_the_function_code_only(project_factory: Any, aws: Any) -> None:
    project = project_factory()
    d = _open(project)
    d.apply(d.plan())
    changed = _open(project, extra=b"v2")
    [change] = changed.plan().pending
    assert set(change.fields) == {"code_sha256"}
    changed.apply(changed.plan())
    assert aws("lambda").get_function_configuration(FunctionName="shop")["CodeSha256"] == change.fields["code_sha256"][1]


def test_an_interrupted_apply_is_finished_by_running_it_again(project_factory: Any, aws: Any) -> None:
    project = project_factory()
    d = _open(project)
    plan = d.plan()

    class Interrupted(Exception):
        pass

    def stop_after_four(change: Any, phase: str) -> None:
        if phase == "done" and change.resource.kind == "aws.lambda.function":
            raise Interrupted

    with pytest.raises(Interrupted):
        d.apply(plan, stop_after_four)
    rest = _open(project).plan()
    assert {c.resource.kind for c in rest.pending} == {"aws.apigatewayv2.api", "aws.s3.notification",
                                                      "aws.lambda.event_source_mapping", "aws.events.rule"}
    _open(project).apply(rest)
    assert _open(project).plan().empty


def test_removed_handlers_lose_their_triggers(project_factory: Any, aws: Any) -> None:
    shop = project_factory("shop")
    d = _open(shop)
    d.apply(d.plan())
    plain = project_factory("plain")
    text = CONFIG.format(name="shop", memory=512, http="http-api")
    plain.write_config(text.replace('[deploy.aws.routes."POST /train"]\ntimeout = 15', ""))
    d = Deployment.open(plain.app(), "aws", config=plain.config, artifact=plain.artifact("aws", arch="arm64"))
    plan = d.plan()
    assert sorted((c.action, c.resource.kind) for c in plan.pending) == [
        ("delete", "aws.events.rule"), ("delete", "aws.lambda.event_source_mapping"), ("delete", "aws.s3.notification"),
        ("update", "aws.apigatewayv2.api"), ("update", "aws.iam.role"), ("update", "aws.lambda.function")]
    d.apply(plan)
    assert d.plan().empty
    assert aws("events").list_rules(NamePrefix="nubes-shop-")["Rules"] == []
    assert aws("lambda").list_event_source_mappings(FunctionName="shop")["EventSourceMappings"] == []


def test_destroy_removes_what_nubes_created_and_nothing_else(project_factory: Any, aws: Any) -> None:
    s3 = aws("s3")
    s3.create_bucket(Bucket="shop-home")  # someone else's bucket, with someone else's notification
    s3.put_object(Bucket="shop-home", Key="apps/shop/data.parquet", Body=b"PAR1")
    aws("sqs").create_queue(QueueName="other")
    other_arn = aws("sqs").get_queue_attributes(QueueUrl=aws("sqs").get_queue_url(QueueName="other")["QueueUrl"],
                                                AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket="shop-home", NotificationConfiguration={"QueueConfigurations": [
        {"Id": "theirs", "QueueArn": other_arn, "Events": ["s3:ObjectRemoved:*"]}]})
    project = project_factory()
    d = _open(project)
    d.apply(d.plan())
    plan = d.destroy_plan()
    assert [r.name for r in plan.kept] == ["shop-home"]  # not ours: kept and not listed for deletion
    d.apply(plan)
    assert aws("lambda").list_functions()["Functions"] == []
    assert aws("iam").list_roles(PathPrefix="/nubes/")["Roles"] == []
    assert aws("apigatewayv2").get_apis()["Items"] == []
    assert aws("events").list_rules()["Rules"] == []
    assert aws("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"] == []
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert names == {"shop-home"}  # shop-landing was created by nubes, empty: deleted
    assert [q.rsplit("/", 1)[1] for q in aws("sqs").list_queues().get("QueueUrls", [])] == ["other"]
    config = s3.get_bucket_notification_configuration(Bucket="shop-home")
    assert [c["Id"] for c in config.get("QueueConfigurations", [])] == ["theirs"] and not config.get("LambdaFunctionConfigurations")
    assert s3.get_object(Bucket="shop-home", Key="apps/shop/data.parquet")["Body"].read() == b"PAR1"
    assert d.destroy_plan().empty


def test_a_same_named_resource_nubes_did_not_create_is_refused(project_factory: Any, aws: Any) -> None:
    aws("iam").create_role(RoleName="shop-nubes", AssumeRolePolicyDocument="{}")
    with pytest.raises(ConfigError, match="nubes did not create it"):
        _open(project_factory()).plan()


@pytest.mark.parametrize("front", ["function-url", "rest"])
def test_other_http_fronts_and_switching(project_factory: Any, aws: Any, front: str) -> None:
    project = project_factory()
    project.write_config(CONFIG.format(name="shop", memory=512, http=front).replace('timeout = 15', 'timeout = 10'))
    d = Deployment.open(project.app(), "aws", config=project.config, artifact=project.artifact("aws", arch="arm64"))
    d.apply(d.plan())
    if front == "function-url":
        url = aws("lambda").get_function_url_config(FunctionName="shop")
        assert url["AuthType"] == "NONE" and d.status()["url"] == url["FunctionUrl"]
    else:
        [api] = aws("apigateway").get_rest_apis()["items"]
        assert api["binaryMediaTypes"] == ["*/*"]
        paths = {r["path"] for r in aws("apigateway").get_resources(restApiId=api["id"])["items"]}
        assert paths == {"/", "/{proxy+}"}
    assert d.plan().empty
    switched = _open(project, http="http-api")
    assert sorted((c.action, c.resource.kind) for c in switched.plan().pending) == sorted([
        ("create", "aws.apigatewayv2.api"), ("delete", "aws.lambda.url" if front == "function-url" else "aws.apigateway.rest_api")])


def test_a_zip_over_the_direct_limit_goes_through_the_home_bucket(project_factory: Any, aws: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_deploy, "DIRECT_ZIP_BYTES", 100)
    project = project_factory()
    d = _open(project)
    d.apply(d.plan())
    keys = [o["Key"] for o in aws("s3").list_objects_v2(Bucket="shop-home", Prefix="apps/shop/_nubes/deploy/")["Contents"]]
    assert keys == [f"apps/shop/_nubes/deploy/shop/{d.artifact.sha256}.zip"]
    assert d.plan().empty
    d.apply(d.destroy_plan())
    assert "shop-home" not in {b["Name"] for b in aws("s3").list_buckets()["Buckets"]}  # emptied, ours: deleted


def test_without_an_artifact_the_plan_works_and_apply_says_build(project_factory: Any, aws: Any) -> None:
    d = _open(project_factory(), artifact=False)
    plan = d.plan()
    assert any("no artifact" in n for n in plan.notes)
    with pytest.raises(ConfigError, match="nubes build"):
        d.apply(plan)
    assert aws("iam").list_roles(PathPrefix="/nubes/")["Roles"] == []  # refused before creating anything


def test_plan_json_is_plain_data(project_factory: Any, aws: Any) -> None:
    plan = _open(project_factory()).plan()
    data = json.loads(json.dumps(plan.to_json()))
    assert data["summary"]["create"] == len(data["changes"])
    rule = next(c for c in data["changes"] if c["kind"] == "aws.events.rule")
    assert rule["properties"]["schedule"] == "cron(30 2 ? * MON-FRI *)"


def test_the_url_after_an_apply_comes_from_the_plan_when_it_has_it(project_factory: Any, aws: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    project = project_factory()
    d = _open(project)
    plan = d.plan()
    url = d.url(plan, d.apply(plan))  # a new API: read back from AWS
    assert url and url == d.status()["url"]
    bigger = _open(project, memory=2048)
    plan = bigger.plan()
    applied = bigger.apply(plan)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # no second read of the state: nothing answers there
    assert bigger.url(plan, applied) == url
