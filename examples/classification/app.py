"""Classification, from catalog to served predictions: is a breast tumour malignant?

The data is the Wisconsin diagnostic breast cancer dataset that ships with scikit-learn (569
tumours, 30 measurements of their cell nuclei, diagnosis malignant or benign). On first use the app
writes it as Parquet into its home store and declares it in the catalog as ``tumors``. Then:

    POST /train?estimator=logistic   a job (202 + Location): cross-validated grid search (5 folds,
    POST /train?estimator=forest     feature selection inside the folds), holdout metrics, registered
                                     as a new version of the model ``diagnosis`` with the dataset's
                                     etag recorded; poll GET /_nubes/jobs/{id} for progress and result
    POST /promote-best               point the ``production`` alias at the version with the best
                                     holdout ROC AUC
    POST /_nubes/models/diagnosis/predict    built in: JSON records, CSV or Parquet in, predictions
                                             and class probabilities out

    nubes serve examples/classification/app.py
    python examples/classification/walkthrough.py
"""

from __future__ import annotations

import contextlib
import io
import threading
from typing import Any, Literal

import nubes
from nubes import Context, HTTPError, checks

app = nubes.App("tumors", description="Breast tumour diagnosis: train, register, promote, serve")

MODEL = "diagnosis"
KEY = "datasets/tumors.parquet"
TARGET = "diagnosis"
_lock = threading.Lock()


def load_frame() -> Any:
    """The dataset as a Polars frame: 30 measurements (spaces in names become '_') and the diagnosis."""
    import numpy as np
    import polars as pl
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    names = [n.replace(" ", "_") for n in raw.feature_names]
    # scikit-learn codes malignant as 0 and benign as 1
    return pl.DataFrame(raw.data, schema=names).with_columns(
        pl.Series(TARGET, np.where(raw.target == 0, "malignant", "benign"))
    )


def ensure_dataset(ctx: Context) -> None:
    """Write the tumours table to the home store once and declare it as the catalog dataset ``tumors``."""
    from nubes.errors import PreconditionFailed

    store = ctx.storage
    if not store.exists(KEY):
        buf = io.BytesIO()
        load_frame().write_parquet(buf)
        with contextlib.suppress(PreconditionFailed):  # a concurrent first call wrote it
            store.put(KEY, buf.getvalue(), content_type="application/vnd.apache.parquet", if_none_match=True)
    with _lock:
        if "tumors" not in ctx.app.catalog:
            ctx.app.dataset("tumors", store.url(KEY), description="Wisconsin diagnostic breast cancer data",
                            checks=[checks.not_null(TARGET), checks.accepted_values(TARGET, ["malignant", "benign"])])


def candidate(kind: str) -> tuple[Any, dict[str, list[Any]], int | None]:
    """(estimator, search grid, features to select) for each kind this app trains."""
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=2000), {"C": [0.1, 1.0, 10.0]}, 15
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=60), {"max_depth": [4, None]}, None


@app.job("/train")
def train_model(ctx: Context, estimator: Literal["logistic", "forest"] = "logistic") -> dict:
    """Cross-validate a grid of models on ``tumors``, register the refit best as the next version.

    A job: training outlasts what an HTTP front end waits (API Gateway: 30 s), so the caller gets 202
    and polls; on a cloud it runs as that cloud's asynchronous invocation of the same function."""
    from nubes.ml import train

    ctx.progress(0.0, "loading tumors")
    ensure_dataset(ctx)
    model, grid, select = candidate(estimator)
    ctx.progress(0.1, f"cross-validating {estimator} over {len(next(iter(grid.values())))} settings")
    result = train(model, ctx.table("tumors"), target=TARGET, cv=5, search=grid, select=select, scoring="roc_auc")
    ctx.progress(0.9, "registering")
    version = ctx.models.register(MODEL, result, inputs=["tumors"], tags=[estimator])
    return {"model": MODEL, "version": version.version, **result.summary()}


@app.post("/promote-best")
def promote_best(ctx: Context, metric: str = "roc_auc") -> dict:
    """Point ``production`` at the version with the best holdout ``metric``."""
    versions = [v for v in ctx.models.versions(MODEL) if metric in v.metrics]
    if not versions:
        raise HTTPError(404, f"no version of {MODEL!r} has a {metric!r} metric; POST /train first")
    best = max(versions, key=lambda v: (v.metrics[metric], v.version))
    ctx.models.promote(MODEL, best.version)
    return {"model": MODEL, "production": best.version, metric: best.metrics[metric], "estimator": best.estimator}
