"""The examples run as users run them, and answer correctly (checked against the raw libraries)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nubes
from nubes.core.loader import load_app
from nubes.testing import Client

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart"


@pytest.fixture(scope="module")
def wines_client(tmp_path_factory: pytest.TempPathFactory) -> Client:
    app = load_app(f"{QUICKSTART / 'app.py'}:app")
    app._storage_uri = f"file://{tmp_path_factory.mktemp('wines-store')}"
    return Client(app)


def test_tour_runs_on_embedded_defaults(tmp_path: Path) -> None:
    env = {**os.environ, "NUBES_STORAGE": f"file://{tmp_path}/store"}
    r = subprocess.run([sys.executable, str(QUICKSTART / "tour.py")], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "It works." in r.stdout and "GET /cultivars → 200" in r.stdout
    assert (tmp_path / "store" / "datasets" / "wines.parquet").is_file()


def test_cultivar_summary_matches_the_raw_dataset(wines_client: Client) -> None:
    import numpy as np
    from sklearn.datasets import load_wine

    raw = load_wine()
    rows = wines_client.get("/cultivars").json()
    assert [r["wines"] for r in rows] == np.bincount(raw.target).tolist()
    alcohol = raw.data[:, raw.feature_names.index("alcohol")]
    for label, row in enumerate(rows):
        assert row["alcohol"] == pytest.approx(alcohol[raw.target == label].mean(), abs=0.005)


def test_correlation_matches_numpy(wines_client: Client) -> None:
    import numpy as np
    from sklearn.datasets import load_wine

    raw = load_wine()
    x = raw.data[:, raw.feature_names.index("flavanoids")]
    y = raw.data[:, raw.feature_names.index("total_phenols")]
    answer = wines_client.get("/correlation", params={"x": "flavanoids", "y": "total_phenols"}).json()
    assert answer["overall"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-4)


def test_filters_csv_and_errors(wines_client: Client) -> None:
    r = wines_client.get("/wines", params={"cultivar": "cultivar_3", "min_alcohol": "14"}, headers={"accept": "text/csv"})
    lines = r.text.splitlines()
    assert lines[0].startswith("wine_id,cultivar,alcohol") and all(",cultivar_3," in line for line in lines[1:])
    assert all(float(line.split(",")[2]) >= 14 for line in lines[1:]) and len(lines) > 1
    assert wines_client.get("/wines", params={"cultivar": "merlot"}).status_code == 404
    assert wines_client.get("/wines/top", params={"by": "sweetness"}).status_code == 422
    similar = wines_client.post("/wines/similar", json={"alcohol": 13.2, "flavanoids": 2.9, "color_intensity": 5.0,
                                                        "proline": 1100, "n": 2}).json()
    assert len(similar) == 2 and similar[0]["distance"] <= similar[1]["distance"]


def test_app_is_a_nubes_app() -> None:
    assert isinstance(load_app(str(QUICKSTART / "app.py")), nubes.App)
