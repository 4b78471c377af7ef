"""What a model artifact may build: an allow-list of exact names, and the audit of a skops schema against it.

A skops artifact is a zip whose ``schema.json`` is a tree of *nodes*. Each node names a loader
(``ObjectNode``, ``FunctionNode``, ``ConstructorFromReduceNode`` ...) and a type or function
(``__module__`` + ``__class__``) that the loader imports and then constructs, calls or returns.
:func:`audit` walks that tree *before anything is imported or built* and refuses every node whose
``(loader, name)`` pair is not on the list below. Names are compared exactly: there are no
prefixes, so ``numpy.memmap``, ``sklearn.callback._transport.Listener`` (``multiprocessing``'s,
imported there) or ``sklearn.datasets._openml.TemporaryDirectory`` are refused although they sit
under ``numpy``/``sklearn``.

The built-in list (:func:`builtin_names`) is what :func:`nubes.ml.train` and scikit-learn models
need, per loader:

* ``ObjectNode`` (``cls.__new__`` + ``__setstate__``; no constructor runs): every scikit-learn
  estimator (``sklearn.utils.all_estimators``), the internal classes fitted estimators hold
  (losses and links, ``_BinMapper``, calibrators, MLP optimizers, Gaussian-process kernels,
  cross-validation splitters and scorers), ``TreePredictor`` (its node arrays are bounds-checked
  after loading by :mod:`nubes.ml.structures`), ``scipy.interpolate.BSpline`` and nubes' own
  pipeline steps (:data:`NUBES_TYPES`);
* ``TreeNode``: ``sklearn.tree._tree.Tree`` (also bounds-checked after loading); ``LossNode``:
  the Cython losses of ``sklearn._loss._loss`` and ``sklearn.linear_model._sgd_fast``;
* containers: ``dict``, ``OrderedDict``, ``defaultdict``, scikit-learn's ``Bunch``, ``list``,
  ``tuple`` (not named tuples), ``set``, ``slice``, ``bytes``, ``bytearray``, ``functools.partial``;
* NumPy: ``ndarray`` and its scalar types, ``dtype``, ``MaskedArray``, ``RandomState``,
  ``Generator`` with a real bit generator; SciPy: the sparse matrix and array classes;
* ``FunctionNode``: NumPy ufuncs (pure arithmetic), scikit-learn's univariate scoring functions
  (what ``SelectKBest`` stores) and metric functions (what scorers store);
* ``TypeNode`` (a type used as a value, e.g. ``dtype=np.float64``): the builtin scalar and
  container types and NumPy's scalar types.

``ConstructorFromReduceNode`` (calls ``cls(*args)`` with arguments from the file),
``MethodNode`` and ``OperatorFuncNode`` are never allowed by default. KD/ball trees
(``KNeighbors*`` with a tree algorithm) are not on the list (their index arrays are not checked);
use ``algorithm="brute"`` or trust them explicitly.

Anything else is added by the application, explicitly and exactly: :func:`trust` (classes,
functions or their full dotted names), ``ModelRegistry(trusted=[...])``, or the
``NUBES_MODEL_TRUST`` environment variable (comma-separated full names). Patterns such as
``xgboost.*`` are refused: trust the classes you use, one by one.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import json
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from nubes.errors import ConfigError

ENV = "NUBES_MODEL_TRUST"
#: nubes' own pipeline steps (see nubes.ml.train and nubes.ml.pipeline).
NUBES_TYPES = frozenset({
    "nubes.ml.pipeline.FrameInput", "nubes.ml.pipeline.DateParts", "nubes.ml.pipeline.SequenceFeatures",
    "nubes.ml.pipeline.KindSelector",
    "nubes.ml.train.FrameInput", "nubes.ml.train.DateParts",  # the names artifacts written before 0.2 use
})
MAX_NODES = 2_000_000
MAX_DEPTH = 400
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")

_CONTAINERS = {
    "DictNode": {"builtins.dict", "collections.OrderedDict", "sklearn.utils._bunch.Bunch"},
    "DefaultDictNode": {"collections.defaultdict"},
    "ListNode": {"builtins.list"},
    "TupleNode": {"builtins.tuple"},
    "SetNode": {"builtins.set"},
    "SliceNode": {"builtins.slice"},
    "BytesNode": {"builtins.bytes"},
    "BytearrayNode": {"builtins.bytearray"},
    "PartialNode": {"functools.partial"},
    "MaskedArrayNode": {"numpy.ma.MaskedArray", "numpy.ma.core.MaskedArray"},
    "DTypeNode": {"numpy.dtype"},
    "RandomStateNode": {"numpy.random.mtrand.RandomState"},
    "RandomGeneratorNode": {"numpy.random._generator.Generator"},
    "TreeNode": {"sklearn.tree._tree.Tree"},
}
_PRIMITIVE_TYPES = {f"builtins.{t}" for t in ("str", "int", "float", "bool", "complex", "list", "dict", "tuple", "set",
                                              "frozenset", "bytes", "bytearray", "object", "type")}
# Internal (non-estimator) classes of scikit-learn that fitted estimators keep, by exact name.
_SKLEARN_INTERNAL = {
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # checked by nubes.ml.structures
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
    "sklearn.metrics._scorer._PassthroughScorer",
    "sklearn.metrics._scorer._Scorer",
    "sklearn.metrics._scorer._MultimetricScorer",
    "scipy.interpolate._bsplines.BSpline",
}
# Modules whose own classes (defined there, not imported into them) are all allowed as ObjectNode.
_CLASS_MODULES = ("sklearn._loss.loss", "sklearn._loss.link", "sklearn.gaussian_process.kernels",
                  "sklearn.model_selection._split")
_LOSS_MODULES = ("sklearn._loss._loss", "sklearn.linear_model._sgd_fast")
_FUNCTION_MODULES = ("sklearn.feature_selection._univariate_selection", "sklearn.feature_selection._mutual_info")
_SCIPY_SPARSE = ("csr_matrix", "csc_matrix", "coo_matrix", "bsr_matrix", "dia_matrix", "dok_matrix", "lil_matrix",
                 "csr_array", "csc_array", "coo_array", "bsr_array", "dia_array", "dok_array", "lil_array")
_SEED_KEYS = {"entropy", "spawn_key", "pool_size", "n_children_spawned"}

_extra: set[str] = set()
_extra_lock = threading.Lock()
# Optional array libraries that scikit-learn's package walk (``all_estimators``, run by skops at
# import) would otherwise import when installed: torch alone adds seconds and hundreds of MiB to the
# first model load. They stay importable afterwards; only the walk skips them.
_WALK_BLOCKED = ("torch", "jax", "cupy", "dask", "sparse", "ndonnx")
_import_lock = threading.Lock()


class _RefuseLoader(importlib.abc.Loader):
    """Loads nothing: ``import torch`` fails (and leaves nothing in ``sys.modules``) while skops loads."""

    def create_module(self, spec: Any) -> Any:
        raise ImportError(f"{spec.name} is not imported while skops lists scikit-learn's estimators")

    def exec_module(self, module: Any) -> None:  # pragma: no cover - create_module always raises
        raise ImportError(module.__name__)


class _BlockWalkImports(importlib.abc.MetaPathFinder):
    """A meta-path finder that makes the optional array libraries unimportable while skops loads.

    It answers a spec whose loader refuses, rather than raising here: libraries that only *probe*
    for torch with ``importlib.util.find_spec`` (Polars does, at import) keep working, and import it
    lazily later if they need it."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name.split(".", 1)[0] in _WALK_BLOCKED:
            return importlib.machinery.ModuleSpec(name, _RefuseLoader())
        return None


def skops_io() -> Any:
    """``skops.io``, imported without letting scikit-learn's package walk import torch & co (see below)."""
    module = sys.modules.get("skops.io")
    if module is not None:
        return module
    with _import_lock:
        blocker = None
        if not any(name in sys.modules for name in _WALK_BLOCKED):
            blocker = _BlockWalkImports()
            sys.meta_path.insert(0, blocker)
        try:
            import skops.io as sio
        except ImportError as exc:
            from nubes.errors import BackendMissing

            raise BackendMissing("the model registry saves models with skops: pip install skops") from exc
        finally:
            if blocker is not None:
                sys.meta_path.remove(blocker)
    return sio




def _name_of(item: Any) -> str:
    if isinstance(item, str):
        name = item.strip()
    elif isinstance(item, type) or callable(item):
        module = getattr(item, "__module__", None)
        qual = getattr(item, "__qualname__", getattr(item, "__name__", None))
        if not module or not qual or "<" in qual:
            raise ConfigError(f"trust() takes importable classes or functions, not {item!r}")
        name = f"{module}.{qual}"
    else:
        raise ConfigError(f"trust() takes classes, functions or their full names, not {item!r}")
    if "*" in name or "?" in name or "[" in name:
        raise ConfigError(f"trust({name!r}): patterns are not accepted; name each class or function exactly, "
                          "e.g. trust('xgboost.sklearn.XGBRegressor') or trust(XGBRegressor)")
    if not _NAME.match(name):
        raise ConfigError(f"trust({name!r}): give a full dotted name such as 'xgboost.sklearn.XGBRegressor'")
    return name


def trust(*items: Any) -> None:
    """Let artifacts build these exact classes or call these exact functions, process-wide.

    Takes the objects themselves (``trust(XGBRegressor)``) or their full names
    (``"xgboost.sklearn.XGBRegressor"``, as a refusal message names them). Only trust code you
    would import anyway: loading builds these classes from data in the store."""
    names = [_name_of(i) for i in items]
    with _extra_lock:
        _extra.update(names)


def untrust(*items: Any) -> None:
    """Undo :func:`trust` for these names (tests and long-lived processes)."""
    names = [_name_of(i) for i in items]
    with _extra_lock:
        _extra.difference_update(names)


def extra_names(extra: Iterable[Any] = ()) -> frozenset[str]:
    """What the application trusts beyond the built-in list: :func:`trust`, ``NUBES_MODEL_TRUST``, ``extra``."""
    env = [p for p in os.environ.get(ENV, "").split(",") if p.strip()]
    with _extra_lock:
        current = set(_extra)
    try:
        return frozenset(current | {_name_of(p) for p in env} | {_name_of(e) for e in extra})
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {ENV} or trusted=)") from None


@functools.lru_cache(maxsize=1)
def builtin_names() -> dict[str, frozenset[str]]:
    """``{loader: exact names}`` of the built-in list (computed once per process, see the module doc)."""
    import importlib

    import numpy as np

    def own_classes(module_name: str) -> set[str]:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return set()
        return {f"{module_name}.{n}" for n, obj in vars(module).items()
                if isinstance(obj, type) and obj.__module__ == module_name}

    scalar_types = {f"{t.__module__}.{t.__name__}" for t in set(np.sctypeDict.values())
                    if t.__module__ == "numpy"}
    estimators = set(_estimator_names())
    objects = estimators | _SKLEARN_INTERNAL | set(NUBES_TYPES)
    for m in _CLASS_MODULES:
        objects |= own_classes(m)
    losses: set[str] = set()
    for m in _LOSS_MODULES:
        losses |= own_classes(m)
    functions = {f"numpy.{n}" for n in dir(np) if isinstance(getattr(np, n, None), np.ufunc)}
    for m in _FUNCTION_MODULES:
        module = importlib.import_module(m)
        functions |= {f"{m}.{n}" for n, obj in vars(module).items()
                      if callable(obj) and not isinstance(obj, type) and getattr(obj, "__module__", None) == m
                      and not n.startswith("_")}
    functions |= _metric_functions()
    sparse = set()
    import scipy.sparse as sp

    for n in _SCIPY_SPARSE:
        cls = getattr(sp, n, None)
        if isinstance(cls, type):
            sparse.add(f"{cls.__module__}.{cls.__name__}")
    bit_generators = {f"numpy.random.{n}" for n in dir(np.random)
                      if isinstance(getattr(np.random, n), type) and issubclass(getattr(np.random, n), np.random.BitGenerator)
                      and getattr(np.random, n) is not np.random.BitGenerator}
    table = {loader: frozenset(names) for loader, names in _CONTAINERS.items()}
    table.update({
        "ObjectNode": frozenset(objects),
        "LossNode": frozenset(losses),
        "FunctionNode": frozenset(functions),
        "TypeNode": frozenset(_PRIMITIVE_TYPES | scalar_types),
        "NdArrayNode": frozenset({"numpy.ndarray"} | scalar_types),
        "SparseMatrixNode": frozenset(sparse),
        "JsonNode": frozenset(),  # any: JSON values, nothing imported
        "CachedNode": frozenset(),  # a reference to a node already audited
        "bit_generator": frozenset(bit_generators),
    })
    return table


def _estimator_names() -> list[str]:
    """Every scikit-learn estimator class, by exact name (skops already computed the list at import)."""
    skops_io()
    try:
        from skops.io import _trusted_types

        names = list(_trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES)
        if names:
            return names
    except (ImportError, AttributeError):  # pragma: no cover - another skops layout
        pass
    from sklearn.utils import all_estimators  # pragma: no cover

    return [f"{c.__module__}.{c.__name__}" for _, c in all_estimators() if c.__module__.startswith("sklearn.")]


def _metric_functions() -> set[str]:
    import sklearn.metrics as metrics

    out = set()
    for n in getattr(metrics, "__all__", ()):
        obj = getattr(metrics, n, None)
        module = getattr(obj, "__module__", "") or ""
        if callable(obj) and not isinstance(obj, type) and module.startswith("sklearn.metrics."):
            out.add(f"{module}.{obj.__name__}")
    return out


def all_allowed(extra: frozenset[str]) -> frozenset[str]:
    """Every name allowed under some loader (what skops' own audit may report), plus ``extra``."""
    table = builtin_names()
    return frozenset().union(*table.values()) | extra


# -- the audit ----------------------------------------------------------------------------------
class Refusal(tuple):  # type: ignore[type-arg]
    """``(loader, name, why)`` for one refused node."""

    __slots__ = ()

    def __new__(cls, loader: str, name: str, why: str) -> Refusal:
        return super().__new__(cls, (loader, name, why))


def _nodes(schema: Any) -> Iterator[tuple[dict[str, Any], int]]:
    """Every dict in the schema that carries a ``__loader__`` (what skops turns into a node), with its depth.

    Iterative (no recursion limit to hit), bounded in nodes and depth; a dict *without*
    ``__loader__`` is still descended into, so nothing nested escapes the audit."""
    stack: list[tuple[Any, int]] = [(schema, 0)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise ValueError(f"the schema has more than {MAX_NODES:,} values")
        if depth > MAX_DEPTH:
            raise ValueError(f"the schema nests deeper than {MAX_DEPTH}")
        if isinstance(value, dict):
            if "__loader__" in value:
                yield value, depth
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def audit(schema: Any, extra: Iterable[Any] = ()) -> list[Refusal]:
    """Every node of a skops ``schema`` (parsed ``schema.json``) outside the allow-list; empty if it may load.

    Nothing is imported, resolved or constructed: names are only compared as strings. A node
    whose shape is not what skops writes (missing or non-string fields) is refused too."""
    table = builtin_names()
    trusted = extra_names(extra)
    everything = all_allowed(trusted)
    refused: list[Refusal] = []
    for node, _ in _nodes(schema):
        loader, module, cls = node.get("__loader__"), node.get("__module__"), node.get("__class__")
        if not (isinstance(loader, str) and isinstance(module, str) and isinstance(cls, str)):
            refused.append(Refusal(str(loader), f"{module}.{cls}", "malformed node"))
            continue
        name = f"{module}.{cls}"
        why = _check(loader, name, node, table, trusted, everything)
        if why:
            refused.append(Refusal(loader, name, why))
    return refused


def _check(loader: str, name: str, node: dict[str, Any], table: dict[str, frozenset[str]],
           trusted: frozenset[str], everything: frozenset[str]) -> str | None:
    if loader == "JsonNode":
        return None if isinstance(node.get("content"), str) else "malformed JSON node"
    if loader == "CachedNode":
        return None if name in everything else "not on the allow-list"
    if loader == "MethodNode":
        func = (node.get("content") or {}).get("func") if isinstance(node.get("content"), dict) else None
        full = f"{name}.{func}"
        return None if full in trusted else f"bound method {full} (never allowed by default)"
    if loader == "RandomGeneratorNode" and name in table[loader]:
        return _check_generator(node, table["bit_generator"] | trusted)
    allowed = table.get(loader)
    if name in trusted and loader not in ("JsonNode",):
        return None
    if allowed is None:
        return f"loader {loader} is not allowed"
    if name not in allowed:
        return "not on the allow-list"
    if loader == "NdArrayNode" and node.get("type") not in ("numpy", "json"):
        return "unknown array encoding"
    return None


def _check_generator(node: dict[str, Any], bit_generators: frozenset[str]) -> str | None:
    try:
        content = node["content"]
        name = json.loads(content["bit_generator"]["content"]["bit_generator"]["content"])
        seed = content["seed_seq"]["content"]
    except (KeyError, TypeError, ValueError):
        return "malformed random generator"
    if not isinstance(name, str) or f"numpy.random.{name}" not in bit_generators:
        return f"bit generator numpy.random.{name} is not on the allow-list"
    if not isinstance(seed, dict) or not set(seed) <= _SEED_KEYS:
        return "malformed seed sequence"
    pool = seed.get("pool_size")
    if isinstance(pool, dict):
        try:
            size = json.loads(pool.get("content", "4"))
        except (TypeError, ValueError):
            return "malformed seed sequence"
        if not isinstance(size, int) or not 1 <= size <= 1024:
            return "seed sequence pool size out of range"
    return None


def describe(refused: Iterable[Refusal]) -> str:
    """``name (loader: why)``, one per distinct refusal, for messages and logs."""
    seen: dict[str, str] = {}
    for loader, name, why in refused:
        seen.setdefault(name, f"{name} ({loader}: {why})")
    return ", ".join(seen.values())


__all__ = ["ENV", "NUBES_TYPES", "Refusal", "all_allowed", "audit", "builtin_names", "describe", "extra_names",
           "skops_io", "trust", "untrust"]
