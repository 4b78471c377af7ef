"""One function per resource kind that creates, updates or deletes it on AWS (boto3), idempotently.

Each ``handler(client, change, target, artifact)`` may be called again after an interruption: creates
tolerate "already exists" and converge like updates, deletes tolerate "not found". Permissions a trigger
needs on the function (``lambda:AddPermission``) have the Sids ``nubes-<what>`` and are added and removed
with the trigger.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from nubes.adapters.aws.deploy_state import _ASSUME, _code, _ignore, code_location, resolved, retry_role
from nubes.adapters.deployment import TAG_APP, Artifact, Change, Target, join_key, split_store

Client = Callable[[str], Any]


def _function_arn(client: Client, name: str) -> str:
    return str(client("lambda").get_function_configuration(FunctionName=name)["FunctionArn"])


def _permission(client: Client, function: str, sid: str, **kw: Any) -> None:
    lam = client("lambda")
    _ignore(("ResourceNotFoundException",), lambda: lam.remove_permission(FunctionName=function, StatementId=sid))
    lam.add_permission(FunctionName=function, StatementId=sid, Action=kw.pop("Action", "lambda:InvokeFunction"), **kw)


def _unpermit(client: Client, function: str, sid: str) -> None:
    _ignore(("ResourceNotFoundException",), lambda: client("lambda").remove_permission(FunctionName=function, StatementId=sid))


def bucket(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    s3, name = client("s3"), change.resource.name
    if change.action == "delete":  # only one nubes created (model.teardown), and only when empty
        if not s3.list_objects_v2(Bucket=name, MaxKeys=1).get("KeyCount") and not s3.list_object_versions(
                Bucket=name, MaxKeys=1).get("Versions"):
            _ignore(("NoSuchBucket",), lambda: s3.delete_bucket(Bucket=name))
        return
    if change.action != "create":
        return  # retained: never updated
    region = client("s3").meta.region_name
    extra = {"CreateBucketConfiguration": {"LocationConstraint": region}} if region != "us-east-1" else {}
    _ignore(("BucketAlreadyOwnedByYou",), lambda: s3.create_bucket(Bucket=name, **extra))
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": TAG_APP, "Value": target.name}]})


def queue(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    if change.action == "delete":  # only one nubes created (model.teardown), and only when empty
        sqs = client("sqs")
        url = sqs.get_queue_url(QueueName=change.resource.name)["QueueUrl"]
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"])
        if not any(int(v) for v in counts.get("Attributes", {}).values()):
            sqs.delete_queue(QueueUrl=url)
        return
    if change.action == "create":
        name = change.resource.name
        attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
        client("sqs").create_queue(QueueName=name, Attributes=attributes, tags={TAG_APP: target.name})


def log_group(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    logs, name = client("logs"), change.resource.name
    if change.action == "delete":
        _ignore(("ResourceNotFoundException",), lambda: logs.delete_log_group(logGroupName=name))
        return
    if change.action == "create":
        _ignore(("ResourceAlreadyExistsException",), lambda: logs.create_log_group(logGroupName=name, tags={TAG_APP: target.name}))
    logs.put_retention_policy(logGroupName=name, retentionInDays=change.resource.properties["retention_days"])


def role(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    iam, name, props = client("iam"), change.resource.name, change.resource.properties
    if change.action == "delete":
        _ignore(("NoSuchEntity",), lambda: iam.delete_role_policy(RoleName=name, PolicyName="nubes"))
        _ignore(("NoSuchEntity",), lambda: iam.delete_role(RoleName=name))
        return
    if change.action == "create":
        _ignore(("EntityAlreadyExists",), lambda: iam.create_role(
            RoleName=name, Path=props["path"], AssumeRolePolicyDocument=json.dumps(_ASSUME),
            Description=f"nubes: the function {target.name}", Tags=[{"Key": TAG_APP, "Value": target.name}]))
    iam.put_role_policy(RoleName=name, PolicyName="nubes", PolicyDocument=json.dumps(resolved(props["policy"], client)))


def function(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    lam, name, props = client("lambda"), change.resource.name, change.resource.properties
    if change.action == "delete":
        _ignore(("ResourceNotFoundException",), lambda: lam.delete_function(FunctionName=name))
        _, home, prefix = split_store(target.storage)  # code uploaded through S3 (zips over 50 MB)
        uploads = join_key(prefix, "_nubes/deploy", name) + "/"
        s3 = client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=home, Prefix=uploads):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=home, Delete={"Objects": keys})
        return
    role_arn = client("iam").get_role(RoleName=props["role"])["Role"]["Arn"]
    config: dict[str, Any] = {"Role": role_arn, "MemorySize": props["memory"], "Timeout": props["timeout"],
                              "Environment": {"Variables": dict(props["environment"])},
                              "Description": f"nubes app {target.name} {change.resource.tags.get('nubes:version', '')}".strip()}
    if props["package_type"] == "Zip":
        config.update(Runtime=props["runtime"], Handler=props["handler"])
    assert artifact is not None  # the engine refuses code-bearing changes without an artifact
    if change.action == "create":
        try:
            retry_role(lambda: lam.create_function(
                FunctionName=name, PackageType=props["package_type"], Code=code_location(client, target, artifact),
                Architectures=[props["architecture"]], Tags=dict(change.resource.tags), Publish=False, **config))
        except Exception as exc:
            if _code(exc) != "ResourceConflictException":
                raise
            change = Change("update", change.resource, None, {k: (None, v) for k, v in props.items()})
        else:
            lam.get_waiter("function_active_v2").wait(FunctionName=name)
            return
    fields = set(change.fields)
    if {"code_sha256", "architecture"} & fields:
        code = code_location(client, target, artifact)
        lam.update_function_code(FunctionName=name, Architectures=[props["architecture"]], **code)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    if fields - {"code_sha256", "architecture"} - {f for f in fields if f.startswith("tags.")}:
        retry_role(lambda: lam.update_function_configuration(FunctionName=name, **config))
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    if any(f.startswith("tags.") for f in fields):
        lam.tag_resource(Resource=_function_arn(client, name), Tags=dict(change.resource.tags))


def url(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    lam, fn, props = client("lambda"), change.resource.properties.get("function", target.name), change.resource.properties
    if change.action == "delete":
        _ignore(("ResourceNotFoundException",), lambda: lam.delete_function_url_config(FunctionName=fn))
        _unpermit(client, fn, "nubes-url")
        return
    settings = {"AuthType": props["auth_type"], "InvokeMode": props["invoke_mode"]}
    try:
        lam.create_function_url_config(FunctionName=fn, **settings)
    except Exception as exc:
        if _code(exc) != "ResourceConflictException":
            raise
        lam.update_function_url_config(FunctionName=fn, **settings)
    _permission(client, fn, "nubes-url", Action="lambda:InvokeFunctionUrl", Principal="*", FunctionUrlAuthType="NONE")


def http_api(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    v2, props, name = client("apigatewayv2"), change.resource.properties, change.resource.name
    existing = [a for a in v2.get_apis().get("Items", []) if a.get("Name") == name and a.get("Tags", {}).get(TAG_APP) == target.name]
    if change.action == "delete":
        for api in existing:
            _ignore(("NotFoundException",), functools.partial(v2.delete_api, ApiId=api["ApiId"]))
        _unpermit(client, target.name, "nubes-http-api")
        return
    api = existing[0] if existing else v2.create_api(Name=name, ProtocolType="HTTP", Tags={TAG_APP: target.name})
    api_id, fn_arn = api["ApiId"], _function_arn(client, props["function"])
    integrations = {i["IntegrationId"]: i for i in v2.get_integrations(ApiId=api_id).get("Items", [])}
    routes = {r["RouteKey"]: r for r in v2.get_routes(ApiId=api_id).get("Items", [])}
    for key, seconds in props["routes"].items():
        route = routes.pop(key, None)
        integration = integrations.get((route or {}).get("Target", "").removeprefix("integrations/"))
        settings = {"IntegrationUri": fn_arn, "PayloadFormatVersion": props["payload_format"], "TimeoutInMillis": seconds * 1000}
        if integration is None:
            made = v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", **settings)
            if route is None:
                v2.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{made['IntegrationId']}")
            else:
                v2.update_route(ApiId=api_id, RouteId=route["RouteId"], Target=f"integrations/{made['IntegrationId']}")
        else:
            v2.update_integration(ApiId=api_id, IntegrationId=integration["IntegrationId"], **settings)
    for stale in routes.values():
        v2.delete_route(ApiId=api_id, RouteId=stale["RouteId"])
        gone = stale.get("Target", "").removeprefix("integrations/")
        if gone:
            _ignore(("NotFoundException",), functools.partial(v2.delete_integration, ApiId=api_id, IntegrationId=gone))
    if not any(s.get("StageName") == "$default" for s in v2.get_stages(ApiId=api_id).get("Items", [])):
        v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    region, account = fn_arn.split(":")[3], fn_arn.split(":")[4]
    _permission(client, target.name, "nubes-http-api", Principal="apigateway.amazonaws.com",
                SourceArn=f"arn:aws:execute-api:{region}:{account}:{api_id}/*")


def rest_api(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    gw, props, name = client("apigateway"), change.resource.properties, change.resource.name
    existing = [a for a in gw.get_rest_apis().get("items", [])
                if a.get("name") == name and (a.get("tags") or {}).get(TAG_APP) == target.name]
    if change.action == "delete":
        for api in existing:
            _ignore(("NotFoundException",), functools.partial(gw.delete_rest_api, restApiId=api["id"]))
        _unpermit(client, target.name, "nubes-rest")
        return
    fn_arn = _function_arn(client, props["function"])
    region, account = fn_arn.split(":")[3], fn_arn.split(":")[4]
    if existing:
        api = existing[0]
    else:
        api = gw.create_rest_api(name=name, binaryMediaTypes=list(props["binary_media_types"]), tags={TAG_APP: target.name},
                                 endpointConfiguration={"types": ["REGIONAL"]})
        resources = gw.get_resources(restApiId=api["id"])["items"]
        root = next(r["id"] for r in resources if r["path"] == "/")
        proxy = gw.create_resource(restApiId=api["id"], parentId=root, pathPart="{proxy+}")["id"]
        uri = f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{fn_arn}/invocations"
        for resource in (root, proxy):
            gw.put_method(restApiId=api["id"], resourceId=resource, httpMethod="ANY", authorizationType="NONE")
            gw.put_integration(restApiId=api["id"], resourceId=resource, httpMethod="ANY", type="AWS_PROXY",
                               integrationHttpMethod="POST", uri=uri)
        gw.create_deployment(restApiId=api["id"], stageName=props["stage"])
    have = gw.get_rest_api(restApiId=api["id"]).get("binaryMediaTypes", []) or []
    for media in props["binary_media_types"]:
        if media not in have:  # "value" repeats the path's type: moto reads it, API Gateway reads the path
            gw.update_rest_api(restApiId=api["id"], patchOperations=[
                {"op": "add", "path": f"/binaryMediaTypes/{media.replace('/', '~1')}", "value": media}])
    _permission(client, target.name, "nubes-rest", Principal="apigateway.amazonaws.com",
                SourceArn=f"arn:aws:execute-api:{region}:{account}:{api['id']}/*")


def notification(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    s3, bucket_name, props = client("s3"), change.resource.name, change.resource.properties
    fn = props.get("function") or target.name
    config = _ignore(("NoSuchBucket",), lambda: s3.get_bucket_notification_configuration(Bucket=bucket_name)) or {}
    config = {k: v for k, v in config.items() if k != "ResponseMetadata"}
    kept = [c for c in config.get("LambdaFunctionConfigurations", []) if not c.get("Id", "").startswith(f"nubes-{target.name}-")]
    if change.action == "delete":
        if config:
            s3.put_bucket_notification_configuration(Bucket=bucket_name, NotificationConfiguration={
                **config, "LambdaFunctionConfigurations": kept})
        _unpermit(client, fn, f"nubes-s3-{bucket_name}")
        return
    fn_arn = _function_arn(client, fn)
    _permission(client, fn, f"nubes-s3-{bucket_name}", Principal="s3.amazonaws.com", SourceArn=f"arn:aws:s3:::{bucket_name}",
                SourceAccount=fn_arn.split(":")[4])
    ours = [{"Id": r["id"], "LambdaFunctionArn": fn_arn, "Events": list(r["events"]),
             **({"Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": r["prefix"]}]}}} if r["prefix"] else {})}
            for r in props["rules"]]
    s3.put_bucket_notification_configuration(Bucket=bucket_name, NotificationConfiguration={
        **config, "LambdaFunctionConfigurations": kept + ours})


def event_source_mapping(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    lam, props = client("lambda"), change.resource.properties
    fn = props.get("function") or target.name
    uuid = (change.actual.outputs.get("uuid") if change.actual else None) or next(
        (m["UUID"] for m in lam.list_event_source_mappings(FunctionName=fn).get("EventSourceMappings", [])
         if m["EventSourceArn"].rsplit(":", 1)[-1] == change.resource.name), None)
    if change.action == "delete":
        if uuid:
            _ignore(("ResourceNotFoundException",), lambda: lam.delete_event_source_mapping(UUID=uuid))
        return
    settings = {"BatchSize": props["batch_size"], "FunctionResponseTypes": list(props["function_response_types"]),
                "Enabled": props["enabled"]}
    if uuid is None:
        lam.create_event_source_mapping(EventSourceArn=resolved(props["queue_arn"], client), FunctionName=fn, **settings)
    else:
        lam.update_event_source_mapping(UUID=uuid, FunctionName=fn, **settings)


def event_invoke_config(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    """The retries of the function's asynchronous invocations, which run its jobs (see :mod:`.jobs`)."""
    lam, props = client("lambda"), change.resource.properties
    fn = props.get("function") or target.name
    if change.action == "delete":
        _ignore(("ResourceNotFoundException",), lambda: lam.delete_function_event_invoke_config(FunctionName=fn))
        return
    lam.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=props["maximum_retry_attempts"],
                                         MaximumEventAgeInSeconds=props["maximum_event_age_s"])


def rule(client: Client, change: Change, target: Target, artifact: Artifact | None) -> None:
    events, name, props = client("events"), change.resource.name, change.resource.properties
    fn = props.get("function") or target.name
    if change.action == "delete":
        _ignore(("ResourceNotFoundException",), lambda: events.remove_targets(Rule=name, Ids=["nubes"]))
        _ignore(("ResourceNotFoundException",), lambda: events.delete_rule(Name=name))
        _unpermit(client, fn, name)
        return
    tags = [{"Key": TAG_APP, "Value": target.name}, {"Key": "nubes:schedule", "Value": str(props["nubes_schedule"])}]
    made = events.put_rule(Name=name, ScheduleExpression=props["schedule"], State=props["state"],
                           Description=f"nubes schedule {props['nubes_schedule']} of {target.name}",
                           **({"Tags": tags} if change.action == "create" else {}))
    events.put_targets(Rule=name, Targets=[{"Id": "nubes", "Arn": _function_arn(client, fn)}])
    _permission(client, fn, name, Principal="events.amazonaws.com", SourceArn=made["RuleArn"])


HANDLERS: dict[str, Callable[[Client, Change, Target, Artifact | None], None]] = {
    "aws.s3.bucket": bucket, "aws.sqs.queue": queue, "aws.logs.log_group": log_group, "aws.iam.role": role,
    "aws.lambda.function": function, "aws.lambda.url": url, "aws.apigatewayv2.api": http_api,
    "aws.apigateway.rest_api": rest_api, "aws.s3.notification": notification,
    "aws.lambda.event_source_mapping": event_source_mapping, "aws.events.rule": rule,
    "aws.lambda.event_invoke_config": event_invoke_config,
}

__all__ = ["HANDLERS"]
