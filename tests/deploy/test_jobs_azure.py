"""An app with jobs deployed to Azure through the management SDKs, against the loopback double that
checks every request against the SDKs' models: the jobs Storage queue in the app's account, the
``NUBES_JOBS_QUEUE`` setting the package's ``nubes_jobs`` queue trigger and dispatcher read, queue
rights for the app's identity; nothing of it for an app without jobs. And the dispatcher reaches the
queue through the identity-based connection the deploy configures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.deploy.azure_double import AzureDouble
from tests.deploy.conftest import azure_double

from nubes.deploy.engine import Deployment

pytest.importorskip("azure.mgmt.web")

CONFIG = """
[deploy.azure]
location = "westeurope"
resource_group = "lab"
subscription = "11111111-2222-3333-4444-555555555555"
account = "labdata"
storage = "az://home/apps/lab"
"""
GROUP = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/lab/providers"
ACCOUNT = f"{GROUP}/Microsoft.Storage/storageAccounts/labdata"


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AzureDouble]:
    with azure_double(monkeypatch, tmp_path, ACCOUNT) as server:
        yield server


def _open(project: Any, extra: str = "") -> Deployment:
    project.write_config(CONFIG + extra)
    return Deployment.open(project.app(), "azure", config=project.config, artifact=project.artifact("azure"))


def test_jobs_get_their_queue_setting_and_queue_rights(project_factory: Any, double: AzureDouble) -> None:
    project = project_factory("lab")
    d = _open(project)
    [site] = [r for r in d.desired() if r.kind == "azure.web.site"]
    assert site.info["jobs"] == {"function": "nubes_jobs", "queue": "lab-jobs", "max_dequeue_count": 3, "routes": ["POST /train"]}
    d.apply(d.plan())
    assert double.violations == []
    assert f"{ACCOUNT}/queueServices/default/queues/lab-jobs" in double.store
    read = {r.kind: r for r in d.actual()}  # the settings as ARM answers them
    assert read["azure.web.site"].properties["app_settings"]["NUBES_JOBS_QUEUE"] == "lab-jobs"
    roles = {v["properties"]["roleDefinitionId"].rsplit("/", 1)[1] for k, v in double.store.items() if "roleAssignments" in k}
    assert roles == {"b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "974c5e8b-45b9-4653-ba55-5f855dd0fb88"}  # blob owner, queue contributor
    assert all(k.startswith(ACCOUNT) for k in double.store if "roleAssignments" in k)  # on the app's account only
    assert _open(project).plan().empty
    gone = _open(project)
    gone.apply(gone.destroy_plan())
    assert double.violations == [] and sorted(k for k in double.store if k != ACCOUNT) == []


def test_an_app_without_jobs_gets_no_jobs_queue_setting_or_queue_rights(project_factory: Any) -> None:
    project = project_factory("plain")
    project.write_config(CONFIG)
    d = Deployment.open(project.app(), "azure", config=project.config)
    resources = d.desired()
    assert not [r for r in resources if r.kind == "azure.storage.queue"]
    [site] = [r for r in resources if r.kind == "azure.web.site"]
    assert "NUBES_JOBS_QUEUE" not in site.properties["app_settings"] and "jobs" not in site.info
    assert [r.properties["role"] for r in resources if r.kind == "azure.authorization.role_assignment"] == ["Storage Blob Data Owner"]


def test_the_package_registers_the_jobs_trigger_on_the_deployed_queue(project_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from nubes.adapters.azure import function_app

    project = project_factory("lab")
    d = _open(project)
    [site] = [r for r in d.desired() if r.kind == "azure.web.site"]
    monkeypatch.setenv("NUBES_JOBS_QUEUE", site.properties["app_settings"]["NUBES_JOBS_QUEUE"])
    fa = function_app(project.app())
    [jobs] = [f for f in fa.get_functions() if f.get_function_name() == "nubes_jobs"]
    [binding] = [b for b in jobs.get_bindings() if b.type == "queueTrigger"]
    assert (binding.queue_name, binding.connection) == ("lab-jobs", "AzureWebJobsStorage")


def test_the_dispatcher_uses_the_identity_based_connection_the_deploy_sets(project_factory: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from nubes.adapters.azure.jobs import QueueDispatcher
    from nubes.errors import ConfigError

    app = project_factory("lab").app()
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.delenv("AzureWebJobsStorage__queueServiceUri", raising=False)
    monkeypatch.delenv("AzureWebJobsStorage__accountName", raising=False)
    with pytest.raises(ConfigError, match="AzureWebJobsStorage__accountName"):
        QueueDispatcher.for_app(app)
    monkeypatch.setenv("AzureWebJobsStorage__accountName", "labdata")
    monkeypatch.setenv("NUBES_JOBS_QUEUE", "lab-jobs")
    dispatcher = QueueDispatcher.for_app(app)
    assert (dispatcher.account_url, dispatcher.queue, dispatcher.connection_string) == (
        "https://labdata.queue.core.windows.net", "lab-jobs", None)


def test_a_message_handler_on_the_jobs_queue_is_refused(project_factory: Any) -> None:
    from nubes.errors import ConfigError

    project = project_factory("lab")
    project.file.write_text(project.file.read_text() + "\n\n@app.on_message(\"orders\")\ndef queued(ctx, message) -> None:\n    pass\n")
    with pytest.raises(ConfigError, match="'lab-jobs', the queue of the app's jobs"):
        _open(project, '[deploy.azure.queues]\norders = "lab-jobs"\n')
    assert _open(project, '[deploy.azure.queues]\norders = "lab-orders"\n').desired()
