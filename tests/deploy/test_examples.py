"""The example configs stay deployable: each example goes to AWS (moto_server) and back, and plans on GCP and Azure."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.deploy.conftest import make_artifact

from nubes.core.loader import load_app
from nubes.deploy.engine import Deployment
from nubes.testing.servers.moto import MotoServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("example", ["analytics", "classification", "quickstart"])
def test_example_deploys_to_aws_and_plans_elsewhere(example: str, tmp_path: Path) -> None:
    app = load_app(f"{EXAMPLES / example / 'app.py'}:app")
    import tomllib

    arch = tomllib.loads((EXAMPLES / example / "nubes.toml").read_text())["deploy"]["aws"].get("architecture", "x86_64")
    manifest = make_artifact(tmp_path, "aws", EXAMPLES / example / "app.py", arch=arch)
    with MotoServer() as moto, moto.environment():
        d = Deployment.open(app, "aws", artifact=manifest)
        d.apply(d.plan())
        again = Deployment.open(app, "aws", artifact=manifest)
        assert again.plan().empty and again.status()["url"]
        d.apply(d.destroy_plan())
        assert d.destroy_plan().empty
    for cloud in ("gcp", "azure"):
        kinds = {c.resource.kind for c in Deployment.open(app, cloud).plan(offline=True).changes}
        assert any(k.endswith(("functions.function", "web.site")) for k in kinds)
