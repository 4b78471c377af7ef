"""Azure apply through the official management SDKs against a loopback HTTPS double that checks every
request against the SDKs' own models (see azure_double.py): create, re-apply, update, destroy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.deploy.azure_double import AzureDouble, check
from tests.deploy.conftest import azure_double
from tests.deploy.test_config import AZURE

from nubes.deploy.engine import Deployment

pytest.importorskip("azure.mgmt.web")

ACCOUNT = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/shop/providers/Microsoft.Storage/storageAccounts/shopdata"


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AzureDouble]:
    with azure_double(monkeypatch, tmp_path, ACCOUNT) as server:
        yield server


def _open(project: Any, memory: int = 2048, extra: bytes = b"") -> Deployment:
    project.write_config(AZURE.replace("[deploy.azure.queues]", f"memory = {memory}\n[deploy.azure.queues]"))
    return Deployment.open(project.app(), "azure", config=project.config, artifact=project.artifact("azure", extra=extra))


def test_apply_reapply_update_destroy_through_the_management_sdks(project_factory: Any, double: AzureDouble) -> None:
    project = project_factory()
    d = _open(project)
    d.apply(d.plan())
    assert double.violations == []
    site = double.store[ACCOUNT.replace("Microsoft.Storage/storageAccounts/shopdata", "Microsoft.Web/sites/shop")]
    config = site["properties"]["functionAppConfig"]
    assert config["scaleAndConcurrency"]["instanceMemoryMB"] == 2048 and config["runtime"] == {"name": "python", "version": "3.12"}
    assert config["deployment"]["storage"]["value"] == "https://shopdata.blob.core.windows.net/nubes-shop-deploy"
    assert site["identity"]["type"] == "SystemAssigned" and site["tags"]["nubes:app"] == "shop"
    assert double.published["shop"] == d.artifact.read()  # zip deploy of the package
    roles = [v for k, v in double.store.items() if "roleAssignments" in k]
    assert {r["properties"]["principalId"] for r in roles} == {site["identity"]["principalId"]}
    assert len(roles) == 2 and all(k.startswith(ACCOUNT) for k in double.store if "roleAssignments" in k)
    [grid] = [v for k, v in double.store.items() if "eventSubscriptions" in k]
    assert "functionName=Host.Functions.blob_home&code=blobs-key" in grid["properties"]["destination"]["properties"]["endpointUrl"]
    assert d.status()["url"] == "https://shop.azurewebsites.net"

    assert _open(project).plan().empty

    bigger = _open(project, memory=4096)
    [change] = bigger.plan().pending
    assert (change.resource.kind, dict(change.fields)) == ("azure.web.site", {"instance_memory_mb": (2048, 4096)})
    bigger.apply(bigger.plan())
    assert _open(project, memory=4096).plan().empty
    published = len(double.published)

    new_code = _open(project, memory=4096, extra=b"v2")
    [change] = new_code.plan().pending
    assert set(change.fields) == {"code_sha256"}
    new_code.apply(new_code.plan())
    assert double.published["shop"] == new_code.artifact.read() and len(double.published) == published

    gone = _open(project, memory=4096)
    gone.apply(gone.destroy_plan())
    assert double.violations == []
    left = sorted(k.rsplit("/providers/", 1)[1] for k in double.store if k != ACCOUNT)
    assert left == []  # the containers and queue nubes created were empty: deleted; the account was not ours
    assert gone.destroy_plan().empty


def test_the_double_refuses_what_the_sdk_models_do_not_describe() -> None:
    from azure.mgmt.web import models

    assert check(models.Site, {"location": "x", "properties": {"serverFarmId": "a", "instanceMemory": 5}}, "Site") == [
        "Site.properties: SiteProperties has no field 'instanceMemory'"]
    assert check(models.Site, {"properties": {"state": "Running"}}, "Site") == ["Site.properties.state: read-only in SiteProperties"]


def test_the_credential_is_made_once_per_target_not_per_change(project_factory: Any, double: AzureDouble,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With the Azure CLI credential each new one runs `az` for a token: once per command, not per change."""
    from tests.deploy.conftest import count_calls

    from nubes.adapters.azure import deploy_state

    made = count_calls(monkeypatch, deploy_state, "credential")
    d = _open(project_factory())
    plan = d.plan()
    d.apply(plan)
    assert len(plan.pending) > 5 and len(made) == 1
