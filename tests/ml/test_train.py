"""nubes.ml.train on real shipped data: cross-validation, searches, selection inside the folds, encoding."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.feature_selection import SelectFromModel
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import KFold, TimeSeriesSplit
from sklearn.tree import DecisionTreeClassifier

from nubes.errors import ConfigError
from nubes.ml import BadColumns, MissingColumns, TrainResult, train


@pytest.fixture(scope="module")
def wine(wine_labels: pl.DataFrame) -> pl.DataFrame:
    return wine_labels


@pytest.fixture(scope="module")
def diabetes() -> pl.DataFrame:
    raw = load_diabetes()
    return pl.DataFrame(raw.data, schema=list(raw.feature_names)).with_columns(pl.Series("progression", raw.target))


def test_import_nubes_does_not_import_nubes_ml() -> None:
    """Only the ML extension's light module is attached: no scikit-learn, skops or ML code loads."""
    code = ("import sys, nubes; print(any(m.startswith(('nubes.ml.', 'sklearn', 'skops')) and m != 'nubes.ml.extension'"
            " for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def relation(frame: pl.DataFrame, path) -> duckdb.DuckDBPyRelation:
    """A DuckDB relation over ``frame`` (through a Parquet file: DuckDB reads Polars objects via pyarrow)."""
    frame.write_parquet(path)
    return duckdb.read_parquet(str(path))


def test_grid_search_with_cross_validation_on_wine(wine: pl.DataFrame, tmp_path) -> None:
    result = train(LogisticRegression(max_iter=1000), wine, target="cultivar", cv=4, search={"C": [0.01, 1.0]})
    assert isinstance(result, TrainResult) and result.task == "classification"
    assert len(result.cv_scores) == 4 and result.cv_mean == pytest.approx(np.mean(result.cv_scores))
    assert result.cv_std == pytest.approx(np.std(result.cv_scores))
    assert result.best_params in ({"C": 0.01}, {"C": 1.0}) and len(result.candidates) == 2
    assert result.candidates[0]["params"] == result.best_params and result.candidates[0]["rank"] == 1
    assert set(result.metrics) == {"accuracy", "balanced_accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc",
                                   "support"} and result.metrics["accuracy"] > 0.9  # accuracy is also the scoring metric
    assert result.n_holdout == round(0.2 * wine.height) and result.n_train + result.n_holdout == wine.height
    assert result.classes == ["c0", "c1", "c2"] and result.cv.startswith("StratifiedKFold(4)")
    assert set(result.timings) >= {"prepare", "search", "refit", "holdout", "total"}
    assert len(result.features) == 13 and result.inputs["alcohol"] == "number"
    summary = result.summary()
    assert "model" not in summary and summary["best_params"] == result.best_params
    # the refit best pipeline takes raw feature columns in every table shape
    rows = wine.drop("cultivar").head(5)
    expected = result.model.predict(rows).tolist()
    assert result.model.predict(rows.to_dicts()).tolist() == expected
    assert result.model.predict(rows.lazy()).tolist() == expected
    assert result.model.predict({c: rows[c].to_list() for c in rows.columns}).tolist() == expected
    assert result.model.predict(relation(rows, tmp_path / "rows.parquet")).tolist() == expected
    assert result.model.predict(rows.select(reversed(rows.columns))).tolist() == expected  # by name, not position


def test_random_and_halving_searches(wine: pl.DataFrame) -> None:
    from scipy.stats import loguniform

    rnd = train(LogisticRegression(max_iter=1000), wine, target="cultivar", cv=3, search={"C": loguniform(1e-3, 10)},
                search_strategy="random", n_iter=4)
    assert len(rnd.candidates) == 4 and 1e-3 <= rnd.best_params["C"] <= 10
    halving = train(DecisionTreeClassifier(), wine, target="cultivar", cv=3, search={"max_depth": [1, 2, 3, 5]},
                    search_strategy="halving")
    assert halving.best_params["max_depth"] in (1, 2, 3, 5) and halving.metrics["accuracy"] > 0.7
    with pytest.raises(ConfigError, match="search_strategy"):
        train(LogisticRegression(), wine, target="cultivar", search={"C": [1]}, search_strategy="bayes")


def test_selection_is_a_pipeline_step_fitted_per_fold(wine: pl.DataFrame) -> None:
    result = train(LogisticRegression(max_iter=1000), wine, target="cultivar", cv=3, select=4,
                   search={"select__k": [2, 4]})
    assert "select" in result.model.named_steps and len(result.features) == result.best_params["select__k"]
    model_based = train(LogisticRegression(max_iter=1000), wine, target="cultivar", cv=3,
                        select=SelectFromModel(RandomForestClassifier(n_estimators=20, random_state=0), max_features=5))
    assert 1 <= len(model_based.features) <= 5
    huge = train(LogisticRegression(max_iter=1000), wine, target="cultivar", cv=3, select=100)  # clamped
    assert len(huge.features) == 13


def test_selection_does_not_leak_across_folds() -> None:
    # pure noise features and a random target: selecting on all rows before CV would score well above chance
    rng = np.random.default_rng(0)
    noise = pl.DataFrame(rng.normal(size=(120, 300)), schema=[f"f{i}" for i in range(300)]).with_columns(
        pl.Series("y", rng.integers(0, 2, 120)))
    result = train(LogisticRegression(max_iter=500), noise, target="y", cv=5, select=10, holdout=0)
    assert result.cv_mean < 0.7 and result.metrics == {}


def test_regression_metrics_and_default_scoring(diabetes: pl.DataFrame, tmp_path) -> None:
    result = train(Ridge(), diabetes, target="progression", cv=KFold(3), search={"alpha": [0.1, 1.0]})
    assert result.task == "regression" and result.scoring == "neg_root_mean_squared_error"
    assert set(result.metrics) == {"rmse", "mae", "r2", "neg_root_mean_squared_error"} and all(s < 0 for s in result.cv_scores)
    assert result.metrics["neg_root_mean_squared_error"] == pytest.approx(-result.metrics["rmse"])
    assert 40 < result.metrics["rmse"] < 70 and result.metrics["r2"] > 0.3
    rel = relation(diabetes, tmp_path / "diabetes.parquet")
    assert train(LinearRegression(), rel, target="progression", cv=3).metrics["r2"] > 0.3


def test_categorical_and_date_columns_are_encoded_from_the_schema() -> None:
    rng = np.random.default_rng(1)
    n = 300
    start = date(2023, 1, 1)
    days = [start + timedelta(days=int(d)) for d in rng.integers(0, 365, n)]
    shop = rng.choice(["north", "south", "east"], n)
    base = {"north": 10.0, "south": 50.0, "east": 90.0}
    sales = [base[s] + d.month * 3 + rng.normal() for s, d in zip(shop, days, strict=True)]
    frame = pl.DataFrame({"shop": shop, "day": days, "promo": rng.random(n) < 0.5, "sales": sales})
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise(pl.col("shop")).alias("shop"))
    result = train(RandomForestRegressor(n_estimators=30), frame, target="sales", cv=3)
    assert result.inputs == {"shop": "category", "day": "date", "promo": "number"}
    assert {"shop_north", "shop_south", "day_month", "day_year", "promo"} <= set(result.features)
    assert result.metrics["r2"] > 0.8
    # JSON-style records: dates as ISO strings, an unseen category, a missing value
    preds = result.model.predict([{"shop": "west", "day": "2023-06-01", "promo": True},
                                  {"shop": "east", "day": "2023-12-01", "promo": None}])
    assert len(preds) == 2 and preds[1] > 80


def test_timeseries_cv_uses_ordered_splits_and_a_final_holdout() -> None:
    t = np.arange(200)
    frame = pl.DataFrame({"t": t[::-1], "x": np.sin(t[::-1] / 5.0), "y": (t[::-1] * 0.5)}).with_columns(
        pl.col("x").alias("x2"))
    result = train(LinearRegression(), frame, target="y", features=["t", "x"], cv="timeseries", order_by="t")
    assert result.cv == "TimeSeriesSplit(n_splits=5)" and result.n_holdout == 40
    assert result.metrics["r2"] > 0.99  # the holdout is the last 40 time steps: t = 160..199
    assert train(LinearRegression(), frame, target="y", features=["t"], cv=TimeSeriesSplit(3), order_by="t").n_holdout == 40
    from nubes.ml.train import _splitter

    with pytest.raises(ConfigError, match="ordered splits"):
        _splitter(KFold(3, shuffle=True, random_state=0), False, 0, True, None)


def test_input_errors_name_the_columns(wine: pl.DataFrame) -> None:
    result = train(LogisticRegression(max_iter=1000), wine, target="cultivar", cv=3)
    with pytest.raises(MissingColumns) as info:
        result.model.predict([{"alcohol": 13.0, "hue": 1.0}])
    assert "proline" in info.value.columns and "alcohol" not in info.value.columns
    row = wine.drop("cultivar").head(1).to_dicts()[0]
    with pytest.raises(BadColumns, match="proline"):
        result.model.predict([{**row, "proline": "lots"}])
    with pytest.raises(ConfigError, match="no target"):
        train(LogisticRegression(), wine, target="nope")
    with pytest.raises(ConfigError, match="no feature"):
        train(LogisticRegression(), wine, target="cultivar", features=["alcohol", "sugar"])
    with pytest.raises(ConfigError, match="Polars"):
        train(LogisticRegression(), wine.to_dicts(), target="cultivar")



def test_nubes_ml_train_stays_the_function_whatever_was_imported_first() -> None:
    code = ("import nubes.ml.registry, nubes.ml.serving\nfrom nubes.ml.train import TrainResult\n"
            "import nubes.ml\nfrom nubes.ml import train\nprint(callable(nubes.ml.train) and train.__name__ == 'train')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
