"""Forecasting tomorrow's maximum temperature in Seattle from the days before.

The data is real: daily weather observed in Seattle from 2012 to 2015 (NOAA; maximum and minimum
temperature in °C, precipitation in mm, wind in m/s and the day's weather), as shipped in the
``vega_datasets`` package (``pip install vega_datasets``; the CSV file is read directly with
Polars, without pandas or a network). On first use the app writes it as Parquet into its home
store and declares it in the catalog as ``weather``.

    POST /train       lag, rolling-window, difference and season features computed *inside* the
                      model (nubes.ml.features.Features, a pipeline step), so the lags it tries are
                      tuned by the search within time-series cross-validation (every fold trains on
                      the past and is scored on what follows), and the model takes raw daily rows;
                      a gradient-boosting regressor compared on the same held-out final months with
                      the naive forecast "tomorrow = today"; registered with both scores, and
                      promoted to production if it beats the naive forecast
    GET  /forecast    tomorrow's maximum after the last day in the data, from the production model
    POST /_nubes/models/temp-max-tomorrow/predict   built in: raw daily rows in (send at least the 30
                      days before the day to forecast from), one forecast per row out

    python examples/forecast/walkthrough.py
"""

from __future__ import annotations

import contextlib
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
RAW = ["date", "temp_max", "temp_min", "precipitation", "wind", "weather"]
HISTORY = 30  # the longest rolling window: rows to send before the day to forecast from
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
        with contextlib.suppress(PreconditionFailed):
            store.put(KEY, buf.getvalue(), content_type="application/vnd.apache.parquet", if_none_match=True)
    with _lock:
        if "weather" not in ctx.app.catalog:
            ctx.app.dataset("weather", store.url(KEY), description="Daily weather in Seattle, 2012-2015 (NOAA)",
                            checks=[checks.not_null("date"), checks.unique("date")])


def feature_steps() -> Any:
    """Everything known at the end of a day, computed from the raw rows inside the model."""
    from nubes.ml.features import Features

    return Features(columns=["temp_max"], lags=[1, 2, 6], diffs=[1], windows=[7, 30], order_by="date",
                    date="date", parts=["dayofyear"], cyclical=True)


def with_target(frame: Any) -> Any:
    """The raw rows with the target: the next day's maximum (null on the last day)."""
    from nubes.ml import features as F

    return F.leads(frame, "temp_max", 1, order_by="date")


@app.post("/train")
def train_model(ctx: Context) -> dict:
    """Tune a gradient-boosting forecaster and its lags with time-series CV; compare it with the naive forecast."""
    import polars as pl
    from sklearn.ensemble import GradientBoostingRegressor

    from nubes.ml import train
    from nubes.ml.metrics import regression_metrics

    ensure_dataset(ctx)
    rows = with_target(ctx.table("weather")).collect().filter(pl.col(TARGET).is_not_null())
    result = train(
        GradientBoostingRegressor(n_estimators=100, learning_rate=0.05, subsample=0.8),
        rows, target=TARGET, features=RAW, engineer=feature_steps(), order_by="date",
        cv="timeseries", search={"max_depth": [2, 3], "features__lags": [[1, 2, 6], [1, 2, 3, 7]]},
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
        "features": result.features, "history": result.history, "timings": result.timings,
    }


@app.get("/forecast")
def forecast(ctx: Context) -> dict:
    """Tomorrow's maximum after the last observed day, from the production model."""
    ensure_dataset(ctx)
    recent = ctx.table("weather").sort("date").tail(HISTORY + 1).collect()  # raw rows: the model makes its features
    try:
        mv = ctx.models.get(MODEL)
    except nubes.errors.NotFound:
        raise HTTPError(404, f"no model {MODEL!r} yet; POST /train first") from None
    model = ctx.models.load_version(mv)
    day = recent["date"][-1]
    return {"date": day + timedelta(days=1), "temp_max": round(float(model.predict(recent)[-1]), 2),
            "today": {"date": day, "temp_max": recent["temp_max"][-1]}, "model": MODEL, "version": mv.version}
