"""Deploying a nubes app to AWS: what the config may say, and the resources it becomes.

Resources (kind: name), each tagged ``nubes:app = <name>``:

* ``aws.s3.bucket`` / ``aws.sqs.queue``: the home store's bucket, the bound sources' buckets and the
  bound queues. Retained: created when missing (tagged), never deleted (they hold data).
* ``aws.logs.log_group: /aws/lambda/<name>`` with a retention (``log_retention_days``, default 30).
* ``aws.iam.role: <name>-nubes`` (path ``/nubes/``), assumable by Lambda only, one inline policy:
  write its own log group; read/write the home store's prefix; read the bound sources' prefixes and
  the catalog's ``s3://`` datasets; consume its bound queues. Nothing else.
* ``aws.lambda.function: <name>``: the artifact (zip direct up to 50 MB, else through the home
  bucket; or an image), runtime, handler, memory, timeout, architecture, environment.
* the HTTP front (``http``): ``aws.apigatewayv2.api`` (HTTP API, default), ``aws.lambda.url``
  (Function URL) or ``aws.apigateway.rest_api`` (REST API, binary media types ``*/*``); ``none``.
* ``aws.s3.notification: <bucket>`` (its ``nubes-<name>-*`` configurations only),
  ``aws.lambda.event_source_mapping: <queue>`` (``ReportBatchItemFailures``),
  ``aws.events.rule: nubes-<name>-<schedule>`` (EventBridge ``cron(...)``).
* jobs (only for an app with ``@app.job`` routes; :mod:`.jobs` invokes the function itself
  asynchronously): the role may also ``lambda:InvokeFunction`` its own function (and its versions),
  and ``aws.lambda.event_invoke_config: <name>`` sets the asynchronous invocation's
  ``MaximumRetryAttempts`` to ``[jobs] max_attempts`` - 1 (Lambda allows 0-2, so ``max_attempts``
  above 3 is refused) and ``MaximumEventAgeInSeconds`` to Lambda's 6 h.

Reading state and applying changes (boto3) is :mod:`.deploy_state`; SAM, CloudFormation and
Terraform renderings are :mod:`.deploy_export`. Limits below are AWS's published quotas
(https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html, checked 2026-12).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from typing import Any

from nubes.adapters import cron as crons
from nubes.adapters.deployment import (
    TAG_APP,
    TAG_VERSION,
    Artifact,
    ModuleDeployer,
    Resource,
    Target,
    bindings,
    jobs,
    join_key,
    split_store,
)

MEMORY_MB = (128, 10_240)  # 1 MB steps
TIMEOUT_S = (1, 900)
GATEWAY_TIMEOUT_S = 30  # API Gateway integration timeout (HTTP API hard limit; REST default)
DIRECT_ZIP_BYTES = 50 * 1024 * 1024  # larger zips go through S3
UNZIPPED_BYTES = 262_144_000
ENV_BYTES = 4096
ASYNC_RETRIES = (0, 2)  # MaximumRetryAttempts of an asynchronous invocation
ASYNC_EVENT_AGE_S = 21_600  # MaximumEventAgeInSeconds: Lambda's default and maximum (6 h)
HTTP_FRONTS = ("http-api", "function-url", "rest", "none")
ARCHITECTURES = ("x86_64", "arm64")
ACCOUNT = "${AWS::AccountId}"  # stands for the account until it is known (exports keep it)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,56}\Z")  # function name; the role adds "-nubes" within 64
_QUEUE = re.compile(r"[A-Za-z0-9_-]{1,80}(\.fifo)?\Z")
_RESERVED_ENV = re.compile(r"(_HANDLER|_X_AMZN_TRACE_ID|AWS_REGION|AWS_DEFAULT_REGION|AWS_EXECUTION_ENV|AWS_ACCESS_KEY_ID|"
                           r"AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|AWS_LAMBDA_\w+|LAMBDA_TASK_ROOT|LAMBDA_RUNTIME_DIR)\Z")
_DOW = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def eventbridge_cron(text: str, where: str) -> str:
    """``cron(min hour day-of-month month day-of-week year)`` for a six-field NCRONTAB (see :mod:`nubes.adapters.cron`).

    EventBridge needs ``?`` in one of the two day fields, so a schedule restricting both (cron's "either")
    cannot be expressed: :class:`~nubes.errors.ConfigError` says to split it into two schedules.
    """
    from nubes.errors import ConfigError

    c = crons.parse(text, where)
    if c.day is not None and c.weekday is not None:
        raise ConfigError(f"{where}: cron {text!r} restricts both the day of month and the weekday; EventBridge "
                          "takes one of them ('?' in the other): declare two schedules, one for each")
    dom = crons.compress(c.day, "day") if c.weekday is None else "?"
    dow = "?" if c.weekday is None else _weekdays(c.weekday)
    return (f"cron({crons.compress(c.minute, 'minute')} {crons.compress(c.hour, 'hour')} {dom} "
            f"{crons.compress(c.month, 'month')} {dow} *)")


def _weekdays(values: frozenset[int]) -> str:
    """EventBridge weekday names (its numbers start at 1 = SUN, cron's at 0): ``MON-FRI,SUN``."""
    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(_DOW[r[0]] if len(r) == 1 else f"{_DOW[r[0]]}-{_DOW[r[-1]]}" for r in runs)


class AwsDeployer(ModuleDeployer):
    """The :class:`nubes.adapters.base.Deployer` of AWS."""

    package = "nubes.adapters.aws"
    settings = frozenset({"log_retention_days", "image_uri", "batch_size", "account"})
    whole_numbers = frozenset({"log_retention_days", "batch_size"})
    export_formats = ("sam", "cloudformation", "terraform")

    # -- validation -----------------------------------------------------------------------------------
    def validate(self, app: Any, target: Target) -> list[str]:
        from nubes.errors import ConfigError

        p: list[str] = []
        where = target.where
        if not _NAME.match(target.name):
            p.append(f"{where('name')} {target.name!r}: a Lambda function name here is 1-56 letters, digits, '-' or '_'")
        if split_store(target.storage)[0] != "s3":
            p.append(f"{where('storage')} {target.storage!r}: the home store on AWS is an S3 URI, e.g. s3://bucket/prefix")
        if not (target.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            p.append(f"{where('region')} is not set (nor AWS_REGION): add region = \"us-east-1\"")
        if target.memory is not None and not MEMORY_MB[0] <= target.memory <= MEMORY_MB[1]:
            p.append(f"{where('memory')} = {target.memory}: Lambda offers {MEMORY_MB[0]}-{MEMORY_MB[1]} MB")
        if target.timeout is not None and not TIMEOUT_S[0] <= target.timeout <= TIMEOUT_S[1]:
            p.append(f"{where('timeout')} = {target.timeout}: Lambda allows {TIMEOUT_S[0]}-{TIMEOUT_S[1]} s; "
                     "make a longer analysis a job")
        if target.architecture is not None and target.architecture not in ARCHITECTURES:
            p.append(f"{where('architecture')} = {target.architecture!r}: use one of {', '.join(ARCHITECTURES)}")
        front = target.http or "http-api"
        if front not in HTTP_FRONTS:
            p.append(f"{where('http')} = {front!r}: use one of {', '.join(HTTP_FRONTS)}")
        for key in target.environment:
            if _RESERVED_ENV.match(key):
                p.append(f"{where('environment')} {key}: Lambda reserves this variable; rename it")
        if len(json.dumps(self._environment(target))) > ENV_BYTES:
            p.append(f"{where('environment')}: Lambda allows {ENV_BYTES} bytes of variables in all; keep large settings in the home store")
        for uri in target.sources.values():
            if split_store(uri)[0] != "s3":
                p.append(f"[deploy.aws.sources] {uri!r}: sources on AWS are s3:// URIs")
        for logical, queue in target.queues.items():
            if not _QUEUE.match(queue):
                p.append(f"[deploy.aws.queues] {logical} = {queue!r}: an SQS queue name is 1-80 letters, digits, '-', '_' "
                         "(and .fifo)")
        function_timeout = target.timeout or 3
        for key, override in target.routes.items():
            t = override.get("timeout")
            if "memory" in override:
                p.append(f"[deploy.aws.routes.{key!r}] memory: one Lambda function has one memory size; set it in [deploy.aws]")
            if t is None:
                continue
            if not isinstance(t, int) or t <= 0:
                p.append(f"[deploy.aws.routes.{key!r}] timeout must be a positive number of seconds")
            elif front in ("http-api", "rest") and t > GATEWAY_TIMEOUT_S:
                p.append(f"[deploy.aws.routes.{key!r}] timeout = {t}: API Gateway answers within {GATEWAY_TIMEOUT_S} s; "
                         f"use http = \"function-url\" (up to {TIMEOUT_S[1]} s) or run the route as a job")
            elif t > function_timeout:
                p.append(f"[deploy.aws.routes.{key!r}] timeout = {t} exceeds the function's timeout ({function_timeout} s): "
                         f"raise {where('timeout')}")
        needs = jobs(app)
        if needs is not None and not 1 <= needs.max_attempts <= ASYNC_RETRIES[1] + 1:
            p.append(f"[jobs] max_attempts = {needs.max_attempts}: a job on Lambda is retried by its asynchronous invocation, "
                     f"which makes 1-{ASYNC_RETRIES[1] + 1} attempts; set max_attempts to at most {ASYNC_RETRIES[1] + 1}")
        found, _ = bindings(app, target)
        for name, cron in found.schedules.items():
            try:
                eventbridge_cron(cron, f"schedule {name!r}")
            except ConfigError as exc:
                p.append(str(exc))
            if len(self._rule(target, name)) > 64:
                p.append(f"schedule {name!r}: the EventBridge rule name {self._rule(target, name)!r} exceeds 64 characters; "
                         "shorten the schedule or deployment name")
        for store in found.objects:
            if not store.startswith("s3://"):
                p.append(f"an object-created handler is bound to {store!r}; on AWS bind it to an s3:// source")
        return p

    # -- desired state --------------------------------------------------------------------------------
    def desired(self, app: Any, target: Target, artifact: Artifact | None, *, account: str | None = None) -> list[Resource]:
        """The resources for ``app`` under ``target``; ARNs name the account as ``${AWS::AccountId}`` unless
        ``account`` (or the ``account`` setting) is given: reading state puts the same token in place of
        the caller's account, and applying puts the account back."""
        account = account or target.extra.get("account") or ACCOUNT
        region = self.region(target)
        name = target.name
        tags = {TAG_APP: name, TAG_VERSION: str(getattr(app, "version", "") or "")}
        mine = {TAG_APP: name}
        found, _ = bindings(app, target)
        _, home_bucket, home_prefix = split_store(target.storage)
        out: list[Resource] = []
        buckets = dict.fromkeys([home_bucket, *(split_store(u)[1] for u in target.sources.values()),
                                 *(split_store(s)[1] for s in found.objects)])
        out += [Resource("aws.s3.bucket", b, {}, {}, rank=0, retain=True) for b in buckets]
        out += [Resource("aws.sqs.queue", q, {}, {}, rank=0, retain=True) for q in dict.fromkeys(target.queues.values())]
        log_group = f"/aws/lambda/{name}"
        out.append(Resource("aws.logs.log_group", log_group, {"retention_days": int(target.extra.get("log_retention_days", 30))},
                            mine, rank=0))
        policy = self.policy(app, target, found, account, region)
        out.append(Resource("aws.iam.role", self.role(target), {"path": "/nubes/", "assume": "lambda.amazonaws.com",
                                                                 "policy": policy}, mine, rank=1))
        out.append(Resource("aws.lambda.function", name, self._function(target, artifact), tags, rank=2))
        needs = jobs(app)
        if needs is not None:
            retries = min(max(needs.max_attempts - 1, ASYNC_RETRIES[0]), ASYNC_RETRIES[1])
            out.append(Resource("aws.lambda.event_invoke_config", name, {
                "function": name, "maximum_retry_attempts": retries, "maximum_event_age_s": ASYNC_EVENT_AGE_S}, {}, rank=3,
                info={"jobs": list(needs.routes)}))
        front = target.http or "http-api"
        timeouts = {k: int(v["timeout"]) for k, v in target.routes.items() if "timeout" in v}
        if front == "http-api":
            routes = {"$default": min(target.timeout or GATEWAY_TIMEOUT_S, GATEWAY_TIMEOUT_S), **timeouts}
            out.append(Resource("aws.apigatewayv2.api", name, {"protocol": "HTTP", "payload_format": "2.0", "function": name,
                                                                "routes": {k: routes[k] for k in sorted(routes)}}, mine, rank=3))
        elif front == "function-url":
            out.append(Resource("aws.lambda.url", name, {"auth_type": "NONE", "invoke_mode": "BUFFERED", "function": name},
                                {}, rank=3))
        elif front == "rest":
            out.append(Resource("aws.apigateway.rest_api", name, {"binary_media_types": ["*/*"], "stage": "prod",
                                                                   "function": name}, mine, rank=3))
        for store, prefixes in found.objects.items():
            bucket = split_store(store)[1]
            rules = [{"id": f"nubes-{name}-{i}", "prefix": prefix, "events": ["s3:ObjectCreated:*"]}
                     for i, prefix in enumerate(prefixes)]
            out.append(Resource("aws.s3.notification", bucket, {"function": name, "rules": rules}, {}, rank=3))
        for queue in found.queues:
            out.append(Resource("aws.lambda.event_source_mapping", queue, {
                "function": name, "queue_arn": f"arn:aws:sqs:{region}:{account}:{queue}",
                "batch_size": int(target.extra.get("batch_size", 10)), "function_response_types": ["ReportBatchItemFailures"],
                "enabled": True}, {}, rank=3))
        for schedule, cron in found.schedules.items():
            out.append(Resource("aws.events.rule", self._rule(target, schedule), {
                "schedule": eventbridge_cron(cron, f"schedule {schedule!r}"), "function": name, "state": "ENABLED",
                "nubes_schedule": schedule}, mine, rank=3))
        del home_prefix
        return out

    def policy(self, app: Any, target: Target, found: Any, account: str, region: str) -> dict[str, Any]:
        """The role's one inline policy: only this function's logs, prefixes and queues."""
        _, bucket, prefix = split_store(target.storage)
        statements: list[dict[str, Any]] = [
            {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{target.name}:*"]},
            {"Sid": "HomeStore", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                                              "s3:AbortMultipartUpload"],
             "Resource": [f"arn:aws:s3:::{join_key(bucket, prefix)}/*"]},
            _list(bucket, "HomeList", [f"{prefix}/" if prefix else ""]),
        ]
        reads: dict[str, set[str]] = {}  # bucket -> key prefixes read ('dir/' or a key's start)

        def read(uri: str, folder: bool) -> None:
            rest = uri.split("://", 1)[1]
            b, _, p = rest.partition("/")
            reads.setdefault(b, set()).add(p.rstrip("/") + "/" if folder and p.strip("/") else p)

        for uri in target.sources.values():
            read(uri, True)
        for store, prefixes in found.objects.items():
            for p in prefixes:
                read(f"{store}/{p}", False)
        for dataset in getattr(getattr(app, "catalog", None), "__iter__", lambda: iter(()))():
            uri = str(getattr(dataset, "uri", ""))
            if uri.startswith("s3://"):
                read(uri.split("*", 1)[0], bool(getattr(dataset, "is_prefix", False)))
        for i, (b, prefixes) in enumerate(sorted(reads.items())):
            keep = sorted(p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes))
            statements.append({"Sid": f"Read{i}", "Effect": "Allow", "Action": ["s3:GetObject"],
                               "Resource": [f"arn:aws:s3:::{b}/{p}*" for p in keep]})
            statements.append(_list(b, f"List{i}", keep))
        queues = sorted(found.queues)
        if queues:
            statements.append({"Sid": "Queues", "Effect": "Allow",
                               "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                          "sqs:ChangeMessageVisibility"],
                               "Resource": [f"arn:aws:sqs:{region}:{account}:{q}" for q in queues]})
        if jobs(app) is not None:  # a job starts as an asynchronous invocation of this same function (jobs.py)
            arn = f"arn:aws:lambda:{region}:{account}:function:{target.name}"
            statements.append({"Sid": "InvokeSelf", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                               "Resource": [arn, f"{arn}:*"]})
        return {"Version": "2012-10-17", "Statement": statements}

    # -- names and helpers ----------------------------------------------------------------------------
    @staticmethod
    def role(target: Target) -> str:
        return f"{target.name}-nubes"

    @staticmethod
    def _rule(target: Target, schedule: str) -> str:
        return f"nubes-{target.name}-{re.sub(r'[^A-Za-z0-9_.-]', '-', schedule)}"

    @staticmethod
    def region(target: Target) -> str:
        return target.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    @staticmethod
    def _environment(target: Target) -> dict[str, str]:
        env = {"NUBES_STORAGE": target.storage, **target.environment}
        if target.sources:
            env["NUBES_SOURCES"] = json.dumps(dict(target.sources), sort_keys=True)
        if target.queues:
            env["NUBES_QUEUES"] = json.dumps(dict(target.queues), sort_keys=True)
        return env

    def _function(self, target: Target, artifact: Artifact | None) -> dict[str, Any]:
        image = artifact is not None and artifact.format == "image"
        props: dict[str, Any] = {
            "package_type": "Image" if image else "Zip",
            "memory": target.memory or 1024, "timeout": target.timeout or 30,
            "architecture": target.architecture or (artifact.arch if artifact else "x86_64"),
            "environment": self._environment(target), "role": self.role(target),
            "code_sha256": code_sha256(artifact, target.extra.get("image_uri")) if artifact else None,
        }
        if not image:
            props["runtime"] = f"python{artifact.python}" if artifact else "python3.12"
            props["handler"] = (artifact.handler if artifact and artifact.handler else "lambda_function.handler")
        return props

    # -- engine hooks ---------------------------------------------------------------------------------
    def endpoint(self, resources: list[Resource]) -> str | None:
        for r in resources:
            if r.outputs.get("url"):
                return str(r.outputs["url"])
        return None


def _list(bucket: str, sid: str, prefixes: list[str]) -> dict[str, Any]:
    """``s3:ListBucket`` on ``bucket``, limited to ``prefixes`` (no condition when one of them is the whole bucket)."""
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"]}
    if all(prefixes):
        statement["Condition"] = {"StringLike": {"s3:prefix": sorted({v for p in prefixes for v in (p, f"{p}*")})}}
    return statement


def code_sha256(artifact: Artifact, image_uri: str | None = None) -> str:
    """What identifies the deployed code as the state reads it back: a zip's SHA-256 (Lambda's
    ``CodeSha256``); an image function's ``ImageUri`` (the manifest's, else ``[deploy.aws] image_uri``)."""
    if artifact.format == "image":
        return artifact.image_uri or image_uri or artifact.sha256
    digest = hashlib.sha256()
    with open(artifact.path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


DEPLOYER = AwsDeployer()

__all__ = ["DEPLOYER", "AwsDeployer", "code_sha256", "eventbridge_cron"]
