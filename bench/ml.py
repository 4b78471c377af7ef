"""Model serving latency, cold model load time and registry speed per storage backend.

The model is the one a user of ``nubes.ml`` gets: ``train(LogisticRegression(), wine, cv=5,
search={"C": [...]})`` on scikit-learn's wine data (13 numeric columns; a pipeline of FrameInput ->
ColumnTransformer -> LogisticRegression), registered in the app's home store. Measured:

* **predict, warm** -- p50 / p99 over ``--repeat`` calls for 1 row and 1,000 rows:
  ``model.predict(frame)`` on a Polars frame (direct, the floor); ``model.predict(records)`` on the
  same rows as a list of dicts (what the route does after parsing JSON); the built-in route
  ``POST /_nubes/models/wine/predict`` in-process (``nubes.testing.Client``: routing, JSON parsing,
  alias resolution, registry cache, predict + predict_proba, JSON encoding, the log line); and the
  same route over real HTTP on loopback (nubes' local server, one keep-alive connection, TCP_NODELAY
  on the client as urllib3/requests set it).
  The route also computes probabilities, so it does two model calls to the direct row's one.
* **cold load** -- ``ModelRegistry.load`` on a fresh registry (no cache): metadata read, artifact
  read, SHA-256 check, skops type audit and load; for the wine pipeline and for a 100-tree random
  forest (heavier artifact).
* **registry** -- ``register`` (serialize + artifact put + conditional version put) and ``get``
  (metadata read) per backend: ``mem://``, ``file://`` and ``s3://`` on a loopback moto server
  (started and stopped here; skipped with ``--no-s3`` or when moto is not installed).

    .venv/bin/python bench/ml.py [--repeat 300] [--no-s3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

os.environ.setdefault("NUBES_LOG_LEVEL", "warning")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def wine_frame() -> Any:
    import polars as pl
    from sklearn.datasets import load_wine

    raw = load_wine()
    names = [n.replace("/", "_") for n in raw.feature_names]
    return pl.DataFrame(raw.data, schema=names).with_columns(pl.Series("cultivar", [f"c{t}" for t in raw.target]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    logging.getLogger("nubes").disabled = True

    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    import nubes
    from nubes.adapters.local import make_server
    from nubes.ml import ModelRegistry, train
    from nubes.testing import Client

    wine = wine_frame()
    result = train(LogisticRegression(max_iter=2000), wine, target="cultivar", cv=5, search={"C": [0.1, 1.0, 10.0]})
    forest = train(RandomForestClassifier(n_estimators=100), wine, target="cultivar", cv=3)
    features = wine.drop("cultivar")
    rng = np.random.default_rng(0)
    batches = {1: features.head(1), 1000: features[rng.integers(0, features.height, 1000).tolist()]}

    tmp = tempfile.mkdtemp(prefix="nubes-bench-ml-")
    app = nubes.App("bench-ml", storage=f"file://{tmp}/home", openapi=False)
    app.models.register("wine", result)
    app.models.promote("wine", 1)
    model = app.models.load("wine")
    client = Client(app)
    server = make_server(app, "127.0.0.1", 0)
    server.start_background()
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.connect()
    # http.client sends headers and body in two writes; like urllib3/requests, turn Nagle off so the
    # body is not held back waiting for the server's delayed ACK (a 40 ms client-side artefact)
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def over_http(body: bytes) -> Callable[[], Any]:
        def call() -> Any:
            conn.request("POST", "/_nubes/models/wine/predict", body=body, headers={"content-type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            assert response.status == 200, data[:200]
            return data

        return call

    print(f"# nubes.ml bench: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, repeat {args.repeat}")
    print("\n## predict latency, warm (ms)")
    print(f"{'rows':>5}  {'path':<44}{'p50':>9}{'p99':>9}")
    try:
        for n, frame in batches.items():
            records = frame.to_dicts()
            body = json.dumps(records).encode()
            # the route answers what the model answers, exactly
            served = client.post("/_nubes/models/wine/predict", content=body, headers={"content-type": "application/json"}).json()
            assert served["predictions"] == model.predict(frame).tolist()
            rows = [
                ("model.predict(polars frame)  [direct]", lambda f=frame: model.predict(f)),
                ("model.predict(list of dicts) [direct]", lambda r=records: model.predict(r)),
                ("POST /_nubes/models/wine/predict in-process", lambda b=body: client.post(
                    "/_nubes/models/wine/predict", content=b, headers={"content-type": "application/json"})),
                ("POST /_nubes/models/wine/predict over HTTP", over_http(body)),
            ]
            repeat = args.repeat if n == 1 else max(30, args.repeat // 5)
            for name, fn in rows:
                p50, p99 = percentiles(timed(fn, repeat))
                print(f"{n:>5}  {name:<44}{p50:>9.3f}{p99:>9.3f}")
    finally:
        conn.close()
        server.shutdown()
        server.server_close()

    print("\n## cold model load: ModelRegistry(store).load(name) with an empty cache (ms)")
    print(f"{'model':<28}{'artifact KiB':>13}{'p50':>9}{'p99':>9}")
    app.models.register("forest", forest)
    for name in ("wine", "forest"):
        size = app.models.get(name).artifact["size"] / 1024
        samples = timed(lambda nm=name: ModelRegistry(app.storage).load(nm), max(10, args.repeat // 20), warmup=2)
        p50, p99 = percentiles(samples)
        label = "wine LogisticRegression" if name == "wine" else "wine RandomForest(100)"
        print(f"{label:<28}{size:>13.1f}{p50:>9.2f}{p99:>9.2f}")

    print("\n## registry per backend (ms): register = serialize + artifact put + version put; get = metadata read")
    print(f"{'backend':<10}{'register p50':>14}{'register p99':>14}{'get p50':>10}{'get p99':>10}{'cold load p50':>15}")
    backends: list[tuple[str, Callable[[], Any]]] = [
        ("mem", lambda: nubes.storage.open(f"mem://bench-{uuid.uuid4().hex}")),
        ("file", lambda: nubes.storage.open(f"file://{tmp}/reg-{uuid.uuid4().hex}")),
    ]
    moto = None
    if not args.no_s3:
        try:
            from nubes.testing.servers.moto import MotoServer

            moto = MotoServer()
            moto.start()
            for key, value in moto.env().items():
                os.environ[key] = value
            moto.create_bucket("bench-ml")
            backends.append(("s3 (moto)", lambda: nubes.storage.open(f"s3://bench-ml/{uuid.uuid4().hex}")))
        except Exception as exc:  # noqa: BLE001 - the s3 row is optional
            print(f"(s3 skipped: {type(exc).__name__}: {exc})")
            moto = None
    try:
        n = max(10, args.repeat // 15)
        for label, opener in backends:
            registry = ModelRegistry(opener())
            writes = timed(lambda r=registry: r.register("wine", result.model), n, warmup=2)
            reads = timed(lambda r=registry: r.get("wine", version=1), n, warmup=2)
            loads = timed(lambda r=registry: ModelRegistry(r.store).load("wine", version=1), max(5, n // 2), warmup=1)
            w50, w99 = percentiles(writes)
            r50, r99 = percentiles(reads)
            l50, _ = percentiles(loads)
            print(f"{label:<10}{w50:>14.2f}{w99:>14.2f}{r50:>10.2f}{r99:>10.2f}{l50:>15.2f}")
    finally:
        if moto is not None:
            moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
