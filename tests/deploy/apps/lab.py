"""An app with a job (and no event handlers), for the deploy tests of what job dispatch needs."""

import nubes

app = nubes.App("lab", version="0.3.0")


@app.get("/health")
def health(ctx) -> dict:
    return {"ok": True}


@app.job("/train")
def train(ctx, rows: int = 10) -> dict:
    ctx.progress(0.5, "halfway")
    return {"rows": rows}
