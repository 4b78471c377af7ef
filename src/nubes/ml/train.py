"""Cross-validated training of scikit-learn estimators on catalog data, with encoding, selection and search.

:func:`train` builds one scikit-learn :class:`~sklearn.pipeline.Pipeline` around the estimator
(:mod:`nubes.ml.pipeline`: input -> [features] -> prep -> [select] -> model). Encoding, engineered
features and selection are fitted inside each cross-validation fold (the whole pipeline is what is
cross-validated), so none of them leaks information from the fold being scored, and a search can
tune them (``features__lags``, ``select__k``) like the estimator's own parameters. The refit best
pipeline (``TrainResult.model``) therefore takes the *raw* feature columns: a route can hand it the
request's JSON records unchanged, and ``model.predict(ctx.table("new_rows"))`` works as well.

Splits (:mod:`nubes.ml.splits`) are checked before anything is fitted: a fold without an example
of a class is a 422 naming a split that works. Holdout metrics (:mod:`nubes.ml.metrics`) include
imbalance-aware ones and the chosen scoring metric.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nubes.errors import ConfigError
from nubes.ml.frames import BadColumns, MissingColumns, column_kind, to_frame
from nubes.ml.metrics import classification_metrics, evaluate, positive_label, regression_metrics
from nubes.ml.pipeline import DateParts, FrameInput, SequenceFeatures, build_pipeline, is_tree_based
from nubes.ml.splits import BadSplit, check_folds
from nubes.ml.splits import holdout as _holdout
from nubes.ml.splits import splitter as _splitter

if TYPE_CHECKING:
    import numpy as np
    import polars as pl


STEPS = ("input", "features", "prep", "select", "model")
STRATEGIES = ("grid", "random", "halving")


# -- the result ---------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train` found. ``model`` is the refit best pipeline (raw feature columns in).

    ``cv_scores`` are the best candidate's per-fold scores with scikit-learn's sign convention
    (greater is better: RMSE appears as ``neg_root_mean_squared_error``); ``metrics`` are measured
    on the holdout rows the search never saw (classification: accuracy, balanced accuracy,
    precision, recall, f1, PR AUC, ROC AUC and the scoring metric -- see :mod:`nubes.ml.metrics`;
    regression: rmse, mae, r2 and the scoring metric); ``features`` are the encoded features the
    model uses (after selection); ``positive`` the class binary metrics are about; ``history`` how
    many earlier rows of a series the engineered features look back at (send them before the rows
    to predict); ``timings`` are seconds per phase.
    """

    model: Any
    best_params: dict[str, Any]
    cv_scores: list[float]
    cv_mean: float
    cv_std: float
    metrics: dict[str, float]
    features: list[str]
    timings: dict[str, float]
    task: str = "regression"
    target: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    scoring: str = ""
    cv: str = ""
    n_train: int = 0
    n_holdout: int = 0
    candidates: list[dict[str, Any]] = field(default_factory=list)
    classes: list[Any] | None = None
    positive: Any = None
    history: int = 0
    feature_steps: dict[str, Any] | None = None

    def predict(self, data: Any) -> np.ndarray:
        predictions: np.ndarray = self.model.predict(data)
        return predictions

    def summary(self) -> dict[str, Any]:
        """Everything but the model, as JSON-ready data (return it from a training route)."""
        return {
            "task": self.task, "target": self.target, "inputs": dict(self.inputs), "features": list(self.features),
            "best_params": _plain(self.best_params), "scoring": self.scoring, "cv": self.cv,
            "cv_scores": list(self.cv_scores), "cv_mean": self.cv_mean, "cv_std": self.cv_std,
            "metrics": dict(self.metrics), "n_train": self.n_train, "n_holdout": self.n_holdout,
            "timings": dict(self.timings), "candidates": _plain(self.candidates),
            "classes": _plain(self.classes), "positive": _plain(self.positive), "history": self.history,
            "feature_steps": _plain(self.feature_steps),
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items())
        return (f"<TrainResult {self.task} {type(_final(self.model)).__name__} cv_mean={self.cv_mean:.4g}"
                f"±{self.cv_std:.2g} {shown} best_params={self.best_params}>")


def _final(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _plain(value: Any) -> Any:
    """JSON-friendly copy: numpy scalars -> Python, estimators and distributions -> repr."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return repr(value)


# -- train --------------------------------------------------------------------------------------
def train(
    estimator: Any,
    data: Any,
    *,
    target: str,
    features: Sequence[str] | None = None,
    engineer: SequenceFeatures | None = None,
    cv: int | str | Any = 5,
    n_splits: int | None = None,
    gap: int = 0,
    search: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    search_strategy: str = "grid",
    n_iter: int | None = None,
    scoring: str | Callable[..., float] | None = None,
    select: int | Any = None,
    random_state: int | None = 0,
    holdout: float = 0.2,
    order_by: str | Sequence[str] | None = None,
    scale: bool | None = None,
    positive: Any = None,
) -> TrainResult:
    """Cross-validate ``estimator`` (with a parameter search if ``search``) on ``data`` and return
    the refit best pipeline with its scores, holdout metrics and timings.

    ``data``: a Polars DataFrame/LazyFrame or a DuckDB relation (``ctx.table(name)``,
    ``ctx.sql(...)``). ``target``: the column to predict; ``features``: the raw input columns
    (default: every other column). ``engineer``: a :class:`~nubes.ml.pipeline.SequenceFeatures`
    step (lags, rolling windows, differences, date parts from the raw rows, in order) fitted inside
    the pipeline and stored with the model, so ``/predict`` takes raw rows; its parameters can be
    searched (``features__lags``, ``features__windows``). ``cv``: a number of folds (stratified for
    classifiers, shuffled with ``random_state``), a scikit-learn splitter (``TimeSeriesSplit(n_splits=3,
    gap=24)``), or ``"timeseries"`` (``TimeSeriesSplit`` with ``n_splits`` folds, default 5, and
    ``gap`` rows between training and scored rows; rows are used in their order, or sorted by
    ``order_by``; the holdout is the last rows). Every fold is checked before training: one that
    lacks a class is a :class:`~nubes.ml.splits.BadSplit` (a 422) naming a split that works.
    ``search``: a parameter grid (``{"C": [0.1, 1]}``; names without a step prefix apply to the
    estimator, ``features__...``, ``select__k`` and ``prep__...`` reach the other steps) or, for
    ``search_strategy="random"``, distributions sampled ``n_iter`` times (default 10); ``"halving"``
    is successive halving over the grid. ``scoring``: a scikit-learn scorer name or callable
    (default: accuracy, or negative RMSE for regression), reported on the holdout too.
    ``positive``: the class binary metrics are about (default: 1/True, else the rarer class).
    ``select``: keep the ``k`` best encoded features by a univariate F-test, or any selector object
    (e.g. ``SelectFromModel(...)``), fitted inside each fold. ``holdout``: the fraction of rows kept
    out of the search for the final metrics (0 for none). ``scale``: standardize numbers (default:
    unless the estimator is tree-based). ``random_state`` fixes folds, sampling and the estimator's
    own ``random_state`` when it has one left unset.
    """
    import numpy as np
    import polars as pl
    from sklearn.base import clone, is_classifier

    started = time.perf_counter()
    timings: dict[str, float] = {}
    if not isinstance(target, str):
        raise ConfigError("train() needs target='column' naming what to predict")
    if search_strategy not in STRATEGIES:
        raise ConfigError(f"search_strategy={search_strategy!r}: use one of {', '.join(STRATEGIES)}")
    if not (isinstance(holdout, int | float) and 0 <= holdout < 1):
        raise ConfigError(f"holdout={holdout!r}: a fraction of the rows, 0 <= holdout < 1")
    if not hasattr(estimator, "fit"):
        raise ConfigError(f"train() needs a scikit-learn estimator, not {type(estimator).__name__}")
    if engineer is not None and not isinstance(engineer, SequenceFeatures):
        raise ConfigError("engineer= takes nubes.ml.features.Features(...) (a SequenceFeatures step)")
    frame = _collect(data)
    if target not in frame.columns:
        raise ConfigError(f"no target column {target!r}; the data has: {', '.join(frame.columns)}")
    chosen = list(features) if features is not None else [c for c in frame.columns if c != target]
    if engineer is not None:
        chosen += [c for c in engineer.required() if c not in chosen]
    missing = [c for c in chosen if c not in frame.columns]
    if missing:
        raise ConfigError(f"no feature column(s) {', '.join(missing)}; the data has: {', '.join(frame.columns)}")
    if target in chosen:
        raise ConfigError(f"the target {target!r} cannot also be a feature")
    if not chosen:
        raise ConfigError("train() needs at least one feature column")
    ordered = cv == "timeseries" or type(cv).__name__ == "TimeSeriesSplit"
    if order_by is not None:
        frame = frame.sort(order_by, maintain_order=True)
    frame = frame.filter(pl.col(target).is_not_null())
    columns = {c: column_kind(c, frame.schema[c]) for c in chosen}
    classification = bool(is_classifier(estimator))
    task = "classification" if classification else "regression"
    estimator = clone(estimator)
    if random_state is not None and "random_state" in estimator.get_params(deep=False) \
            and estimator.get_params(deep=False)["random_state"] is None:
        estimator.set_params(random_state=random_state)
    X = frame.select(chosen)
    y = frame[target].to_numpy()
    if not classification and not np.issubdtype(y.dtype, np.number):
        raise ConfigError(f"target {target!r} is not numeric; for labels use a classifier")
    n = frame.height
    min_rows = 10
    if n < min_rows:
        raise ConfigError(f"train() needs at least {min_rows} rows with a target, got {n}")
    classes = sorted(set(y.tolist()), key=repr) if classification else []
    if classification and positive is None:
        positive = positive_label(classes, y)
    if classification and positive is not None and positive not in classes:
        raise ConfigError(f"positive={positive!r} is not a class of {target!r}: {classes}")

    # holdout split, then the folds: both checked before anything is fitted
    train_idx, test_idx = _holdout(n, holdout, y if classification else None, ordered, random_state)
    X_train, y_train = X[train_idx], y[train_idx]
    X_test, y_test = X[test_idx], y[test_idx]
    if classification and len(set(y_train.tolist())) < 2:
        raise BadSplit(f"the training rows (the first {len(train_idx):,} of {n:,}) hold only class "
                       f"{y_train[0]!r}; use a smaller holdout= or start the data where every class has occurred")
    splitter, cv_name = _splitter(cv, classification, random_state, ordered, y_train, n_splits=n_splits, gap=gap)
    if scoring is None:
        scoring = "accuracy" if classification else "neg_root_mean_squared_error"
    check_folds(splitter, X_train, y_train, classification=classification, scoring=scoring, positive=positive)
    if isinstance(select, int) and not isinstance(select, bool):
        select = min(select, _encoded_width(estimator, columns, X_train, y_train, scale, engineer))
    pipe = build_pipeline(estimator, columns, scale=scale, select=select, classification=classification,
                          engineer=engineer)
    scoring_name = scoring if isinstance(scoring, str) else getattr(scoring, "__name__", repr(scoring))
    timings["prepare"] = time.perf_counter() - started

    t0 = time.perf_counter()
    candidates: list[dict[str, Any]] = []
    best_params: dict[str, Any] = {}
    if search:
        grid = _prefixed(search)
        searcher = _searcher(pipe, grid, search_strategy, splitter, scoring, n_iter, random_state)
        searcher.fit(X_train, y_train)
        model = searcher.best_estimator_
        results = searcher.cv_results_
        best = searcher.best_index_
        fold_scores = [float(results[f"split{k}_test_score"][best]) for k in range(searcher.n_splits_)]
        keys = _unprefix_map(search)
        best_params = {keys.get(k, k): v for k, v in searcher.best_params_.items()}
        for i in np.argsort(results["rank_test_score"], kind="stable"):
            candidates.append({"params": {keys.get(k, k): v for k, v in results["params"][i].items()},
                               "mean": float(results["mean_test_score"][i]), "std": float(results["std_test_score"][i]),
                               "rank": int(results["rank_test_score"][i])})
        timings["refit"] = float(getattr(searcher, "refit_time_", 0.0))
        timings["search"] = time.perf_counter() - t0 - timings["refit"]
    else:
        from sklearn.model_selection import cross_validate

        scores = cross_validate(pipe, X_train, y_train, cv=splitter, scoring=scoring, error_score="raise")
        fold_scores = [float(s) for s in scores["test_score"]]
        timings["search"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        model = clone(pipe).fit(X_train, y_train)
        timings["refit"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    metrics = evaluate(model, X_test, y_test, task, scoring=scoring, positive=positive) if len(test_idx) else {}
    timings["holdout"] = time.perf_counter() - t2
    names = _feature_names(model.named_steps["prep"])
    if "select" in model.named_steps:
        support = _support(model.named_steps["select"], len(names))
        names = [nm for nm, keep in zip(names, support, strict=True) if keep]
    timings["total"] = time.perf_counter() - started
    arr = np.asarray(fold_scores, dtype=float)
    fitted_steps = model.named_steps.get("features")
    return TrainResult(
        model=model,
        best_params=best_params,
        cv_scores=fold_scores,
        cv_mean=float(arr.mean()),
        cv_std=float(arr.std()),
        metrics=metrics,
        features=names,
        timings={k: round(v, 6) for k, v in timings.items()},
        task=task,
        target=target,
        inputs=dict(columns),
        scoring=scoring_name,
        cv=cv_name,
        n_train=len(train_idx),
        n_holdout=len(test_idx),
        candidates=candidates,
        classes=[_plain(c) for c in model.classes_] if classification and hasattr(model, "classes_") else None,
        positive=_plain(positive) if classification else None,
        history=fitted_steps.history if fitted_steps is not None else 0,
        feature_steps=_plain(fitted_steps.get_params()) if fitted_steps is not None else None,
    )


def _collect(data: Any) -> pl.DataFrame:
    import polars as pl

    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    if type(data).__name__ == "DuckDBPyRelation":
        return pl.DataFrame(data)
    raise ConfigError(
        f"train() reads a Polars DataFrame/LazyFrame or a DuckDB relation (ctx.table(...), ctx.sql(...)), "
        f"not {type(data).__name__}"
    )


def _prefixed(search: Any) -> Any:
    if isinstance(search, Mapping):
        return {_prefix(k): v for k, v in search.items()}
    if isinstance(search, Sequence) and not isinstance(search, str):
        return [_prefixed(g) for g in search]
    raise ConfigError(f"search= takes a parameter grid (a dict, or a list of dicts), not {type(search).__name__}")


def _prefix(key: str) -> str:
    head, sep, _ = key.partition("__")
    return key if sep and head in STEPS else f"model__{key}"


def _unprefix_map(search: Any) -> dict[str, str]:
    grids = [search] if isinstance(search, Mapping) else list(search)
    return {_prefix(k): k for g in grids for k in g}


def _searcher(pipe: Any, grid: Any, strategy: str, splitter: Any, scoring: Any, n_iter: int | None,
              random_state: int | None) -> Any:
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    common = {"cv": splitter, "scoring": scoring, "refit": True, "error_score": "raise"}
    if strategy == "grid":
        return GridSearchCV(pipe, grid, **common)
    if strategy == "random":
        return RandomizedSearchCV(pipe, grid, n_iter=n_iter or 10, random_state=random_state, **common)
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV

    if n_iter:
        return HalvingRandomSearchCV(pipe, grid, n_candidates=n_iter, random_state=random_state, **common)
    return HalvingGridSearchCV(pipe, grid, random_state=random_state, **common)


def _encoded_width(estimator: Any, columns: Mapping[str, str], X: Any, y: Any, scale: bool | None,
                   engineer: Any = None) -> int:
    from sklearn.base import clone

    pipe = build_pipeline(estimator, columns, scale=scale, engineer=clone(engineer) if engineer is not None else None)
    prep = pipe[:-1].fit(X, y)
    return len(prep.named_steps["prep"].get_feature_names_out())


def _feature_names(prep: Any) -> list[str]:
    try:
        return [str(s) for s in prep.get_feature_names_out()]
    except ValueError:  # names not unique without their transformer's prefix
        return [f"{name}__{n}" for name, step, cols in prep.transformers_ if step != "drop" and name != "remainder"
                for n in step.get_feature_names_out(cols)]


def _support(selector: Any, width: int) -> list[bool]:
    get = getattr(selector, "get_support", None)
    if callable(get):
        return [bool(b) for b in get()]
    return [True] * width


__all__ = ["BadColumns", "BadSplit", "DateParts", "FrameInput", "MissingColumns", "SequenceFeatures", "TrainResult",
           "build_pipeline", "classification_metrics", "column_kind", "evaluate", "is_tree_based", "regression_metrics",
           "to_frame", "train"]
