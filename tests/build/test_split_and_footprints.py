"""Footprints are derived from the code and checked; an app over the limit is split by footprint
with one API; a deployed function never gets the default file:// home store."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tests.build.conftest import APP, STORE, make_writable, unpack_read_only
from tests.build.test_build_aws import rest
from typer.testing import CliRunner

from nubes.deploy.build import BuildError, BuildOptions, build, packaging_for
from nubes.deploy.build.appfiles import locate
from nubes.deploy.build.derive import analyse


def tops(modules: dict[str, str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_each_route_footprint_comes_from_what_its_code_imports(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("def render(who):\n    import jinja2\n    return jinja2.Template('{{w}}').render(w=who)\n")
    (tmp_path / "api.py").write_text(
        "import nubes\nfrom helpers import render\napp = nubes.App('fp', models=False)\n"
        "@app.get('/plain')\ndef plain(ctx):\n    return {'ok': 1}\n"
        "@app.get('/via-helper')\ndef via(ctx):\n    return {'t': render('x')}\n"
        "@app.get('/sql')\ndef sql(ctx):\n    return ctx.sql('select 1 as x')\n"
        "@app.get('/frame')\ndef frame(ctx):\n    import polars as pl\n    return pl.DataFrame({'a': [1]})\n"
        "@app.post('/train')\ndef fit(ctx):\n    from nubes.ml import train\n    return {'fn': train.__name__}\n")
    source = locate(f"{tmp_path / 'api.py'}:app")
    base, units, _ = analyse(source.app, source.module, "import nubes.adapters.aws\n", ["s3://b/p"], source.scope)
    by = {u.key: tops(u.modules) for u in units}
    assert {"boto3", "botocore"} <= tops(base.resolved())  # the s3:// home store's SDK is in every function
    assert by["GET /plain"] == set()
    assert by["GET /via-helper"] == {"jinja2"}  # followed into the app's own helper module
    assert {"duckdb"} <= by["GET /sql"] and "sklearn" not in by["GET /sql"]  # a SQL route never carries scikit-learn
    assert by["GET /frame"] == {"polars"}
    assert "sklearn" in by["POST /train"]
    via = next(u for u in units if u.key == "GET /via-helper").modules["jinja2"]
    assert "helpers.py:render" in via


def test_an_import_by_computed_name_must_be_declared(tmp_path: Path) -> None:
    (tmp_path / "dyn.py").write_text("import importlib, nubes\napp = nubes.App('dyn', models=False)\n"
                                     "@app.get('/x')\ndef x(ctx, name: str):\n    return {'m': importlib.import_module(name).__name__}\n")
    with pytest.raises(BuildError, match=r"GET /x imports a module by a computed name \(dyn.py:5\).*\[build.footprints\]"):
        build(BuildOptions(f"{tmp_path / 'dyn.py'}:app", "aws", out=tmp_path / "out", storage=STORE))
    (tmp_path / "nubes.toml").write_text('[build]\nexclude = ["/_nubes/*"]\n[build.footprints]\n"GET /x" = ["idna"]\n')
    # declared: the build goes past the check (stopped at resolution by an unknown requirement below)
    (tmp_path / "requirements.txt").write_text("no-such-distribution-nubes==0.0.1\n")
    with pytest.raises(BuildError, match="no-such-distribution-nubes"):
        build(BuildOptions(f"{tmp_path / 'dyn.py'}:app", "aws", out=tmp_path / "out", storage=STORE))


@pytest.mark.parametrize(("storage", "env", "message"), [
    (None, None, r"needs a cloud home store .* not the default file://\.nubes; give one with App\(storage='s3://"),
    ("file://.nubes", None, "not a store a deployed function can reach"),
    ("mem://x", None, "not a store a deployed function can reach"),
    (None, "file:///tmp/x", "NUBES_STORAGE = 'file:///tmp/x' is a folder"),
    ("bogus", None, "is not a storage URI"),
])
def test_the_build_requires_a_cloud_home_store(storage: str | None, env: str | None, message: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUBES_STORAGE", raising=False)
    if env:
        monkeypatch.setenv("NUBES_STORAGE", env)
    with pytest.raises(BuildError, match=message):
        build(BuildOptions(APP, "aws", out=tmp_path, storage=storage))


def test_the_store_can_come_from_nubes_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nubes.deploy.build import config

    monkeypatch.delenv("NUBES_STORAGE", raising=False)
    (tmp_path / "nubes.toml").write_text('[deploy.aws]\nstorage = "s3://from-toml/p"\n')
    cfg = config.load(tmp_path, "aws", packaging_for("aws").settings_keys)
    assert config.home_store(object(), cfg, "aws", ("s3",), None) == "s3://from-toml/p"


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
@pytest.mark.parametrize("example", ["quickstart", "classification"])
def test_the_build_reads_the_table_deploy_shares(example: str, cloud: str) -> None:
    """The examples' [deploy.<cloud>] tables carry deploy's keys (name, region, memory ...): the build
    accepts them and hands its packaging only the keys it reads."""
    import tomllib

    from nubes.deploy.build import config

    root = Path(__file__).resolve().parents[2] / "examples" / example
    keys = packaging_for(cloud).settings_keys
    cfg = config.load(root, cloud, keys)
    table = tomllib.loads((root / "nubes.toml").read_text())["deploy"][cloud]
    assert set(table) - set(keys), "the example should carry deploy-only keys"
    assert cfg.deploy == {k: v for k, v in table.items() if k in keys} and "storage" in cfg.deploy


def test_a_key_neither_build_nor_deploy_knows_is_an_error(tmp_path: Path) -> None:
    from nubes.deploy.build import config

    (tmp_path / "nubes.toml").write_text('[deploy.gcp]\nstorage = "gs://b/p"\nregion = "europe-west1"\nschedule = true\n')
    with pytest.raises(BuildError, match=r"\[deploy.gcp\] has unknown keys schedule; known: .*schedules"):
        config.load(tmp_path, "gcp", packaging_for("gcp").settings_keys)


def test_cli_errors_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nubes.cli.main import cli

    monkeypatch.delenv("NUBES_STORAGE", raising=False)
    runner = CliRunner()
    for args, message in ((["--cloud", "aws"], "NUBES_STORAGE"), (["--cloud", "mars"], "use one of aws, gcp, azure"),
                          (["--cloud", "gcp", "--arch", "arm64"], "gcp offers x86_64"),
                          (["--cloud", "aws", "--python", "2.7"], "aws runs Python")):
        result = runner.invoke(cli, ["build", APP, "--out", str(tmp_path), *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output


def test_split_by_footprint_keeps_one_api(tmp_path: Path, wheelhouse: Path, rie_factory: Any, moto: Any, aws_build: Any) -> None:
    """With a limit that fits the base plus one small distribution, jinja2's and idna's routes go to
    their own functions; each function holds only its own packages and answers its routes."""
    own = {p["name"]: p["unzipped_bytes"] for p in aws_build.manifest["packages"]}
    limit = aws_build.manifest["unzipped_bytes"] - min(own["Jinja2"] + own["MarkupSafe"], own["idna"])
    result = build(BuildOptions(APP, "aws", out=tmp_path / "split", storage=STORE, wheelhouse=wheelhouse, limit=limit))
    m = result.manifest
    assert m["split"] and len(m["functions"]) == 3
    names = {f["name"]: f for f in m["functions"]}
    assert set(names) == {"shop", "shop-jinja2", "shop-idna"}
    routing = {r["route"]: r["function"] for r in m["routing"]}
    assert routing["GET /template"] == "shop-jinja2" and routing["GET /punycode/{host}"] == "shop-idna"
    assert routing["GET /hello/{name}"] == "shop" and routing["$default"] == "shop" and routing["GET /files/{rest+}"] == "shop"
    for fn in m["functions"]:
        assert fn["unzipped_bytes"] <= limit
        packages = {p["name"] for p in fn["packages"]}
        assert ("Jinja2" in packages) == (fn["name"] == "shop-jinja2") and ("idna" in packages) == (fn["name"] == "shop-idna")
    task = unpack_read_only(Path(names["shop-idna"]["path"]), tmp_path / "idna-task")
    try:
        rie = rie_factory(task, {**moto.env(), "NUBES_METERING": "off"})
        _, answer = rie.invoke(rest("GET", "/punycode/b%C3%BCcher.example"))
        assert json.loads(answer["body"]) == {"ascii": "xn--bcher-kva.example"}
        _, missing = rie.invoke(rest("GET", "/template"))  # not this function's route: API Gateway never sends it here
        assert missing["statusCode"] == 500
    finally:
        make_writable(task)
    with zipfile.ZipFile(names["shop"]["path"]) as zf:
        assert not any(n.startswith(("jinja2/", "idna/")) for n in zf.namelist())


def test_cli_build_prints_the_size_report(tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nubes.cli.main import cli

    result = CliRunner().invoke(cli, ["build", APP, "--cloud", "aws", "--out", str(tmp_path), "--storage", STORE,
                                      "--no-check", "--no-bytecode"])
    assert result.exit_code == 0, result.output
    assert "Largest packages in shop-aws.zip" in result.output and "botocore" in result.output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["bytecode"] == {"compiled": 0, "sourceless": 0, "failed": 0} and manifest["notes"]


def test_an_import_of_something_not_installed_is_named(tmp_path: Path) -> None:
    (tmp_path / "miss.py").write_text("import nubes\napp = nubes.App('miss', models=False)\n"
                                      "@app.get('/x')\ndef x(ctx):\n    import no_such_module_nubes\n    return {}\n")
    with pytest.raises(BuildError, match=r"GET /x imports 'no_such_module_nubes' \(miss.py:5\), which is not installed"):
        build(BuildOptions(f"{tmp_path / 'miss.py'}:app", "aws", out=tmp_path / "out", storage=STORE))


@pytest.mark.parametrize(("cloud", "store", "client", "dist"), [
    ("gcp", "gs://b/p", "google.cloud.tasks_v2", "google-cloud-tasks"),
    ("azure", "az://c/p", "azure.storage.queue", "azure-storage-queue"),
])
def test_a_job_route_carries_its_clouds_dispatch_client(cloud: str, store: str, client: str, dist: str, tmp_path: Path) -> None:
    from nubes.core import clouds
    from nubes.deploy.build.derive import host_distribution

    (tmp_path / "lab.py").write_text("import nubes\napp = nubes.App('lab', models=False)\n"
                                     "@app.get('/plain')\ndef plain(ctx):\n    return {'ok': 1}\n"
                                     "@app.job('/train')\ndef train(ctx):\n    return {'done': 1}\n")
    source = locate(f"{tmp_path / 'lab.py'}:app")
    _, units, _ = analyse(source.app, source.module, "import nubes\n", [store], source.scope, clouds.get(cloud))
    by = {u.key: u.modules for u in units}
    assert client in by["POST /train"] and "jobs.py" in by["POST /train"][client]  # reached through the cloud's dispatcher
    assert host_distribution(client) == dist
    assert client not in by["GET /plain"]  # a route that submits no job does not carry it
    _, without, _ = analyse(source.app, source.module, "import nubes\n", [store], source.scope)
    assert client not in {m for u in without for m in u.modules}  # no cloud given: nothing assumed


def test_the_build_reads_the_project_file_the_app_and_deploy_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NUBES_CONFIG names the project file for the build as it does for the running app and nubes deploy."""
    from nubes.deploy.build import config

    elsewhere = tmp_path / "conf" / "prod.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text('[deploy.aws]\nstorage = "s3://from-nubes-config/p"\n')
    (tmp_path / "nubes.toml").write_text('[deploy.aws]\nstorage = "s3://beside-the-app/p"\n')
    monkeypatch.setenv("NUBES_CONFIG", str(elsewhere))
    cfg = config.load(tmp_path, "aws", packaging_for("aws").settings_keys)
    assert cfg.path == elsewhere and cfg.deploy["storage"] == "s3://from-nubes-config/p"
    monkeypatch.setenv("NUBES_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(BuildError, match="NUBES_CONFIG"):
        config.load(tmp_path, "aws", packaging_for("aws").settings_keys)
