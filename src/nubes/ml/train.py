"""Cross-validated training of scikit-learn estimators on catalog data, with encoding, selection and search.

:func:`train` builds one scikit-learn :class:`~sklearn.pipeline.Pipeline` around the estimator::

    input   FrameInput      raw feature columns in (Polars, DuckDB relation, JSON records, dict of
                            lists); checks that every column is there and casts each to the type it
                            had in training; out comes a Polars DataFrame of exactly those columns
    prep    ColumnTransformer built from the schema: numbers -> median imputation (+ standard
                            scaling unless the estimator is tree-based); strings/categoricals ->
                            one-hot (unknown values ignored); dates and date-times -> date parts
    select  (optional)      SelectKBest(k) by a univariate score, or the selector object given
    model   the estimator

Encoding and selection are fitted inside each cross-validation fold (the whole pipeline is what is
cross-validated), so neither leaks information from the fold being scored. The refit best pipeline
(``TrainResult.model``) therefore takes the *raw* feature columns: a route can hand it the request's
JSON records unchanged, and ``model.predict(ctx.table("new_rows"))`` works as well.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sklearn.base import BaseEstimator, TransformerMixin

from nubes.errors import ConfigError, NubesError

if TYPE_CHECKING:
    import numpy as np
    import polars as pl


STEPS = ("input", "prep", "select", "model")
KINDS = ("number", "category", "date", "datetime")
NULL_CATEGORY = "__null__"
STRATEGIES = ("grid", "random", "halving")
_TREE_HINTS = ("Tree", "Forest", "Boosting", "XGB", "LGBM", "CatBoost")


# -- input errors -------------------------------------------------------------------------------
class MissingColumns(NubesError, ValueError):
    """The data given to a model lacks feature columns it was trained on (``columns`` names them)."""

    def __init__(self, columns: Sequence[str], have: Iterable[str] = ()) -> None:
        self.columns = list(columns)
        have = list(have)
        super().__init__(
            "missing feature column(s): " + ", ".join(self.columns)
            + (f" (got: {', '.join(have)})" if have else "")
        )


class BadColumns(NubesError, ValueError):
    """Feature values that cannot be converted to the type the model was trained on."""

    def __init__(self, errors: Sequence[Mapping[str, str]]) -> None:
        self.errors = [dict(e) for e in errors]
        super().__init__("; ".join(f"column '{e['name']}': {e['detail']}" for e in self.errors))


# -- schema -------------------------------------------------------------------------------------
def column_kind(name: str, dtype: Any) -> str:
    """``number``, ``category``, ``date`` or ``datetime`` for a Polars dtype (ConfigError otherwise)."""
    import polars as pl

    if dtype.is_numeric() or dtype == pl.Boolean:
        return "number"
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum) or dtype == pl.Categorical:
        return "category"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime) or dtype == pl.Datetime:
        return "datetime"
    raise ConfigError(
        f"feature column {name!r} has type {dtype}, which train() cannot encode; "
        "use numbers, strings, booleans, dates or date-times (or leave it out with features=[...])"
    )


def to_frame(data: Any, columns: Mapping[str, str]) -> pl.DataFrame:
    """``data`` as a Polars DataFrame of exactly ``columns`` (name -> kind), cast for the model.

    ``data``: a Polars DataFrame/LazyFrame, a DuckDB relation, a list of records (dicts), one
    record, a dict of column lists, or a 2-D array whose columns are in training order. Extra
    columns are ignored; missing ones raise :class:`MissingColumns`, values that do not convert
    :class:`BadColumns`.
    """
    import polars as pl

    names = list(columns)
    if isinstance(data, pl.LazyFrame):
        have = data.collect_schema().names()
        _require(names, have)
        data = data.select(names).collect()
    elif type(data).__name__ == "DuckDBPyRelation":
        _require(names, data.columns)
        data = pl.DataFrame(data.select(*[_quote(n) for n in names]))
    elif isinstance(data, Mapping):
        if data and all(isinstance(v, list | tuple) or hasattr(v, "__array__") or isinstance(v, pl.Series)
                        for v in data.values()):
            _require(names, data.keys())
            data = _from_columns({n: data[n] for n in names}, columns)
        else:
            data = [data]
    elif hasattr(data, "__array__") and not isinstance(data, pl.DataFrame | pl.Series):
        import numpy as np

        array = np.asarray(data)
        if array.ndim != 2 or array.shape[1] != len(names):
            raise BadColumns([{"name": "(array)", "detail": f"a {array.shape} array; expected (rows, {len(names)}) "
                               f"with columns in this order: {', '.join(names)}"}])
        data = _from_columns({n: array[:, i].tolist() for i, n in enumerate(names)}, columns)
    if isinstance(data, list | tuple):
        if not all(isinstance(r, Mapping) for r in data):
            raise BadColumns([{"name": "(records)", "detail": "expected a list of records (JSON objects)"}])
        present = {k for r in data for k in r}
        _require(names, present if data else names, have=sorted(present))
        data = _from_columns({n: [r.get(n) for r in data] for n in names}, columns)
    if not isinstance(data, pl.DataFrame):
        raise BadColumns([{"name": "(data)", "detail": f"cannot read features from a {type(data).__name__}"}])
    _require(names, data.columns)
    return _cast(data.select(names), columns)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _require(names: Sequence[str], present: Iterable[str], have: Iterable[str] | None = None) -> None:
    present = set(present)
    missing = [n for n in names if n not in present]
    if missing:
        raise MissingColumns(missing, sorted(present) if have is None else have)


def _from_columns(values: Mapping[str, Any], columns: Mapping[str, str]) -> pl.DataFrame:
    import polars as pl

    series = []
    errors = []
    for name, kind in columns.items():
        raw = values[name]
        raw = raw.to_list() if isinstance(raw, pl.Series) else (raw.tolist() if hasattr(raw, "tolist") else list(raw))
        try:
            if kind == "number":
                series.append(pl.Series(name, [_number(v) for v in raw], dtype=pl.Float64, strict=True))
            elif kind == "category":
                series.append(pl.Series(name, [None if v is None else str(v) for v in raw], dtype=pl.String))
            else:
                series.append(pl.Series(name, raw, strict=False) if any(not isinstance(v, str) for v in raw if v is not None)
                              else pl.Series(name, raw, dtype=pl.String))
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            errors.append({"name": name, "detail": f"expected a {kind}: {exc}"})
    if errors:
        raise BadColumns(errors)
    return pl.DataFrame(series)


def _number(value: Any) -> Any:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None


def _cast(frame: pl.DataFrame, columns: Mapping[str, str]) -> pl.DataFrame:
    import polars as pl

    exprs = []
    errors = []
    for name, kind in columns.items():
        dtype = frame.schema[name]
        col = pl.col(name)
        if kind == "number":
            expr = col.cast(pl.Float64, strict=True).fill_null(float("nan"))
        elif kind == "category":
            expr = col.cast(pl.String).fill_null(NULL_CATEGORY)
        elif kind == "date":
            expr = col.str.to_date(strict=True) if dtype == pl.String else col.cast(pl.Date, strict=True)
        else:
            expr = col.str.to_datetime(time_unit="us", strict=True) if dtype == pl.String else col
            expr = expr.cast(pl.Datetime("us"), strict=True) if not (isinstance(dtype, pl.Datetime) and dtype.time_zone) \
                else expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.Datetime("us"))
        exprs.append(expr.alias(name))
    try:
        return frame.select(exprs)
    except (pl.exceptions.PolarsError, ValueError, TypeError):
        # find the culprit(s) column by column to name them
        for expr, (name, kind) in zip(exprs, columns.items(), strict=True):
            try:
                frame.select(expr)
            except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
                errors.append({"name": name, "detail": f"expected a {kind}: {str(exc).splitlines()[0]}"})
        raise BadColumns(errors or [{"name": "(data)", "detail": "values do not convert"}]) from None


# -- pipeline steps (saved with the model: nubes.ml.serialization trusts exactly these) -----------
class FrameInput(TransformerMixin, BaseEstimator):
    """First pipeline step: any table-like input -> a Polars frame of the training columns, cast."""

    def __init__(self, columns: dict[str, str] | None = None) -> None:
        self.columns = columns

    def fit(self, X: Any, y: Any = None) -> FrameInput:
        return self

    def transform(self, X: Any) -> pl.DataFrame:
        return to_frame(X, self.columns or {})

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        import numpy as np

        return np.asarray(list(self.columns or {}), dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


class DateParts(TransformerMixin, BaseEstimator):
    """Date / date-time columns -> numeric parts (year, month, day, weekday, day of year [, hour, minute])."""

    def __init__(self, columns: dict[str, str] | None = None) -> None:
        self.columns = columns

    def fit(self, X: Any, y: Any = None) -> DateParts:
        return self

    @staticmethod
    def parts(kind: str) -> tuple[str, ...]:
        return ("year", "month", "day", "weekday", "dayofyear") + (("hour", "minute") if kind == "datetime" else ())

    def transform(self, X: Any) -> np.ndarray:
        import numpy as np
        import polars as pl

        from nubes.ml.features import part_expr

        frame = X if isinstance(X, pl.DataFrame) else to_frame(X, self.columns or {})
        exprs = [
            part_expr(pl.col(name), part).cast(pl.Float64).alias(f"{name}_{part}")
            for name, kind in (self.columns or {}).items() for part in self.parts(kind)
        ]
        if not exprs:
            return np.empty((frame.height, 0))
        return frame.select(exprs).fill_null(float("nan")).to_numpy().astype(np.float64, copy=False)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        import numpy as np

        return np.asarray([f"{n}_{p}" for n, k in (self.columns or {}).items() for p in self.parts(k)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


def is_tree_based(estimator: Any) -> bool:
    """Tree ensembles need no feature scaling; everything else gets standardized numbers."""
    name = type(estimator).__name__
    module = type(estimator).__module__
    return module.startswith(("sklearn.ensemble", "sklearn.tree")) or any(h in name for h in _TREE_HINTS)


def build_pipeline(estimator: Any, columns: Mapping[str, str], *, scale: bool | None = None,
                   select: Any = None, classification: bool = False) -> Any:
    """The (unfitted) pipeline :func:`train` cross-validates: see the module docstring."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    scale = (not is_tree_based(estimator)) if scale is None else scale
    numbers = [c for c, k in columns.items() if k == "number"]
    categories = [c for c, k in columns.items() if k == "category"]
    dates = {c: k for c, k in columns.items() if k in ("date", "datetime")}
    parts: list[tuple[str, Any, list[str]]] = []
    if numbers:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
        if scale:
            steps.append(("scale", StandardScaler()))
        parts.append(("num", Pipeline(steps), numbers))
    if categories:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categories))
    if dates:
        date_steps = [("parts", DateParts(dict(dates))),
                      ("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
        if scale:
            date_steps.append(("scale", StandardScaler()))
        parts.append(("date", Pipeline(date_steps), list(dates)))
    date_names = [f"{c}_{p}" for c, k in dates.items() for p in DateParts.parts(k)]
    clash = bool(set(date_names) & set(numbers)) or any(
        n.startswith(f"{c}_") for c in categories for n in [*numbers, *date_names])
    prep = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=clash)
    steps = [("input", FrameInput(dict(columns))), ("prep", prep)]
    selector = _selector(select, classification)
    if selector is not None:
        steps.append(("select", selector))
    steps.append(("model", estimator))
    return Pipeline(steps)


def _selector(select: Any, classification: bool) -> Any:
    if select is None or select is False:
        return None
    if isinstance(select, int) and not isinstance(select, bool):
        if select < 1:
            raise ConfigError(f"select={select}: keep at least one feature (select=k with k >= 1)")
        from sklearn.feature_selection import SelectKBest, f_classif, f_regression

        return SelectKBest(f_classif if classification else f_regression, k=select)
    if hasattr(select, "fit") and (hasattr(select, "get_support") or hasattr(select, "transform")):
        return select
    raise ConfigError(f"select= takes a number of features to keep or a scikit-learn selector object, not {select!r}")


# -- the result ---------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train` found. ``model`` is the refit best pipeline (raw feature columns in).

    ``cv_scores`` are the best candidate's per-fold scores with scikit-learn's sign convention
    (greater is better: RMSE appears as ``neg_root_mean_squared_error``); ``metrics`` are measured
    on the holdout rows the search never saw (classification: accuracy, f1, roc_auc; regression:
    rmse, mae, r2); ``features`` are the encoded features the model uses (after selection);
    ``timings`` are seconds per phase.
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

    def predict(self, data: Any) -> np.ndarray:
        return self.model.predict(data)

    def summary(self) -> dict[str, Any]:
        """Everything but the model, as JSON-ready data (return it from a training route)."""
        return {
            "task": self.task, "target": self.target, "inputs": dict(self.inputs), "features": list(self.features),
            "best_params": _plain(self.best_params), "scoring": self.scoring, "cv": self.cv,
            "cv_scores": list(self.cv_scores), "cv_mean": self.cv_mean, "cv_std": self.cv_std,
            "metrics": dict(self.metrics), "n_train": self.n_train, "n_holdout": self.n_holdout,
            "timings": dict(self.timings), "candidates": _plain(self.candidates),
            "classes": _plain(self.classes),
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


# -- metrics ------------------------------------------------------------------------------------
def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``rmse``, ``mae`` and ``r2`` of predictions against the truth."""
    import numpy as np
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return {"rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))), "mae": float(mean_absolute_error(y_true, y_pred)),
            "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")}


def classification_metrics(y_true: Any, y_pred: Any, proba: Any = None, classes: Sequence[Any] | None = None) -> dict[str, float]:
    """``accuracy``, ``f1`` (binary: of the second class; multiclass: macro average) and ``roc_auc``
    (binary, or one-vs-rest macro for multiclass) when probabilities are given and defined."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(classes) if classes is not None else sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    out = {"accuracy": float(accuracy_score(y_true, y_pred))}
    if len(labels) == 2:
        out["f1"] = float(f1_score(y_true, y_pred, pos_label=labels[1], labels=labels, zero_division=0))
    else:
        out["f1"] = float(f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))
    if proba is not None and len(set(y_true.tolist())) > 1:
        proba = np.asarray(proba)
        try:
            if len(labels) == 2:
                out["roc_auc"] = float(roc_auc_score(y_true == labels[1], proba[:, 1]))
            elif set(y_true.tolist()) == set(labels):
                out["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
        except ValueError:
            pass
    return out


def evaluate(model: Any, data: Any, y: Any, task: str) -> dict[str, float]:
    """Holdout metrics of a fitted pipeline on ``data`` (features) against ``y``."""
    if task == "classification":
        proba = model.predict_proba(data) if hasattr(model, "predict_proba") else None
        return classification_metrics(y, model.predict(data), proba, getattr(model, "classes_", None))
    return regression_metrics(y, model.predict(data))


# -- train --------------------------------------------------------------------------------------
def train(
    estimator: Any,
    data: Any,
    *,
    target: str,
    features: Sequence[str] | None = None,
    cv: int | str | Any = 5,
    search: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    search_strategy: str = "grid",
    n_iter: int | None = None,
    scoring: str | Callable[..., float] | None = None,
    select: int | Any = None,
    random_state: int | None = 0,
    holdout: float = 0.2,
    order_by: str | Sequence[str] | None = None,
    scale: bool | None = None,
) -> TrainResult:
    """Cross-validate ``estimator`` (with a parameter search if ``search``) on ``data`` and return
    the refit best pipeline with its scores, holdout metrics and timings.

    ``data``: a Polars DataFrame/LazyFrame or a DuckDB relation (``ctx.table(name)``,
    ``ctx.sql(...)``). ``target``: the column to predict; ``features``: the input columns (default:
    every other column). ``cv``: a number of folds (stratified for classifiers, shuffled with
    ``random_state``), a scikit-learn splitter, or ``"timeseries"`` (``TimeSeriesSplit``: each fold
    trains on the past and scores on what follows; rows are used in their order, or sorted by
    ``order_by``; the holdout is the last rows). ``search``: a parameter grid (``{"C": [0.1, 1]}``;
    names without a step prefix apply to the estimator, ``select__k`` / ``prep__...`` reach the
    other steps) or, for ``search_strategy="random"``, distributions sampled ``n_iter`` times
    (default 10); ``"halving"`` is successive halving over the grid. ``scoring``: a scikit-learn
    scorer name or callable (default: accuracy, or negative RMSE for regression). ``select``: keep
    the ``k`` best encoded features by a univariate F-test, or any selector object (e.g.
    ``SelectFromModel(...)``), fitted inside each fold. ``holdout``: the fraction of rows kept out
    of the search for the final metrics (0 for none). ``scale``: standardize numbers (default:
    unless the estimator is tree-based). ``random_state`` fixes folds, sampling and the
    estimator's own ``random_state`` when it has one left unset.
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
    frame = _collect(data)
    if target not in frame.columns:
        raise ConfigError(f"no target column {target!r}; the data has: {', '.join(frame.columns)}")
    chosen = list(features) if features is not None else [c for c in frame.columns if c != target]
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

    # holdout split
    train_idx, test_idx = _holdout(n, holdout, y if classification else None, ordered, random_state)
    X_train, y_train = X[train_idx], y[train_idx]
    X_test, y_test = X[test_idx], y[test_idx]
    splitter, cv_name = _splitter(cv, classification, random_state, ordered, y_train)
    if isinstance(select, int) and not isinstance(select, bool):
        select = min(select, _encoded_width(estimator, columns, X_train, y_train, scale))
    pipe = build_pipeline(estimator, columns, scale=scale, select=select, classification=classification)
    if scoring is None:
        scoring = "accuracy" if classification else "neg_root_mean_squared_error"
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
        n_splits = searcher.n_splits_
        fold_scores = [float(results[f"split{k}_test_score"][best]) for k in range(n_splits)]
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
    metrics = evaluate(model, X_test, y_test, task) if len(test_idx) else {}
    timings["holdout"] = time.perf_counter() - t2
    names = _feature_names(model.named_steps["prep"])
    if "select" in model.named_steps:
        support = _support(model.named_steps["select"], len(names))
        names = [nm for nm, keep in zip(names, support, strict=True) if keep]
    timings["total"] = time.perf_counter() - started
    arr = np.asarray(fold_scores, dtype=float)
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


def _holdout(n: int, fraction: float, labels: Any, ordered: bool, random_state: int | None) -> tuple[Any, Any]:
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


def _splitter(cv: Any, classification: bool, random_state: int | None, ordered: bool, y: Any) -> tuple[Any, str]:
    from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

    if isinstance(cv, str):
        if cv != "timeseries":
            raise ConfigError(f"cv={cv!r}: use a number of folds, a scikit-learn splitter or 'timeseries'")
        return TimeSeriesSplit(n_splits=5), "TimeSeriesSplit(n_splits=5)"
    if isinstance(cv, int) and not isinstance(cv, bool):
        if cv < 2:
            raise ConfigError(f"cv={cv}: cross-validation needs at least 2 folds")
        if classification:
            import numpy as np

            _, counts = np.unique(y, return_counts=True)
            if counts.min() >= cv:
                return StratifiedKFold(cv, shuffle=True, random_state=random_state), f"StratifiedKFold({cv})"
        return KFold(cv, shuffle=True, random_state=random_state), f"KFold({cv})"
    if hasattr(cv, "split") and hasattr(cv, "get_n_splits"):
        if ordered and getattr(cv, "shuffle", False):
            raise ConfigError("time-series training uses ordered splits only; this splitter shuffles")
        return cv, repr(cv)
    raise ConfigError(f"cv={cv!r}: use a number of folds, a scikit-learn splitter or 'timeseries'")


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


def _encoded_width(estimator: Any, columns: Mapping[str, str], X: Any, y: Any, scale: bool | None) -> int:
    pipe = build_pipeline(estimator, columns, scale=scale)
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


__all__ = ["BadColumns", "MissingColumns", "TrainResult", "build_pipeline", "classification_metrics", "column_kind",
           "evaluate", "regression_metrics", "to_frame", "train"]
