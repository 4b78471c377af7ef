"""What ``nubes deploy | export`` print is the message itself: config section names in brackets are text,
not rich markup, and mistakes on the command line end in a message, never a traceback."""

from __future__ import annotations

import json
from typing import Any

from tests.deploy.test_config import AWS
from typer.testing import CliRunner

from nubes.cli.main import cli


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


def test_deploy_without_an_artifact_loads_the_app_file_once(tmp_path: Any, monkeypatch: Any) -> None:
    """The app is loaded once and reused by the build (before: four executions of the user's file)."""
    counter = tmp_path / "loads.txt"
    (tmp_path / "miss.py").write_text(
        f"import nubes\nwith open({str(counter)!r}, 'a') as f:\n    f.write('x')\n"
        "app = nubes.App('miss', models=False)\n"
        "@app.get('/x')\ndef x(ctx):\n    import no_such_module_nubes\n    return {}\n")
    (tmp_path / "nubes.toml").write_text('[deploy.aws]\nregion = "us-east-1"\nstorage = "s3://miss-home/p"\n')
    monkeypatch.chdir(tmp_path)
    result = _run("deploy", f"{tmp_path / 'miss.py'}:app", "--cloud", "aws", "--yes")
    assert result.exit_code == 2, result.output
    assert "the build failed, so nothing was deployed" in result.output and "no_such_module_nubes" in result.output
    assert counter.read_text() == "x"


def test_export_to_a_missing_folder_is_a_message_and_a_file_is_written_whole(project_factory: Any, tmp_path: Any) -> None:
    project = project_factory()
    project.write_config(AWS)
    args = ("export", project.spec, "--cloud", "aws", "--format", "sam", "--config", str(project.config))
    result = _run(*args, "-o", str(tmp_path / "nodir" / "t.json"))
    assert result.exit_code == 2 and "cannot write" in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)
    out = tmp_path / "t.json"
    result = _run(*args, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "Resources" in json.loads(out.read_text()) and [p.name for p in tmp_path.glob(".t.json*")] == []
