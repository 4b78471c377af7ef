"""Quickstart: questions about 178 Italian wines from three cultivars, answered over HTTP.

The data is the UCI wine recognition dataset that ships with scikit-learn (13 chemical
measurements per wine). On first use the app writes it as Parquet into its home store
(``file://.nubes`` unless ``NUBES_STORAGE`` says otherwise), then answers from there: DuckDB
reads the file through nubes' storage bridge, Polars works on the frame.

    nubes serve examples/quickstart/app.py
    nubes invoke examples/quickstart/app.py GET /cultivars
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import Any, Literal

import nubes
from nubes import Context, HTTPError

app = nubes.App("wines", description="Chemistry of 178 wines from three Italian cultivars")

DATASET = "datasets/wines.parquet"
Measure = Literal[
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
    "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280_od315", "proline",
]
_lock = threading.Lock()
_cache: dict[str, Any] = {}


def ensure_dataset(store: nubes.storage.ObjectStore) -> str:
    """Write the wine table to ``store`` once (atomically; a concurrent first writer wins) and return its etag."""
    from nubes.errors import PreconditionFailed

    if store.exists(DATASET):
        return store.head(DATASET).etag
    import polars as pl
    from sklearn.datasets import load_wine

    raw = load_wine()
    names = [n.replace("od280/od315_of_diluted_wines", "od280_od315") for n in raw.feature_names]
    frame = pl.DataFrame(raw.data, schema=names).with_columns(
        pl.Series("cultivar", [f"cultivar_{t + 1}" for t in raw.target]),
        pl.int_range(1, len(raw.target) + 1, eager=True).alias("wine_id"),
    ).select("wine_id", "cultivar", *names)
    buf = io.BytesIO()
    frame.write_parquet(buf)
    try:
        return store.put(DATASET, buf.getvalue(), content_type="application/vnd.apache.parquet", if_none_match=True).etag
    except PreconditionFailed:
        return store.head(DATASET).etag


def wines(ctx: Context):
    """The wine table as a Polars DataFrame, cached per warm instance and refreshed when the object changes."""
    import polars as pl

    etag = ensure_dataset(ctx.storage)
    with _lock:
        if _cache.get("etag") != etag:
            _cache["frame"] = pl.read_parquet(io.BytesIO(ctx.storage.get(DATASET)))
            _cache["etag"] = etag
        return _cache["frame"]


def sql(ctx: Context, query: str, params: dict[str, Any] | None = None):
    """Run DuckDB SQL with ``wines`` bound to the Parquet object in the app's store (range reads)."""
    from nubes.data import Bridge

    ensure_dataset(ctx.storage)
    with Bridge(ctx.storage) as bridge:
        source = f"read_parquet('{bridge.path(DATASET)}')"
        return bridge.query(query.replace("{wines}", source), params)


@app.get("/cultivars")
def cultivars(ctx: Context):
    """How do the three cultivars differ? Averages of the telling measurements, per cultivar."""
    return sql(
        ctx,
        "select cultivar, count(*) as wines, round(avg(alcohol), 2) as alcohol, round(avg(flavanoids), 2) as flavanoids,"
        " round(avg(color_intensity), 2) as color_intensity, round(avg(proline)) as proline"
        " from {wines} group by cultivar order by cultivar",
    )


@app.get("/wines")
def list_wines(ctx: Context, cultivar: str | None = None, min_alcohol: float = 0.0, limit: int = 20):
    """Wines matching a filter (JSON, or CSV / Parquet / Arrow with ?format= or an Accept header)."""
    import polars as pl

    if not 1 <= limit <= 1000:
        raise HTTPError(422, "limit must be between 1 and 1000", errors=[{"name": "limit", "in": "query", "detail": "must be 1..1000"}])
    frame = wines(ctx).filter(pl.col("alcohol") >= min_alcohol)
    if cultivar is not None:
        known = sorted(wines(ctx)["cultivar"].unique().to_list())
        if cultivar not in known:
            raise HTTPError(404, f"no cultivar {cultivar!r}; known: {', '.join(known)}")
        frame = frame.filter(pl.col("cultivar") == cultivar)
    return frame.head(limit)


@app.get("/wines/top")
def top(ctx: Context, by: Measure = "alcohol", n: int = 5, ascending: bool = False):
    """The n wines with the highest (or lowest) value of one measurement."""
    import polars as pl

    return wines(ctx).sort(by, descending=not ascending).head(max(1, min(n, 100))).select("wine_id", "cultivar", pl.col(by))


@app.get("/correlation")
def correlation(ctx: Context, x: Measure, y: Measure) -> dict:
    """Pearson correlation between two measurements, overall and within each cultivar."""
    frame = sql(
        ctx,
        "select cultivar, corr({x}, {y}) as r from {wines} group by rollup (cultivar) order by cultivar nulls first"
        .replace("{x}", x).replace("{y}", y),  # x and y are validated against the Literal of column names
    )
    rows = frame.to_dicts()
    return {"x": x, "y": y, "overall": round(rows[0]["r"], 4),
            "by_cultivar": {r["cultivar"]: round(r["r"], 4) for r in rows[1:]}}


@dataclass
class Profile:
    alcohol: float
    flavanoids: float
    color_intensity: float
    proline: float
    n: int = 3


@app.post("/wines/similar")
def similar(ctx: Context, body: Profile):
    """The wines closest to a chemical profile (distance on standardized measurements)."""
    import polars as pl

    frame = wines(ctx)
    cols = ["alcohol", "flavanoids", "color_intensity", "proline"]
    distance = sum(((pl.col(c) - getattr(body, c)) / frame[c].std()) ** 2 for c in cols).sqrt()
    return frame.with_columns(distance.round(3).alias("distance")).sort("distance").head(max(1, min(body.n, 50))).select(
        "wine_id", "cultivar", *cols, "distance"
    )
