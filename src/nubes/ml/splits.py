"""Holdout and cross-validation splits for :func:`nubes.ml.train`, checked before anything is fitted.

``cv`` is a number of folds (stratified for classifiers when every class has enough rows, shuffled),
a scikit-learn splitter (``TimeSeriesSplit(n_splits=3, gap=24)``, ``GroupKFold`` ...), or
``"timeseries"`` (``TimeSeriesSplit`` with ``n_splits`` folds, default 5, and ``gap`` rows left out
between each training part and the part it is scored on). Ordered data keeps its order: the holdout
is its last rows.

:func:`check_folds` walks the splits before training. On imbalanced, ordered data an early fold
often has no example of the rare class: fitting on it fails ("needs samples of at least 2
classes"), and scoring it fails ("pos_label=1 is not a valid label"). Such a split is a
:class:`BadSplit`: a 422 when it escapes a route, naming the fold, what it lacks, and a split that
would work (fewer folds, found by trying), instead of a 500 from deep inside scikit-learn.
"""

from __future__ import annotations

from typing import Any

from nubes.errors import ConfigError, HTTPError

# Scorers that are defined without every class in the scored part (others need the positive class).
_CLASS_FREE_SCORERS = {"accuracy", "balanced_accuracy", "neg_log_loss", "neg_brier_score"}


class BadSplit(HTTPError, ConfigError):
    """The cross-validation or holdout split cannot train or score on this data (a 422)."""

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(422, detail, title="Unusable Split", **extensions)


def holdout(n: int, fraction: float, labels: Any, ordered: bool, random_state: int | None) -> tuple[Any, Any]:
    """(train positions, holdout positions): the last rows when ``ordered``, else a (stratified) sample."""
    import numpy as np

    index = np.arange(n)
    size = round(n * fraction)
    if size == 0:
        return index, index[:0]
    if ordered:
        return index[: n - size], index[n - size :]
    from sklearn.model_selection import train_test_split

    stratify = None
    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() >= 2 and size >= len(counts):
            stratify = labels
    tr, te = train_test_split(index, test_size=size, random_state=random_state, shuffle=True, stratify=stratify)
    return np.sort(tr), np.sort(te)


def splitter(cv: Any, classification: bool, random_state: int | None, ordered: bool, y: Any, *,
             n_splits: int | None = None, gap: int = 0) -> tuple[Any, str]:
    """(the scikit-learn splitter, its description) for ``cv`` (see the module docstring)."""
    from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

    if not isinstance(gap, int) or isinstance(gap, bool) or gap < 0:
        raise ConfigError(f"gap={gap!r}: the number of rows left out between training and scored rows, >= 0")
    if n_splits is not None and (not isinstance(n_splits, int) or isinstance(n_splits, bool) or n_splits < 2):
        raise ConfigError(f"n_splits={n_splits!r}: cross-validation needs at least 2 folds")
    if isinstance(cv, str):
        if cv != "timeseries":
            raise ConfigError(f"cv={cv!r}: use a number of folds, a scikit-learn splitter or 'timeseries'")
        k = n_splits or 5
        return TimeSeriesSplit(n_splits=k, gap=gap), f"TimeSeriesSplit(n_splits={k}, gap={gap})" if gap else \
            f"TimeSeriesSplit(n_splits={k})"
    if gap:
        raise ConfigError("gap= applies to cv='timeseries'; for another splitter, set its own gap")
    if isinstance(cv, int) and not isinstance(cv, bool):
        if n_splits is not None and n_splits != cv:
            raise ConfigError(f"cv={cv} and n_splits={n_splits} disagree; give one of them")
        if cv < 2:
            raise ConfigError(f"cv={cv}: cross-validation needs at least 2 folds")
        if ordered:
            return TimeSeriesSplit(n_splits=cv), f"TimeSeriesSplit(n_splits={cv})"
        if classification:
            import numpy as np

            _, counts = np.unique(y, return_counts=True)
            if counts.min() >= cv:
                return StratifiedKFold(cv, shuffle=True, random_state=random_state), f"StratifiedKFold({cv})"
        return KFold(cv, shuffle=True, random_state=random_state), f"KFold({cv})"
    if hasattr(cv, "split") and hasattr(cv, "get_n_splits"):
        if n_splits is not None:
            raise ConfigError("n_splits= applies to cv='timeseries' or a number of folds; set it on your splitter")
        if ordered and getattr(cv, "shuffle", False):
            raise ConfigError("time-series training uses ordered splits only; this splitter shuffles")
        return cv, repr(cv)
    raise ConfigError(f"cv={cv!r}: use a number of folds, a scikit-learn splitter or 'timeseries'")


def _params(split: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the constructor parameters of a splitter, their defaults); empty if it cannot be read."""
    import inspect

    try:
        signature = inspect.signature(type(split).__init__)
    except (TypeError, ValueError):
        return {}, {}
    names = [p for p in signature.parameters.values() if (p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD)
             or p.kind == p.KEYWORD_ONLY]
    if not all(hasattr(split, p.name) for p in names):
        return {}, {}
    return ({p.name: getattr(split, p.name) for p in names},
            {p.name: p.default for p in names if p.default is not p.empty})


def describe(split: Any) -> str:
    """A short constructor-like description: only the parameters that differ from the defaults."""
    params, defaults = _params(split)
    if not params:
        return repr(split)
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items() if k == "n_splits" or defaults.get(k, object()) != v)
    return f"{type(split).__name__}({shown})"


def _problem(split: Any, X: Any, codes: Any, scoring: Any, classes: list[Any], positive: Any) -> str | None:
    """What makes ``split`` unusable (``codes``: the target as class indices), or None."""
    import numpy as np

    needs_all = not (isinstance(scoring, str) and scoring in _CLASS_FREE_SCORERS)
    k = len(classes)
    pos = classes.index(positive) if positive in classes else None
    try:
        folds = list(split.split(X, codes))
    except ValueError as exc:
        return f"{describe(split)} cannot split these {len(codes):,} rows: {exc}"
    for n, (train_idx, test_idx) in enumerate(folds, 1):
        seen = np.bincount(codes[train_idx], minlength=k) > 0
        if seen.sum() < 2 or (pos is not None and not seen[pos]):
            where = f"rows {train_idx.min():,}-{train_idx.max():,}" if len(train_idx) else "no rows"
            lacking = ", ".join(repr(classes[i]) for i in np.flatnonzero(~seen))
            return f"fold {n} of {describe(split)} trains on {len(train_idx):,} rows ({where}) without class {lacking}"
        scored = np.bincount(codes[test_idx], minlength=k) > 0
        if needs_all and not scored.all() and (pos is None or not scored[pos]):
            missing = ", ".join(repr(classes[i]) for i in np.flatnonzero(~scored))
            return (f"fold {n} of {describe(split)} scores {len(test_idx):,} rows without class {missing}, "
                    f"so {scoring or 'the score'} is undefined there")
    return None


def check_folds(split: Any, X: Any, y: Any, *, classification: bool, scoring: Any, positive: Any = None) -> None:
    """Raise :class:`BadSplit` (naming the fix) if a fold of ``split`` cannot train or be scored."""
    import numpy as np

    if not classification:
        return
    values, codes = np.unique(np.asarray(y), return_inverse=True)
    classes = values.tolist()
    problem = _problem(split, X, codes, scoring, classes, positive)
    if problem is None:
        return
    hint = _suggest(split, X, codes, scoring, classes, positive)
    first = ", ".join(f"{c!r} at row {int(np.argmax(codes == i)):,}" for i, c in enumerate(classes))
    raise BadSplit(f"{problem}. {hint} The first row of each class in the training rows: {first}.",
                   fold_problem=problem, suggestion=hint)


def _suggest(split: Any, X: Any, codes: Any, scoring: Any, classes: list[Any], positive: Any) -> str:
    """A split of the same kind that works here: fewer folds, then smaller scored parts (so the
    first fold trains on more of the past), tried in that order."""
    params, _ = _params(split)
    if "n_splits" in params:
        n = len(codes)
        current = int(params["n_splits"])
        tries: list[dict[str, Any]] = [{"n_splits": k} for k in range(current - 1, 1, -1)]
        if "test_size" in params:
            for k in range(current, 1, -1):
                size = n // (k + 1)
                while size >= max(10, n // 200):
                    size = int(size * 0.8)
                    tries.append({"n_splits": k, "test_size": size})
        for change in tries:
            try:
                candidate = type(split)(**{**params, **change})
            except (TypeError, ValueError):
                continue
            if _problem(candidate, X, codes, scoring, classes, positive) is None:
                text = describe(candidate)
                via = f" (or n_splits={change['n_splits']} with cv='timeseries')" if len(change) == 1 and \
                    type(split).__name__ == "TimeSeriesSplit" else ""
                return (f"Fix: cv={text} works here{via}; or start the data where every class has occurred, "
                        "or score with scoring='balanced_accuracy'.")
    return ("Fix: no split of this kind works here; give more rows of the rare class, start the data where "
            "every class has occurred, or use a splitter that keeps every class in each fold (StratifiedKFold, "
            "when order does not matter).")


__all__ = ["BadSplit", "check_folds", "describe", "holdout", "splitter"]
