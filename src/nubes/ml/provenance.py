"""What the registry records about a model besides its bytes: estimator, task, parameters,
input columns, library versions and the code that registered it."""

from __future__ import annotations

import contextlib
import hashlib
import os
from types import FrameType
from typing import Any

LIBRARIES = ("nubes", "scikit-learn", "numpy", "scipy", "polars", "skops", "onnxruntime")


def final(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def task(model: Any) -> str | None:
    try:
        from sklearn.base import is_classifier, is_regressor

        return "classification" if is_classifier(model) else ("regression" if is_regressor(model) else None)
    except Exception:
        return None


def final_params(model: Any) -> dict[str, Any]:
    from nubes.ml.train import _plain

    get = getattr(final(model), "get_params", None)
    return _plain(get(deep=False)) if callable(get) else {}


def features_in(model: Any) -> dict[str, str]:
    """``{column: kind}`` a model takes: its nubes input step's, else its ``feature_names_in_`` as numbers."""
    from nubes.ml.serving import input_columns

    columns = input_columns(model)
    if columns is not None:
        return columns
    names = getattr(model, "feature_names_in_", None)
    return {str(n): "number" for n in names} if names is not None else {}


def libraries() -> dict[str, str]:
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def caller_code() -> dict[str, Any] | None:
    """The module (outside nubes.ml) that called register(): its file name and SHA-256."""
    import sys

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("nubes.ml"):
            path = frame.f_globals.get("__file__")
            if not path:
                return {"module": module}
            try:
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                return {"module": module, "file": os.path.basename(path)}
            return {"module": module, "file": os.path.basename(path), "sha256": digest}
        frame = frame.f_back
    return None


__all__ = ["LIBRARIES", "caller_code", "features_in", "final", "final_params", "libraries", "qualname", "task"]
