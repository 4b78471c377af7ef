"""The machine-learning examples run as users run them, and answer correctly."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nubes.core.loader import load_app
from nubes.testing import Client

ROOT = Path(__file__).resolve().parents[1]
CLASSIFICATION = ROOT / "examples" / "classification"
FORECAST = ROOT / "examples" / "forecast"
needs_vega = pytest.mark.skipif(importlib.util.find_spec("vega_datasets") is None,
                                reason="the forecast example reads its data from vega_datasets (dev extra)")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="the LSTM example trains with PyTorch, a dev/test dependency: pip install torch")
needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
                                reason="serving ONNX models needs the onnx extra: pip install 'nubes[onnx]'")


def run_script(script: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUBES_STORAGE": f"file://{tmp_path}/store", "COLUMNS": "200"}
    return subprocess.run(check=False, args=[sys.executable, str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)


def test_classification_walkthrough_runs(tmp_path: Path) -> None:
    r = run_script(CLASSIFICATION / "walkthrough.py", tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "served predictions identical to the in-process model: True" in r.stdout and "It works." in r.stdout
    assert (tmp_path / "store" / "datasets" / "tumors.parquet").is_file()
    assert len(list((tmp_path / "store" / "models" / "diagnosis" / "versions").iterdir())) == 2


def test_classification_app_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBES_STORAGE", f"file://{tmp_path}/home")
    app = load_app(f"{CLASSIFICATION / 'app.py'}:app")
    client = Client(app)
    submitted = client.post("/train", params={"estimator": "logistic"})
    assert submitted.status_code == 202 and submitted.json()["status"] in ("queued", "running", "succeeded")
    import time

    for _ in range(600):
        job = client.get(submitted.headers["location"]).json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert job["status"] == "succeeded" and job["progress"]["value"] == 1.0, job
    trained = client.get(submitted.headers["location"] + "/result").json()
    assert trained == job["result"]
    assert trained["version"] == 1 and trained["metrics"]["roc_auc"] > 0.97 and trained["metrics"]["accuracy"] > 0.9
    assert len(trained["features"]) == 15 and len(trained["cv_scores"]) == 5
    assert client.post("/promote-best").json()["production"] == 1
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    names = [n.replace(" ", "_") for n in raw.feature_names]
    records = [dict(zip(names, row.tolist(), strict=True)) for row in raw.data]
    served = client.post("/_nubes/models/diagnosis/predict", json=records).json()
    truth = np.where(raw.target == 0, "malignant", "benign")
    assert np.mean(np.array(served["predictions"]) == truth) > 0.95
    import polars as pl

    model = app.models.load("diagnosis")
    frame = pl.DataFrame(raw.data, schema=names)
    assert served["predictions"] == model.predict(frame).tolist()
    assert served["probabilities"] == model.predict_proba(frame).tolist()


@needs_vega
def test_forecast_walkthrough_beats_the_naive_forecast(tmp_path: Path) -> None:
    r = run_script(FORECAST / "walkthrough.py", tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "promoted to production: True" in r.stdout and "GET /forecast → 200" in r.stdout


@needs_vega
def test_forecast_app_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBES_STORAGE", f"file://{tmp_path}/home")
    app = load_app(f"{FORECAST / 'app.py'}:app")
    client = Client(app)
    assert client.get("/forecast").status_code == 404  # nothing trained yet
    answer = client.post("/train").json()
    assert answer["cv"] == "TimeSeriesSplit(n_splits=5)" and len(answer["cv_rmse"]) == 5
    assert set(answer["best_params"]) == {"max_depth", "features__lags"} and answer["history"] == 29
    assert answer["holdout"]["to"] == "2015-12-30" and answer["holdout"]["days"] > 250  # the final months
    assert answer["gradient_boosting"]["rmse"] < answer["naive"]["rmse"] and answer["promoted"]
    assert {"temp_max_lag1", "temp_max_roll7_mean", "weather_rain"} <= set(answer["features"])
    fc = client.get("/forecast").json()
    assert fc["date"] == "2016-01-01" and -10 < fc["temp_max"] < 25 and fc["version"] == 1
    mv = app.models.get("temp-max-tomorrow")
    assert mv.metrics["naive_rmse"] == pytest.approx(answer["naive"]["rmse"]) and mv.inputs[0]["dataset"] == "weather"
    # the feature pipeline is part of the model: the built-in route takes raw daily rows
    import polars as pl

    raw = pl.read_parquet(app.storage.get("datasets/seattle_weather.parquet")).sort("date").tail(40)
    served = client.post("/_nubes/models/temp-max-tomorrow/predict", json=raw.with_columns(pl.col("date").cast(pl.String)).to_dicts())
    assert served.status_code == 200, served.text
    assert len(served.json()["predictions"]) == 40 and round(served.json()["predictions"][-1], 2) == fc["temp_max"]
    assert set(mv.features_in) == {"date", "temp_max", "temp_min", "precipitation", "wind", "weather"}


@needs_vega
@needs_torch
@needs_onnx
def test_forecast_lstm_from_pytorch_served_from_onnx_against_gradient_boosting(tmp_path: Path) -> None:
    r = run_script(FORECAST / "sequence.py", tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    scores = json.loads(r.stdout.strip().splitlines()[-1])
    print(r.stdout)  # the comparison, reported as measured (pytest -s shows it)
    assert scores["days"] > 250
    for name in ("lstm", "gradient_boosting", "naive"):
        assert 1.0 < scores[name]["rmse"] < 6.0, (name, scores[name])
    assert scores["lstm"]["rmse"] < scores["naive"]["rmse"]  # it learned something from the 14 days before
    assert "LSTM (ONNX, served)" in r.stdout
