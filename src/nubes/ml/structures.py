"""Bounds checks of the index arrays inside loaded tree models, before they ever predict.

scikit-learn's decision trees (``sklearn.tree._tree.Tree``: every ``DecisionTree*``,
``RandomForest*``, ``ExtraTrees*`` and ``GradientBoosting*`` model) and histogram gradient
boosting's ``TreePredictor`` walk their nodes in compiled code without bounds checks: a node
array edited in the store (child indices past the end, a loop back to an ancestor, a feature
index past the input's width) would read outside memory or never stop at the first prediction.
:func:`check` walks a freshly loaded model and refuses it unless, for every tree,

* each internal node's children are later nodes of the same tree (so every walk ends at a leaf),
* each internal node's feature index is within the number of features the estimator takes,
* categorical splits (``TreePredictor``) point at an existing bitset of a categorical feature.

The cost is a few vectorised NumPy comparisons per tree, once per load (not per prediction).
"""

from __future__ import annotations

from typing import Any

MAX_OBJECTS = 1_000_000


class BadStructure(ValueError):
    """A loaded model's tree arrays are inconsistent (``str`` says which and where)."""


def check(model: Any) -> int:
    """Check every tree reachable from ``model``; returns how many were checked, raises :class:`BadStructure`."""
    import numpy as np

    try:
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
        from sklearn.tree._tree import Tree
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return 0
    checked = 0
    seen: set[int] = set()
    stack: list[tuple[Any, Any]] = [(model, None)]  # (object, nearest estimator that owns it)
    while stack:
        obj, owner = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float | bool):
            continue
        seen.add(id(obj))
        if len(seen) > MAX_OBJECTS:
            raise BadStructure(f"the model holds more than {MAX_OBJECTS:,} objects")
        if isinstance(obj, Tree):
            _check_tree(obj, owner)
            checked += 1
            continue
        if isinstance(obj, TreePredictor):
            _check_predictor(obj, owner)
            checked += 1
            continue
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend((item, owner) for item in obj.ravel().tolist())
            continue
        if isinstance(obj, dict):
            stack.extend((v, owner) for v in obj.values())
            continue
        if isinstance(obj, list | tuple | set | frozenset):
            stack.extend((v, owner) for v in obj)
            continue
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict) and type(obj).__module__.startswith(("sklearn", "nubes", "scipy")):
            here = obj if hasattr(obj, "n_features_in_") else owner
            stack.extend((v, here) for v in attrs.values())
    return checked


def _children_ok(left: Any, right: Any, internal: Any, n: int) -> bool:
    import numpy as np

    index = np.arange(n)
    return bool(np.all(left[internal] > index[internal]) and np.all(right[internal] > index[internal])
                and np.all(left[internal] < n) and np.all(right[internal] < n))


def _check_tree(tree: Any, owner: Any) -> None:
    n = int(tree.node_count)
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    if n < 1 or len(left) != n or len(right) != n or len(feature) != n:
        raise BadStructure(f"a decision tree declares {n} nodes but holds {len(left)}")
    internal = left != -1
    if bool((right[~internal] != -1).any()):
        raise BadStructure("a decision tree has a leaf with one child")
    if not _children_ok(left, right, internal, n):
        raise BadStructure("a decision tree has a child index that is not a later node of the tree")
    width = int(tree.n_features)
    expected = getattr(owner, "n_features_in_", None)
    if expected is not None and width != int(expected):
        raise BadStructure(f"a decision tree takes {width} features but its estimator takes {expected}")
    if bool(((feature[internal] < 0) | (feature[internal] >= width)).any()):
        raise BadStructure("a decision tree splits on a feature index outside its input")


def _check_predictor(predictor: Any, owner: Any) -> None:
    import numpy as np
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    nodes = predictor.nodes
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1 or not len(nodes):
        raise BadStructure("a gradient-boosting tree has a node array of the wrong type")
    n = len(nodes)
    internal = nodes["is_leaf"] == 0
    if not _children_ok(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), internal, n):
        raise BadStructure("a gradient-boosting tree has a child index that is not a later node of the tree")
    width = getattr(owner, "n_features_in_", None)
    if width is None:
        raise BadStructure("a gradient-boosting tree outside its estimator cannot be checked")
    feature = nodes["feature_idx"].astype(np.int64)
    if bool(((feature[internal] < 0) | (feature[internal] >= int(width))).any()):
        raise BadStructure("a gradient-boosting tree splits on a feature index outside its input")
    categorical = internal & (nodes["is_categorical"] != 0)
    if bool(categorical.any()):
        mapper = getattr(owner, "_bin_mapper", None)
        is_cat = getattr(mapper, "is_categorical_", None)
        raw, binned = predictor.raw_left_cat_bitsets, predictor.binned_left_cat_bitsets
        if is_cat is None or len(is_cat) != int(width):
            raise BadStructure("a gradient-boosting tree has categorical splits but no categorical features")
        for bits in (raw, binned):
            if not isinstance(bits, np.ndarray) or bits.ndim != 2 or bits.shape[1] != 8 or bits.dtype != np.uint32:
                raise BadStructure("a gradient-boosting tree has malformed category bitsets")
        index = nodes["bitset_idx"].astype(np.int64)[categorical]
        if bool(((index < 0) | (index >= min(len(raw), len(binned)))).any()):
            raise BadStructure("a gradient-boosting tree points at a category bitset that does not exist")
        if not bool(np.asarray(is_cat, dtype=bool)[feature[categorical]].all()):
            raise BadStructure("a gradient-boosting tree makes a categorical split on a numeric feature")


__all__ = ["BadStructure", "check"]
