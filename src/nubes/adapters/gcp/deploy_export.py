"""The Google Cloud resources of :mod:`.deploy` as Terraform JSON (hashicorp/google provider).

Retained buckets and topics are referenced by name, not declared (they hold data). The source zip is
uploaded to a bucket the team names with the ``source_bucket`` variable.
"""

from __future__ import annotations

from typing import Any

from nubes.adapters.deployment import Artifact, Resource, Target, terraform_name


def render(deployer: Any, resources: list[Resource], target: Target, artifact: Artifact | None, fmt: str) -> dict[str, Any]:
    return terraform(resources, target, artifact)


def terraform(resources: list[Resource], target: Target, artifact: Artifact | None) -> dict[str, Any]:
    tf: dict[str, dict[str, Any]] = {}
    project = target.extra.get("project")

    def add(kind: str, name: str, body: dict[str, Any]) -> str:
        tf.setdefault(kind, {})[terraform_name(name)] = body
        return f"{kind}.{terraform_name(name)}"

    zip_path = str(artifact.path) if artifact else "build/gcp/app.zip"
    source = add("google_storage_bucket_object", "source", {
        "bucket": "${var.source_bucket}", "name": f"nubes/{target.name}/${{filesha256(\"{zip_path}\")}}.zip", "source": zip_path})
    sa_ref = ""
    for r in sorted(resources, key=lambda r: r.rank):
        p = r.properties
        if r.retain:
            continue
        if r.kind == "gcp.pubsub.topic":
            add("google_pubsub_topic", r.name, {"name": r.name, "project": project, "labels": dict(r.tags)})
        elif r.kind == "gcp.iam.service_account":
            sa_ref = add("google_service_account", "nubes", {"account_id": r.name.split("@", 1)[0], "project": project,
                                                             "display_name": p["description"], "description": p["description"]})
        elif r.kind == "gcp.storage.bucket_iam":
            for i, g in enumerate(p["bindings"]):
                add("google_storage_bucket_iam_member", f"{r.name}_{i}", {
                    "bucket": r.name, "role": g["role"], "member": f"serviceAccount:${{{sa_ref}.email}}",
                    "condition": {"title": g["title"], "expression": g["expression"]}})
        elif r.kind == "gcp.project.iam_member":
            add("google_project_iam_member", r.name.replace("roles/", ""), {"project": project, "role": r.name,
                                                                            "member": f"serviceAccount:${{{sa_ref}.email}}"})
        elif r.kind == "gcp.functions.function":
            add("google_cloudfunctions2_function", r.name, {
                "name": r.name, "location": p["region"], "project": project, "labels": dict(r.tags),
                "build_config": {"runtime": p["runtime"], "entry_point": p["entry_point"],
                                 "source": {"storage_source": {"bucket": "${var.source_bucket}", "object": f"${{{source}.name}}"}}},
                "service_config": {"available_memory": f"{p['memory_mb']}M", "timeout_seconds": p["timeout"],
                                   "environment_variables": dict(p["environment"]), "service_account_email": f"${{{sa_ref}.email}}",
                                   "max_instance_count": p["max_instances"], "max_instance_request_concurrency": p["concurrency"],
                                   "ingress_settings": "ALLOW_ALL"}})
        elif r.kind == "gcp.run.invoker":
            fn = f"google_cloudfunctions2_function.{terraform_name(r.name)}"
            for i, member in enumerate(p["members"]):
                add("google_cloud_run_service_iam_member", f"{r.name}_{i}", {
                    "location": p["region"], "project": project, "service": f"${{{fn}.name}}", "role": "roles/run.invoker",
                    "member": member if member == "allUsers" else f"serviceAccount:${{{sa_ref}.email}}"})
        elif r.kind == "gcp.eventarc.trigger":
            body: dict[str, Any] = {
                "name": r.name, "location": p["region"], "project": project, "labels": dict(r.tags),
                "service_account": f"${{{sa_ref}.email}}",
                "matching_criteria": [{"attribute": "type", "value": p["event_type"]},
                                      *({"attribute": k, "value": v} for k, v in p["filters"].items())],
                "destination": {"cloud_run_service": {
                    "service": f"${{google_cloudfunctions2_function.{terraform_name(p['service'])}.name}}",
                    "region": p["region"], "path": p["path"]}}}
            if p.get("topic"):
                body["transport"] = {"pubsub": {"topic": p["topic"]}}
            add("google_eventarc_trigger", r.name, body)
        elif r.kind == "gcp.tasks.queue":  # jobs
            queue = add("google_cloud_tasks_queue", r.name, {
                "name": r.name, "location": p["region"], "project": project,
                "retry_config": {"max_attempts": p["max_attempts"], "min_backoff": p["min_backoff"], "max_backoff": p["max_backoff"]}})
            for i, _ in enumerate(p["enqueuers"]):
                add("google_cloud_tasks_queue_iam_member", f"{r.name}_{i}", {
                    "project": project, "location": p["region"], "name": f"${{{queue}.name}}", "role": "roles/cloudtasks.enqueuer",
                    "member": f"serviceAccount:${{{sa_ref}.email}}"})
        elif r.kind == "gcp.iam.service_account_iam":
            add("google_service_account_iam_member", "act_as_itself", {
                "service_account_id": f"${{{sa_ref}.name}}", "role": p["role"], "member": f"serviceAccount:${{{sa_ref}.email}}"})
        elif r.kind == "gcp.scheduler.job":
            add("google_cloud_scheduler_job", r.name, {
                "name": r.name, "region": p["region"], "project": project, "schedule": p["schedule"], "time_zone": p["time_zone"],
                "description": p["description"], "pubsub_target": {"topic_name": p["topic"], "attributes": dict(p["attributes"]),
                                                                   "data": "e30="}})
    return {"terraform": {"required_providers": {"google": {"source": "hashicorp/google", "version": ">= 5.0"}}},
            "provider": {"google": {"project": project, "region": target.region}},
            "variable": {"source_bucket": {"type": "string", "description": "bucket to upload the function source zip to"}},
            "resource": tf}


__all__ = ["render", "terraform"]
