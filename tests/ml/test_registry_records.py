"""Damaged registry records are clear 404/409 problems, listings cost one LIST per warm call and still
follow promotions at once, plain estimators answer 422s for rows they cannot take, and the CLI says
whether artifacts are signed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

import nubes
from nubes.ml import ModelRegistry, train
from nubes.ml.records import CorruptRecord
from nubes.testing import Client


@pytest.fixture(scope="module")
def wine(wine_codes: pl.DataFrame) -> pl.DataFrame:
    return wine_codes


@pytest.fixture(scope="module")
def result(wine: pl.DataFrame):
    return train(LogisticRegression(max_iter=1000), wine, target="cultivar", cv=2)


@pytest.fixture
def app(tmp_path: Path, result) -> nubes.App:
    application = nubes.App("records", storage=f"file://{tmp_path}/home")
    application.models.register("wine", result)
    application.models.register("wine", result)
    application.models.promote("wine", 1)
    return application


@pytest.mark.parametrize("content", [b'{"version": "1e9999"}', b'{"version": 1e9999}', b"not json", b"[1, 2]",
                                     b'{"version": true}', b'{"version": -3}', b'{"alias": "production"}', b"\xff\xfe"])
def test_a_corrupt_alias_is_a_409_naming_the_fix(app: nubes.App, wine: pl.DataFrame, content: bytes) -> None:
    app.storage.put("models/wine/aliases/production.json", content)
    client = Client(app)
    r = client.post("/_nubes/models/wine/predict", json=wine.drop("cultivar").head(1).to_dicts())
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "promote" in r.json()["detail"] and "models/wine/aliases/production.json" in r.json()["detail"]
    listing = client.get("/_nubes/models").json()["models"]
    assert listing[0]["aliases"] == {} and listing[0]["corrupt"] == ["models/wine/aliases/production.json"]
    assert client.get("/_nubes/models/wine").status_code == 200
    app.models.promote("wine", 2)  # promoting repairs it
    assert client.post("/_nubes/models/wine/predict", json=wine.drop("cultivar").head(1).to_dicts()).json()["version"] == 2


@pytest.mark.parametrize("content", [b"not json", b'{"version": "1e9999"}', b'{"name": "other", "version": 2}', b"{}"])
def test_a_corrupt_version_is_a_409_and_is_left_out_of_listings(app: nubes.App, wine: pl.DataFrame, content: bytes) -> None:
    app.storage.put("models/wine/versions/000002.json", content)
    client = Client(app)
    r = client.post("/_nubes/models/wine/predict", params={"version": "2"}, json=wine.drop("cultivar").head(1).to_dicts())
    assert r.status_code == 409, r.text
    assert r.json()["title"] == "Corrupt Registry Record"
    assert client.post("/_nubes/models/wine/predict", json=wine.drop("cultivar").head(1).to_dicts()).json()["version"] == 1
    assert [v["version"] for v in client.get("/_nubes/models/wine").json()["versions"]] == [1]
    with pytest.raises(CorruptRecord):
        app.models.get("wine", version=2)
    app.models.delete("wine", 2)  # a damaged version can be deleted
    assert client.post("/_nubes/models/wine/predict", params={"version": "2"}, json=[{}]).status_code == 404
    assert client.post("/_nubes/models/wine/predict", params={"version": "1000000000000"}, json=[{}]).status_code == 404


def test_listing_is_one_list_per_warm_call_and_follows_changes(tmp_path: Path, result) -> None:
    store = nubes.storage.open(f"file://{tmp_path}/reg")
    writer = ModelRegistry(store)
    for name in ("a", "b", "c", "d", "e"):
        writer.register(name, result.model)
        writer.promote(name, 1)
    reader = ModelRegistry(nubes.storage.open(f"file://{tmp_path}/reg"))  # another warm instance
    ops = reader.store.stats

    def call() -> tuple[dict[str, int], dict[str, object]]:
        before = ops.snapshot()["ops"]
        listing = reader.catalog()
        after = ops.snapshot()["ops"]
        return {k: after.get(k, 0) - before.get(k, 0) for k in after}, listing

    first, listing = call()
    assert first.get("list") == 1 and first.get("get") == 10 and len(listing) == 5
    warm, _ = call()
    assert warm.get("list") == 1 and warm.get("get", 0) == 0  # nothing read again
    writer.promote("c", 1, alias="canary")
    writer.register("c", result.model)
    changed, listing = call()
    assert changed.get("list") == 1 and changed.get("get") == 2  # only the new alias and the new version
    assert listing["c"]["aliases"] == {"canary": 1, "production": 1} and [v.version for v in listing["c"]["versions"]] == [1, 2]
    writer.promote("c", 2)
    moved, listing = call()
    assert moved.get("get") == 1 and listing["c"]["aliases"]["production"] == 2
    writer.delete("c", 1)
    _, listing = call()
    assert [v.version for v in listing["c"]["versions"]] == [2] and listing["c"]["aliases"] == {"production": 2}


def test_the_models_route_reads_little(app: nubes.App, result) -> None:
    for name in ("x", "y", "z", "w"):
        app.models.register(name, result.model)
    client = Client(app)
    assert len(client.get("/_nubes/models").json()["models"]) == 5
    before = app.models.store.stats.snapshot()["ops"]
    assert len(client.get("/_nubes/models").json()["models"]) == 5
    after = app.models.store.stats.snapshot()["ops"]
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta.get("get", 0) == 0 and delta.get("list", 0) <= 2, delta  # the registry's LIST (+ metering's, if any)


def test_plain_estimators_answer_422_for_rows_they_cannot_take(tmp_path: Path, wine: pl.DataFrame) -> None:
    app = nubes.App("plain", storage=f"file://{tmp_path}/home")
    X, y = wine.drop("cultivar").to_numpy(), wine["cultivar"].to_numpy()
    app.models.register("bare", LogisticRegression(max_iter=1000).fit(X, y))
    client = Client(app)
    records = wine.drop("cultivar").head(2).to_dicts()
    r = client.post("/_nubes/models/bare/predict", json=records)
    assert r.status_code == 422 and "list of rows" in r.json()["detail"]
    ok = client.post("/_nubes/models/bare/predict", json=X[:3].tolist())
    assert ok.status_code == 200 and ok.json()["predictions"] == LogisticRegression(max_iter=1000).fit(X, y).predict(X[:3]).tolist()
    r = client.post("/_nubes/models/bare/predict", json=[[1, 2, 3]])
    assert r.status_code == 422 and "could not take these rows" in r.json()["detail"]
    r = client.post("/_nubes/models/bare/predict", json=[[1, "a"]])
    assert r.status_code == 422
    # fitted on a frame with column names: records are matched by name, missing ones named
    named = LogisticRegression(max_iter=1000).fit(wine.drop("cultivar"), y)  # a Polars frame: names recorded
    app.models.register("named", named)
    r = client.post("/_nubes/models/named/predict", json=records)
    assert r.status_code == 200 and r.json()["predictions"] == named.predict(wine.drop("cultivar").head(2)).tolist()
    r = client.post("/_nubes/models/named/predict", json=[{k: v for k, v in records[0].items() if k != "hue"}])
    assert r.status_code == 422 and r.json()["missing"] == ["hue"]
    r = client.post("/_nubes/models/named/predict", json=[{**records[0], "hue": "dark"}])
    assert r.status_code == 422 and "hue" in r.json()["detail"]


def test_cli_show_says_whether_artifacts_are_signed(app: nubes.App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "recapp.py"
    source.write_text("import nubes\napp = nubes.App('records')\n")
    env = {k: v for k, v in os.environ.items() if k != "NUBES_MODEL_KEY"}
    env.update({"NUBES_LOG_LEVEL": "off", "NUBES_STORAGE": app.storage_uri, "COLUMNS": "300"})
    nubes_bin = str(Path(sys.executable).with_name("nubes"))

    def show(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([nubes_bin, "models", f"{source}:app", "show", "wine", *args], capture_output=True,
                              text=True, env={**env, **extra}, timeout=120, check=False)

    out = show()
    assert out.returncode == 0, out.stderr
    assert "digest-checked but unsigned" in " ".join(out.stdout.split()) and "NUBES_MODEL_KEY" in out.stdout
    out = show("--format", "json")
    assert json.loads(out.stdout)[0]["signed"] is False and "unsigned" in out.stderr
    signed = ModelRegistry(app.storage, key="k" * 32).register("wine", app.models.load("wine", version=1))
    out = show("--version", str(signed.version), NUBES_MODEL_KEY="k" * 32)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["signed"] is True and "HMAC-signed" in out.stderr
    assert np.isfinite(app.models.get("wine").metrics.get("accuracy", 1.0))
