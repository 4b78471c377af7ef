"""The model registry: versions, metadata, aliases, concurrency, and refusing artifacts it did not write."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import threading
import uuid
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression
from tests.stores import Recording

import nubes
from nubes.errors import ConfigError, NotFound
from nubes.ml import ModelRegistry, UnsafeModel, serialization, train


@pytest.fixture(scope="module")
def wine(wine_codes: pl.DataFrame) -> pl.DataFrame:
    return wine_codes


@pytest.fixture(scope="module")
def result(wine: pl.DataFrame):
    return train(LogisticRegression(max_iter=1000), wine, target="cultivar", cv=3, search={"C": [0.1, 1.0]})


@pytest.fixture(params=["mem", "file"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    uri = f"mem://registry-{uuid.uuid4().hex}" if request.param == "mem" else f"file://{tmp_path}/store"
    return ModelRegistry(nubes.storage.open(uri))


class Evil:
    """Unpickling this creates the marker file: what a malicious artifact would do (run code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_register_versions_metadata_and_load(registry: ModelRegistry, result, wine: pl.DataFrame) -> None:
    first = registry.register("wine", result, tags=["baseline"], inputs=[{"dataset": "wine", "etag": "abc"}])
    second = registry.register("wine", result.model, metrics={"note": 1.0}, params={"C": 5})
    assert (first.version, second.version) == (1, 2)
    assert first.metrics["accuracy"] == result.metrics["accuracy"] and first.metrics["cv_mean"] == result.cv_mean
    assert first.params == result.best_params and second.params == {"C": 5} and second.metrics == {"note": 1.0}
    assert first.task == "classification" and first.target == "cultivar" and first.tags == ["baseline"]
    assert first.estimator == "sklearn.linear_model._logistic.LogisticRegression"
    assert first.libraries["scikit-learn"] and first.libraries["skops"] and first.libraries["python"]
    assert first.code["file"] == "test_registry.py"
    assert first.code["sha256"] == hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    assert first.inputs == [{"dataset": "wine", "etag": "abc"}] and first.created.endswith("+00:00")
    assert list(first.features_in) == [c for c in wine.columns if c != "cultivar"]  # training order kept
    assert first.artifact["key"] == f"models/wine/artifacts/{first.artifact['sha256']}.skops"  # content-addressed
    assert first.artifact["format"] == "skops" and first.artifact["size"] == registry.store.head(first.artifact["key"]).size
    assert [v.version for v in registry.versions("wine")] == [1, 2] and registry.names() == ["wine"]
    rows = wine.drop("cultivar")
    loaded = registry.load("wine", version=1)
    assert np.array_equal(loaded.predict(rows), result.model.predict(rows))
    assert np.array_equal(loaded.predict_proba(rows), result.model.predict_proba(rows))  # bit for bit
    assert registry.load("wine", version=1) is loaded  # cached per instance
    assert registry.get("wine").version == 2  # no production alias yet: the latest


def test_promote_aliases_and_delete_never_reuses_numbers(registry: ModelRegistry, result) -> None:
    for _ in range(3):
        registry.register("m", result)
    registry.promote("m", 2)
    registry.promote("m", 3, alias="canary")
    assert registry.aliases("m") == {"production": 2, "canary": 3}
    assert registry.get("m").version == 2 and registry.get("m", alias="canary").version == 3
    assert [v.aliases for v in registry.versions("m")] == [[], ["production"], ["canary"]]
    registry.promote("m", 1)
    assert registry.get("m").version == 1  # the alias moved
    registry.delete("m", 3)
    assert [v.version for v in registry.versions("m")] == [1, 2] and "canary" not in registry.aliases("m")
    assert registry.register("m", result).version == 4
    with pytest.raises(NotFound):
        registry.get("m", version=3)
    with pytest.raises(NotFound):
        registry.delete("m", 3)
    with pytest.raises(NotFound):
        registry.promote("m", 99)
    with pytest.raises(NotFound):
        registry.get("m", alias="staging")
    with pytest.raises(NotFound):
        registry.load("unknown")
    with pytest.raises(ConfigError):
        registry.register("../escape", result)
    for v in (1, 2, 4):
        registry.delete("m", v)
    assert registry.names() == [] and not list(registry.store.list("models/m/artifacts/"))


def test_concurrent_registrations_get_distinct_versions(registry: ModelRegistry, result) -> None:
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    versions: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            versions.append(registry.register("race", result.model).version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(versions) == list(range(1, threads_n + 1))
    assert [v.version for v in registry.versions("race")] == list(range(1, threads_n + 1))


def test_a_malicious_pickle_in_place_of_the_artifact_is_refused_and_never_runs(
        registry: ModelRegistry, result, tmp_path: Path) -> None:
    # the payload is real: naive unpickling creates its marker
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(Evil(control)))
    assert control.exists()

    marker = tmp_path / "pwned"
    mv = registry.register("victim", result)
    payload = pickle.dumps(Evil(marker))
    registry.store.put(mv.artifact["key"], payload)  # an attacker with write access to the store
    with pytest.raises(UnsafeModel, match="changed after registration") as info:
        registry.load("victim", version=mv.version)
    assert info.value.reason == "digest-mismatch" and not marker.exists()

    # the attacker also rewrites the recorded digest: the bytes are still never unpickled
    key = f"models/victim/versions/{mv.version:06d}.json"
    meta = json.loads(registry.store.get(key))
    meta["artifact"]["sha256"] = hashlib.sha256(payload).hexdigest()
    meta["artifact"]["size"] = len(payload)
    registry.store.put(key, json.dumps(meta).encode())
    fresh = ModelRegistry(registry.store)  # a cold instance (no cache)
    with pytest.raises(UnsafeModel, match="not in the skops format") as info:
        fresh.load("victim", version=mv.version)
    assert info.value.reason == "foreign-format" and "pickle" in str(info.value) and not marker.exists()

    # nor joblib's pickle format
    import joblib

    buf = io.BytesIO()
    joblib.dump(Evil(marker), buf)
    with pytest.raises(UnsafeModel):
        serialization.loads(buf.getvalue())
    assert not marker.exists()


def test_skops_artifacts_naming_untrusted_code_are_refused(tmp_path: Path) -> None:
    from nubes.ml.allowlist import skops_io

    sio = skops_io()  # skops.io, without letting scikit-learn's estimator walk import torch

    hostile = sio.dumps({"step": os.system, "model": LogisticRegression()})
    with pytest.raises(UnsafeModel, match="system") as info:
        serialization.loads(hostile)
    assert info.value.reason == "untrusted-types" and info.value.types
    for name in ("numpy.load", "numpy.savetxt", "builtins.eval", "subprocess.Popen", "numpy.testing.assert_equal"):
        assert not serialization.is_trusted(name), name
    for name in ("sklearn.linear_model._logistic.LogisticRegression", "numpy.dtype", "numpy.log1p",
                 "sklearn.feature_selection._univariate_selection.f_classif", "nubes.ml.train.FrameInput"):
        assert serialization.is_trusted(name), name
    not_a_zip = b"\x00" * 64
    with pytest.raises(UnsafeModel) as info:
        serialization.loads(not_a_zip)
    assert info.value.reason == "foreign-format"
    other_zip = io.BytesIO()
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(UnsafeModel, match="skops schema"):
        serialization.loads(other_zip.getvalue())


def test_models_with_untrusted_types_are_refused_at_register_time(registry: ModelRegistry) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    risky = make_pipeline(FunctionTransformer(_double), LogisticRegression()).fit(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(UnsafeModel, match="trust"):
        registry.register("custom", risky)
    trusted = ModelRegistry(registry.store, trusted=[f"{__name__}._double"])
    mv = trusted.register("custom", risky)
    assert trusted.load("custom", version=mv.version).predict(np.eye(4)).tolist() == risky.predict(np.eye(4)).tolist()
    with pytest.raises(UnsafeModel):  # a registry without that trust refuses to load it
        ModelRegistry(registry.store).load("custom", version=mv.version)


def _double(x):
    return x * 2


def test_hmac_signature_from_nubes_model_key(registry: ModelRegistry, result, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBES_MODEL_KEY", "k" * 32)
    signed = ModelRegistry(registry.store)
    mv = signed.register("signed", result)
    assert signed.load("signed").predict(np.zeros((1, 13))).shape == (1,)
    key = f"models/signed/versions/{mv.version:06d}.json"
    meta = json.loads(registry.store.get(key))
    assert len(meta["signature"]) == 64
    meta["params"]["C"] = 123.0  # any change to the metadata ...
    registry.store.put(key, json.dumps(meta).encode())
    with pytest.raises(UnsafeModel, match="signature") as info:
        ModelRegistry(registry.store).get("signed", version=mv.version)
    assert info.value.reason == "bad-signature"
    monkeypatch.delenv("NUBES_MODEL_KEY")
    unsigned = ModelRegistry(registry.store).register("plain", result)
    with pytest.raises(UnsafeModel, match="not signed"):
        ModelRegistry(registry.store, key="k" * 32).load("plain", version=unsigned.version)
    with pytest.raises(UnsafeModel, match="signature"):
        ModelRegistry(registry.store, key="another key").load("signed", version=mv.version)


def test_registry_inputs_record_catalog_etags(tmp_path: Path, result, wine: pl.DataFrame) -> None:
    app = nubes.App("reg", storage=f"file://{tmp_path}/home", catalog=tmp_path / "none.yaml")
    wine.write_parquet(tmp_path / "wine.parquet")
    app.dataset("wine", f"file://{tmp_path}/wine.parquet")
    mv = app.models.register("wine", result, inputs=["wine", f"file://{tmp_path}/wine.parquet"])
    etag = nubes.storage.open(f"file://{tmp_path}").head("wine.parquet").etag
    assert mv.inputs[0]["dataset"] == "wine" and mv.inputs[0]["objects"][0]["etag"] == etag
    assert mv.inputs[1]["objects"][0]["etag"] == etag
    with pytest.raises(ConfigError, match="neither"):
        app.models.register("wine", result, inputs=["unknown_dataset"])
    assert app.models is app.models and app.models.store is app.storage


def test_subprocess_never_imports_pickle_based_loaders(tmp_path: Path, result) -> None:
    """Loading through the registry uses skops only: pickle.loads is never called."""
    store_uri = f"file://{tmp_path}/s"
    ModelRegistry(nubes.storage.open(store_uri)).register("m", result)
    code = (
        "import pickle, nubes\n"
        "def boom(*a, **k): raise SystemExit('pickle.loads was called')\n"
        "pickle.loads = boom; pickle.load = boom\n"
        "from nubes.ml import ModelRegistry\n"
        f"m = ModelRegistry(nubes.storage.open({store_uri!r})).load('m')\n"
        "print(type(m).__name__)\n"
    )
    out = subprocess.run(check=False, args=[sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Pipeline"


def test_loading_models_does_not_import_torch() -> None:
    """skops lists scikit-learn's estimators at import by importing every sklearn module, which imports
    torch when it is installed (seconds and hundreds of MiB); nubes keeps it out, and torch, Polars and
    scikit-learn still work afterwards."""
    code = (
        "import sys\n"
        "from nubes.ml.allowlist import skops_io, builtin_names\n"
        "skops_io(); builtin_names()\n"
        "print('torch' in sys.modules)\n"
        "import polars as pl\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "print(pl.DataFrame({'a': [1.0, 2.0]})['a'].sum())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "3.0"]


def test_artifact_size_is_checked_before_and_after_the_fetch(registry: ModelRegistry, result,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    mv = registry.register("sized", result)
    size, key = mv.artifact["size"], mv.artifact["key"]
    registry.store.put(key, b"\0" * (8 << 20))  # replaced by a far larger object: never read whole
    fetches = Recording(registry.store)
    with pytest.raises(UnsafeModel, match=f"not the {size:,} bytes registered") as info:
        ModelRegistry(fetches).load("sized", version=mv.version)  # type: ignore[arg-type]
    assert info.value.reason == "digest-mismatch"
    assert [n for k, n in fetches.got if k == key] == [size + 1]

    record_key = f"models/sized/versions/{mv.version:06d}.json"
    meta = json.loads(registry.store.get(record_key))
    meta["artifact"]["size"] = 5 << 30  # the record says more than the limit: refused before any GET
    registry.store.put(record_key, json.dumps(meta).encode())
    fetches = Recording(registry.store)
    with pytest.raises(UnsafeModel, match="over the limit of") as info:
        ModelRegistry(fetches).load("sized", version=mv.version)  # type: ignore[arg-type]
    assert info.value.reason == "too-large" and "NUBES_MODEL_MAX_BYTES" in str(info.value)
    assert not [k for k, _n in fetches.got if k == key]
    meta["artifact"]["size"] = size
    registry.store.put(record_key, json.dumps(meta).encode())
    monkeypatch.setenv("NUBES_MODEL_MAX_BYTES", str(size - 1))
    with pytest.raises(UnsafeModel, match="over the limit of"):
        ModelRegistry(registry.store).load("sized", version=mv.version)
