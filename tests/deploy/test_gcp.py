"""GCP apply through the official clients against a loopback double that checks every request against
the services' discovery documents (see gcp_double.py): create, re-apply, update in place, destroy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.deploy.gcp_double import GcpDouble
from tests.deploy.test_config import GCP

from nubes.deploy.engine import Deployment

pytest.importorskip("google.cloud.functions_v2")
pytest.importorskip("googleapiclient")


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[GcpDouble]:
    with GcpDouble() as server:
        monkeypatch.setenv("NUBES_GCP_API_ENDPOINT", server.endpoint)
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud login: anonymous credentials to the double
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
        yield server


def _open(project: Any, memory: int = 1024, extra: bytes = b"") -> Deployment:
    project.write_config(GCP.replace("[deploy.gcp.queues]", f"memory = {memory}\n[deploy.gcp.queues]"))
    return Deployment.open(project.app(), "gcp", config=project.config, artifact=project.artifact("gcp", extra=extra))


def test_apply_reapply_update_destroy_through_the_official_clients(project_factory: Any, double: GcpDouble) -> None:
    project = project_factory()
    d = _open(project)
    plan = d.plan()
    d.apply(plan)
    assert double.violations == []
    fn = double.store["projects/shop-prod/locations/europe-west1/functions/shop"]
    assert fn["buildConfig"]["entryPoint"] == "main" and fn["buildConfig"]["runtime"] == "python312"
    assert fn["serviceConfig"]["availableMemory"] == "1024Mi"
    assert fn["serviceConfig"]["serviceAccountEmail"] == "shop-nubes@shop-prod.iam.gserviceaccount.com"
    assert fn["serviceConfig"]["environmentVariables"]["NUBES_STORAGE"] == "gs://shop-home/apps/shop"
    assert fn["labels"]["nubes-app"] == "shop"
    source = fn["buildConfig"]["source"]["storageSource"]["object"].removesuffix(".zip")
    assert double.uploads[source] == d.artifact.read()  # the zip went through generateUploadUrl
    triggers = {k.rsplit("/", 1)[1]: v for k, v in double.store.items() if "/triggers/" in k}
    storage = [t for t in triggers.values() if t["eventFilters"][0]["value"].endswith("storage.object.v1.finalized")]
    assert storage[0]["destination"]["cloudRun"]["service"] == "shop-events"
    assert {"attribute": "bucket", "value": "shop-home"} in storage[0]["eventFilters"]
    [job] = [v for k, v in double.store.items() if "/jobs/" in k]
    assert job["schedule"] == "30 2 * * 1-5" and job["pubsubTarget"]["attributes"] == {"nubes-schedule": "nightly"}
    bucket_policy = double.policies["b/shop-home"]
    assert {b["role"] for b in bucket_policy["bindings"]} == {"roles/storage.objectUser", "roles/storage.objectViewer"}
    invokers = double.policies["projects/shop-prod/locations/europe-west1/services/shop"]["bindings"]
    assert invokers == [{"role": "roles/run.invoker", "members": ["allUsers"]}]
    assert d.status()["url"] == "https://shop-x.a.run.app"

    again = _open(project)
    assert again.plan().empty

    bigger = _open(project, memory=2048)
    changes = bigger.plan().pending
    assert [(c.action, c.resource.name, dict(c.fields)) for c in changes] == [
        ("update", "shop", {"memory_mb": (1024, 2048)}), ("update", "shop-events", {"memory_mb": (1024, 2048)})]
    bigger.apply(bigger.plan())
    assert double.store["projects/shop-prod/locations/europe-west1/functions/shop"]["serviceConfig"]["availableMemory"] == "2048Mi"
    assert _open(project, memory=2048).plan().empty

    gone = _open(project, memory=2048)
    teardown = gone.destroy_plan()
    gone.apply(teardown)
    assert double.violations == []
    assert sorted(double.store) == []  # the bucket and topic nubes created were empty: deleted too
    assert not any(b for b in double.policies["b/shop-home"].get("bindings", []) if "shop-nubes" in str(b["members"]))
    assert gone.destroy_plan().empty


def test_the_double_refuses_what_the_published_api_does_not_describe(double: GcpDouble) -> None:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{double.endpoint}/v2/projects/p/locations/r/functions?functionId=f", method="POST",
                                     data=json.dumps({"name": "x", "serviceConfig": {"memoryMb": 5}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    assert double.violations == ["Function.serviceConfig: unknown field 'memoryMb'"]


def test_project_iam_changes_only_our_member_in_our_role(project_factory: Any, double: GcpDouble) -> None:
    """Other members of the role and our member's other roles survive both the grant and its removal."""
    ours = "serviceAccount:shop-nubes@shop-prod.iam.gserviceaccount.com"
    double.policies["projects/shop-prod"] = {"etag": "BwE=", "bindings": [
        {"role": "roles/owner", "members": ["user:owner@example.com"]},
        {"role": "roles/eventarc.eventReceiver", "members": ["user:other@example.com"]},
        {"role": "roles/viewer", "members": [ours]}]}
    project = project_factory()
    d = _open(project)
    d.apply(d.plan())

    def members() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for b in double.policies["projects/shop-prod"]["bindings"]:
            out.setdefault(b["role"], set()).update(b["members"])
        return out

    assert members() == {"roles/owner": {"user:owner@example.com"}, "roles/viewer": {ours},
                         "roles/eventarc.eventReceiver": {"user:other@example.com", ours}}
    d.apply(d.destroy_plan())
    assert members() == {"roles/owner": {"user:owner@example.com"}, "roles/viewer": {ours},
                         "roles/eventarc.eventReceiver": {"user:other@example.com"}}


def test_the_clients_are_made_once_per_target_not_per_change(project_factory: Any, double: GcpDouble,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.deploy.conftest import count_calls

    from nubes.adapters.gcp import deploy_state

    made = count_calls(monkeypatch, deploy_state, "credentials")
    d = _open(project_factory())
    plan = d.plan()
    d.apply(plan)
    assert len(plan.pending) > 5 and len(made) == 1
