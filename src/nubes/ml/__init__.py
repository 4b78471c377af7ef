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

from nubes.ml.allowlist import trust, untrust
from nubes.ml.frames import BadColumns, MissingColumns
from nubes.ml.registry import ModelRegistry, ModelVersion
from nubes.ml.serialization import UnsafeModel
from nubes.ml.splits import BadSplit
from nubes.ml.train import TrainResult, train

__all__ = ["BadColumns", "BadSplit", "MissingColumns", "ModelRegistry", "ModelVersion", "TrainResult", "UnsafeModel", "train", "trust",
           "untrust"]
