"""Reading an AWS deployment back from AWS and applying one change, with boto3.

State is only what AWS answers: resources found by their deterministic names (see :mod:`.deploy`)
and checked for the ``nubes:app`` tag, the function's resource policy (which buckets notify it), its
event source mappings, and rules under ``nubes-<name>-``. A resource with a nubes name but not our
tag is someone else's: the plan refuses rather than adopting it. Every apply step is idempotent
(create falls back to update when the resource already exists), so an interrupted apply is finished
by running it again. boto3 is configured the standard way (credentials chain, ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from nubes.adapters.deployment import TAG_APP, Artifact, Change, Resource, Target, apply_change, join_key, split_store, unless_absent
from nubes.errors import ConfigError

_ASSUME = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                   "Action": "sts:AssumeRole"}]}
_ROLE_WAIT_S = 60.0  # a new IAM role takes a few seconds before Lambda may assume it


_FACTORIES: dict[tuple[str | None, ...], Callable[[str], Any]] = {}


def _clients(target: Target) -> Callable[[str], Any]:
    """A cached client factory per region and environment (making a boto3 client costs ~0.3 s)."""
    import os

    key = (_region(target), *(os.environ.get(v) for v in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE",
                                                         "NUBES_AWS_INSTANCE_ROLE")))
    if key not in _FACTORIES:
        _FACTORIES[key] = _factory(target)
    return _FACTORIES[key]


def _factory(target: Target) -> Callable[[str], Any]:
    import os

    import boto3
    import botocore.session

    core = botocore.session.Session()
    if os.environ.get("NUBES_AWS_INSTANCE_ROLE") != "1":
        # never probe the instance metadata address unless asked: without credentials, fail fast and say so
        core.get_component("credential_provider").remove("iam-role")
    session = boto3.session.Session(botocore_session=core, region_name=_region(target))
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = session.client(service)
        return cache[service]

    return client


def _region(target: Target) -> str:
    from nubes.adapters.aws.deploy import AwsDeployer

    return AwsDeployer.region(target)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _ignore(codes: tuple[str, ...], call: Callable[[], Any]) -> Any:
    """``call()``, or None when AWS answers with one of the error ``codes`` (any other error is raised)."""
    return unless_absent(lambda exc: _code(exc) in codes, call)


def account(target: Target) -> str | None:
    """The caller's account id (STS), or None when no credentials are available."""
    try:
        return str(_clients(target)("sts").get_caller_identity()["Account"])
    except Exception:
        return None


# -- reading ------------------------------------------------------------------------------------------
def read(deployer: Any, target: Target, desired: list[Resource]) -> list[Resource]:
    client = _clients(target)
    name = target.name
    out: list[Resource] = []
    for r in desired:
        if r.kind == "aws.s3.bucket" and _exists(functools.partial(client("s3").head_bucket, Bucket=r.name)):
            tag_set = (_ignore(("NoSuchTagSet", "NoSuchTagSetError", "AccessDenied"),
                               functools.partial(client("s3").get_bucket_tagging, Bucket=r.name)) or {}).get("TagSet", [])
            tags = {t["Key"]: t["Value"] for t in tag_set if t["Key"] == TAG_APP}
            out.append(Resource(r.kind, r.name, {}, tags, rank=0, retain=True))
        elif r.kind == "aws.sqs.queue" and _exists(functools.partial(client("sqs").get_queue_url, QueueName=r.name)):
            sqs = client("sqs")
            tags = sqs.list_queue_tags(QueueUrl=sqs.get_queue_url(QueueName=r.name)["QueueUrl"]).get("Tags", {})
            out.append(Resource(r.kind, r.name, {}, {k: v for k, v in tags.items() if k == TAG_APP}, rank=0, retain=True))
    logs = client("logs")
    log_group = f"/aws/lambda/{name}"
    for group in logs.describe_log_groups(logGroupNamePrefix=log_group).get("logGroups", []):
        if group["logGroupName"] == log_group:
            tags = logs.list_tags_log_group(logGroupName=log_group).get("tags", {})
            _ours(tags, target, "log group", log_group)
            out.append(Resource("aws.logs.log_group", log_group, {"retention_days": group.get("retentionInDays")},
                                {TAG_APP: tags.get(TAG_APP, "")}, rank=0))
    iam = client("iam")
    role = deployer.role(target)
    got = _ignore(("NoSuchEntity",), functools.partial(iam.get_role, RoleName=role))
    if got is not None:
        got = got["Role"]
        tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role).get("Tags", [])}
        _ours(tags, target, "IAM role", role)
        policy = (_ignore(("NoSuchEntity",), functools.partial(iam.get_role_policy, RoleName=role, PolicyName="nubes"))
                  or {}).get("PolicyDocument")
        policy = json.loads(unquote(policy)) if isinstance(policy, str) else policy
        assume = got.get("AssumeRolePolicyDocument")
        assume = json.loads(unquote(assume)) if isinstance(assume, str) else assume
        service = ((assume or {}).get("Statement") or [{}])[0].get("Principal", {}).get("Service")
        out.append(Resource("aws.iam.role", role, {"path": got.get("Path"), "assume": service, "policy": policy},
                            {TAG_APP: tags.get(TAG_APP, "")}, rank=1, outputs={"arn": got["Arn"]}))
    lam = client("lambda")
    fn = _ignore(("ResourceNotFoundException",), functools.partial(lam.get_function, FunctionName=name))
    if fn is not None:
        cfg, tags = fn["Configuration"], fn.get("Tags", {})
        _ours(tags, target, "Lambda function", name)
        props = {"package_type": cfg.get("PackageType", "Zip"), "memory": cfg.get("MemorySize"), "timeout": cfg.get("Timeout"),
                 "architecture": (cfg.get("Architectures") or ["x86_64"])[0],
                 "environment": cfg.get("Environment", {}).get("Variables", {}), "role": cfg.get("Role", "").rsplit("/", 1)[-1],
                 "code_sha256": cfg.get("CodeSha256"), "runtime": cfg.get("Runtime"), "handler": cfg.get("Handler")}
        if props["package_type"] == "Image":
            props["code_sha256"] = fn.get("Code", {}).get("ImageUri")
        sha = base64.b64decode(cfg["CodeSha256"]).hex() if cfg.get("CodeSha256") else None
        out.append(Resource("aws.lambda.function", name, props, dict(tags), rank=2,
                            outputs={"arn": cfg["FunctionArn"], "code_sha256": sha}))
        out.extend(_triggers(client, target, cfg["FunctionArn"]))
    out.extend(_apis(client, target))
    real = account(target)
    if not real or target.extra.get("account"):
        return out
    return [Resource(r.kind, r.name, tokenized(r.properties, real), r.tags, r.rank, r.retain, r.outputs) for r in out]


def tokenized(value: Any, real: str) -> Any:
    """``value`` with the account id ``real`` written as ``${AWS::AccountId}`` (as desired resources name it)."""
    from nubes.adapters.aws.deploy import ACCOUNT

    return json.loads(json.dumps(value).replace(f":{real}:", f":{ACCOUNT}:"))


def resolved(value: Any, client: Callable[[str], Any]) -> Any:
    """``value`` with ``${AWS::AccountId}`` replaced by the caller's account (STS)."""
    from nubes.adapters.aws.deploy import ACCOUNT

    text = json.dumps(value)
    if ACCOUNT not in text:
        return value
    real = str(client("sts").get_caller_identity()["Account"])
    return json.loads(text.replace(ACCOUNT, real))


def _ours(tags: dict[str, str], target: Target, what: str, name: str) -> None:
    if tags.get(TAG_APP) != target.name:
        raise ConfigError(f"a {what} named {name!r} exists but nubes did not create it for {target.name!r} "
                          f"(tag {TAG_APP} is {tags.get(TAG_APP)!r}); choose another {target.where('name')} or remove it")


def _exists(call: Callable[[], Any]) -> bool:
    codes = ("404", "NoSuchBucket", "NotFound", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
    return _ignore(codes, lambda: call() or True) is not None


def _triggers(client: Callable[[str], Any], target: Target, function_arn: str) -> list[Resource]:
    lam, name, out = client("lambda"), target.name, []
    missing = ("ResourceNotFoundException",)
    url = _ignore(missing, functools.partial(lam.get_function_url_config, FunctionName=name))
    if url is not None:
        out.append(Resource("aws.lambda.url", name, {"auth_type": url["AuthType"], "invoke_mode": url.get("InvokeMode", "BUFFERED"),
                                                      "function": name}, {}, rank=3, outputs={"url": url["FunctionUrl"]}))
    invoke = _ignore(missing, functools.partial(lam.get_function_event_invoke_config, FunctionName=name))
    if invoke is not None:
        out.append(Resource("aws.lambda.event_invoke_config", name, {
            "function": name, "maximum_retry_attempts": invoke.get("MaximumRetryAttempts"),
            "maximum_event_age_s": invoke.get("MaximumEventAgeInSeconds")}, {}, rank=3))
    for esm in lam.list_event_source_mappings(FunctionName=name).get("EventSourceMappings", []):
        queue = esm["EventSourceArn"].rsplit(":", 1)[-1]
        out.append(Resource("aws.lambda.event_source_mapping", queue, {
            "function": name, "queue_arn": esm["EventSourceArn"], "batch_size": esm.get("BatchSize"),
            "function_response_types": esm.get("FunctionResponseTypes", []), "enabled": esm.get("State") != "Disabled"},
            {}, rank=3, outputs={"uuid": esm["UUID"]}))
    for bucket in _notifying_buckets(lam, name):
        rules = _our_notifications(client("s3"), bucket, target)
        if rules:
            out.append(Resource("aws.s3.notification", bucket, {"function": name, "rules": rules}, {}, rank=3))
    events = client("events")
    for rule in events.list_rules(NamePrefix=f"nubes-{name}-").get("Rules", []):
        tags = {t["Key"]: t["Value"] for t in events.list_tags_for_resource(ResourceARN=rule["Arn"]).get("Tags", [])}
        if tags.get(TAG_APP) != name:
            continue
        targets = events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
        target_fn = next((t["Arn"].rsplit(":", 1)[-1] for t in targets if t["Arn"] == function_arn), None)
        out.append(Resource("aws.events.rule", rule["Name"], {
            "schedule": rule.get("ScheduleExpression"), "function": target_fn, "state": rule.get("State"),
            "nubes_schedule": tags.get("nubes:schedule")}, {TAG_APP: name}, rank=3, outputs={"arn": rule["Arn"]}))
    return out


def _notifying_buckets(lam: Any, name: str) -> list[str]:
    answer = _ignore(("ResourceNotFoundException",), functools.partial(lam.get_policy, FunctionName=name))
    if answer is None:
        return []
    policy = json.loads(answer["Policy"])
    sids = (s.get("Sid", "") for s in policy.get("Statement", []))
    return sorted({sid[len("nubes-s3-"):] for sid in sids if sid.startswith("nubes-s3-")})


def _our_notifications(s3: Any, bucket: str, target: Target) -> list[dict[str, Any]]:
    config = _ignore(("NoSuchBucket", "404"), functools.partial(s3.get_bucket_notification_configuration, Bucket=bucket))
    if config is None:
        return []
    rules = []
    for item in config.get("LambdaFunctionConfigurations", []):
        if item.get("Id", "").startswith(f"nubes-{target.name}-"):
            filters = item.get("Filter", {}).get("Key", {}).get("FilterRules", [])
            prefix = next((f["Value"] for f in filters if f["Name"].lower() == "prefix"), "")
            rules.append({"id": item["Id"], "prefix": prefix, "events": item.get("Events", [])})
    return sorted(rules, key=lambda r: r["id"])


def _apis(client: Callable[[str], Any], target: Target) -> list[Resource]:
    name, out = target.name, []
    v2 = client("apigatewayv2")
    for api in v2.get_apis().get("Items", []):
        if api.get("Tags", {}).get(TAG_APP) != name or api.get("Name") != name:
            continue
        integrations = {i["IntegrationId"]: i for i in v2.get_integrations(ApiId=api["ApiId"]).get("Items", [])}
        routes = {}
        for route in v2.get_routes(ApiId=api["ApiId"]).get("Items", []):
            integration = integrations.get(route.get("Target", "").removeprefix("integrations/"), {})
            routes[route["RouteKey"]] = int(integration.get("TimeoutInMillis", 30000)) // 1000
        fn = next((i.get("IntegrationUri", "").rsplit(":", 1)[-1] for i in integrations.values()), None)
        version = next((i.get("PayloadFormatVersion") for i in integrations.values()), None)
        out.append(Resource("aws.apigatewayv2.api", name, {"protocol": api.get("ProtocolType"), "payload_format": version,
                                                            "function": fn, "routes": dict(sorted(routes.items()))},
                            {TAG_APP: name}, rank=3, outputs={"id": api["ApiId"], "url": api.get("ApiEndpoint")}))
    rest = client("apigateway")
    for api in rest.get_rest_apis().get("items", []):
        if (api.get("tags") or {}).get(TAG_APP) != name or api.get("name") != name:
            continue
        stages = [s["stageName"] for s in rest.get_stages(restApiId=api["id"]).get("item", [])]
        out.append(Resource("aws.apigateway.rest_api", name, {
            "binary_media_types": api.get("binaryMediaTypes", []), "stage": stages[0] if stages else None, "function": name},
            {TAG_APP: name}, rank=3, outputs={"id": api["id"], "url": f"https://{api['id']}.execute-api.{_region(target)}"
                                              f".amazonaws.com/{stages[0] if stages else 'prod'}"}))
    return out


# -- applying ------------------------------------------------------------------------------------------
def apply(deployer: Any, change: Change, target: Target, artifact: Artifact | None) -> Resource | None:
    from nubes.adapters.aws import deploy_apply

    return apply_change(deploy_apply.HANDLERS, _clients(target), change, target, artifact)


def retry_role(call: Callable[[], Any]) -> Any:
    """``call()``, repeated while Lambda says the new role cannot be assumed yet (IAM is eventually consistent)."""
    deadline = time.monotonic() + _ROLE_WAIT_S
    delay = 1.0
    while True:
        try:
            return call()
        except Exception as exc:
            if _code(exc) != "InvalidParameterValueException" or "role" not in str(exc).lower() or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 8.0)


def code_location(client: Callable[[str], Any], target: Target, artifact: Artifact) -> dict[str, Any]:
    """Lambda's ``Code``: the zip inline up to 50 MB, else uploaded to the home bucket; an image by URI."""
    from nubes.adapters.aws.deploy import DIRECT_ZIP_BYTES

    if artifact.format == "image":
        uri = artifact.image_uri or target.extra.get("image_uri")
        if not uri:
            raise ConfigError("an image artifact needs its pushed image: set image_uri = \"<account>.dkr.ecr...\" in "
                              f"{target.where()} after pushing it")
        return {"ImageUri": uri}
    data = artifact.read()
    if len(data) <= DIRECT_ZIP_BYTES:
        return {"ZipFile": data}
    _, bucket, prefix = split_store(target.storage)
    key = join_key(prefix, "_nubes/deploy", target.name, f"{artifact.sha256}.zip")
    client("s3").put_object(Bucket=bucket, Key=key, Body=data)
    return {"S3Bucket": bucket, "S3Key": key}


__all__ = ["account", "apply", "code_location", "read", "retry_role"]
