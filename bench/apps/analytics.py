"""The analytics-only app of bench/build.py: DuckDB SQL over a Parquet dataset in the home store.

No Polars or scikit-learn in its own code, so its footprint shows what SQL alone costs a function.
"""

from __future__ import annotations

import os

import nubes
from nubes import Context

app = nubes.App("analytics", models=False)
app.dataset("sales", os.environ.get("NUBES_STORAGE", "mem://bench").rstrip("/") + "/sales.parquet")


@app.get("/regions")
def regions(ctx: Context) -> list:
    """Revenue per region."""
    rows = ctx.sql("select region, round(sum(amount), 2) as revenue from sales group by 1 order by 1").fetchall()
    return [{"region": r, "revenue": v} for r, v in rows]


@app.get("/health")
def health(ctx: Context) -> dict:
    return {"ok": True}
