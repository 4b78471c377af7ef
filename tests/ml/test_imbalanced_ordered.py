"""ML on real-shaped data: an ordered sensor series with rare failures. A split whose early folds
lack failures is a 422 naming a split that works; a user-chosen split trains; holdout metrics are
imbalance-aware; a search tunes lag and rolling windows inside the CV; the feature pipeline is
stored with the model so /predict takes raw rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import TimeSeriesSplit

import nubes
from nubes.ml import BadSplit, train
from nubes.ml.features import Features
from nubes.testing import Client


@pytest.fixture(scope="module")
def sensor() -> pl.DataFrame:
    """2,400 hourly readings of two machines; 19 failures, all in the second half, each preceded by
    three hours of rising vibration (what lags and rolling windows can see; the current reading alone
    cannot)."""
    rng = np.random.default_rng(7)
    n = 1200
    frames = []
    for machine, starts in (("m1", [700, 760, 820, 880, 940, 1000, 1060, 1120, 1180 - 15, 1150]),
                            ("m2", [650, 720, 790, 860, 930, 1000, 1070, 1140, 1190])):
        vibration = rng.normal(1.0, 0.25, n)
        failure = np.zeros(n, dtype=int)
        for s in starts:
            vibration[s - 3:s] += np.array([1.2, 1.8, 2.4])
            failure[s] = 1
        t0 = datetime(2024, 1, 1)
        frames.append(pl.DataFrame({
            "machine": [machine] * n, "time": [t0 + timedelta(hours=i) for i in range(n)],
            "vibration": vibration, "temperature": rng.normal(60, 3, n), "failure": failure}))
    return pl.concat(frames).sort("time", "machine")


def features(**overrides: object) -> Features:
    spec = {"columns": ["vibration"], "lags": [1, 2, 3], "windows": [3], "order_by": "time", "by": "machine",
            "keep": ["temperature", "machine"]}
    spec.update(overrides)
    return Features(**spec)


def test_the_data_is_as_described(sensor: pl.DataFrame) -> None:
    assert sensor["failure"].sum() == 19 and sensor.height == 2400
    assert sensor.filter(pl.col("failure") == 1)["time"].min() > datetime(2024, 1, 27)


def test_a_fold_without_failures_is_a_422_naming_a_split_that_works(sensor: pl.DataFrame) -> None:
    with pytest.raises(BadSplit) as info:
        train(RandomForestClassifier(n_estimators=20), sensor, target="failure", engineer=features(),
              cv="timeseries", scoring="f1")
    err = info.value
    assert err.status == 422 and "fold 1 of TimeSeriesSplit(n_splits=5)" in err.detail
    assert "without class 1" in err.detail and "Fix: cv=TimeSeriesSplit(" in err.detail
    assert "works here" in err.problem()["suggestion"]

    # through a route: a 422 problem, not a 500 with "pos_label=1 is not a valid label" in the log
    app = nubes.App("sensors", storage="mem://sensors-422")

    @app.post("/train")
    def fit(ctx: nubes.Context) -> dict:
        return train(RandomForestClassifier(n_estimators=20), sensor, target="failure", engineer=features(),
                     cv="timeseries", scoring="f1").summary()

    r = Client(app).post("/train")
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert "works here" in r.json()["detail"] and r.json()["title"] == "Unusable Split"


def test_the_suggested_split_trains_and_reports_imbalance_aware_metrics(sensor: pl.DataFrame) -> None:
    with pytest.raises(BadSplit) as info:
        train(LogisticRegression(max_iter=500), sensor, target="failure", engineer=features(), cv="timeseries",
              scoring="average_precision")
    suggestion = info.value.problem()["suggestion"]
    split = eval(suggestion.split("cv=")[1].split(" works")[0], {"TimeSeriesSplit": TimeSeriesSplit})
    k = split.n_splits
    result = train(LogisticRegression(max_iter=500, class_weight="balanced"), sensor, target="failure",
                   engineer=features(), cv=split, scoring="average_precision")
    assert result.cv.startswith("TimeSeriesSplit(") and len(result.cv_scores) == k
    m = result.metrics
    assert {"precision", "recall", "f1", "pr_auc", "balanced_accuracy", "roc_auc", "average_precision"} <= set(m)
    assert result.positive == 1 and m["positives"] >= 3
    assert m["average_precision"] == pytest.approx(m["pr_auc"])  # the scoring metric, on the holdout
    assert m["recall"] > 0.6 and m["pr_auc"] > 0.5  # lags see the ramp before each failure
    assert m["accuracy"] > 0.9 and m["balanced_accuracy"] > 0.75
    # a splitter object and a gap work the same way
    gapped = train(LogisticRegression(max_iter=500, class_weight="balanced"), sensor, target="failure",
                   engineer=features(), cv=TimeSeriesSplit(n_splits=k, test_size=split.test_size, gap=2),
                   scoring="average_precision")
    assert "gap=2" in gapped.cv and len(gapped.cv_scores) == k
    from nubes.errors import ConfigError

    with pytest.raises(ConfigError, match="n_splits"):
        train(Ridge(), sensor, target="vibration", cv=TimeSeriesSplit(3), n_splits=4)
    with pytest.raises(ConfigError, match="gap"):
        train(Ridge(), sensor, target="vibration", cv=3, gap=2)


def test_search_tunes_lags_and_windows_inside_the_cv(sensor: pl.DataFrame) -> None:
    result = train(LogisticRegression(max_iter=500, class_weight="balanced"), sensor, target="failure",
                   engineer=features(lags=[1]), cv=TimeSeriesSplit(n_splits=2, test_size=200), scoring="average_precision",
                   holdout=0.25,
                   search={"features__lags": [[6], [1, 2, 3]], "features__windows": [[12], [3]], "C": [1.0]})
    assert len(result.candidates) == 4
    assert result.best_params["features__lags"] == [1, 2, 3]  # the lags that see the ramp before a failure
    window = result.best_params["features__windows"][0]
    assert result.history == max(3, window - 1) and result.feature_steps["lags"] == [1, 2, 3]
    assert {"vibration_lag1", "vibration_lag3", f"vibration_roll{window}_mean", "temperature"} <= set(result.features)
    worst = result.candidates[-1]
    assert worst["params"]["features__lags"] == [6] and worst["mean"] < result.candidates[0]["mean"]


def test_the_feature_pipeline_is_stored_so_predict_takes_raw_rows(sensor: pl.DataFrame, tmp_path) -> None:
    app = nubes.App("sensors", storage=f"file://{tmp_path}/home")
    result = train(RandomForestClassifier(n_estimators=30), sensor, target="failure", engineer=features(),
                   cv=TimeSeriesSplit(n_splits=2, test_size=200), holdout=0.25)
    mv = app.models.register("failures", result)
    assert mv.training["history"] == 3 and mv.training["feature_steps"]["order_by"] == "time"
    assert set(mv.features_in) == {"vibration", "temperature", "machine", "time"}  # raw columns only
    raw = sensor.drop("failure").tail(400)
    client = Client(app)
    r = client.post("/_nubes/models/failures/predict", json=raw.with_columns(pl.col("time").cast(pl.String)).to_dicts())
    assert r.status_code == 200, r.text
    model = app.models.load("failures")
    assert r.json()["predictions"] == model.predict(raw).tolist()
    assert r.json()["probabilities"] == model.predict_proba(raw).tolist()
    hits = [p for p, y in zip(r.json()["predictions"], sensor.tail(400)["failure"].to_list(), strict=True) if y == 1]
    assert hits and sum(hits) >= 1  # failures in the last rows are recognised from the raw readings
    bad = client.post("/_nubes/models/failures/predict", json=raw.drop("vibration").head(5).with_columns(
        pl.col("time").cast(pl.String)).to_dicts())
    assert bad.status_code == 422 and bad.json()["missing"] == ["vibration"]
