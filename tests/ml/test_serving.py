"""The bar: an independent app trains on a real shipped dataset through nubes.ml.train (CV + grid),
registers versions, promotes one, serves predictions through the built-in route identical to the
in-process model, scores well, and refuses an artifact replaced by a malicious pickle (no code runs)."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import nubes
from nubes.core.loader import load_app
from nubes.testing import Client

APP_SOURCE = '''
"""A wine classifier app written only against the public nubes API."""
import io

import polars as pl
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.ensemble import RandomForestClassifier

import nubes
from nubes.ml import train

app = nubes.App("winery")


def wine_frame():
    raw = load_wine()
    names = [n.replace("/", "_") for n in raw.feature_names]
    return pl.DataFrame(raw.data, schema=names).with_columns(pl.Series("cultivar", [f"cultivar_{t}" for t in raw.target]))


@app.post("/setup")
def setup(ctx):
    buf = io.BytesIO()
    wine_frame().write_parquet(buf)
    ctx.storage.put("data/wine.parquet", buf.getvalue())
    if "wine" not in ctx.app.catalog:
        ctx.app.dataset("wine", ctx.storage.url("data/wine.parquet"))
    return {"rows": 178}


@app.post("/train")
def train_route(ctx, kind: str = "logistic"):
    if kind == "logistic":
        est, grid = LogisticRegression(max_iter=2000), {"C": [0.05, 0.5, 5.0]}
    else:
        est, grid = RandomForestClassifier(n_estimators=40), {"max_depth": [3, None]}
    result = train(est, ctx.table("wine"), target="cultivar", cv=5, search=grid)
    mv = ctx.models.register("wine", result, inputs=["wine"], tags=[kind])
    return {"version": mv.version, "summary": result.summary()}
'''


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> nubes.App:
    folder = tmp_path_factory.mktemp("winery")
    (folder / "winery.py").write_text(textwrap.dedent(APP_SOURCE))
    application = load_app(f"{folder / 'winery.py'}:app")
    application._storage_uri = f"file://{folder}/home"
    return application


@pytest.fixture(scope="module")
def client(app: nubes.App) -> Client:
    c = Client(app)
    assert c.post("/setup").status_code == 200
    assert c.post("/train", params={"kind": "logistic"}).json()["version"] == 1
    assert c.post("/train", params={"kind": "forest"}).json()["version"] == 2
    return c


@pytest.fixture(scope="module")
def wine() -> pl.DataFrame:
    from sklearn.datasets import load_wine

    raw = load_wine()
    names = [n.replace("/", "_") for n in raw.feature_names]
    return pl.DataFrame(raw.data, schema=names).with_columns(pl.Series("cultivar", [f"cultivar_{t}" for t in raw.target]))


def test_bar_train_register_promote_serve_exactly_and_score(app: nubes.App, client: Client, wine: pl.DataFrame) -> None:
    listing = client.get("/_nubes/models").json()
    assert [(m["name"], m["versions"], m["latest"]) for m in listing["models"]] == [("wine", 2, 2)]
    versions = client.get("/_nubes/models/wine").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["inputs"][0]["dataset"] == "wine" and versions[0]["inputs"][0]["objects"][0]["etag"]
    assert versions[0]["training"]["cv"].startswith("StratifiedKFold(5)") and len(versions[0]["training"]["cv_scores"]) == 5
    assert versions[0]["params"]["C"] in (0.05, 0.5, 5.0)

    app.models.promote("wine", 1)
    rows = wine.drop("cultivar")
    r = client.post("/_nubes/models/wine/predict", json=rows.to_dicts())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "wine" and body["version"] == 1
    in_process = app.models.load("wine", version=1)
    assert body["predictions"] == in_process.predict(rows).tolist()
    assert body["probabilities"] == in_process.predict_proba(rows).tolist()  # exactly, float for float
    assert body["classes"] == ["cultivar_0", "cultivar_1", "cultivar_2"]
    accuracy = np.mean(np.array(body["predictions"]) == wine["cultivar"].to_numpy())
    assert accuracy > 0.95
    holdout = versions[0]["metrics"]
    assert holdout["accuracy"] > 0.9 and holdout["roc_auc"] > 0.95

    # CSV and Parquet bodies, an explicit version, an alias
    csv = client.post("/_nubes/models/wine/predict", content=rows.head(10).write_csv(), params={"version": "2"},
                      headers={"content-type": "text/csv"}).json()
    forest = app.models.load("wine", version=2)
    assert csv["version"] == 2 and csv["predictions"] == forest.predict(rows.head(10)).tolist()
    assert csv["probabilities"] == forest.predict_proba(rows.head(10)).tolist()
    buf = io.BytesIO()
    rows.head(7).write_parquet(buf)
    pq = client.post("/_nubes/models/wine/predict", content=buf.getvalue(),
                     headers={"content-type": "application/vnd.apache.parquet"}).json()
    assert pq["predictions"] == in_process.predict(rows.head(7)).tolist()
    app.models.promote("wine", 2, alias="canary")
    assert client.post("/_nubes/models/wine/predict", params={"alias": "canary"}, json=rows.head(1).to_dicts()).json()["version"] == 2
    one = client.post("/_nubes/models/wine/predict", json=rows.head(1).to_dicts()[0]).json()
    assert len(one["predictions"]) == 1
    cols = client.post("/_nubes/models/wine/predict", json={"columns": rows.head(3).to_dict(as_series=False)}).json()
    assert cols["predictions"] == in_process.predict(rows.head(3)).tolist()


def test_alias_moves_are_served_at_once(app: nubes.App, client: Client, wine: pl.DataFrame) -> None:
    rows = wine.drop("cultivar").head(2).to_dicts()
    app.models.promote("wine", 2)
    assert client.post("/_nubes/models/wine/predict", json=rows).json()["version"] == 2
    app.models.promote("wine", 1)
    assert client.post("/_nubes/models/wine/predict", json=rows).json()["version"] == 1
    assert ("wine", 1) in app.models.cached() and ("wine", 2) in app.models.cached()


def test_bad_requests(client: Client, wine: pl.DataFrame) -> None:
    row = wine.drop("cultivar", "proline", "hue").head(1).to_dicts()
    r = client.post("/_nubes/models/wine/predict", json=row)
    assert r.status_code == 422 and set(r.json()["missing"]) == {"proline", "hue"}
    assert "proline" in r.json()["detail"] and "hue" in r.json()["detail"]
    bad = wine.drop("cultivar").head(1).to_dicts()[0] | {"proline": "a lot"}
    r = client.post("/_nubes/models/wine/predict", json=[bad])
    assert r.status_code == 422 and "proline" in r.json()["detail"]
    assert client.post("/_nubes/models/nope/predict", json=[{}]).status_code == 404
    assert client.post("/_nubes/models/wine/predict", params={"version": "9"}, json=[{}]).status_code == 404
    assert client.post("/_nubes/models/wine/predict", params={"alias": "ghost"}, json=[{}]).status_code == 404
    assert client.post("/_nubes/models/wine/predict", params={"version": "x"}, json=[{}]).status_code == 422
    assert client.post("/_nubes/models/wine/predict", params={"version": "1", "alias": "production"}, json=[{}]).status_code == 422
    assert client.post("/_nubes/models/wine/predict", content=b"").status_code == 400
    assert client.post("/_nubes/models/wine/predict", content=b"<x/>", headers={"content-type": "application/xml"}).status_code == 415
    assert client.post("/_nubes/models/wine/predict", json=[1, 2]).status_code == 422
    assert client.get("/_nubes/models/nope").status_code == 404
    assert client.post("/_nubes/models/wine/predict", json=[]).json()["predictions"] == []


def test_bar_malicious_pickle_is_refused_through_the_route(app: nubes.App, client: Client, tmp_path: Path,
                                                            wine: pl.DataFrame) -> None:
    marker = tmp_path / "code-ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    mv = app.models.register("wine-victim", app.models.load("wine", version=1))
    payload = pickle.dumps(Evil())
    app.storage.put(mv.artifact["key"], payload)
    r = client.post("/_nubes/models/wine-victim/predict", json=wine.drop("cultivar").head(1).to_dicts())
    assert r.status_code == 500 and r.json()["reason"] == "digest-mismatch"
    assert "changed after registration" in r.json()["detail"]
    assert not marker.exists()
    with pytest.raises(nubes.ml.UnsafeModel):
        app.models.load("wine-victim")
    assert not marker.exists()


def test_models_false_removes_the_routes(tmp_path: Path) -> None:
    quiet = nubes.App("quiet", storage=f"file://{tmp_path}", models=False)
    assert Client(quiet).get("/_nubes/models").status_code == 404
    loud = nubes.App("loud", storage=f"file://{tmp_path}")
    assert Client(loud).get("/_nubes/models").json() == {"app": "loud", "models": []}
    assert not any(r.path.startswith("/_nubes/models") for r in loud.routes)  # built in, not user routes


def test_cli_models_list_show_promote(app: nubes.App, client: Client, tmp_path: Path) -> None:
    nubes_bin = str(Path(sys.executable).with_name("nubes"))
    spec = f"{Path(app.models.store.uri.removeprefix('file://')).parent / 'winery.py'}:app"
    env = {**os.environ, "NUBES_LOG_LEVEL": "off", "NUBES_STORAGE": app.storage_uri}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(check=False, args=[nubes_bin, "models", spec, *args], capture_output=True, text=True, env=env, timeout=120)

    out = run("list", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert any(m["name"] == "wine" and m["latest"] == 2 for m in json.loads(out.stdout))
    out = run("promote", "wine", "2")
    assert out.returncode == 0 and "production → version 2" in out.stdout
    assert app.models.aliases("wine")["production"] == 2
    shown = json.loads(run("show", "wine", "--version", "2").stdout)
    assert shown["version"] == 2 and "production" in shown["aliases"]
    table = run("show", "wine")
    assert table.returncode == 0 and "RandomForestClassifier" in table.stdout
    missing = run("promote", "wine", "99")
    assert missing.returncode == 2 and "no version 99" in missing.stderr


def _parquet(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd", row_group_size=frame.height)
    return buf.getvalue()


def test_oversized_parquet_and_csv_bodies_are_413_before_their_rows_are_decoded(app: nubes.App, client: Client,
                                                                               wine: pl.DataFrame) -> None:
    rows = wine.drop("cultivar")
    big = pl.concat([rows] * 200)  # 35,600 rows
    body = bytearray(_parquet(big))
    middle = len(body) // 2
    body[middle:middle + 64] = b"\xff" * 64  # damaged pages, intact footer: decoding them would be a 400
    parquet = {"content-type": "application/vnd.apache.parquet"}
    before = app.max_rows
    app.max_rows = 100
    try:
        r = client.post("/_nubes/models/wine/predict", content=bytes(body), headers=parquet)
        assert r.status_code == 413, r.text
        assert r.json()["max_rows"] == 100 and "35,600 rows" in r.json()["detail"]  # the footer's count
        r = client.post("/_nubes/models/wine/predict", content=big.write_csv(), headers={"content-type": "text/csv"})
        assert r.status_code == 413 and "more rows than this app's limit of 100" in r.json()["detail"]
        ok = client.post("/_nubes/models/wine/predict", content=_parquet(rows.head(100)), headers=parquet)
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 100
    finally:
        app.max_rows = before


@pytest.mark.parametrize("value", [b"1e400", b"-1e400", b'"inf"', b"Infinity"])
def test_non_finite_numbers_are_422_naming_the_column(client: Client, wine: pl.DataFrame, value: bytes) -> None:
    row = json.dumps(wine.drop("cultivar").head(1).to_dicts()[0]).encode()
    body = b"[" + row.replace(b'"proline": ', b'"proline": ' + value + b", \"was\": ", 1) + b"]"
    r = client.post("/_nubes/models/wine/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"name": "proline", "in": "body", "detail": r.json()["errors"][0]["detail"]}]
    assert "finite" in r.json()["detail"]
