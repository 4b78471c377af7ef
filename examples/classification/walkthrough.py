"""The classification walkthrough: train two models as jobs over HTTP (submit, poll, result), promote
the better, serve predictions.

    python examples/classification/walkthrough.py

Uses the embedded defaults (local folder storage ``file://.nubes``, the local server on loopback).
The served predictions are checked against the same model loaded in this process: they must be
identical, value for value.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("NUBES_LOG_LEVEL", "warning")  # the walkthrough prints answers, not log lines

from nubes.core.auth import hash_key, new_key

# The model routes under /_nubes/ need the admin role: the walkthrough mints a key for itself (only the
# key's hash is configured; in a project, under [auth.api_keys] in nubes.toml).
ADMIN_KEY = new_key()
os.environ["NUBES_API_KEYS"] = json.dumps({hash_key(ADMIN_KEY): {"id": "walkthrough", "roles": ["admin"]}})

from rich.console import Console  # noqa: E402 (after the environment above)
from rich.table import Table  # noqa: E402 (after the environment above)

from nubes.adapters.local import make_server  # noqa: E402 (after the environment above)
from nubes.core.loader import load_app  # noqa: E402 (after the environment above)

HERE = Path(__file__).resolve().parent
console = Console()


def call(base: str, method: str, path: str, body: bytes | None = None, ctype: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(base + path, data=body, method=method, headers={"X-API-Key": ADMIN_KEY})
    if body is not None:
        request.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def main() -> int:
    app = load_app(f"{HERE / 'app.py'}:app")
    sys.path.insert(0, str(HERE))
    server = make_server(app, "127.0.0.1", 0)
    server.start_background()
    base = server.url
    console.print(f"[bold]nubes classification[/]: app {app.name!r} on {base} · storage {app.storage_uri}\n")
    try:
        table = Table(title="Cross-validated training (5 folds, grid search), holdout metrics", title_justify="left")
        for col in ("estimator", "version", "best params", "cv roc_auc", "holdout accuracy", "holdout roc_auc", "features"):
            table.add_column(col)
        for kind in ("logistic", "forest"):
            status, job = call(base, "POST", f"/train?estimator={kind}")  # a job: 202 and where to poll
            assert status == 202, job
            console.print(f"POST /train?estimator={kind} → {status}: job {job['id'][:8]}… {job['status']}")
            while job["status"] in ("queued", "running"):
                time.sleep(0.2)
                status, job = call(base, "GET", job["location"])
            assert job["status"] == "succeeded", job
            status, answer = call(base, "GET", job["location"] + "/result")
            console.print(f"GET {job['location']} → {job['status']} after {job['attempts']} attempt(s); GET …/result → {status}")
            m = answer["metrics"]
            table.add_row(kind, str(answer["version"]), json.dumps(answer["best_params"]),
                          f"{answer['cv_mean']:.4f} ± {answer['cv_std']:.4f}", f"{m['accuracy']:.4f}", f"{m['roc_auc']:.4f}",
                          str(len(answer["features"])))
        console.print(table)

        status, best = call(base, "POST", "/promote-best")
        console.print(f"\nPOST /promote-best → {status}: production = version {best['production']} "
                      f"({best['estimator'].rsplit('.', 1)[-1]}, holdout roc_auc {best['roc_auc']:.4f})")

        status, listing = call(base, "GET", "/_nubes/models")
        for model in listing["models"]:
            console.print(f"GET /_nubes/models → {status}: {model['name']}: {model['versions']} versions, aliases {model['aliases']}")

        # five tumours, sent as JSON records exactly as a client would
        from app import (
            load_frame,  # the example's own loader (same columns as the catalog dataset)
        )

        frame = load_frame()
        sample = frame.drop("diagnosis")[[0, 1, 19, 20, 300]]
        status, served = call(base, "POST", "/_nubes/models/diagnosis/predict", json.dumps(sample.to_dicts()).encode())
        console.print(f"\nPOST /_nubes/models/diagnosis/predict (5 JSON records) → {status}: version {served['version']}")
        result = Table(title_justify="left")
        for col in ("row", "truth", "predicted", *[f"P({c})" for c in served["classes"]]):
            result.add_column(col)
        truth = frame["diagnosis"][[0, 1, 19, 20, 300]].to_list()
        for i, (t, p, probs) in enumerate(zip(truth, served["predictions"], served["probabilities"], strict=True)):
            result.add_row(str(i), t, p, *[f"{x:.4f}" for x in probs])
        console.print(result)

        model = app.models.load("diagnosis", alias="production")
        same = (served["predictions"] == model.predict(sample).tolist()
                and served["probabilities"] == model.predict_proba(sample).tolist())
        console.print(f"served predictions identical to the in-process model: {same}")

        status, csv_answer = call(base, "POST", "/_nubes/models/diagnosis/predict?version=2",
                                  sample.write_csv().encode(), "text/csv")
        console.print(f"POST .../predict?version=2 (CSV) → {status}: {csv_answer['predictions']}")

        status, problem = call(base, "POST", "/_nubes/models/diagnosis/predict", json.dumps([{"mean_radius": 14.0}]).encode())
        console.print(f"POST .../predict with one column → {status}: {len(problem['missing'])} missing columns named")
        if not same:
            return 1
    finally:
        server.shutdown()
        server.server_close()
    console.print(
        "\n[bold green]It works.[/] Next:\n"
        "  nubes models examples/classification/app.py list\n"
        "  nubes models examples/classification/app.py show diagnosis\n"
        "  nubes models examples/classification/app.py promote diagnosis 2"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
