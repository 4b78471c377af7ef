"""Machine learning on nubes: cross-validated training, features, a safe model registry, serving.

``import nubes`` does not import this package (scikit-learn and skops load only when it is used)::

    from nubes.ml import train
    result = train(LogisticRegression(), ctx.table("patients"), target="diagnosis", search={"C": [0.1, 1, 10]})
    ctx.models.register("diagnosis", result, inputs=["patients"])
    ctx.models.promote("diagnosis", 1)

Modules: :mod:`nubes.ml.train` (``train``, ``TrainResult``), :mod:`nubes.ml.pipeline` (its steps),
:mod:`nubes.ml.splits` and :mod:`nubes.ml.metrics` (checked splits, holdout metrics),
:mod:`nubes.ml.features` (lags, leads, rolling windows, differences, date parts; ``Features``, the
step that computes them inside a model), :mod:`nubes.ml.registry` (``ModelRegistry``, reached as
``app.models`` / ``ctx.models``), :mod:`nubes.ml.serialization` and :mod:`nubes.ml.allowlist` (the safe
artifact format and what an artifact may build; ``nubes.ml.trust(...)`` adds exact names),
:mod:`nubes.ml.serving` (the ``/_nubes/models`` routes) and :mod:`nubes.ml.sequence` (LSTM/GRU models
exported to ONNX, served with onnxruntime).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_EXPORTS = {
    "ModelRegistry": "registry", "ModelVersion": "registry", "UnsafeModel": "serialization",
    "BadColumns": "frames", "MissingColumns": "frames", "BadSplit": "splits", "TrainResult": "train", "train": "train",
    "trust": "allowlist", "untrust": "allowlist",
}


def __getattr__(name: str) -> Any:
    """Names load on first use, so attaching the ML extension (``import nubes``) loads no scikit-learn."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nubes.ml' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nubes.ml.{module}"), name)
    globals()[name] = value  # nubes.ml.train is the function, not the module of the same name
    return value


__all__ = ["BadColumns", "BadSplit", "MissingColumns", "ModelRegistry", "ModelVersion", "TrainResult", "UnsafeModel", "train", "trust",
           "untrust"]


class _Package(types.ModuleType):
    """``nubes.ml.train`` is the function: importing the submodule of the same name must not replace it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
