"""GCP and Azure plans (`nubes deploy --dry-run --format json`) name the resources each trigger needs;
their Terraform exports render the same resources. Without credentials the dry-run says it planned
offline, and never probes a metadata endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.deploy.test_config import AZURE, GCP

from nubes.deploy.engine import Deployment

NUBES = str(Path(sys.executable).with_name("nubes"))


def _dry_run(project: Any, cloud: str, text: str) -> tuple[dict[str, Any], str]:
    project.write_config(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "AZURE_", "NUBES_GCP", "NUBES_AZURE"))}
    env["HOME"] = str(project.root)  # no gcloud/az login files
    env["PATH"] = os.path.dirname(sys.executable)  # no az CLI
    r = subprocess.run([NUBES, "deploy", project.spec, "--cloud", cloud, "--dry-run", "--format", "json"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def _by_kind(plan: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for change in plan["changes"]:
        assert change["action"] == "create"
        out.setdefault(change["kind"], []).append(change)
    return out


def test_gcp_plan_has_each_triggers_resources(project_factory: Any) -> None:
    plan, stderr = _dry_run(project_factory(), "gcp", GCP)
    assert "no Google credentials" in stderr and any("offline" in n for n in plan["notes"])
    kinds = _by_kind(plan)
    functions = {c["name"]: c["properties"] for c in kinds["gcp.functions.function"]}
    assert {f: p["entry_point"] for f, p in functions.items()} == {"shop": "main", "shop-events": "events"}
    triggers = {c["name"]: c["properties"] for c in kinds["gcp.eventarc.trigger"]}
    storage = [t for t in triggers.values() if t["event_type"] == "google.cloud.storage.object.v1.finalized"]
    assert [t["filters"] for t in storage] == [{"bucket": "shop-home"}] and storage[0]["service"] == "shop-events"
    topics = sorted(t["topic"] for t in triggers.values() if t["topic"])
    assert topics == ["projects/shop-prod/topics/shop-orders", "projects/shop-prod/topics/shop-schedules"]
    [job] = kinds["gcp.scheduler.job"]
    assert job["properties"]["schedule"] == "30 2 * * 1-5" and job["properties"]["attributes"] == {"nubes-schedule": "nightly"}
    assert {c["name"] for c in kinds["gcp.pubsub.topic"]} == {"shop-orders", "shop-schedules"}
    [sa] = kinds["gcp.iam.service_account"]
    assert sa["name"] == "shop-nubes@shop-prod.iam.gserviceaccount.com"
    [grants] = kinds["gcp.storage.bucket_iam"]
    roles = sorted(b["role"] for b in grants["properties"]["bindings"])
    assert roles == ["roles/storage.objectUser", "roles/storage.objectViewer"]
    home = next(b for b in grants["properties"]["bindings"] if b["role"] == "roles/storage.objectUser")
    assert 'objects/apps/shop/"' in home["expression"]  # the home prefix only
    assert [c["properties"]["members"] for c in kinds["gcp.run.invoker"] if c["name"] == "shop"] == [["allUsers"]]


def test_azure_plan_has_each_triggers_resources(project_factory: Any) -> None:
    plan, stderr = _dry_run(project_factory(), "azure", AZURE)
    assert "no Azure credentials" in stderr
    kinds = _by_kind(plan)
    [site] = kinds["azure.web.site"]
    props = site["properties"]
    assert site["name"] == "shop" and site["info"]["timers"] == {"timer_nightly": "0 30 2 * * MON-FRI"}
    assert site["info"]["queue_triggers"] == {"shop-orders": ["orders"]} and props["instance_memory_mb"] == 2048
    assert props["app_settings"]["AzureWebJobsStorage__accountName"] == "shopdata"
    assert props["app_settings"]["NUBES_STORAGE"] == "az://home/apps/shop"
    [plan_resource] = kinds["azure.web.plan"]
    assert plan_resource["properties"]["sku"] == "FC1"
    [subscription] = kinds["azure.eventgrid.subscription"]
    assert subscription["properties"]["subject_begins_with"] == "/blobServices/default/containers/home/"
    assert subscription["properties"]["event_types"] == ["Microsoft.Storage.BlobCreated"]
    assert {c["name"] for c in kinds["azure.storage.queue"]} == {"shopdata/shop-orders"}
    roles = sorted(c["properties"]["role"] for c in kinds["azure.authorization.role_assignment"])
    assert roles == ["Storage Blob Data Owner", "Storage Queue Data Contributor"]
    assert all(c["properties"]["scope"].endswith("/storageAccounts/shopdata") for c in kinds["azure.authorization.role_assignment"])


def test_gcp_and_azure_terraform_render_every_managed_resource(project_factory: Any) -> None:
    project = project_factory()
    project.write_config(GCP + AZURE)
    gcp = Deployment.open(project.app(), "gcp", config=project.config)
    tf = gcp.export("terraform")["resource"]
    model = [r for r in gcp.desired() if not r.retain]
    counts = {"gcp.functions.function": "google_cloudfunctions2_function", "gcp.eventarc.trigger": "google_eventarc_trigger",
              "gcp.scheduler.job": "google_cloud_scheduler_job", "gcp.iam.service_account": "google_service_account"}
    for kind, tf_type in counts.items():
        assert len(tf[tf_type]) == len([r for r in model if r.kind == kind]), kind
    job = next(iter(tf["google_cloud_scheduler_job"].values()))
    assert job["schedule"] == "30 2 * * 1-5"
    azure = Deployment.open(project.app(), "azure", config=project.config)
    atf = azure.export("terraform")["resource"]
    app = atf["azurerm_function_app_flex_consumption"]["app"]
    assert (app["name"], app["instance_memory_in_mb"], app["runtime_version"]) == ("shop", 2048, "3.12")
    assert len(atf["azurerm_role_assignment"]) == 2 and len(atf["azurerm_eventgrid_event_subscription"]) == 1
