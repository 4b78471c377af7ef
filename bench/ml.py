"""Model serving against the strongest honest baselines, peak memory, cold model load and the registry.

The model is what a user of ``nubes.ml`` gets: ``train(RandomForestClassifier(100), wine, cv=3)`` (and
a ``LogisticRegression`` for contrast) on scikit-learn's wine data, 13 numeric columns, a pipeline of
FrameInput -> ColumnTransformer -> estimator, registered and promoted in the app's home store
(``file://``). nubes runs with its defaults: metering on, the JSON log line (to /dev/null).

**predict, warm** (1 row and 1,000 rows; interleaved rounds, median ms):

* ``model.predict(frame)``: the fitted pipeline on a ready Polars frame -- the floor, and the
  baseline of the goal in issue 14 (route <= 1.2 x this + 2 ms);
* ``hand-written handler``: what a competent user writes instead of the built-in route, bytes in
  and bytes out: ``pl.read_json(body)``, ``predict_proba`` once, predictions as the arg-max of the
  probabilities, ``json.dumps`` of the same answer (no framework, no metering, no checks);
* ``POST /_nubes/models/wine/predict``: the built-in route in-process (``nubes.testing.Client``:
  routing, body parsing, alias resolution and registry cache, column checks, one model pass,
  JSON encoding, metering and the log line).

**peak RSS** of a warm predict loop (200 x 1,000 rows), each in a fresh process: the raw model (the
same artifact loaded with ``skops.io.loads`` and called with ``predict_proba`` on a frame read from
the JSON body; like nubes, it keeps scikit-learn's estimator walk, run by skops at import, from
importing torch when torch is installed) against the nubes route serving it.

**cold load** -- ``ModelRegistry.load`` on a fresh registry (no cache): metadata read, artifact read,
SHA-256 check, allow-list audit, skops load and tree bounds checks. **registry** -- ``register`` and
``get`` per backend: ``mem://``, ``file://`` and ``s3://`` on a loopback moto server (``--no-s3``
skips it).

    .venv/bin/python bench/ml.py [--rounds 41] [--no-s3] [--no-rss]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

os.environ.setdefault("NUBES_LOG_LEVEL", "info")  # the default; the lines go to /dev/null below


def wine_frame() -> Any:
    import polars as pl
    from sklearn.datasets import load_wine

    raw = load_wine()
    names = [n.replace("/", "_") for n in raw.feature_names]
    return pl.DataFrame(raw.data, schema=names).with_columns(pl.Series("cultivar", [f"c{t}" for t in raw.target]))


def handwritten(model: Any) -> Callable[[bytes], bytes]:
    """The baseline handler: JSON records in, the same JSON answer out, one model pass."""
    import numpy as np
    import polars as pl

    classes = model.classes_

    def handler(body: bytes) -> bytes:
        frame = pl.read_json(io.BytesIO(body))
        proba = model.predict_proba(frame)
        answer = {"model": "wine", "version": 1, "predictions": classes.take(np.argmax(proba, axis=1)).tolist(),
                  "probabilities": proba.tolist(), "classes": classes.tolist()}
        return json.dumps(answer).encode()

    return handler


def interleaved(variants: dict[str, Callable[[], Any]], rounds: int, warmup: int = 5) -> dict[str, float]:
    """Median ms per call of each variant, rounds interleaved (the order rotates every round)."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - t)
    return {n: statistics.median(s) * 1000 for n, s in samples.items()}


RSS_SCRIPT = r"""
import io, json, os, resource, sys
os.environ["NUBES_LOG_LEVEL"] = "off"
mode, home, body_path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
body = open(body_path, "rb").read()
if mode == "raw":
    from nubes.ml.allowlist import _BlockWalkImports  # as nubes does: skops' estimator walk must not import torch
    sys.meta_path.insert(0, _BlockWalkImports())
    import numpy as np, polars as pl, skops.io as sio
    sys.meta_path.pop(0)
    data = open(sys.argv[5], "rb").read()
    model = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    def call():
        frame = pl.read_json(io.BytesIO(body))
        proba = model.predict_proba(frame)
        return json.dumps({"predictions": model.classes_.take(np.argmax(proba, axis=1)).tolist(),
                           "probabilities": proba.tolist()}).encode()
else:
    import nubes
    from nubes.testing import Client
    app = nubes.App("bench-ml", storage=home, openapi=False)
    client = Client(app)
    def call():
        r = client.post("/_nubes/models/wine/predict", content=body,
                        headers={"content-type": "application/json", "x-api-key": os.environ["NUBES_BENCH_KEY"]})
        assert r.status_code == 200, r.text[:200]
        return r.content
def hwm():  # VmHWM: this process's own peak (ru_maxrss keeps the forking parent's peak across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
call()
base = hwm()
for _ in range(n):
    call()
print(json.dumps({"warm_mib": base, "peak_mib": hwm()}))
"""


def peak_rss(home: str, body: bytes, artifact: bytes, n: int) -> dict[str, dict[str, float]]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        body_path, art_path = os.path.join(tmp, "body.json"), os.path.join(tmp, "model.skops")
        for path, content in ((body_path, body), (art_path, artifact)):
            with open(path, "wb") as f:
                f.write(content)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        for mode in ("raw", "nubes"):
            result = subprocess.run([sys.executable, "-c", RSS_SCRIPT, mode, home, body_path, str(n), art_path],
                                    capture_output=True, text=True, env=env, timeout=600, check=False)
            if result.returncode:
                raise RuntimeError(f"the {mode} RSS process failed: {result.stderr[-2000:]}")
            out[mode] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


# The model routes under /_nubes/ need the admin role: the bench mints a key for itself (only its hash is
# configured), so the route's timings include the API-key check a deployment pays.
HEADERS = {"content-type": "application/json"}


def _admin_key() -> None:
    from nubes.core.auth import hash_key, new_key

    key = new_key()
    os.environ["NUBES_API_KEYS"] = json.dumps({hash_key(key): {"id": "bench", "roles": ["admin"]}})
    os.environ["NUBES_BENCH_KEY"] = HEADERS["x-api-key"] = key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--no-rss", action="store_true")
    args = parser.parse_args()
    _admin_key()
    real_stderr = sys.stderr
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the nubes JSON log lines are written, to nowhere
    try:
        return run(args)
    except BaseException:
        sys.stderr = real_stderr
        raise


def run(args: argparse.Namespace) -> int:

    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    import nubes
    from nubes.ml import ModelRegistry, train
    from nubes.testing import Client

    wine = wine_frame()
    results = {
        "RandomForest(100)": train(RandomForestClassifier(n_estimators=100), wine, target="cultivar", cv=3),
        "LogisticRegression": train(LogisticRegression(max_iter=2000), wine, target="cultivar", cv=3),
    }
    features = wine.drop("cultivar")
    rng = np.random.default_rng(0)
    batches = {1: features.head(1), 1000: features[rng.integers(0, features.height, 1000).tolist()]}
    tmp = tempfile.mkdtemp(prefix="nubes-bench-ml-")
    home = f"file://{tmp}/home"
    app = nubes.App("bench-ml", storage=home, openapi=False)
    client = Client(app)
    out = sys.stdout
    out.write(f"# nubes.ml bench: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.rounds} interleaved rounds\n")
    out.write("\n## predict, warm: median ms (goal: route <= 1.2 x model.predict + 2 ms)\n")
    out.write(f"{'model':<20}{'rows':>6}{'model.predict':>15}{'handler':>10}{'route':>9}"
              f"{'route/predict':>15}{'route/handler':>15}{'goal':>9}{'met':>5}\n")
    for label, result in results.items():
        name = "wine" if label.startswith("Random") else "wine-linear"
        app.models.register(name, result)
        app.models.promote(name, app.models.versions(name)[-1].version)
        model = app.models.load(name)
        handler = handwritten(model)
        for n, frame in batches.items():
            body = json.dumps(frame.to_dicts()).encode()
            served = client.post(f"/_nubes/models/{name}/predict", content=body, headers=HEADERS).json()
            assert served["predictions"] == model.predict(frame).tolist()
            assert json.loads(handler(body))["probabilities"] == served["probabilities"]
            med = interleaved({
                "predict": lambda f=frame, m=model: m.predict(f),
                "handler": lambda b=body, h=handler: h(b),
                "route": lambda b=body, nm=name: client.post(f"/_nubes/models/{nm}/predict", content=b,
                                                             headers=HEADERS),
            }, args.rounds if n == 1 else max(15, args.rounds // 2))
            goal = 1.2 * med["predict"] + 2
            out.write(f"{label:<20}{n:>6}{med['predict']:>15.2f}{med['handler']:>10.2f}{med['route']:>9.2f}"
                      f"{med['route'] / med['predict']:>14.2f}x{med['route'] / med['handler']:>14.2f}x{goal:>9.2f}"
                      f"{'yes' if med['route'] <= goal else 'NO':>5}\n")
            out.flush()

    if not args.no_rss:
        body = json.dumps(batches[1000].to_dicts()).encode()
        mv = app.models.get("wine")
        rss = peak_rss(home, body, app.storage.get(mv.artifact["key"]), 200)
        out.write("\n## peak RSS, warm predict loop of 200 x 1,000 rows, fresh process each (MiB)\n")
        out.write(f"{'process':<44}{'after first call':>18}{'peak':>8}\n")
        for mode, label in (("raw", "raw model (skops.io.loads + predict_proba)"), ("nubes", "nubes predict route")):
            out.write(f"{label:<44}{rss[mode]['warm_mib']:>18.1f}{rss[mode]['peak_mib']:>8.1f}\n")
        out.write(f"{'ratio nubes / raw (peak)':<44}{'':>18}{rss['nubes']['peak_mib'] / rss['raw']['peak_mib']:>7.2f}x\n")

    out.write("\n## cold model load: ModelRegistry(store).load(name) with an empty cache (ms)\n")
    out.write(f"{'model':<28}{'artifact KiB':>13}{'p50':>9}\n")
    for name, label in (("wine-linear", "LogisticRegression"), ("wine", "RandomForest(100)")):
        size = app.models.get(name).artifact["size"] / 1024
        loads = interleaved({"load": lambda nm=name: ModelRegistry(app.storage).load(nm)}, max(5, args.rounds // 4), warmup=1)
        out.write(f"{label:<28}{size:>13.1f}{loads['load']:>9.2f}\n")

    out.write("\n## registry per backend (ms): register = serialize + audit + artifact put + version put; get = metadata read\n")
    out.write(f"{'backend':<12}{'register':>10}{'get':>8}{'cold load':>11}\n")
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
            os.environ.update(moto.env())
            moto.create_bucket("bench-ml")
            backends.append(("s3 (moto)", lambda: nubes.storage.open(f"s3://bench-ml/{uuid.uuid4().hex}")))
        except Exception as exc:  # the s3 row is optional
            out.write(f"(s3 skipped: {type(exc).__name__}: {exc})\n")
            moto = None
    linear = results["LogisticRegression"].model
    try:
        for label, opener in backends:
            registry = ModelRegistry(opener())
            registry.register("wine", linear)
            med = interleaved({
                "register": lambda r=registry: r.register("wine", linear),
                "get": lambda r=registry: r.get("wine", version=1),
                "load": lambda r=registry: ModelRegistry(r.store).load("wine", version=1),
            }, max(5, args.rounds // 4), warmup=1)
            out.write(f"{label:<12}{med['register']:>10.2f}{med['get']:>8.2f}{med['load']:>11.2f}\n")
    finally:
        if moto is not None:
            moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
