"""Holdout metrics: regression errors, and classification metrics that stay honest on imbalanced data.

Accuracy alone says little when 19 rows in 432,000 are failures (predicting "no failure" scores
99.996%). :func:`classification_metrics` therefore reports, besides ``accuracy``:

* ``balanced_accuracy`` -- the mean recall over classes;
* ``precision``, ``recall`` and ``f1`` -- of the positive class for binary targets (``positive``,
  see :func:`positive_label`), macro-averaged over classes otherwise;
* ``pr_auc`` -- the area under the precision-recall curve (average precision) of the positive class
  (macro one-vs-rest for multiclass), which unlike ROC AUC is not flattered by many easy negatives;
* ``roc_auc`` -- when it is defined (both classes present in the holdout);
* ``positives`` / ``support`` -- how many positive rows the holdout had, and how many rows.

:func:`evaluate` adds the training's scoring metric on the holdout under its own name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``rmse``, ``mae`` and ``r2`` of predictions against the truth."""
    import numpy as np
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return {"rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))), "mae": float(mean_absolute_error(y_true, y_pred)),
            "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")}


def positive_label(labels: Sequence[Any], y: Any = None) -> Any:
    """The class binary metrics are about: ``1`` / ``True`` for 0/1 and boolean targets, else the
    rarer class in ``y`` (ties: the second label in sorted order)."""
    import numpy as np

    labels = list(labels)
    if len(labels) != 2:
        return None
    if set(labels) in ({0, 1}, {False, True}):
        return 1 if 1 in labels else True
    if y is not None:
        values, counts = np.unique(np.asarray(y), return_counts=True)
        found = dict(zip(values.tolist(), counts.tolist(), strict=True))
        a, b = labels
        if found.get(a, 0) != found.get(b, 0):
            return a if found.get(a, 0) < found.get(b, 0) else b
    return labels[1]


def classification_metrics(y_true: Any, y_pred: Any, proba: Any = None, classes: Sequence[Any] | None = None,
                           positive: Any = None) -> dict[str, float]:
    """The metrics of the module docstring for predictions (and probabilities, in ``classes`` order)."""
    import numpy as np
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(classes) if classes is not None else sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    out: dict[str, float] = {"accuracy": float(accuracy_score(y_true, y_pred)), "support": float(len(y_true))}
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class absent from the holdout: the score says 0, not a warning
            out["balanced_accuracy"] = float(balanced_accuracy_score(y_true, y_pred))
    binary = len(labels) == 2
    if binary:
        pos = positive if positive is not None else positive_label(labels, y_true)
        kw: dict[str, Any] = {"pos_label": pos, "labels": labels, "zero_division": 0}
        out["positives"] = float(np.sum(y_true == pos))
    else:
        pos = None
        kw = {"average": "macro", "labels": labels, "zero_division": 0}
    out["precision"] = float(precision_score(y_true, y_pred, **kw))
    out["recall"] = float(recall_score(y_true, y_pred, **kw))
    out["f1"] = float(f1_score(y_true, y_pred, **kw))
    if proba is not None:
        proba = np.asarray(proba)
        present = set(y_true.tolist())
        try:
            if binary:
                column = proba[:, labels.index(pos)]
                if pos in present:
                    out["pr_auc"] = float(average_precision_score(y_true == pos, column))
                if len(present) > 1:
                    out["roc_auc"] = float(roc_auc_score(y_true == pos, column))
            else:
                scores = [average_precision_score(y_true == c, proba[:, i]) for i, c in enumerate(labels) if c in present]
                if scores:
                    out["pr_auc"] = float(np.mean(scores))
                if present == set(labels):
                    out["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
        except ValueError:
            pass
    return out


def evaluate(model: Any, data: Any, y: Any, task: str, *, scoring: str | Callable[..., float] | None = None,
             positive: Any = None) -> dict[str, float]:
    """Holdout metrics of a fitted pipeline on ``data`` (features) against ``y``; with ``scoring``,
    also that scorer's value under its name (unless a metric above of that name has the same value;
    ``score_<name>`` when it differs)."""
    if task == "classification":
        proba = model.predict_proba(data) if hasattr(model, "predict_proba") else None
        out = classification_metrics(y, model.predict(data), proba, getattr(model, "classes_", None), positive)
    else:
        out = regression_metrics(y, model.predict(data))
    if scoring is not None:
        from sklearn.metrics import get_scorer

        name = scoring if isinstance(scoring, str) else getattr(scoring, "__name__", "scoring")
        try:
            scorer = get_scorer(scoring) if isinstance(scoring, str) else scoring
            value = float(scorer(model, data, y))
        except (ValueError, TypeError):
            value = float("nan")  # undefined on this holdout (a class missing)
        if name not in out:
            out[name] = value
        elif not math.isclose(out[name], value, rel_tol=1e-12, abs_tol=1e-12):
            out[f"score_{name}"] = value  # the scorer's own definition differs (e.g. another positive class)
    return out


__all__ = ["classification_metrics", "evaluate", "positive_label", "regression_metrics"]
