"""Forecasting tomorrow's maximum temperature in Seattle from the days before.

The data is real: daily weather observed in Seattle from 2012 to 2015 (NOAA; maximum and minimum
temperature in °C, precipitation in mm, wind in m/s and the day's weather), as shipped in the
``vega_datasets`` package (``pip install vega_datasets``; the CSV file is read directly with
Polars, without pandas or a network). On first use the app writes it as Parquet into its home
store and declares it in the catalog as ``weather``.

    POST /train       lag, rolling-window, difference and season features (nubes.ml.features);
                      a gradient-boosting regressor tuned with time-series cross-validation (every
                      fold trains on the past and is scored on what follows); compared on the same
                      held-out final months with the naive forecast "tomorrow = today"; registered
                      with both scores, and promoted to production if it beats the naive forecast
    GET  /forecast    tomorrow's maximum after the last day in the data, from the production model
    POST /_nubes/models/temp-max-tomorrow/predict   built in: feature rows in, forecasts out

    python examples/forecast/walkthrough.py
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import nubes
from nubes import Context, HTTPError, checks

app = nubes.App("seattle-weather", description="Tomorrow's maximum temperature in Seattle")

MODEL = "temp-max-tomorrow"
KEY = "datasets/seattle_weather.parquet"
TARGET = "temp_max_lead1"
FEATURES = [
    "temp_max", "temp_min", "precipitation", "wind", "weather",
    "temp_max_lag1", "temp_max_lag2", "temp_max_lag6", "temp_max_diff1",
    "temp_max_roll7_mean", "temp_max_roll30_mean", "date_dayofyear_sin", "date_dayofyear_cos",
]
_lock = threading.Lock()


def source_csv() -> Path:
    """The ``seattle-weather.csv`` file inside the installed ``vega_datasets`` package (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("vega_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise HTTPError(503, "this example reads its data from the vega_datasets package: pip install vega_datasets")
    return Path(next(iter(spec.submodule_search_locations))) / "_data" / "seattle-weather.csv"


def load_frame() -> Any:
    """The 1,461 daily observations as a Polars frame, oldest first."""
    import polars as pl

    return pl.read_csv(source_csv()).with_columns(pl.col("date").str.to_date("%Y/%m/%d")).sort("date")


def ensure_dataset(ctx: Context) -> None:
    """Write the observations to the home store once and declare them as the catalog dataset ``weather``."""
    from nubes.errors import PreconditionFailed

    store = ctx.storage
    if not store.exists(KEY):
        buf = io.BytesIO()
        load_frame().write_parquet(buf)
        try:
            store.put(KEY, buf.getvalue(), content_type="application/vnd.apache.parquet", if_none_match=True)
        except PreconditionFailed:
            pass
    with _lock:
        if "weather" not in ctx.app.catalog:
            ctx.app.dataset("weather", store.url(KEY), description="Daily weather in Seattle, 2012-2015 (NOAA)",
                            checks=[checks.not_null("date"), checks.unique("date")])


def make_features(frame: Any) -> Any:
    """Everything known at the end of a day, and the target: the next day's maximum.

    Works on a Polars DataFrame or LazyFrame (e.g. ``ctx.table("weather")``), in date order.
    """
    from nubes.ml import features as F

    f = F.lags(frame, "temp_max", [1, 2, 6], order_by="date")
    f = F.diffs(f, "temp_max", 1, order_by="date")
    f = F.rolling(f, "temp_max", [7, 30], "mean", order_by="date")
    f = F.date_parts(f, "date", ["dayofyear"], cyclical=True)
    return F.leads(f, "temp_max", 1, order_by="date")


@app.post("/train")
def train_model(ctx: Context) -> dict:
    """Tune a gradient-boosting forecaster with time-series CV; compare it with the naive forecast."""
    from sklearn.ensemble import GradientBoostingRegressor

    from nubes.ml import features as F
    from nubes.ml import train
    from nubes.ml.train import regression_metrics

    ensure_dataset(ctx)
    rows = F.drop_incomplete(make_features(ctx.table("weather")), [*FEATURES, TARGET]).collect()
    result = train(
        GradientBoostingRegressor(n_estimators=100, learning_rate=0.05, subsample=0.8),
        rows, target=TARGET, features=FEATURES, order_by="date",
        cv="timeseries", search={"max_depth": [2, 3]},
    )
    held_out = rows.sort("date").tail(result.n_holdout)  # the final months, which the search never saw
    naive = regression_metrics(held_out[TARGET], held_out["temp_max"])  # tomorrow = today
    metrics = {**result.metrics, "cv_mean": result.cv_mean, "cv_std": result.cv_std,
               "naive_rmse": naive["rmse"], "naive_mae": naive["mae"],
               "skill": 1 - result.metrics["rmse"] / naive["rmse"]}
    version = ctx.models.register(MODEL, result, metrics=metrics, inputs=["weather"], tags=["gradient-boosting"])
    better = result.metrics["rmse"] < naive["rmse"]
    if better:
        ctx.models.promote(MODEL, version.version)
    return {
        "model": MODEL, "version": version.version, "promoted": better,
        "holdout": {"from": held_out["date"].min(), "to": held_out["date"].max(), "days": held_out.height},
        "gradient_boosting": result.metrics, "naive": naive, "skill": metrics["skill"],
        "best_params": result.best_params, "cv": result.cv, "cv_rmse": [-s for s in result.cv_scores],
        "features": result.features, "timings": result.timings,
    }


@app.get("/forecast")
def forecast(ctx: Context) -> dict:
    """Tomorrow's maximum after the last observed day, from the production model."""
    ensure_dataset(ctx)
    latest = make_features(ctx.table("weather")).sort("date").tail(1).collect()
    try:
        mv = ctx.models.get(MODEL)
    except nubes.errors.NotFound:
        raise HTTPError(404, f"no model {MODEL!r} yet; POST /train first") from None
    model = ctx.models.load_version(mv)
    day = latest["date"][0]
    return {"date": day + timedelta(days=1), "temp_max": round(float(model.predict(latest)[0]), 2),
            "today": {"date": day, "temp_max": latest["temp_max"][0]}, "model": MODEL, "version": mv.version}
