"""What ``nubes deploy | export`` print is the message itself: config section names in brackets are text,
not rich markup, and mistakes on the command line end in a message, never a traceback."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from nubes.cli.main import cli

AWS = """
[deploy.aws]
region = "us-east-1"
storage = "s3://shop-home/apps/shop"
[deploy.aws.queues]
orders = "shop-orders"
"""


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_a_config_error_keeps_the_section_names_that_name_the_fix(project_factory: Any) -> None:
    project = project_factory()
    project.write_config(AWS.replace('[deploy.aws.queues]\norders = "shop-orders"\n', ""))
    result = _run("deploy", project.spec, "--cloud", "aws", "--dry-run", "--config", str(project.config))
    assert result.exit_code == 2
    assert "[deploy.aws]" in result.output and "under [deploy.aws.queues]" in result.output


def test_status_values_are_printed_literally() -> None:
    from rich.console import Console

    from nubes.deploy import render

    console = Console(record=True, width=200)
    console.print(render.status_table({"name": "shop", "cloud": "aws", "deployed": True, "version": "[v1]", "code_sha256": None,
                                       "url": None, "resources": [], "drift": []}))
    assert "[v1]" in console.export_text()
