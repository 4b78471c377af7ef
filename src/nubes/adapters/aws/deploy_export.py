"""The AWS resources of :mod:`.deploy` as CloudFormation, SAM or Terraform JSON: one model, three renderings.

Buckets and queues are referenced, not created (they hold data and outlive a stack), so a template
cannot add S3 notifications to them: CloudFormation and SAM get the function's S3 permission and the
notification to install in ``Metadata.nubes.manual``; Terraform gets ``aws_s3_bucket_notification``
(which owns the bucket's whole notification configuration: merge it with any others you have).
The code is a parameter (``CodeS3Bucket``/``CodeS3Key``) in CloudFormation and the artifact's
path in SAM and Terraform.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nubes.adapters.deployment import Artifact, Resource, Target, terraform_name

_ACCOUNT = "${AWS::AccountId}"


def render(deployer: Any, resources: list[Resource], target: Target, artifact: Artifact | None, fmt: str) -> dict[str, Any]:
    if fmt == "terraform":
        return terraform(resources, target, artifact)
    return cloudformation(resources, target, artifact, sam=fmt == "sam")


def logical(kind: str, name: str) -> str:
    """A CloudFormation logical id for (kind, name): ``LambdaFunctionShop``."""
    words = re.split(r"[^A-Za-z0-9]+", f"{kind.split('.', 1)[1]} {name}")
    return "".join(w[:1].upper() + w[1:] for w in words if w)[:255]


def _sub(value: Any) -> Any:
    """Strings naming the account become ``Fn::Sub`` so the template is portable."""
    if isinstance(value, str) and _ACCOUNT in value:
        return {"Fn::Sub": value}
    if isinstance(value, dict):
        return {k: _sub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sub(v) for v in value]
    return value


def _tags(resource: Resource) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in resource.tags.items()]


def cloudformation(resources: list[Resource], target: Target, artifact: Artifact | None, *, sam: bool) -> dict[str, Any]:
    by_kind: dict[str, list[Resource]] = {}
    for r in resources:
        by_kind.setdefault(r.kind, []).append(r)
    [fn] = by_kind["aws.lambda.function"]
    [role] = by_kind["aws.iam.role"]
    fn_id, role_id = logical(fn.kind, fn.name), logical(role.kind, role.name)
    fn_arn = {"Fn::GetAtt": [fn_id, "Arn"]}
    out: dict[str, Any] = {}
    manual: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    for group in by_kind.get("aws.logs.log_group", []):
        out[logical(group.kind, group.name)] = {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": group.name, "RetentionInDays": group.properties["retention_days"], "Tags": _tags(group)}}
    out[role_id] = {"Type": "AWS::IAM::Role", "Properties": {
        "RoleName": role.name, "Path": role.properties["path"], "Tags": _tags(role),
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                             "Principal": {"Service": role.properties["assume"]}}]},
        "Policies": [{"PolicyName": "nubes", "PolicyDocument": _sub(role.properties["policy"])}]}}
    p = fn.properties
    common = {"FunctionName": fn.name, "Role": {"Fn::GetAtt": [role_id, "Arn"]}, "MemorySize": p["memory"], "Timeout": p["timeout"],
              "Architectures": [p["architecture"]], "Environment": {"Variables": dict(p["environment"])}}
    if p["package_type"] == "Zip":
        common.update(Runtime=p["runtime"], Handler=p["handler"])
    depends = [logical(g.kind, g.name) for g in by_kind.get("aws.logs.log_group", [])]
    events: dict[str, Any] = {}
    if sam:
        code_uri = str(artifact.path) if artifact else "build/aws/app.zip"
        props = {**common, "Tags": dict(fn.tags)}
        props.update({"ImageUri": artifact.image_uri} if p["package_type"] == "Image" and artifact else {"CodeUri": code_uri})
        if p["package_type"] == "Image":
            props["PackageType"] = "Image"
        out[fn_id] = {"Type": "AWS::Serverless::Function", "DependsOn": depends, "Properties": props}
    else:
        params = {"CodeS3Bucket": {"Type": "String", "Description": "bucket holding the function's zip (nubes build)"},
                  "CodeS3Key": {"Type": "String", "Description": "key of the function's zip"}}
        out[fn_id] = {"Type": "AWS::Lambda::Function", "DependsOn": depends, "Properties": {
            **common, "Tags": _tags(fn), "PackageType": p["package_type"],
            "Code": {"S3Bucket": {"Ref": "CodeS3Bucket"}, "S3Key": {"Ref": "CodeS3Key"}}}}

    def permission(key: str, principal: str, source: Any, action: str = "lambda:InvokeFunction", **extra: Any) -> None:
        out[f"{fn_id}Permission{key}"] = {"Type": "AWS::Lambda::Permission", "Properties": {
            "FunctionName": {"Ref": fn_id}, "Action": action, "Principal": principal,
            **({"SourceArn": source} if source else {}), **extra}}

    for api in by_kind.get("aws.apigatewayv2.api", []):
        if sam:
            for i, (key, seconds) in enumerate(api.properties["routes"].items()):
                method, _, path = key.partition(" ")
                spec = {"TimeoutInMillis": seconds * 1000, "PayloadFormatVersion": api.properties["payload_format"]}
                if key != "$default":
                    spec.update(Method=method, Path=path)
                events[f"Http{i}"] = {"Type": "HttpApi", "Properties": spec}
            continue
        api_id = logical(api.kind, api.name)
        out[api_id] = {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"Name": api.name, "ProtocolType": "HTTP",
                                                                         "Tags": dict(api.tags)}}
        for i, (key, seconds) in enumerate(api.properties["routes"].items()):
            out[f"{api_id}Integration{i}"] = {"Type": "AWS::ApiGatewayV2::Integration", "Properties": {
                "ApiId": {"Ref": api_id}, "IntegrationType": "AWS_PROXY", "IntegrationUri": fn_arn,
                "PayloadFormatVersion": api.properties["payload_format"], "TimeoutInMillis": seconds * 1000}}
            out[f"{api_id}Route{i}"] = {"Type": "AWS::ApiGatewayV2::Route", "Properties": {
                "ApiId": {"Ref": api_id}, "RouteKey": key,
                "Target": {"Fn::Join": ["/", ["integrations", {"Ref": f"{api_id}Integration{i}"}]]}}}
        out[f"{api_id}Stage"] = {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {
            "ApiId": {"Ref": api_id}, "StageName": "$default", "AutoDeploy": True}}
        permission("HttpApi", "apigateway.amazonaws.com",
                   {"Fn::Sub": f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{api_id}}}/*"})
    for url in by_kind.get("aws.lambda.url", []):
        if sam:
            out[fn_id]["Properties"]["FunctionUrlConfig"] = {"AuthType": url.properties["auth_type"],
                                                             "InvokeMode": url.properties["invoke_mode"]}
            continue
        out[logical(url.kind, url.name)] = {"Type": "AWS::Lambda::Url", "Properties": {
            "TargetFunctionArn": fn_arn, "AuthType": url.properties["auth_type"], "InvokeMode": url.properties["invoke_mode"]}}
        permission("Url", "*", None, action="lambda:InvokeFunctionUrl", FunctionUrlAuthType="NONE")
    for rest in by_kind.get("aws.apigateway.rest_api", []):
        _rest(out, rest, fn_id, events, sam, permission)
    for note in by_kind.get("aws.s3.notification", []):
        bucket = note.name
        permission(logical("x.s3", bucket), "s3.amazonaws.com", f"arn:aws:s3:::{bucket}", SourceAccount={"Ref": "AWS::AccountId"})
        manual.append({"bucket": bucket, "reason": "CloudFormation cannot add notifications to a bucket it does not create",
                       "LambdaFunctionConfigurations": [{"Id": r["id"], "Events": r["events"], "LambdaFunctionArn": f"<{fn_id}.Arn>",
                                                         "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": r["prefix"]}]}}}
                                                        for r in note.properties["rules"]]})
    for esm in by_kind.get("aws.lambda.event_source_mapping", []):
        spec = {"BatchSize": esm.properties["batch_size"], "FunctionResponseTypes": list(esm.properties["function_response_types"]),
                "Enabled": esm.properties["enabled"]}
        if sam:
            events[logical("x.sqs", esm.name)] = {"Type": "SQS", "Properties": {"Queue": _sub(esm.properties["queue_arn"]), **spec}}
        else:
            out[logical(esm.kind, esm.name)] = {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
                "FunctionName": {"Ref": fn_id}, "EventSourceArn": _sub(esm.properties["queue_arn"]), **spec}}
    for invoke in by_kind.get("aws.lambda.event_invoke_config", []):  # jobs' asynchronous invocations
        retry = {"MaximumRetryAttempts": invoke.properties["maximum_retry_attempts"],
                 "MaximumEventAgeInSeconds": invoke.properties["maximum_event_age_s"]}
        if sam:
            out[fn_id]["Properties"]["EventInvokeConfig"] = retry
        else:
            out[logical(invoke.kind, invoke.name)] = {"Type": "AWS::Lambda::EventInvokeConfig", "Properties": {
                "FunctionName": {"Ref": fn_id}, "Qualifier": "$LATEST", **retry}}
    for rule in by_kind.get("aws.events.rule", []):
        rid = logical(rule.kind, rule.name)
        if sam:
            events[rid] = {"Type": "Schedule", "Properties": {"Schedule": rule.properties["schedule"], "Name": rule.name,
                                                               "Enabled": rule.properties["state"] == "ENABLED"}}
            continue
        out[rid] = {"Type": "AWS::Events::Rule", "Properties": {
            "Name": rule.name, "ScheduleExpression": rule.properties["schedule"], "State": rule.properties["state"],
            "Targets": [{"Id": "nubes", "Arn": fn_arn}]}}
        permission(rid, "events.amazonaws.com", {"Fn::GetAtt": [rid, "Arn"]})
    if sam and events:
        out[fn_id]["Properties"]["Events"] = events
    doc: dict[str, Any] = {"AWSTemplateFormatVersion": "2010-09-09",
                           "Description": f"nubes app {target.name} (exported by nubes export; same resources as nubes deploy)"}
    if sam:
        doc["Transform"] = "AWS::Serverless-2016-10-31"
    if params:
        doc["Parameters"] = params
    doc["Resources"] = out
    if manual:
        doc["Metadata"] = {"nubes": {"manual": manual}}
    return doc


def _rest(out: dict[str, Any], rest: Resource, fn_id: str, events: dict[str, Any], sam: bool, permission: Any) -> None:
    binary = [m.replace("/", "~1") for m in rest.properties["binary_media_types"]]
    stage = rest.properties["stage"]
    if sam:
        rid = logical(rest.kind, rest.name)
        out[rid] = {"Type": "AWS::Serverless::Api", "Properties": {"StageName": stage, "BinaryMediaTypes": binary,
                                                                    "Name": rest.name, "Tags": dict(rest.tags)}}
        events["RestRoot"] = {"Type": "Api", "Properties": {"RestApiId": {"Ref": rid}, "Path": "/", "Method": "ANY"}}
        events["RestProxy"] = {"Type": "Api", "Properties": {"RestApiId": {"Ref": rid}, "Path": "/{proxy+}", "Method": "ANY"}}
        return
    rid = logical(rest.kind, rest.name)
    uri = {"Fn::Sub": f"arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{{fn_id}.Arn}}/invocations"}
    integration = {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": uri}
    out[rid] = {"Type": "AWS::ApiGateway::RestApi", "Properties": {
        "Name": rest.name, "BinaryMediaTypes": list(rest.properties["binary_media_types"]),
        "EndpointConfiguration": {"Types": ["REGIONAL"]}, "Tags": _tags(rest)}}
    out[f"{rid}Proxy"] = {"Type": "AWS::ApiGateway::Resource", "Properties": {
        "RestApiId": {"Ref": rid}, "ParentId": {"Fn::GetAtt": [rid, "RootResourceId"]}, "PathPart": "{proxy+}"}}
    out[f"{rid}RootMethod"] = {"Type": "AWS::ApiGateway::Method", "Properties": {
        "RestApiId": {"Ref": rid}, "ResourceId": {"Fn::GetAtt": [rid, "RootResourceId"]}, "HttpMethod": "ANY",
        "AuthorizationType": "NONE", "Integration": integration}}
    out[f"{rid}ProxyMethod"] = {"Type": "AWS::ApiGateway::Method", "Properties": {
        "RestApiId": {"Ref": rid}, "ResourceId": {"Ref": f"{rid}Proxy"}, "HttpMethod": "ANY",
        "AuthorizationType": "NONE", "Integration": integration}}
    out[f"{rid}Deployment"] = {"Type": "AWS::ApiGateway::Deployment", "DependsOn": [f"{rid}RootMethod", f"{rid}ProxyMethod"],
                               "Properties": {"RestApiId": {"Ref": rid}}}
    out[f"{rid}Stage"] = {"Type": "AWS::ApiGateway::Stage", "Properties": {
        "RestApiId": {"Ref": rid}, "DeploymentId": {"Ref": f"{rid}Deployment"}, "StageName": stage}}
    permission("Rest", "apigateway.amazonaws.com",
               {"Fn::Sub": f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{rid}}}/*"})


def _tf_account(value: Any) -> Any:
    return json.loads(json.dumps(value).replace(_ACCOUNT, "${data.aws_caller_identity.current.account_id}"))


def terraform(resources: list[Resource], target: Target, artifact: Artifact | None) -> dict[str, Any]:
    """Terraform JSON (``main.tf.json``) for the hashicorp/aws provider."""
    from nubes.adapters.aws.deploy import AwsDeployer

    tf: dict[str, dict[str, Any]] = {}

    def add(kind: str, name: str, body: dict[str, Any]) -> str:
        key = terraform_name(name)
        tf.setdefault(kind, {})[key] = _tf_account(body)
        return f"{kind}.{key}"

    fn_ref = role_ref = ""
    for r in sorted(resources, key=lambda r: r.rank):
        p = r.properties
        if r.kind == "aws.logs.log_group":
            add("aws_cloudwatch_log_group", "function", {"name": r.name, "retention_in_days": p["retention_days"], "tags": dict(r.tags)})
        elif r.kind == "aws.iam.role":
            role_ref = add("aws_iam_role", "function", {"name": r.name, "path": p["path"], "tags": dict(r.tags),
                                                        "assume_role_policy": json.dumps({"Version": "2012-10-17", "Statement": [
                                                            {"Effect": "Allow", "Action": "sts:AssumeRole",
                                                             "Principal": {"Service": p["assume"]}}]})})
            add("aws_iam_role_policy", "nubes", {"name": "nubes", "role": f"${{{role_ref}.id}}", "policy": json.dumps(p["policy"])})
        elif r.kind == "aws.lambda.function":
            body = {"function_name": r.name, "role": f"${{{role_ref}.arn}}", "memory_size": p["memory"], "timeout": p["timeout"],
                    "architectures": [p["architecture"]], "environment": {"variables": dict(p["environment"])},
                    "package_type": p["package_type"], "tags": dict(r.tags),
                    "depends_on": ["aws_cloudwatch_log_group.function", "aws_iam_role_policy.nubes"]}
            if p["package_type"] == "Zip":
                path = str(artifact.path) if artifact else "build/aws/app.zip"
                body.update(runtime=p["runtime"], handler=p["handler"], filename=path, source_code_hash=f'${{filebase64sha256("{path}")}}')
            else:
                body["image_uri"] = (artifact.image_uri if artifact else None) or target.extra.get("image_uri", "")
            fn_ref = add("aws_lambda_function", "function", body)
        elif r.kind == "aws.apigatewayv2.api":
            api = add("aws_apigatewayv2_api", "http", {"name": r.name, "protocol_type": "HTTP", "tags": dict(r.tags)})
            for i, (key, seconds) in enumerate(p["routes"].items()):
                integ = add("aws_apigatewayv2_integration", f"route{i}", {
                    "api_id": f"${{{api}.id}}", "integration_type": "AWS_PROXY", "integration_uri": f"${{{fn_ref}.arn}}",
                    "payload_format_version": p["payload_format"], "timeout_milliseconds": seconds * 1000})
                add("aws_apigatewayv2_route", f"route{i}", {"api_id": f"${{{api}.id}}", "route_key": key,
                                                            "target": f"integrations/${{{integ}.id}}"})
            add("aws_apigatewayv2_stage", "default", {"api_id": f"${{{api}.id}}", "name": "$default", "auto_deploy": True})
            add("aws_lambda_permission", "http_api", {"function_name": f"${{{fn_ref}.function_name}}", "action": "lambda:InvokeFunction",
                                                      "principal": "apigateway.amazonaws.com", "source_arn": f"${{{api}.execution_arn}}/*"})
        elif r.kind == "aws.lambda.url":
            add("aws_lambda_function_url", "function", {"function_name": f"${{{fn_ref}.function_name}}",
                                                        "authorization_type": p["auth_type"], "invoke_mode": p["invoke_mode"]})
        elif r.kind == "aws.apigateway.rest_api":
            api = add("aws_api_gateway_rest_api", "rest", {"name": r.name, "binary_media_types": list(p["binary_media_types"]),
                                                           "endpoint_configuration": {"types": ["REGIONAL"]}, "tags": dict(r.tags)})
            proxy = add("aws_api_gateway_resource", "proxy", {"rest_api_id": f"${{{api}.id}}", "parent_id": f"${{{api}.root_resource_id}}",
                                                              "path_part": "{proxy+}"})
            for which, res in (("root", f"${{{api}.root_resource_id}}"), ("proxy", f"${{{proxy}.id}}")):
                add("aws_api_gateway_method", which, {"rest_api_id": f"${{{api}.id}}", "resource_id": res, "http_method": "ANY",
                                                      "authorization": "NONE"})
                add("aws_api_gateway_integration", which, {"rest_api_id": f"${{{api}.id}}", "resource_id": res, "http_method": "ANY",
                                                           "type": "AWS_PROXY", "integration_http_method": "POST",
                                                           "uri": f"${{{fn_ref}.invoke_arn}}"})
            dep = add("aws_api_gateway_deployment", "rest", {"rest_api_id": f"${{{api}.id}}", "depends_on": [
                "aws_api_gateway_integration.root", "aws_api_gateway_integration.proxy"]})
            add("aws_api_gateway_stage", "rest", {"rest_api_id": f"${{{api}.id}}", "deployment_id": f"${{{dep}.id}}",
                                                  "stage_name": p["stage"]})
            add("aws_lambda_permission", "rest", {"function_name": f"${{{fn_ref}.function_name}}", "action": "lambda:InvokeFunction",
                                                  "principal": "apigateway.amazonaws.com", "source_arn": f"${{{api}.execution_arn}}/*"})
        elif r.kind == "aws.s3.notification":
            perm = add("aws_lambda_permission", f"s3_{r.name}", {"function_name": f"${{{fn_ref}.function_name}}",
                                                                 "action": "lambda:InvokeFunction", "principal": "s3.amazonaws.com",
                                                                 "source_arn": f"arn:aws:s3:::{r.name}"})
            add("aws_s3_bucket_notification", r.name, {"bucket": r.name, "depends_on": [perm], "lambda_function": [
                {"id": rule["id"], "lambda_function_arn": f"${{{fn_ref}.arn}}", "events": rule["events"],
                 "filter_prefix": rule["prefix"]} for rule in p["rules"]]})
        elif r.kind == "aws.lambda.event_source_mapping":
            add("aws_lambda_event_source_mapping", r.name, {"function_name": f"${{{fn_ref}.arn}}", "event_source_arn": p["queue_arn"],
                                                            "batch_size": p["batch_size"], "enabled": p["enabled"],
                                                            "function_response_types": list(p["function_response_types"])})
        elif r.kind == "aws.lambda.event_invoke_config":
            add("aws_lambda_function_event_invoke_config", "jobs", {
                "function_name": f"${{{fn_ref}.function_name}}", "maximum_retry_attempts": p["maximum_retry_attempts"],
                "maximum_event_age_in_seconds": p["maximum_event_age_s"]})
        elif r.kind == "aws.events.rule":
            rule_ref = add("aws_cloudwatch_event_rule", r.name, {"name": r.name, "schedule_expression": p["schedule"],
                                                                 "state": p["state"], "tags": dict(r.tags)})
            add("aws_cloudwatch_event_target", r.name, {"rule": f"${{{rule_ref}.name}}", "target_id": "nubes", "arn": f"${{{fn_ref}.arn}}"})
            add("aws_lambda_permission", f"rule_{r.name}", {"function_name": f"${{{fn_ref}.function_name}}",
                                                            "action": "lambda:InvokeFunction", "principal": "events.amazonaws.com",
                                                            "source_arn": f"${{{rule_ref}.arn}}"})
    return {"terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": ">= 5.0"}}},
            "provider": {"aws": {"region": AwsDeployer.region(target)}},
            "data": {"aws_caller_identity": {"current": {}}}, "resource": tf}


__all__ = ["cloudformation", "logical", "render", "terraform"]
