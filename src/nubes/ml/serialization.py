"""Safe model artifacts: the skops format with an explicit trusted-type policy, never pickle.

Threat model. Model artifacts live in an object store (the app's home store by default). Anyone
who can write to that store -- a leaked key, a compromised CI job, a careless copy -- can replace
an artifact. With :mod:`pickle` (and joblib), *loading* such an object runs any code it names:
its ``__reduce__`` is a function call chosen by the attacker. nubes therefore never unpickles a
model. Artifacts are written with ``skops.io`` (a zip of a JSON schema plus ``.npy`` arrays saved
with ``allow_pickle=False``), and are read back by :func:`loads`, which

1. refuses anything that is not a skops zip (a pickle, a joblib file, random bytes) before
   parsing it;
2. lists every type and function the artifact would construct or reference
   (``skops.io.get_untrusted_types``) and refuses the artifact if one of them falls outside the
   policy below, naming it -- the trusted list is built here, from code, never read from the
   artifact or its metadata (both live in the store the attacker may control);
3. only then calls ``skops.io.loads(data, trusted=...)`` with exactly the names that passed.

The policy (:func:`is_trusted`): classes defined in scikit-learn, NumPy and SciPy (skops rebuilds
them from their state with ``cls.__new__`` + ``__setstate__``; no constructor of the attacker's
choosing runs), NumPy/SciPy ufuncs, scikit-learn's scoring functions (``sklearn.metrics``,
``sklearn.feature_selection``: what ``SelectKBest(score_func=...)`` stores), the transformers nubes
itself puts in a pipeline (:data:`NUBES_TYPES`), and whatever the app adds explicitly with
:func:`trust` or the ``NUBES_MODEL_TRUST`` environment variable (comma-separated names or
``prefix.*`` patterns, e.g. ``xgboost.*``) -- for estimators from other libraries. Functions
elsewhere in NumPy/SciPy/scikit-learn (``numpy.load``, ``numpy.savetxt`` ...) are *not* trusted:
a ``FunctionTransformer`` could call them at predict time.

The registry adds two integrity layers on top (see :mod:`nubes.ml.registry`): the SHA-256 of the
artifact is recorded in the version's metadata and checked before parsing, and when
``NUBES_MODEL_KEY`` is set, the metadata (digest included) carries an HMAC that is verified first.
"""

from __future__ import annotations

import fnmatch
import importlib
import io
import os
import threading
import zipfile
from collections.abc import Iterable
from typing import Any

from nubes.errors import ConfigError, NubesError

FORMAT = "skops"
MEDIA_TYPE = "application/vnd.nubes.model+skops"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PREFIXES = (b"\x80", b"(", b"c", b"]", b"}")

#: The transformers nubes' own pipelines contain (see :mod:`nubes.ml.train`).
NUBES_TYPES = frozenset({"nubes.ml.train.FrameInput", "nubes.ml.train.DateParts"})
_TRUSTED_ROOTS = ("sklearn", "numpy", "scipy")
_TRUSTED_FUNCTION_MODULES = ("sklearn.metrics", "sklearn.feature_selection")

_extra: set[str] = set()
_extra_lock = threading.Lock()
_decisions: dict[str, bool] = {}


class UnsafeModel(NubesError):
    """An artifact was refused: not written by nubes, tampered with, or naming untrusted types.

    ``reason`` is a short code (``"foreign-format"``, ``"untrusted-types"``, ``"digest-mismatch"``,
    ``"bad-signature"``, ``"unsigned"``, ``"corrupt"``); ``types`` lists the refused type names, if any.
    """

    def __init__(self, message: str, *, reason: str, types: Iterable[str] = ()) -> None:
        self.reason = reason
        self.types = list(types)
        super().__init__(message)


def trust(*names: str) -> None:
    """Trust more type names process-wide: exact names (``"xgboost.sklearn.XGBRegressor"``) or
    ``"prefix.*"`` patterns. Only trust libraries whose classes you would import anyway."""
    with _extra_lock:
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"trust() takes type names such as 'xgboost.sklearn.XGBRegressor', not {name!r}")
            _extra.add(name.strip())
        _decisions.clear()


def _extra_patterns() -> set[str]:
    env = {p.strip() for p in os.environ.get("NUBES_MODEL_TRUST", "").split(",") if p.strip()}
    with _extra_lock:
        return env | _extra


def is_trusted(name: str, extra: Iterable[str] = ()) -> bool:
    """True if the policy (module docstring) lets an artifact construct or reference ``name``."""
    patterns = _extra_patterns() | set(extra)
    if name in patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns if "*" in p):
        return True
    if name in NUBES_TYPES:
        return True
    cached = _decisions.get(name)
    if cached is None:
        cached = _decisions[name] = _policy(name)
    return cached


def _policy(name: str) -> bool:
    root = name.split(".", 1)[0]
    parts = name.split(".")
    if root not in _TRUSTED_ROOTS or not all(part.isidentifier() for part in parts):
        return False
    if any(part in ("tests", "testing", "conftest", "distutils", "f2py") for part in parts):
        return False  # never import test or build tooling because an artifact names it
    obj = _resolve(name)
    if obj is None:
        return False
    if isinstance(obj, type):
        return True
    import numpy as np

    if isinstance(obj, np.ufunc) or type(obj).__name__ == "ufunc":
        return True
    module = getattr(obj, "__module__", "") or ""
    return callable(obj) and module.startswith(_TRUSTED_FUNCTION_MODULES)


def _resolve(name: str) -> Any:
    """The object ``name`` refers to, importing only modules of the trusted roots (never others)."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _skops() -> Any:
    try:
        import skops.io as sio
    except ImportError as exc:
        from nubes.errors import BackendMissing

        raise BackendMissing("the model registry saves models with skops: pip install skops") from exc
    return sio


def dumps(model: Any, *, extra: Iterable[str] = ()) -> bytes:
    """The artifact bytes for ``model``; raises :class:`UnsafeModel` if it could not be loaded back
    under the policy (so a model that would be refused at load time is refused at register time)."""
    sio = _skops()

    try:
        data = sio.dumps(model, compression=zipfile.ZIP_DEFLATED)
    except Exception as exc:  # skops: UnsupportedTypeException, TypeError ...
        raise UnsafeModel(f"cannot save {type(model).__name__} in the safe skops format: {exc}", reason="unsupported") from exc
    refused = [t for t in sio.get_untrusted_types(data=data) if not is_trusted(t, extra)]
    if refused:
        raise UnsafeModel(
            "this model contains types outside nubes' trusted list, so it could not be loaded back: "
            + ", ".join(refused)
            + "; if you trust their library, call nubes.ml.serialization.trust('package.*') "
            "or set NUBES_MODEL_TRUST before registering and before serving",
            reason="untrusted-types",
            types=refused,
        )
    return data


def loads(data: bytes, *, extra: Iterable[str] = (), what: str = "model artifact") -> Any:
    """The model in ``data`` (bytes :func:`dumps` wrote), or :class:`UnsafeModel`; never unpickles."""
    data = bytes(data)
    if not data.startswith(_ZIP_MAGIC):
        hint = " (it looks like a Python pickle)" if data[:1] in _PICKLE_PREFIXES else ""
        raise UnsafeModel(
            f"refusing to load {what}: it is not in the skops format nubes writes{hint}; "
            "nubes never unpickles model bytes",
            reason="foreign-format",
        )
    sio = _skops()

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if "schema.json" not in archive.namelist():
                raise UnsafeModel(f"refusing to load {what}: a zip without a skops schema", reason="foreign-format")
        found = sio.get_untrusted_types(data=data)
    except UnsafeModel:
        raise
    except Exception as exc:
        raise UnsafeModel(f"refusing to load {what}: unreadable skops archive ({type(exc).__name__}: {exc})",
                          reason="corrupt") from exc
    refused = [t for t in found if not is_trusted(t, extra)]
    if refused:
        raise UnsafeModel(
            f"refusing to load {what}: it would construct or call types outside the trusted list: "
            + ", ".join(refused),
            reason="untrusted-types",
            types=refused,
        )
    try:
        return sio.loads(data, trusted=found)
    except Exception as exc:
        raise UnsafeModel(f"refusing to load {what}: {type(exc).__name__}: {exc}", reason="corrupt") from exc


__all__ = ["FORMAT", "MEDIA_TYPE", "NUBES_TYPES", "UnsafeModel", "dumps", "is_trusted", "loads", "trust"]
