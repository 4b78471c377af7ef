"""Machine learning on nubes: cross-validated training, features, a safe model registry, serving.

``import nubes`` does not import this package (scikit-learn and skops load only when it is used)::

    from nubes.ml import train
    result = train(LogisticRegression(), ctx.table("patients"), target="diagnosis", search={"C": [0.1, 1, 10]})
    ctx.models.register("diagnosis", result, inputs=["patients"])
    ctx.models.promote("diagnosis", 1)

Modules: :mod:`nubes.ml.train` (``train``, ``TrainResult``), :mod:`nubes.ml.features` (lags, leads,
rolling windows, differences, date parts), :mod:`nubes.ml.registry` (``ModelRegistry``, reached as
``app.models`` / ``ctx.models``), :mod:`nubes.ml.serialization` (the safe artifact format), :mod:`nubes.ml.allowlist` (what an
artifact may build; ``nubes.ml.trust(...)`` adds exact names), and
:mod:`nubes.ml.serving` (the ``/_nubes/models`` routes).
"""

from nubes.ml.allowlist import trust, untrust
from nubes.ml.frames import BadColumns, MissingColumns
from nubes.ml.registry import ModelRegistry, ModelVersion
from nubes.ml.serialization import UnsafeModel
from nubes.ml.splits import BadSplit
from nubes.ml.train import TrainResult, train

__all__ = ["BadColumns", "BadSplit", "MissingColumns", "ModelRegistry", "ModelVersion", "TrainResult", "UnsafeModel", "train", "trust",
           "untrust"]
