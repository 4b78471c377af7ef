"""An app with jobs deployed to Google Cloud through the official clients, against the loopback double
that checks every request against the published discovery documents (now Cloud Tasks' too): the jobs
queue with the retries of ``[jobs] max_attempts``, the enqueuer grant on that queue, the account's
grant on itself (OIDC tokens), the function's environment exactly as ``gcp/jobs.py`` reads it; and
nothing of it for an app without jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.deploy.gcp_double import GcpDouble

from nubes.deploy.engine import Deployment

pytest.importorskip("google.cloud.functions_v2")
pytest.importorskip("googleapiclient")

CONFIG = """
[deploy.gcp]
region = "europe-west1"
project = "lab-prod"
storage = "gs://lab-home/apps/lab"
http = "{http}"
"""
PARENT = "projects/lab-prod/locations/europe-west1"
SA = "lab-nubes@lab-prod.iam.gserviceaccount.com"


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[GcpDouble]:
    with GcpDouble() as server:
        monkeypatch.setenv("NUBES_GCP_API_ENDPOINT", server.endpoint)
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
        yield server


def _open(project: Any, http: str = "public", extra: str = "") -> Deployment:
    project.write_config(CONFIG.format(http=http) + extra)
    return Deployment.open(project.app(), "gcp", config=project.config, artifact=project.artifact("gcp"))


def test_jobs_get_their_queue_grants_and_environment(project_factory: Any, double: GcpDouble,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    project = project_factory("lab")
    d = _open(project, http="private", extra="[jobs]\nmax_attempts = 4\n")
    d.apply(d.plan())
    assert double.violations == []
    queue = double.store[f"{PARENT}/queues/lab-jobs"]
    assert queue["retryConfig"] == {"maxAttempts": 4, "minBackoff": "10s", "maxBackoff": "300s"}
    assert double.policies[f"{PARENT}/queues/lab-jobs"]["bindings"] == [
        {"role": "roles/cloudtasks.enqueuer", "members": [f"serviceAccount:{SA}"]}]  # on this queue only
    assert double.policies[f"projects/lab-prod/serviceAccounts/{SA}"]["bindings"] == [
        {"role": "roles/iam.serviceAccountUser", "members": [f"serviceAccount:{SA}"]}]
    assert double.policies[f"{PARENT}/services/lab"]["bindings"] == [
        {"role": "roles/run.invoker", "members": [f"serviceAccount:{SA}"]}]  # private: only the tasks' OIDC caller
    project_roles = {b["role"] for b in double.policies.get("projects/lab-prod", {}).get("bindings", [])}
    assert "roles/cloudtasks.enqueuer" not in project_roles
    env = double.store[f"{PARENT}/functions/lab"]["serviceConfig"]["environmentVariables"]

    from nubes.adapters.gcp.jobs import CloudTasksDispatcher

    for key in ("NUBES_JOBS_QUEUE", "NUBES_JOBS_URL", "NUBES_JOBS_SERVICE_ACCOUNT"):
        monkeypatch.setenv(key, env[key])
    dispatcher = CloudTasksDispatcher.from_environment(None)  # what the deployed function will do
    assert (dispatcher.queue, dispatcher.url, dispatcher.service_account) == (
        f"{PARENT}/queues/lab-jobs", "https://europe-west1-lab-prod.cloudfunctions.net/lab", SA)

    assert _open(project, http="private", extra="[jobs]\nmax_attempts = 4\n").plan().empty
    fewer = _open(project, http="private", extra="[jobs]\nmax_attempts = 2\n")
    assert [(c.resource.kind, dict(c.fields)) for c in fewer.plan().pending] == [("gcp.tasks.queue", {"max_attempts": (4, 2)})]
    fewer.apply(fewer.plan())
    assert double.store[f"{PARENT}/queues/lab-jobs"]["retryConfig"]["maxAttempts"] == 2

    project.file.write_text(project.file.read_text().replace('@app.job("/train")', '@app.post("/train")'))
    without = _open(project, http="private")
    kinds = {(c.action, c.resource.kind) for c in without.plan().pending}
    assert {("delete", "gcp.tasks.queue"), ("delete", "gcp.iam.service_account_iam"), ("delete", "gcp.run.invoker")} <= kinds
    without.apply(without.plan())
    assert double.violations == [] and f"{PARENT}/queues/lab-jobs" not in double.store
    assert "NUBES_JOBS_QUEUE" not in double.store[f"{PARENT}/functions/lab"]["serviceConfig"]["environmentVariables"]
    assert _open(project, http="private").plan().empty


def test_destroy_removes_the_jobs_queue(project_factory: Any, double: GcpDouble) -> None:
    project = project_factory("lab")
    d = _open(project)
    d.apply(d.plan())
    assert double.policies[f"{PARENT}/services/lab"]["bindings"] == [{"role": "roles/run.invoker", "members": ["allUsers"]}]
    gone = _open(project)
    gone.apply(gone.destroy_plan())
    assert double.violations == [] and sorted(double.store) == []
    assert gone.destroy_plan().empty


def test_an_app_without_jobs_gets_no_queue_and_no_jobs_environment(project_factory: Any, double: GcpDouble) -> None:
    project = project_factory("plain")
    project.write_config(CONFIG.format(http="public").replace("lab-home/apps/lab", "plain-home/p"))
    d = Deployment.open(project.app(), "gcp", config=project.config, artifact=project.artifact("gcp"))
    d.apply(d.plan())
    assert not [k for k in double.store if "/queues/" in k]
    assert not any(k.startswith("NUBES_JOBS") for k in double.store[f"{PARENT}/functions/plain"]["serviceConfig"]["environmentVariables"])
    assert not double.policies.get("projects/lab-prod/serviceAccounts/plain-nubes@lab-prod.iam.gserviceaccount.com", {}).get("bindings")


def test_terraform_renders_the_queue_and_grants(project_factory: Any) -> None:
    d = _open(project_factory("lab"), http="private")
    tf = d.export("terraform")["resource"]
    assert tf["google_cloud_tasks_queue"]["lab_jobs"]["retry_config"]["max_attempts"] == 3
    assert tf["google_cloud_tasks_queue_iam_member"]["lab_jobs_0"]["role"] == "roles/cloudtasks.enqueuer"
    assert tf["google_service_account_iam_member"]["act_as_itself"]["role"] == "roles/iam.serviceAccountUser"
    env = tf["google_cloudfunctions2_function"]["lab"]["service_config"]["environment_variables"]
    assert env["NUBES_JOBS_QUEUE"] == f"{PARENT}/queues/lab-jobs"


def test_jobs_need_the_http_function(project_factory: Any) -> None:
    from nubes.errors import ConfigError

    with pytest.raises(ConfigError, match='http = "none": the app has jobs'):
        _open(project_factory("lab"), http="none")


def test_a_project_without_the_cloud_tasks_api_still_plans_an_app_without_jobs(project_factory: Any, double: GcpDouble,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.deploy import gcp_semantics

    from nubes.adapters.deployment import StateUnavailable

    lab = _open(project_factory("lab"))
    lab.apply(lab.plan())

    def disabled(*args: Any) -> tuple[int, Any]:  # what Google answers when the API is not enabled
        return 403, {"error": {"code": 403, "message": "Cloud Tasks API has not been used in project", "status": "PERMISSION_DENIED"}}

    monkeypatch.setattr(gcp_semantics, "_queue", disabled)
    with pytest.raises(StateUnavailable, match="Cloud Tasks API"):  # an app with jobs needs the API: the plan says so
        lab.plan()
    plain = project_factory("plain")
    plain.write_config(CONFIG.format(http="public").replace("lab-home/apps/lab", "plain-home/p"))
    d = Deployment.open(plain.app(), "gcp", config=plain.config, artifact=plain.artifact("gcp"))
    d.apply(d.plan())
    assert d.plan().empty  # read back (the account exists now) without the Cloud Tasks API
