"""Reading a Google Cloud deployment back and applying one change, with Google's official clients.

Cloud Functions v2, Eventarc and Cloud Scheduler through ``google-cloud-functions``,
``google-cloud-eventarc`` and ``google-cloud-scheduler`` (REST transport); buckets, their IAM and the
source upload through ``google-cloud-storage``; Pub/Sub topics, service accounts, Cloud Run, Cloud
Tasks queues (jobs) and project IAM through ``google-api-python-client`` with the discovery documents
it ships (no download).
``NUBES_GCP_API_ENDPOINT`` sends every call to one endpoint instead of Google's (a loopback double in
the tests). State is what the APIs answer: resources found by label ``nubes-app`` (functions,
triggers, topics), by description ``nubes app <name>`` (service account, Scheduler jobs), and our
service account's bindings in IAM policies, the jobs queue by its deterministic name (queues carry
no labels). See :mod:`.deploy` for the resources.
"""

from __future__ import annotations

import functools
import os
import urllib.request
from collections.abc import Callable
from functools import cached_property
from typing import Any

from nubes.adapters.deployment import (
    TAG_APP,
    Artifact,
    Change,
    Resource,
    StateUnavailable,
    Target,
    apply_change,
    clients_for,
    unless_absent,
)
from nubes.errors import ConfigError


class NoCredentials(StateUnavailable):
    """No Google credentials are configured; the message says how to give them."""


def credentials() -> Any:
    """Application Default Credentials when configured (never probing the metadata server unasked);
    anonymous ones when ``NUBES_GCP_API_ENDPOINT`` points the clients at a local endpoint (tests)."""
    import google.auth
    from google.auth import _cloud_sdk
    from google.auth.credentials import AnonymousCredentials

    adc = _cloud_sdk.get_application_default_credentials_path()  # type: ignore[no-untyped-call]

    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or os.path.exists(adc) \
            or os.environ.get("NUBES_GCP_METADATA") == "1":
        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        return creds
    if os.environ.get("NUBES_GCP_API_ENDPOINT"):
        return AnonymousCredentials()  # type: ignore[no-untyped-call]
    raise NoCredentials("no Google credentials: run `gcloud auth application-default login` or set "
                        "GOOGLE_APPLICATION_CREDENTIALS (on a Google VM set NUBES_GCP_METADATA=1)")



class Apis:
    """The clients for one target, made on first use."""

    def __init__(self, target: Target) -> None:
        self.project = str(target.extra.get("project"))
        self.region = str(target.region)
        self.parent = f"projects/{self.project}/locations/{self.region}"
        self.endpoint = os.environ.get("NUBES_GCP_API_ENDPOINT")
        self.creds = credentials()

    def _options(self) -> dict[str, Any]:
        return {"credentials": self.creds, "transport": "rest",
                **({"client_options": {"api_endpoint": self.endpoint}} if self.endpoint else {})}

    @cached_property
    def functions(self) -> Any:
        from google.cloud import functions_v2

        return functions_v2.FunctionServiceClient(**self._options())

    @cached_property
    def eventarc(self) -> Any:
        from google.cloud import eventarc_v1

        return eventarc_v1.EventarcClient(**self._options())

    @cached_property
    def scheduler(self) -> Any:
        from google.cloud import scheduler_v1

        return scheduler_v1.CloudSchedulerClient(**self._options())

    @cached_property
    def storage(self) -> Any:
        from google.cloud import storage  # type: ignore[attr-defined]

        return storage.Client(project=self.project, credentials=self.creds,
                              client_options={"api_endpoint": self.endpoint} if self.endpoint else None)

    def discovery(self, name: str, version: str) -> Any:
        from googleapiclient.discovery import build

        return build(name, version, credentials=self.creds, static_discovery=True, cache_discovery=False,
                     client_options={"api_endpoint": self.endpoint} if self.endpoint else None)

    @cached_property
    def pubsub(self) -> Any:
        return self.discovery("pubsub", "v1")

    @cached_property
    def iam(self) -> Any:
        return self.discovery("iam", "v1")

    @cached_property
    def run(self) -> Any:
        return self.discovery("run", "v2")

    @cached_property
    def crm(self) -> Any:
        return self.discovery("cloudresourcemanager", "v3")

    @cached_property
    def tasks(self) -> Any:
        return self.discovery("cloudtasks", "v2")


def _missing(exc: Exception) -> bool:
    return getattr(exc, "code", None) == 404 or getattr(getattr(exc, "resp", None), "status", None) == 404 \
        or type(exc).__name__ in ("NotFound",)


def _get(call: Callable[[], Any]) -> Any:
    return unless_absent(_missing, call)


def apis_for(target: Target) -> Apis:
    """The clients for ``target``, made once per project, region and credentials in the environment."""
    key = ("gcp", target.extra.get("project"), target.region, credentials,
           *(os.environ.get(v) for v in ("NUBES_GCP_API_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS", "NUBES_GCP_METADATA", "HOME")))
    return clients_for(key, lambda: Apis(target))


def _mb(memory: str) -> int:
    units = {"k": 1 / 1024, "M": 1, "Mi": 1, "G": 1024, "Gi": 1024}
    number = memory.rstrip("kMGi")
    return int(float(number) * units.get(memory[len(number):], 1)) if number else 0


# -- reading ------------------------------------------------------------------------------------------
def read(deployer: Any, target: Target, desired: list[Resource]) -> list[Resource]:
    from nubes.adapters.gcp.deploy import LABEL

    apis, name, out = apis_for(target), target.name, []
    for r in desired:
        if r.kind == "gcp.storage.bucket":
            bucket = _get(functools.partial(apis.storage.get_bucket, r.name))
            if bucket is not None:  # retained: "created by nubes" is the model's TAG_APP
                out.append(Resource(r.kind, r.name, {}, {TAG_APP: name} if (bucket.labels or {}).get(LABEL) == name else {}, 0, True))
        elif r.kind == "gcp.pubsub.topic":
            topic = _get(apis.pubsub.projects().topics().get(topic=f"projects/{apis.project}/topics/{r.name}").execute)
            if topic is not None:
                labels = {k: v for k, v in (topic.get("labels") or {}).items() if k == LABEL}
                if r.retain:
                    labels = {TAG_APP: name} if labels.get(LABEL) == name else {}
                out.append(Resource(r.kind, r.name, {}, labels, 0, retain=r.retain))
        elif r.kind == "gcp.storage.bucket_iam":
            policy = _get(functools.partial(apis.storage.bucket(r.name).get_iam_policy, requested_policy_version=3))
            member = r.properties["member"]
            bindings = [{"role": b["role"], "member": member, "title": (b.get("condition") or {}).get("title", ""),
                         "expression": (b.get("condition") or {}).get("expression", "")}
                        for b in (policy.bindings if policy is not None else []) if member in b.get("members", ())]
            if bindings:
                out.append(Resource(r.kind, r.name, {"member": member, "bindings": sorted(bindings, key=lambda b: b["title"])},
                                    {}, r.rank))
        elif r.kind == "gcp.project.iam_member":
            policy = apis.crm.projects().getIamPolicy(resource=f"projects/{apis.project}", body={}).execute()
            member = r.properties["member"]
            if any(b["role"] == r.name and member in b.get("members", []) for b in policy.get("bindings", [])):
                out.append(Resource(r.kind, r.name, dict(r.properties), {}, r.rank))
    sa = deployer.service_account(target)
    account = _get(lambda: apis.iam.projects().serviceAccounts().get(name=f"projects/{apis.project}/serviceAccounts/{sa}").execute())
    if account is not None:
        if account.get("description") != f"nubes app {name}":
            raise ConfigError(f"a service account {sa} exists but nubes did not create it for {name!r}; choose another "
                              f"{target.where('name')} or remove it")
        out.append(Resource("gcp.iam.service_account", sa, {"description": account.get("description")}, {}, 1))
        out += _jobs_state(apis, deployer, target, sa, wanted=any(r.kind == "gcp.tasks.queue" for r in desired))
    functions = [f for f in apis.functions.list_functions(parent=apis.parent) if dict(f.labels).get(LABEL) == name]
    for fn in functions:
        short = fn.name.rsplit("/", 1)[-1]
        env = dict(fn.service_config.environment_variables)
        code = env.pop("NUBES_CODE_SHA256", None)
        props = {"runtime": fn.build_config.runtime, "region": apis.region, "project": apis.project,
                 "memory_mb": _mb(fn.service_config.available_memory), "environment": env,
                 "service_account": fn.service_config.service_account_email, "max_instances": fn.service_config.max_instance_count,
                 "concurrency": fn.service_config.max_instance_request_concurrency, "code_sha256": code,
                 "entry_point": fn.build_config.entry_point, "timeout": fn.service_config.timeout_seconds}
        out.append(Resource("gcp.functions.function", short, props, dict(fn.labels), 3,
                            outputs={"url": fn.service_config.uri, "code_sha256": code}))
        policy = _get(apis.run.projects().locations().services().getIamPolicy(
            resource=f"{apis.parent}/services/{short}").execute)
        members = sorted(m for b in (policy or {}).get("bindings", []) if b["role"] == "roles/run.invoker" for m in b["members"]
                         if m == "allUsers" or m == f"serviceAccount:{sa}")
        if members:
            out.append(Resource("gcp.run.invoker", short, {"members": members, "region": apis.region}, {}, 4))
    for trigger in apis.eventarc.list_triggers(parent=apis.parent):
        if dict(trigger.labels).get(LABEL) != name:
            continue
        filters = {f.attribute: f.value for f in trigger.event_filters}
        topic = trigger.transport.pubsub.topic or None if trigger.transport else None
        out.append(Resource("gcp.eventarc.trigger", trigger.name.rsplit("/", 1)[-1], {
            "service": trigger.destination.cloud_run.service, "region": trigger.destination.cloud_run.region or apis.region,
            "service_account": trigger.service_account, "path": trigger.destination.cloud_run.path or "/",
            "event_type": filters.pop("type", None), "filters": filters, "topic": topic}, dict(trigger.labels), 5))
    for job in apis.scheduler.list_jobs(parent=apis.parent):
        if not job.description.startswith(f"nubes app {name}:"):
            continue
        out.append(Resource("gcp.scheduler.job", job.name.rsplit("/", 1)[-1], {
            "schedule": job.schedule, "time_zone": job.time_zone, "region": apis.region, "topic": job.pubsub_target.topic_name,
            "attributes": dict(job.pubsub_target.attributes), "description": job.description}, {}, 5))
    return out


def _jobs_state(apis: Apis, deployer: Any, target: Target, sa: str, *, wanted: bool) -> list[Resource]:
    """The jobs queue (with our account's enqueuer grant) and the account's grant on itself, when they exist.

    The queue is looked up even when the app has no jobs (so removing them deletes it), but then a
    project without the Cloud Tasks API (403) simply has no queue."""
    member, out = f"serviceAccount:{sa}", []
    queues = apis.tasks.projects().locations().queues()
    path = f"{apis.parent}/queues/{deployer.jobs_queue(target)}"
    try:
        queue = _get(queues.get(name=path).execute)
    except Exception as exc:
        if wanted or getattr(getattr(exc, "resp", None), "status", None) != 403:
            raise
        queue = None
    if queue is not None:
        retry = queue.get("retryConfig") or {}
        policy = queues.getIamPolicy(resource=path, body={}).execute()
        enqueuers = [m for b in policy.get("bindings", []) if b["role"] == "roles/cloudtasks.enqueuer" for m in b["members"]
                     if m == member]
        out.append(Resource("gcp.tasks.queue", path.rsplit("/", 1)[1], {
            "region": apis.region, "max_attempts": retry.get("maxAttempts"), "min_backoff": retry.get("minBackoff"),
            "max_backoff": retry.get("maxBackoff"), "enqueuers": enqueuers}, {}, 2))
    accounts = apis.iam.projects().serviceAccounts()
    policy = _get(accounts.getIamPolicy(resource=f"projects/{apis.project}/serviceAccounts/{sa}").execute) or {}
    if any(b["role"] == "roles/iam.serviceAccountUser" and member in b.get("members", []) for b in policy.get("bindings", [])):
        out.append(Resource("gcp.iam.service_account_iam", sa, {"role": "roles/iam.serviceAccountUser", "member": member}, {}, 2))
    return out


# -- applying ------------------------------------------------------------------------------------------
def apply(deployer: Any, change: Change, target: Target, artifact: Artifact | None) -> Resource | None:
    from nubes.adapters.gcp import deploy_apply

    return apply_change(deploy_apply.HANDLERS, apis_for(target), change, target, artifact)


def upload(apis: Apis, artifact: Artifact) -> Any:
    """Upload the source zip through ``generateUploadUrl``; the ``StorageSource`` to build from."""
    answer = apis.functions.generate_upload_url(request={"parent": apis.parent})
    request = urllib.request.Request(answer.upload_url, data=artifact.read(), method="PUT",
                                     headers={"Content-Type": "application/zip"})
    with urllib.request.urlopen(request, timeout=300) as response:
        response.read()
    return answer.storage_source


__all__ = ["Apis", "NoCredentials", "apis_for", "apply", "credentials", "read", "upload"]
