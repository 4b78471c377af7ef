"""An app with jobs for the emulator tests: each attempt appends {pid, start, end} to $JOBS_LOG."""

from __future__ import annotations

import json
import os
import time

import nubes
from nubes import Context

app = nubes.App("emu-jobs", auth=False)


def _log(**fields: object) -> None:
    path = os.environ.get("JOBS_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(fields) + "\n")


@app.job("/train")
def train(ctx: Context, seconds: float = 0.1, tag: str = "") -> dict:
    """Train for `seconds`: a job."""
    started = time.time()
    _log(event="start", tag=tag, pid=os.getpid(), at=started)
    ctx.progress(0.1, "training")
    time.sleep(seconds)
    _log(event="end", tag=tag, pid=os.getpid(), at=time.time())
    return {"slept": seconds, "tag": tag, "provider": ctx.platform.provider, "emulated": ctx.platform.emulated}


@app.get("/slow")
def slow(ctx: Context, seconds: float = 1.0) -> dict:
    """A plain route that takes `seconds`."""
    time.sleep(seconds)
    return {"slept": seconds}
