"""`nubes deploy` reuses an artifact only when it was built from exactly the current inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.build.conftest import APP, PYTHON, STORE

from nubes.deploy.build import BuildOptions, BuildResult
from nubes.deploy.build.engine import inputs_of


def test_the_manifest_records_the_inputs_a_fresh_digest_reproduces(aws_build: BuildResult) -> None:
    digest, _ = inputs_of(BuildOptions(APP, "aws", python=PYTHON, storage=STORE))
    assert aws_build.manifest["inputs_sha256"] == digest
    other_store, _ = inputs_of(BuildOptions(APP, "aws", python=PYTHON, storage="s3://another-bucket/shop"))
    arm, _ = inputs_of(BuildOptions(APP, "aws", python=PYTHON, storage=STORE, arch="arm64"))
    assert len({digest, other_store, arm}) == 3


def test_an_edited_app_file_changes_the_digest(tmp_path: Path) -> None:
    source = Path(APP.split(":")[0]).parent
    copy = tmp_path / "buildapp"
    shutil.copytree(source, copy)
    spec = f"{copy / 'shop.py'}:app"
    before, _ = inputs_of(BuildOptions(spec, "aws", python=PYTHON, storage=STORE))
    (copy / "shop.py").write_text((copy / "shop.py").read_text() + "\n# edited\n")
    after, _ = inputs_of(BuildOptions(spec, "aws", python=PYTHON, storage=STORE))
    assert before != after
