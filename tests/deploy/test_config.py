"""Configs that cannot be deployed are refused before anything is created, each problem naming its fix;
schedules are translated per cloud from values, not text."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nubes.adapters.aws.deploy import eventbridge_cron
from nubes.adapters.cron import parse
from nubes.adapters.gcp.deploy import scheduler_cron
from nubes.deploy.engine import Deployment
from nubes.errors import ConfigError

AWS = """
[deploy.aws]
region = "us-east-1"
storage = "s3://shop-home/apps/shop"
[deploy.aws.queues]
orders = "shop-orders"
"""


def _refused(project: Any, cloud: str, text: str) -> str:
    project.write_config(text)
    with pytest.raises(ConfigError) as info:
        Deployment.open(project.app(), cloud, config=project.config)
    return str(info.value)


@pytest.mark.parametrize(("edit", "fix"), [
    (lambda t: t.replace('storage = "s3://shop-home/apps/shop"\n', ""), "has no storage"),
    (lambda t: t.replace("s3://shop-home/apps/shop", "file://.nubes"), "local to this machine"),
    (lambda t: t.replace("s3://shop-home/apps/shop", "gs://shop-home"), "an S3 URI"),
    (lambda t: t.replace('[deploy.aws.queues]\norders = "shop-orders"\n', ""), 'add orders = "<queue name>" under [deploy.aws.queues]'),
])
def test_aws_configs_that_cannot_be_deployed(project_factory: Any, edit: Any, fix: str) -> None:
    message = _refused(project_factory(), "aws", edit(AWS))
    assert fix in message and "nothing was created" in message


@pytest.mark.parametrize(("line", "fix"), [
    ("memory = 20000", "Lambda offers 128-10240 MB"),
    ("memory = 0", "positive whole number"),
    ("timeout = 901", "make a longer analysis a job"),
    ('architecture = "sparc"', "use one of x86_64, arm64"),
    ('http = "grpc"', "use one of http-api, function-url, rest, none"),
    ("colour = 3", "unknown setting(s) ['colour']"),
    ('environment = { AWS_REGION = "x" }', "Lambda reserves this variable"),
    ('environment = { "bad-name" = "x" }', "not a valid variable name"),
])
def test_each_bad_setting_names_its_fix(project_factory: Any, line: str, fix: str) -> None:
    text = AWS.replace("[deploy.aws.queues]", f"{line}\n[deploy.aws.queues]")
    assert fix in _refused(project_factory(), "aws", text)


def test_route_overrides_are_checked_against_the_app_and_the_front(project_factory: Any) -> None:
    project = project_factory()
    message = _refused(project, "aws", AWS + '[deploy.aws.routes."POST /nope"]\ntimeout = 5\n')
    assert "names no route of the app" in message and "POST /train" in message
    message = _refused(project, "aws", AWS.replace("[deploy.aws.queues]", "timeout = 120\n[deploy.aws.queues]")
                       + '[deploy.aws.routes."POST /train"]\ntimeout = 90\n')
    assert 'use http = "function-url"' in message


def test_every_problem_is_reported_at_once(project_factory: Any) -> None:
    text = AWS.replace("s3://shop-home/apps/shop", "file://x").replace("[deploy.aws.queues]", "memory = 0\ncolour = 1\n[deploy.aws.queues]")
    message = _refused(project_factory(), "aws", text)
    assert "local to this machine" in message and "positive whole number" in message and "colour" in message


def test_a_missing_table_or_file_says_how_to_add_it(project_factory: Any, tmp_path: Any) -> None:
    project = project_factory()
    assert "has no [deploy.gcp] table" in _refused(project, "gcp", AWS)
    with pytest.raises(ConfigError, match="no config file"):
        Deployment.open(project.app(), "aws", config=tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unknown cloud 'ibm'"):
        Deployment.open(project.app(), "ibm", config=project.write_config(AWS))


GCP = """
[deploy.gcp]
region = "europe-west1"
project = "shop-prod"
storage = "gs://shop-home/apps/shop"
[deploy.gcp.queues]
orders = "shop-orders"
"""

AZURE = """
[deploy.azure]
location = "westeurope"
resource_group = "shop"
subscription = "11111111-2222-3333-4444-555555555555"
account = "shopdata"
storage = "az://home/apps/shop"
[deploy.azure.queues]
orders = "shop-orders"
"""


@pytest.mark.parametrize(("cloud", "text", "fix"), [
    ("gcp", GCP.replace('project = "shop-prod"\n', ""), 'add project = "my-project-id"'),
    ("gcp", GCP.replace("[deploy.gcp.queues]", "memory = 3000\n[deploy.gcp.queues]"), "Cloud Functions offers 128, 256"),
    ("gcp", GCP.replace("[deploy.gcp.queues]", 'architecture = "arm64"\n[deploy.gcp.queues]'), "x86_64 only"),
    ("gcp", GCP.replace("[deploy.gcp.queues]", "timeout = 900\n[deploy.gcp.queues]"), "540 s for event-driven functions"),
    ("gcp", GCP.replace('"shop-orders"', '"goog-orders"'), "not 'goog'"),
    ("gcp", GCP + '[deploy.gcp.routes."POST /train"]\ntimeout = 5\n', "one Cloud Function serves every route"),
    ("azure", AZURE.replace('account = "shopdata"\n', ""), 'add account = "mystorageaccount"'),
    ("azure", AZURE.replace("[deploy.azure.queues]", "memory = 1024\n[deploy.azure.queues]"),
     "Flex Consumption instances have 512, 2048, 4096 MB"),
    ("azure", AZURE.replace("[deploy.azure.queues]", 'plan = "consumption"\nmemory = 2048\n[deploy.azure.queues]'), "fixed 1536 MB"),
    ("azure", AZURE.replace('"shop-orders"', '"Shop_Orders"'), "Storage queue name"),
    ("azure", AZURE.replace("az://home/apps/shop", "s3://home"), "az://container/prefix"),
])
def test_gcp_and_azure_configs_that_cannot_be_deployed(project_factory: Any, cloud: str, text: str, fix: str) -> None:
    assert fix in _refused(project_factory(), cloud, text)


@pytest.mark.parametrize(("cron", "eventbridge", "scheduler"), [
    ("0 0 2 * * *", "cron(0 2 * * ? *)", "0 2 * * *"),
    ("0 */5 * * * *", "cron(0/5 * * * ? *)", "*/5 * * * *"),
    ("0 30 9 * * MON-FRI", "cron(30 9 ? * MON-FRI *)", "30 9 * * 1-5"),
    ("0 0 12 * * 0,6", "cron(0 12 ? * SUN,SAT *)", "0 12 * * 0,6"),
    ("0 0 0 1 JAN,JUL *", "cron(0 0 1 1,7 ? *)", "0 0 1 1,7 *"),
    ("0 10-50/20 * * * *", "cron(10/20 * * * ? *)", "10-59/20 * * * *"),
    ("0 15,45 1-5 * * *", "cron(15,45 1-5 * * ? *)", "15,45 1-5 * * *"),
])
def test_schedules_translate_for_each_cloud(cron: str, eventbridge: str, scheduler: str) -> None:
    assert eventbridge_cron(cron, "s") == eventbridge
    assert scheduler_cron(cron, "s") == scheduler


@pytest.mark.parametrize(("cron", "fix"), [
    ("30 0 2 * * *", "make the first field 0"),
    ("0 0 2 * *", "use six"),
    ("0 0 2 L * *", "L or #"),
    ("0 61 * * * *", "not valid"),
])
def test_schedules_no_cloud_can_run_are_refused(cron: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=fix.replace("(", r"\(")):
        parse(cron, "schedule 'x'")


def test_eventbridge_refuses_both_day_fields_but_scheduler_takes_them() -> None:
    with pytest.raises(ConfigError, match="declare two schedules"):
        eventbridge_cron("0 0 2 1 * MON", "s")
    assert scheduler_cron("0 0 2 1 * MON", "s") == "0 2 1 * 1"


def test_a_schedule_aws_cannot_express_refuses_the_whole_deploy(project_factory: Any) -> None:
    project = project_factory()
    project.file.write_text(project.file.read_text().replace('cron="0 30 2 * * MON-FRI"', 'cron="15 30 2 * * *"'))
    assert "make the first field 0" in _refused(project, "aws", AWS)


_FIELD = st.one_of(st.just("*"), st.integers(0, 70).map(str), st.text("0123456789*/,-LW#?ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=6))


@settings(max_examples=150, deadline=None)
@given(st.lists(_FIELD, min_size=4, max_size=7))
def test_any_cron_text_either_translates_or_is_refused_cleanly(fields: list[str]) -> None:
    text = " ".join(fields)
    for translate in (eventbridge_cron, scheduler_cron):
        try:
            out = translate(text, "s")
        except ConfigError:
            continue
        assert out and "\n" not in out


def test_an_artifact_built_for_another_architecture_is_refused(project_factory: Any) -> None:
    project = project_factory()
    project.write_config(AWS.replace("[deploy.aws.queues]", 'architecture = "arm64"\n[deploy.aws.queues]'))
    with pytest.raises(ConfigError, match="--arch arm64"):
        Deployment.open(project.app(), "aws", config=project.config, artifact=project.artifact("aws", arch="x86_64"))
    with pytest.raises(ConfigError, match="built for 'aws', not 'gcp'"):
        Deployment.open(project.app(), "gcp", config=project.write_config(GCP), artifact=project.artifact("aws"))


@pytest.mark.parametrize(("cloud", "text", "line"), [
    ("aws", AWS, 'log_retention_days = "30"'),
    ("aws", AWS, "batch_size = 0"),
    ("aws", AWS, "batch_size = 2.5"),
    ("gcp", GCP, 'max_instances = "ten"'),
    ("gcp", GCP, "concurrency = true"),
    ("azure", AZURE, "max_instances = -1"),
])
def test_cloud_numeric_settings_are_checked_before_planning(project_factory: Any, cloud: str, text: str, line: str) -> None:
    key = line.split(" =", 1)[0]
    message = _refused(project_factory(), cloud, text.replace(f"[deploy.{cloud}.queues]", f"{line}\n[deploy.{cloud}.queues]"))
    assert f"{key} must be a positive whole number" in message


def _app_with_store(project: Any, uri: str) -> Any:
    project.file.write_text(project.file.read_text().replace('nubes.App("shop", ', f'nubes.App("shop", storage={uri!r}, '))
    return project.app()


def test_the_apps_own_store_is_the_one_deployed_and_built(project_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """App(storage=...) wins at run time (App.storage_uri), so deploy and build choose it too."""
    from nubes.deploy.build import config as build_config

    monkeypatch.delenv("NUBES_STORAGE", raising=False)
    project = project_factory()
    app = _app_with_store(project, "s3://app-home/shop")
    project.write_config(AWS.replace('storage = "s3://shop-home/apps/shop"\n', ""))
    assert Deployment.open(app, "aws", config=project.config).target.storage == "s3://app-home/shop"
    cfg = build_config.load(project.root, "aws", ("storage", "base_path"))
    assert build_config.home_store(app, cfg, "aws", ("s3",), None) == "s3://app-home/shop"


def test_an_app_store_that_differs_from_the_config_is_refused_naming_both(project_factory: Any) -> None:
    from nubes.deploy.build import BuildError
    from nubes.deploy.build import config as build_config

    project = project_factory()
    app = _app_with_store(project, "s3://app-home/shop")
    project.write_config(AWS)
    message = _refused(project, "aws", AWS)
    assert "App(storage='s3://app-home/shop')" in message and "s3://shop-home/apps/shop" in message
    cfg = build_config.load(project.root, "aws", ("storage", "base_path"))
    with pytest.raises(BuildError, match="name different home stores"):
        build_config.home_store(app, cfg, "aws", ("s3",), None)


@pytest.mark.parametrize(("cloud", "text"), [("aws", AWS), ("gcp", GCP), ("azure", AZURE)])
def test_build_and_deploy_accept_the_same_keys(project_factory: Any, cloud: str, text: str) -> None:
    """A packaging key (aws base_path) builds and deploys; an unknown key is refused by both."""
    from nubes.deploy.build import BuildError, packaging_for
    from nubes.deploy.build import config as build_config

    project = project_factory()
    keys = packaging_for(cloud).settings_keys
    packaging_only = sorted(set(keys) - {"storage"})
    lines = {"base_path": 'base_path = "/api"', "schedules": "schedules = {}"}
    extra = "".join(f"{lines[k]}\n" for k in packaging_only if k in lines)
    project.write_config(text.replace(f"[deploy.{cloud}.queues]", f"{extra}[deploy.{cloud}.queues]"))
    build_config.load(project.root, cloud, keys)
    Deployment.open(project.app(), cloud, config=project.config)
    project.write_config(text.replace(f"[deploy.{cloud}.queues]", f"colour = 1\n[deploy.{cloud}.queues]"))
    with pytest.raises(BuildError, match="colour"):
        build_config.load(project.root, cloud, keys)
    assert "colour" in _refused(project, cloud, project.config.read_text())
