"""An HTTP-only app (no event handlers), for the deploy tests."""

import nubes

app = nubes.App("plain")


@app.get("/ping")
def ping(ctx) -> dict:
    return {"pong": True}
