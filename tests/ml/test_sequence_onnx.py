"""Sequence models in ONNX: registered like scikit-learn models (digest, HMAC, versions, aliases), graphs
checked before a session exists (size, operator allow-list, no external data), and served from raw
rows cut into windows exactly as onnxruntime computes them on the same windows."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX models need the onnx extra: pip install 'nubes[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="ONNX models need the onnx extra: pip install 'nubes[onnx]'")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import nubes  # noqa: E402
from nubes.errors import ConfigError  # noqa: E402
from nubes.ml import ModelRegistry, UnsafeModel  # noqa: E402
from nubes.ml.sequence import SequenceModel, windows  # noqa: E402
from nubes.testing import Client  # noqa: E402

WINDOW, WIDTH, HIDDEN = 5, 2, 4


def lstm_graph(outputs: int = 1, *, op: str = "LSTM", seed: int = 0, extra_node: object = None) -> bytes:
    """A small LSTM model built with onnx.helper: (batch, WINDOW, WIDTH) -> last hidden state -> Gemm."""
    rng = np.random.default_rng(seed)
    gates = 4 if op == "LSTM" else 3
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (1, gates * HIDDEN, WIDTH)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1, gates * HIDDEN, HIDDEN)).astype(np.float32), "R"),
        numpy_helper.from_array(rng.normal(0, 0.1, (1, 2 * gates * HIDDEN)).astype(np.float32), "B"),
        numpy_helper.from_array(rng.normal(0, 0.5, (HIDDEN, outputs)).astype(np.float32), "Wo"),
        numpy_helper.from_array(rng.normal(0, 0.1, (outputs,)).astype(np.float32), "bo"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node(op, ["xt", "W", "R", "B"], ["Y", "Yh", "Yc"] if op == "LSTM" else ["Y", "Yh"], hidden_size=HIDDEN),
        helper.make_node("Squeeze", ["Yh", "axis0"], ["h"]),
        helper.make_node("Gemm", ["h", "Wo", "bo"], ["y"]),
    ]
    if extra_node is not None:
        nodes.append(extra_node)
    graph = helper.make_graph(nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WINDOW, WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def series(n: int = 40, groups: tuple[str, ...] = ("a", "b")) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for g in groups:
        for i in range(n):
            rows.append({"sensor": g, "day": date(2024, 1, 1) + timedelta(days=i), "temp": float(rng.normal(10, 3)),
                         "wind": float(rng.normal(4, 1))})
    return pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=3)  # rows arrive in any order


def reference(data: bytes, frame: pl.DataFrame, by: str, order_by: str, features: list[str]) -> dict[tuple[str, date], np.ndarray]:
    """onnxruntime on windows cut here by hand: {(group, last day): output}."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    out = {}
    for (g,), part in frame.sort(order_by).group_by([by], maintain_order=True):
        values = part.select(features).to_numpy().astype(np.float32)
        days = part[order_by].to_list()
        for end in range(WINDOW - 1, len(values)):
            x = values[end - WINDOW + 1:end + 1][None]
            out[(g, days[end])] = session.run(None, {"x": x})[0][0]
    return out


@pytest.fixture
def app(tmp_path: Path) -> nubes.App:
    return nubes.App("sequences", storage=f"file://{tmp_path}/home")


def test_a_forecaster_is_registered_and_served_from_raw_rows(app: nubes.App) -> None:
    data = lstm_graph()
    model = SequenceModel(data, features=["temp", "wind"], window=WINDOW, order_by="day", by="sensor",
                          columns={"day": "date"}, target="temp_next")
    mv = app.models.register("temp-lstm", model, metrics={"rmse": 1.0})
    assert mv.artifact["format"] == "onnx" and mv.artifact["key"].endswith(".onnx") and mv.estimator == "onnx:LSTM"
    assert mv.training["sequence"]["window"] == WINDOW and mv.task == "regression"
    assert mv.features_in == {"temp": "number", "wind": "number", "day": "date", "sensor": "category"}
    frame = series()
    client = Client(app)
    body = frame.with_columns(pl.col("day").cast(pl.String)).to_dicts()
    r = client.post("/_nubes/models/temp-lstm/predict", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["window"] == WINDOW and answer["windows"] == 2 * (40 - WINDOW + 1)
    expected = reference(data, frame, "sensor", "day", ["temp", "wind"])
    for row, value in zip(frame.iter_rows(named=True), answer["predictions"], strict=True):
        key = (row["sensor"], row["day"])
        if key in expected:
            assert value == pytest.approx(float(expected[key][0]), rel=1e-6, abs=1e-6)
        else:
            assert value is None  # fewer than WINDOW days of history before it
    # CSV works the same way; the last WINDOW rows of one series give one forecast
    tail = frame.filter(pl.col("sensor") == "a").sort("day").tail(WINDOW)
    one = client.post("/_nubes/models/temp-lstm/predict", content=tail.write_csv(), headers={"content-type": "text/csv"}).json()
    assert one["predictions"][:-1] == [None] * (WINDOW - 1) and one["predictions"][-1] == pytest.approx(
        float(expected[("a", tail["day"][-1])][0]), rel=1e-6)
    missing = client.post("/_nubes/models/temp-lstm/predict", json=[{k: v for k, v in r.items() if k != "wind"} for r in body])
    assert missing.status_code == 422 and missing.json()["missing"] == ["wind"]
    assert client.get("/_nubes/models").json()["models"][0]["estimator"] == "onnx:LSTM"


def test_a_classifier_answers_classes_and_probabilities(app: nubes.App) -> None:
    data = lstm_graph(outputs=3, op="GRU", seed=2)
    model = SequenceModel(data, features=["temp", "wind"], window=WINDOW, task="classification",
                          classes=["calm", "breezy", "storm"], order_by="day", by="sensor", columns={"day": "date"})
    app.models.register("weather-gru", model)
    frame = series(n=12)
    r = Client(app).post("/_nubes/models/weather-gru/predict", json=frame.with_columns(pl.col("day").cast(pl.String)).to_dicts())
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["classes"] == ["calm", "breezy", "storm"]
    expected = reference(data, frame, "sensor", "day", ["temp", "wind"])
    for row, label, proba in zip(frame.iter_rows(named=True), answer["predictions"], answer["probabilities"], strict=True):
        key = (row["sensor"], row["day"])
        if key not in expected:
            assert label is None and proba is None
            continue
        logits = expected[key].astype(np.float64)
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert proba == pytest.approx(softmax.tolist(), rel=1e-5) and label == answer["classes"][int(np.argmax(softmax))]


def test_tampering_is_caught_by_digest_and_hmac(app: nubes.App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBES_MODEL_KEY", "s" * 32)
    registry = ModelRegistry(app.storage)
    mv = registry.register("signed-lstm", SequenceModel(lstm_graph(), features=["temp", "wind"], window=WINDOW))
    assert mv.signed and registry.load("signed-lstm").window == WINDOW
    other = lstm_graph(seed=9)
    app.storage.put(mv.artifact["key"], other)
    with pytest.raises(UnsafeModel) as info:
        ModelRegistry(app.storage).load("signed-lstm")
    assert info.value.reason == "digest-mismatch"
    key = f"models/signed-lstm/versions/{mv.version:06d}.json"
    meta = json.loads(app.storage.get(key))
    meta["artifact"]["sha256"] = hashlib.sha256(other).hexdigest()
    meta["training"]["sequence"]["window"] = 3  # and the window, to confuse serving
    app.storage.put(key, json.dumps(meta).encode())
    with pytest.raises(UnsafeModel) as info:
        ModelRegistry(app.storage).load("signed-lstm")
    assert info.value.reason == "bad-signature"


def test_graphs_are_checked_before_a_session_exists(app: nubes.App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="RandomNormal"):
        SequenceModel(lstm_graph(extra_node=helper.make_node("RandomNormal", [], ["noise"], shape=[1])),
                      features=["temp", "wind"], window=WINDOW)
    custom = helper.make_node("Evil", ["y"], ["z"], domain="com.example")
    with pytest.raises(ConfigError, match=r"custom domain|operator sets"):
        SequenceModel(lstm_graph(extra_node=custom), features=["temp", "wind"], window=WINDOW)
    with pytest.raises(ConfigError, match="takes 2 features"):
        SequenceModel(lstm_graph(), features=["temp", "wind", "rain"], window=WINDOW)
    with pytest.raises(ConfigError, match="steps per input"):
        SequenceModel(lstm_graph(), features=["temp", "wind"], window=WINDOW + 1)
    with pytest.raises(ConfigError, match="not an ONNX model"):
        SequenceModel(b"\x00" * 100, features=["temp"], window=2)
    with pytest.raises(ConfigError, match="does not run"):  # an inconsistent graph fails its trial run, not a request
        SequenceModel(_wrong_weights(), features=["temp", "wind"], window=WINDOW)
    with pytest.raises(ConfigError, match="outputs 1 value"):
        SequenceModel(lstm_graph(), features=["temp", "wind"], window=WINDOW, task="classification", classes=["a", "b", "c"])
    # a tensor stored outside the file: the runtime would open a path chosen by the file
    model = onnx.load_from_string(lstm_graph())
    weights = model.graph.initializer[0]
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    weights.ClearField("raw_data")
    with pytest.raises(ConfigError, match="external data"):
        SequenceModel(model.SerializeToString(), features=["temp", "wind"], window=WINDOW)
    monkeypatch.setenv("NUBES_ONNX_MAX_BYTES", "100")
    with pytest.raises(ConfigError, match="NUBES_ONNX_MAX_BYTES"):
        SequenceModel(lstm_graph(), features=["temp", "wind"], window=WINDOW)
    monkeypatch.delenv("NUBES_ONNX_MAX_BYTES")
    # a store writer swaps in a graph with a refused operator and fixes the digest: refused at load, 500 problem
    mv = app.models.register("victim", SequenceModel(lstm_graph(), features=["temp", "wind"], window=WINDOW))
    evil = lstm_graph(extra_node=helper.make_node("RandomNormal", [], ["noise"], shape=[1]))
    app.storage.put(mv.artifact["key"], evil)
    key = f"models/victim/versions/{mv.version:06d}.json"
    meta = json.loads(app.storage.get(key))
    meta["artifact"]["sha256"] = hashlib.sha256(evil).hexdigest()
    meta["artifact"]["size"] = len(evil)  # and the size the registry checks before fetching
    app.storage.put(key, json.dumps(meta).encode())
    r = Client(nubes.App("sequences", storage=app.storage_uri)).post("/_nubes/models/victim/predict",
                                                                    json=[{"temp": 1.0, "wind": 2.0}] * WINDOW)
    assert r.status_code == 500 and r.json()["reason"] == "bad-graph" and "RandomNormal" in r.json()["detail"]


def test_windows_for_training_match_serving() -> None:
    frame = series(n=10)
    X, y = windows(frame.with_columns(pl.col("temp").shift(-1).over("sensor", order_by="day").alias("next")),
                   ["temp", "wind"], WINDOW, target="next", order_by="day", by="sensor")
    assert X.shape == (2 * (10 - WINDOW + 1) - 2, WINDOW, 2) and X.dtype == np.float32 and len(y) == len(X)
    first = frame.filter(pl.col("sensor") == "a").sort("day").head(WINDOW).select("temp", "wind").to_numpy()
    assert np.allclose(X[0], first)


def _wrong_weights() -> bytes:
    model = onnx.load_from_string(lstm_graph())
    w = model.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(np.zeros((1, 3 * HIDDEN, WIDTH), dtype=np.float32), "W"))  # GRU-sized for an LSTM
    return model.SerializeToString()
