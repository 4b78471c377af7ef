"""Sequence models (LSTM, GRU, 1-D convolutions) exported to ONNX, served like scikit-learn models.

Train where training belongs -- a job, a notebook, a lab machine with PyTorch -- and register the
exported graph; the function that serves it needs only ``onnxruntime`` (``pip install
'nubes[onnx]'``), not PyTorch::

    from nubes.ml.sequence import SequenceModel, windows

    X, y = windows(frame, ["temp_max", "wind"], 14, target="temp_max_next", order_by="date")
    net = train_my_lstm(X, y)                                   # your PyTorch code, (batch, 14, 2) in
    model = SequenceModel.from_torch(net, features=["temp_max", "wind"], window=14,
                                     order_by="date", columns={"date": "date"})
    ctx.models.register("temp-lstm", model, metrics={"rmse": ...})

From Keras, export with ``tf2onnx`` (``tf2onnx.convert.from_keras(model)``) and pass the bytes:
``SequenceModel(onnx_bytes, features=[...], window=14)``.

The model is registered like any other: same registry, versions, aliases, SHA-256 digest and
HMAC (``NUBES_MODEL_KEY``) checks; the window, features, scaling and classes are part of the
signed version metadata. The graph is checked before a session is created
(:mod:`nubes.ml.onnx_graph`: size, operator allow-list, no external data). ``POST
/_nubes/models/{name}/predict`` takes *raw rows* (records, columns, CSV or Parquet with the
feature columns, plus ``order_by`` / ``by`` if declared): rows are ordered, grouped, scaled and cut
into sliding windows of ``window`` steps here, and each row gets the prediction of the window that
ends at it -- ``null`` for the first ``window - 1`` rows of each group, or where a value is missing.
Send the last ``window`` rows to get one forecast.

``task="regression"``: the graph outputs one value per window (un-scaled with ``target_scale``).
``task="classification"``: it outputs logits (``output="logits"``: softmax, or a sigmoid for a
single column) or probabilities (``output="probabilities"``) over ``classes``.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, cast

from nubes.errors import ConfigError

FORMAT = "onnx"
MEDIA_TYPE = "application/onnx"
TASKS = ("regression", "classification")
MAX_WINDOW = 10_000


def _group_order(frame: Any, order_by: str | None, by: str | None) -> tuple[Any, list[Any]]:
    """(row positions in sequence order, [positions of each group]) for a Polars frame."""
    import numpy as np
    import polars as pl

    index = frame.with_row_index("__row")
    keys = [k for k in (by, order_by) if k is not None]
    if keys:
        index = index.sort(keys, maintain_order=True, nulls_last=True)
    order = index["__row"].to_numpy()
    if by is None:
        return order, [order]
    groups = index.select(pl.col(by).rle_id()).to_series().to_numpy()
    cuts = np.flatnonzero(np.diff(groups)) + 1
    return order, np.split(order, cuts)


def windows(frame: Any, features: Sequence[str], window: int, *, target: str | None = None,
            order_by: str | None = None, by: str | None = None) -> tuple[Any, Any]:
    """``(X, y)`` for training: ``X`` of shape ``(n, window, len(features))`` (float32), one sliding
    window per row that ends a complete window of its group (in ``order_by`` order), and ``y`` the
    ``target`` at that row (``None`` without a target). Windows with a missing value are dropped.
    Serving cuts windows the same way, so a model trained on these takes what the route sends."""
    import numpy as np

    X, ends = _windows(frame, list(features), window, order_by, by)
    if target is None:
        return X, None
    y = frame[target].cast(float).to_numpy()[ends]
    keep = ~np.isnan(y)
    return X[keep], y[keep].astype(np.float32)


def _windows(frame: Any, features: list[str], window: int, order_by: str | None, by: str | None) -> tuple[Any, Any]:
    """All complete windows and the input position of the row each ends at."""
    import numpy as np
    import polars as pl

    values = frame.select([pl.col(f).cast(pl.Float64) for f in features]).to_numpy()
    _, groups = _group_order(frame, order_by, by)
    chunks, ends = [], []
    for positions in groups:
        if len(positions) < window:
            continue
        seq = values[positions]
        view = np.lib.stride_tricks.sliding_window_view(seq, (window, len(features)))[:, 0]
        complete = ~np.isnan(view).any(axis=(1, 2))
        chunks.append(view[complete])
        ends.append(positions[window - 1:][complete])
    if not chunks:
        return np.empty((0, window, len(features)), dtype=np.float32), np.empty(0, dtype=np.int64)
    return np.concatenate(chunks).astype(np.float32), np.concatenate(ends)


class SequenceModel:
    """An ONNX sequence model with what serving needs to cut raw rows into its input windows."""

    nubes_sequence = True  # recognised by nubes.ml.serving without importing this module

    def __init__(self, onnx_model: bytes | str | os.PathLike[str], *, features: Sequence[str], window: int,
                 task: str = "regression", classes: Sequence[Any] | None = None, output: str = "logits",
                 target: str | None = None, order_by: str | None = None, by: str | None = None,
                 columns: Mapping[str, str] | None = None, scale: Mapping[str, Sequence[float]] | None = None,
                 target_scale: Sequence[float] | None = None, description: str = "") -> None:
        from nubes.ml import onnx_graph

        if isinstance(onnx_model, bytes | bytearray):
            self.onnx = bytes(onnx_model)
        else:
            with open(os.fspath(onnx_model), "rb") as f:
                self.onnx = f.read()
        self.features = [str(f) for f in features]
        if not self.features or len(set(self.features)) != len(self.features):
            raise ConfigError("features= names the model's input columns, each once")
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= MAX_WINDOW:
            raise ConfigError(f"window={window!r}: the number of time steps per input, 1..{MAX_WINDOW}")
        if task not in TASKS:
            raise ConfigError(f"task={task!r}: use one of {', '.join(TASKS)}")
        if output not in ("logits", "probabilities"):
            raise ConfigError(f"output={output!r}: 'logits' or 'probabilities'")
        if task == "classification" and not classes:
            raise ConfigError("a classification sequence model needs classes=[...] in the order of its outputs")
        self.window, self.task, self.output, self.target = window, task, output, target
        self.classes = list(classes) if classes is not None else None
        self.order_by, self.by = order_by, by
        kinds = dict(columns or {})
        for name in self.features:
            kinds.setdefault(name, "number")
        for key in (order_by, by):
            if key is not None:
                kinds.setdefault(key, "number" if key in self.features else "category")
        self.columns = kinds
        self.scale = {k: (float(v[0]), float(v[1])) for k, v in (scale or {}).items()}
        self.target_scale = (float(target_scale[0]), float(target_scale[1])) if target_scale else None
        for name, (_, std) in [*self.scale.items(), *([("target", self.target_scale)] if self.target_scale else [])]:
            if not math.isfinite(std) or std == 0:
                raise ConfigError(f"scale of {name!r}: (mean, std) with a finite, non-zero std")
        self.description = description
        try:
            self.graph = onnx_graph.check(self.onnx, features=len(self.features))
        except onnx_graph.BadGraph as exc:
            raise ConfigError(f"this ONNX model cannot be served: {exc}") from None
        if self.graph["steps"] not in (None, window):
            raise ConfigError(f"the ONNX model takes {self.graph['steps']} steps per input, but window={window}")
        self._session: Any = None
        self._lock = threading.Lock()
        self._trial()

    def _trial(self) -> None:
        """Run the graph once on zeros: a graph that cannot run, or whose output does not fit the task,
        is refused when it is made or loaded, not at a request."""
        import numpy as np

        try:
            out = self.run_windows(np.zeros((2, self.window, len(self.features)), dtype=np.float32), scale=False)
        except Exception as exc:  # onnxruntime's own error types (Fail, InvalidArgument ...)
            raise ConfigError(f"the ONNX model does not run on (2, {self.window}, {len(self.features)}) input: "
                              f"{str(exc).splitlines()[0][:300]}") from None
        want = len(self.classes or []) if self.task == "classification" else 1
        ok = out.shape[1] == want or (self.task == "classification" and want == 2 and out.shape[1] == 1
                                      and self.output == "logits")
        if out.shape[0] != 2 or not ok:
            raise ConfigError(f"the ONNX model outputs {out.shape[1]} value(s) per window; a {self.task} model with "
                              f"{want} {'classes' if self.task == 'classification' else 'target'} needs {want}")

    # -- the registry's view ----------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """What the registry stores (signed) next to the ONNX bytes to rebuild and serve the model."""
        return {"features": self.features, "window": self.window, "task": self.task, "classes": self.classes,
                "output": self.output, "target": self.target, "order_by": self.order_by, "by": self.by,
                "columns": self.columns, "scale": {k: list(v) for k, v in self.scale.items()},
                "target_scale": list(self.target_scale) if self.target_scale else None, "ops": self.graph["ops"],
                "opset": self.graph["opset"], "description": self.description}

    @classmethod
    def from_artifact(cls, data: bytes, spec: Mapping[str, Any], *, what: str = "model") -> SequenceModel:
        """Rebuild a registered model; :class:`~nubes.ml.UnsafeModel` if the graph or its spec is refused."""
        from nubes.ml.serialization import UnsafeModel

        known = ("features", "window", "task", "classes", "output", "target", "order_by", "by", "columns", "scale",
                 "target_scale", "description")
        try:
            return cls(data, **{k: spec[k] for k in known if k in spec})
        except (ConfigError, TypeError, ValueError, KeyError) as exc:
            raise UnsafeModel(f"refusing to load {what}: {exc}", reason="bad-graph") from None

    @classmethod
    def from_torch(cls, module: Any, *, features: Sequence[str], window: int, **kwargs: Any) -> SequenceModel:
        """Export a PyTorch module taking ``(batch, window, len(features))`` to ONNX and wrap it."""
        return cls(export_torch(module, window=window, width=len(features)), features=features, window=window, **kwargs)

    def predict(self, rows: Any) -> Any:
        """One prediction per row (in the rows' order): NaN / None where no complete window ends."""
        return self._predict(rows)[0]

    def predict_proba(self, rows: Any) -> Any:
        """Class probabilities per row (NaN rows where no complete window ends); classification only."""
        if self.task != "classification":
            raise AttributeError("predict_proba is for classification sequence models")
        return self._predict(rows)[1]

    def answer(self, rows: Any) -> dict[str, Any]:
        """The predict route's answer for ``rows`` (see the module docstring)."""
        predictions, proba, ends = self._predict(rows)
        out: dict[str, Any] = {"window": self.window, "windows": len(ends)}
        if self.task == "regression":
            out["predictions"] = [None if math.isnan(v) else v for v in predictions.tolist()]
            return out
        out["predictions"] = [None if p is None else (p.item() if hasattr(p, "item") else p) for p in predictions.tolist()]
        out["probabilities"] = [None if any(math.isnan(x) for x in row) else row for row in proba.tolist()]
        out["classes"] = self.classes
        return out

    # -- running ----------------------------------------------------------------------------------
    def frame(self, rows: Any) -> Any:
        """``rows`` as a Polars frame of the declared columns (MissingColumns / BadColumns name problems)."""
        from nubes.ml.frames import to_frame

        return to_frame(rows, self.columns)

    def _session_(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime as ort

                    options = ort.SessionOptions()
                    options.intra_op_num_threads = 1
                    options.inter_op_num_threads = 1
                    self._session = ort.InferenceSession(self.onnx, sess_options=options,
                                                         providers=["CPUExecutionProvider"])
        return self._session

    def run_windows(self, X: Any, *, scale: bool = True) -> Any:
        """The graph's first output for windows ``X`` (scaled here), as float64 of shape (n, k)."""
        import numpy as np

        X = np.asarray(X, dtype=np.float32)
        if self.scale and scale:
            X = X.copy()
            for i, name in enumerate(self.features):
                if name in self.scale:
                    mean, std = self.scale[name]
                    X[:, :, i] = (X[:, :, i] - mean) / std
        out = np.asarray(self._session_().run(None, {self.graph["input"]: X})[0], dtype=np.float64)
        return out.reshape(len(X), -1)

    def _predict(self, rows: Any) -> tuple[Any, Any, Any]:
        import numpy as np

        frame = self.frame(rows)
        X, ends = _windows(frame, self.features, self.window, self.order_by, self.by)
        n = frame.height
        raw = self.run_windows(X) if len(X) else np.empty((0, 1))
        if self.task == "regression":
            values = raw[:, 0]
            if self.target_scale:
                values = values * self.target_scale[1] + self.target_scale[0]
            predictions = np.full(n, np.nan)
            predictions[ends] = values
            return predictions, None, ends
        proba = self._probabilities(raw)
        full = np.full((n, len(self.classes or [])), np.nan)
        full[ends] = proba
        labels = np.empty(n, dtype=object)
        labels[ends] = np.asarray(self.classes, dtype=object)[np.argmax(proba, axis=1)] if len(ends) else []
        return labels, full, ends

    def _probabilities(self, raw: Any) -> Any:
        import numpy as np

        k = len(self.classes or [])
        if self.output == "probabilities":
            proba = raw
        elif raw.shape[1] == 1 and k == 2:
            p = 1 / (1 + np.exp(-raw[:, 0]))
            proba = np.stack([1 - p, p], axis=1)
        else:
            shifted = raw - raw.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            proba = e / e.sum(axis=1, keepdims=True)
        if proba.shape[1] != k:
            raise ValueError(f"the model outputs {proba.shape[1]} values per window for {k} classes")
        return proba

    def __repr__(self) -> str:
        return (f"<SequenceModel {self.task} window={self.window} features={self.features} "
                f"ops={','.join(self.graph['ops'])}>")


def export_torch(module: Any, *, window: int, width: int) -> bytes:
    """ONNX bytes of a PyTorch module taking ``(batch, window, width)`` float tensors (batch dynamic).

    Uses the TorchScript exporter (no extra packages); run it where PyTorch is installed -- the
    serving function needs only onnxruntime."""
    try:
        import torch
    except ImportError as exc:
        from nubes.errors import BackendMissing

        raise BackendMissing("exporting a PyTorch model needs torch where you train: pip install torch") from exc
    import warnings

    module = module.eval()
    example = torch.zeros(2, window, width)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), cast(Any, buf), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    return buf.getvalue()


__all__ = ["FORMAT", "MEDIA_TYPE", "SequenceModel", "export_torch", "windows"]
