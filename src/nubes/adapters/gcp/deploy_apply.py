"""One function per resource kind that creates, updates or deletes it on Google Cloud, idempotently.

Creates tolerate "already exists" (409) and converge like updates; deletes tolerate "not found".
IAM changes read the policy, change only our member's bindings and write it back with its etag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nubes.adapters.deployment import Artifact, Change, Target
from nubes.adapters.gcp.deploy import LABEL
from nubes.adapters.gcp.deploy_state import Apis, _get, upload


def _exists(exc: Exception) -> bool:
    return getattr(exc, "code", None) == 409 or getattr(getattr(exc, "resp", None), "status", None) == 409 \
        or type(exc).__name__ == "Conflict"


def bucket(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    if change.action == "create":
        made = apis.storage.bucket(change.resource.name)
        made.labels = {LABEL: target.name}
        made.iam_configuration.uniform_bucket_level_access_enabled = True
        apis.storage.create_bucket(made, location=apis.region)
    elif change.action == "delete":  # one nubes created (model.teardown), only when empty
        found = apis.storage.bucket(change.resource.name)
        if not list(apis.storage.list_blobs(found, max_results=1)):
            found.delete()


def topic(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    name = f"projects/{apis.project}/topics/{change.resource.name}"
    topics = apis.pubsub.projects().topics()
    if change.action == "delete":
        _get(lambda: topics.delete(topic=name).execute())
    elif change.action == "create":
        try:
            topics.create(name=name, body={"labels": {LABEL: target.name}}).execute()
        except Exception as exc:
            if not _exists(exc):
                raise


def service_account(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    accounts = apis.iam.projects().serviceAccounts()
    email = change.resource.name
    if change.action == "delete":
        _get(lambda: accounts.delete(name=f"projects/{apis.project}/serviceAccounts/{email}").execute())
        return
    body = {"displayName": f"nubes {target.name}", "description": change.resource.properties["description"]}
    if change.action == "create":
        try:
            accounts.create(name=f"projects/{apis.project}", body={"accountId": email.split("@", 1)[0], "serviceAccount": body}).execute()
            return
        except Exception as exc:
            if not _exists(exc):
                raise
    accounts.patch(name=f"projects/{apis.project}/serviceAccounts/{email}",
                   body={"serviceAccount": body, "updateMask": "description,displayName"}).execute()


def _rebind(bindings: list[dict[str, Any]], member: str, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``bindings`` without ``member``, then with one binding per wanted grant."""
    kept = []
    for b in bindings:
        members = [m for m in b.get("members", []) if m != member]
        if members:
            kept.append({**b, "members": members})
    return kept + wanted


def bucket_iam(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    found = apis.storage.bucket(change.resource.name)
    policy = found.get_iam_policy(requested_policy_version=3)
    member = change.resource.properties["member"]
    wanted = [] if change.action == "delete" else [
        {"role": g["role"], "members": [member], "condition": {"title": g["title"], "expression": g["expression"]}}
        for g in change.resource.properties["bindings"]]
    policy.version = 3
    policy.bindings = _rebind(list(policy.bindings), member, wanted)
    found.set_iam_policy(policy)


def project_iam(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    projects = apis.crm.projects()
    resource = f"projects/{apis.project}"
    policy = projects.getIamPolicy(resource=resource, body={}).execute()
    member, role = change.resource.properties["member"], change.resource.name
    bindings = list(policy.get("bindings", []))
    wanted = [] if change.action == "delete" else [{"role": role, "members": [member]}]
    others = [b for b in bindings if b["role"] != role] + _rebind([b for b in bindings if b["role"] == role], member, wanted)
    projects.setIamPolicy(resource=resource, body={"policy": {**policy, "bindings": others}}).execute()


def function(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    from google.cloud import functions_v2
    from google.protobuf import field_mask_pb2

    name = f"{apis.parent}/functions/{change.resource.name}"
    if change.action == "delete":
        operation = _get(lambda: apis.functions.delete_function(name=name))
        if operation is not None:
            operation.result(timeout=900)
        return
    p = change.resource.properties
    assert artifact is not None  # the engine refuses code-bearing changes without an artifact
    env = {**p["environment"], "NUBES_CODE_SHA256": p["code_sha256"]}
    service = functions_v2.ServiceConfig(
        available_memory=f"{p['memory_mb']}Mi", timeout_seconds=p["timeout"], environment_variables=env,
        service_account_email=p["service_account"], max_instance_count=p["max_instances"],
        max_instance_request_concurrency=p["concurrency"], ingress_settings=functions_v2.ServiceConfig.IngressSettings.ALLOW_ALL)
    fields = set(change.fields) if change.action == "update" else set(p)
    build = functions_v2.BuildConfig(runtime=p["runtime"], entry_point=p["entry_point"])
    if "code_sha256" in fields or {"runtime", "entry_point"} & fields:
        build.source = functions_v2.Source(storage_source=upload(apis, artifact))
    fn = functions_v2.Function(name=name, build_config=build, service_config=service, labels=dict(change.resource.tags),
                               environment=functions_v2.Environment.GEN_2)
    if change.action == "create":
        try:
            apis.functions.create_function(parent=apis.parent, function=fn, function_id=change.resource.name).result(timeout=900)
            return
        except Exception as exc:
            if not _exists(exc):
                raise
    paths = ["service_config", "labels"] + (["build_config"] if build.source else [])
    apis.functions.update_function(function=fn, update_mask=field_mask_pb2.FieldMask(paths=paths)).result(timeout=900)


def invoker(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    services = apis.run.projects().locations().services()
    resource = f"{apis.parent}/services/{change.resource.name}"
    policy = _get(lambda: services.getIamPolicy(resource=resource).execute())
    if policy is None:
        return  # the service is gone with its function
    ours = set(change.actual.properties.get("members", []) if change.actual else []) | set(change.resource.properties["members"])
    wanted = [] if change.action == "delete" else list(change.resource.properties["members"])
    services.setIamPolicy(resource=resource, body={"policy": _regrant(policy, "roles/run.invoker", ours, wanted)}).execute()


def _regrant(policy: dict[str, Any], role: str, ours: set[str], wanted: list[str]) -> dict[str, Any]:
    """``policy`` with ``role`` granted to ``wanted`` and no longer to the rest of ``ours``; other grants kept."""
    bindings = []
    for b in policy.get("bindings", []):
        members = [m for m in b["members"] if not (b["role"] == role and m in ours)]
        if members:
            bindings.append({**b, "members": members})
    if wanted:
        bindings.append({"role": role, "members": list(wanted)})
    return {**policy, "bindings": bindings}


def trigger(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    from google.cloud import eventarc_v1
    from google.protobuf import field_mask_pb2

    name = f"{apis.parent}/triggers/{change.resource.name}"
    if change.action == "delete":
        operation = _get(lambda: apis.eventarc.delete_trigger(name=name))
        if operation is not None:
            operation.result(timeout=300)
        return
    p = change.resource.properties
    filters = [eventarc_v1.EventFilter(attribute="type", value=p["event_type"]),
               *(eventarc_v1.EventFilter(attribute=k, value=v) for k, v in p["filters"].items())]
    made = eventarc_v1.Trigger(
        name=name, event_filters=filters, service_account=p["service_account"], labels=dict(change.resource.tags),
        destination=eventarc_v1.Destination(cloud_run=eventarc_v1.CloudRun(service=p["service"], region=p["region"], path=p["path"])))
    if p.get("topic"):
        made.transport = eventarc_v1.Transport(pubsub=eventarc_v1.Pubsub(topic=p["topic"]))
    if change.action == "create":
        try:
            apis.eventarc.create_trigger(parent=apis.parent, trigger=made, trigger_id=change.resource.name).result(timeout=300)
            return
        except Exception as exc:
            if not _exists(exc):
                raise
    mask = field_mask_pb2.FieldMask(paths=["destination", "event_filters", "service_account", "labels"])
    apis.eventarc.update_trigger(trigger=made, update_mask=mask).result(timeout=300)


def job(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    from google.cloud import scheduler_v1

    name = f"{apis.parent}/jobs/{change.resource.name}"
    if change.action == "delete":
        _get(lambda: apis.scheduler.delete_job(name=name))
        return
    p = change.resource.properties
    made = scheduler_v1.Job(name=name, description=p["description"], schedule=p["schedule"], time_zone=p["time_zone"],
                            pubsub_target=scheduler_v1.PubsubTarget(topic_name=p["topic"], attributes=dict(p["attributes"]),
                                                                    data=b"{}"))
    if change.action == "create":
        try:
            apis.scheduler.create_job(parent=apis.parent, job=made)
            return
        except Exception as exc:
            if not _exists(exc):
                raise
    apis.scheduler.update_job(job=made)


def tasks_queue(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    """The jobs queue: its retries, and ``roles/cloudtasks.enqueuer`` on it for our account only."""
    queues = apis.tasks.projects().locations().queues()
    name = f"{apis.parent}/queues/{change.resource.name}"
    if change.action == "delete":  # its IAM policy goes with it
        _get(lambda: queues.delete(name=name).execute())
        return
    p = change.resource.properties
    body = {"name": name, "retryConfig": {"maxAttempts": p["max_attempts"], "minBackoff": p["min_backoff"],
                                          "maxBackoff": p["max_backoff"]}}
    created = False
    if change.action == "create":
        try:
            queues.create(parent=apis.parent, body=body).execute()
            created = True
        except Exception as exc:
            if not _exists(exc):
                raise
    if not created:
        queues.patch(name=name, updateMask="retryConfig", body=body).execute()
    policy = queues.getIamPolicy(resource=name, body={}).execute()
    ours = set(change.actual.properties.get("enqueuers", []) if change.actual else []) | set(p["enqueuers"])
    queues.setIamPolicy(resource=name, body={"policy": _regrant(policy, "roles/cloudtasks.enqueuer", ours, p["enqueuers"])}).execute()


def account_iam(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    """The service account may act as itself (``iam.serviceAccounts.actAs``: tasks carry OIDC tokens for it)."""
    accounts = apis.iam.projects().serviceAccounts()
    resource = f"projects/{apis.project}/serviceAccounts/{change.resource.name}"
    policy = _get(lambda: accounts.getIamPolicy(resource=resource).execute())
    if policy is None:
        return  # the account is gone, its policy with it
    role, member = change.resource.properties["role"], change.resource.properties["member"]
    wanted = [] if change.action == "delete" else [member]
    accounts.setIamPolicy(resource=resource, body={"policy": _regrant(policy, role, {member}, wanted)}).execute()


HANDLERS: dict[str, Callable[[Apis, Change, Target, Artifact | None], None]] = {
    "gcp.storage.bucket": bucket, "gcp.pubsub.topic": topic, "gcp.iam.service_account": service_account,
    "gcp.storage.bucket_iam": bucket_iam, "gcp.project.iam_member": project_iam, "gcp.functions.function": function,
    "gcp.run.invoker": invoker, "gcp.eventarc.trigger": trigger, "gcp.scheduler.job": job, "gcp.tasks.queue": tasks_queue,
    "gcp.iam.service_account_iam": account_iam,
}

__all__ = ["HANDLERS"]
