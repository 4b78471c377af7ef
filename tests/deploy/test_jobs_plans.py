"""`nubes deploy --dry-run` shows what an app's jobs need on each cloud, and an app without jobs shows
none of it (the plans as the CLI prints them, in JSON and as the table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

NUBES = str(Path(sys.executable).with_name("nubes"))
CONFIGS = {
    "aws": '[deploy.aws]\nregion = "us-east-1"\nstorage = "s3://{n}-home/apps"\n',
    "gcp": '[deploy.gcp]\nregion = "europe-west1"\nproject = "p1"\nstorage = "gs://{n}-home/apps"\n',
    "azure": '[deploy.azure]\nlocation = "westeurope"\nresource_group = "g"\nsubscription = "11111111-2222-3333-4444-555555555555"\n'
             'account = "acct1"\nstorage = "az://home/apps"\n',
}
JOB_KINDS = {"aws.lambda.event_invoke_config", "gcp.tasks.queue", "gcp.iam.service_account_iam"}


def _dry_run(project: Any, cloud: str, fmt: str = "json") -> str:
    project.write_config(CONFIGS[cloud].format(n=project.module))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "AZURE_", "NUBES_GCP", "NUBES_AZURE", "AWS_"))}
    env.update(HOME=str(project.root), PATH=os.path.dirname(sys.executable), AWS_SHARED_CREDENTIALS_FILE=str(project.root / "none"),
               AWS_CONFIG_FILE=str(project.root / "none"), COLUMNS="250")
    r = subprocess.run([NUBES, "deploy", project.spec, "--cloud", cloud, "--dry-run", "--format", fmt],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _changes(project: Any, cloud: str) -> list[dict[str, Any]]:
    return list(json.loads(_dry_run(project, cloud))["changes"])


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_the_dry_run_shows_what_jobs_need(project_factory: Any, cloud: str) -> None:
    changes = _changes(project_factory("lab"), cloud)
    kinds = {c["kind"]: c for c in changes}
    if cloud == "aws":
        assert kinds["aws.lambda.event_invoke_config"]["properties"]["maximum_retry_attempts"] == 2
        [invoke] = [s for s in kinds["aws.iam.role"]["properties"]["policy"]["Statement"] if s["Sid"] == "InvokeSelf"]
        assert invoke["Resource"][0].endswith(":function:lab")
    elif cloud == "gcp":
        assert kinds["gcp.tasks.queue"]["name"] == "lab-jobs" and kinds["gcp.tasks.queue"]["properties"]["max_attempts"] == 3
        assert kinds["gcp.iam.service_account_iam"]["properties"]["role"] == "roles/iam.serviceAccountUser"
        env = kinds["gcp.functions.function"]["properties"]["environment"]
        assert env["NUBES_JOBS_QUEUE"] == "projects/p1/locations/europe-west1/queues/lab-jobs"
        assert env["NUBES_JOBS_URL"] == "https://europe-west1-p1.cloudfunctions.net/lab"
        assert env["NUBES_JOBS_SERVICE_ACCOUNT"] == "lab-nubes@p1.iam.gserviceaccount.com"
    else:
        assert [c["name"] for c in changes if c["kind"] == "azure.storage.queue"] == ["acct1/lab-jobs"]
        site = kinds["azure.web.site"]
        assert site["properties"]["app_settings"]["NUBES_JOBS_QUEUE"] == "lab-jobs"
        assert site["info"]["jobs"]["function"] == "nubes_jobs" and site["info"]["jobs"]["max_dequeue_count"] == 3
        roles = {c["properties"]["role"] for c in changes if c["kind"] == "azure.authorization.role_assignment"}
        assert "Storage Queue Data Contributor" in roles


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_the_dry_run_of_an_app_without_jobs_shows_none_of_it(project_factory: Any, cloud: str) -> None:
    changes = _changes(project_factory("plain"), cloud)
    text = json.dumps(changes)
    assert not JOB_KINDS & {c["kind"] for c in changes}
    assert "NUBES_JOBS" not in text and "InvokeSelf" not in text and "nubes_jobs" not in text
    assert not [c for c in changes if c["kind"] in ("azure.storage.queue", "gcp.tasks.queue")]
    assert "Storage Queue Data Contributor" not in text


def test_the_table_names_the_jobs_resources(project_factory: Any) -> None:
    table = _dry_run(project_factory("lab"), "gcp", fmt="table")
    assert "gcp.tasks.queue" in table and "lab-jobs" in table
