"""The steps of the pipelines :func:`nubes.ml.train` builds (saved with the model; the artifact
allow-list, :mod:`nubes.ml.allowlist`, names exactly these classes)::

    input     FrameInput         raw feature columns in (Polars, DuckDB relation, JSON records, dict of
                                 lists); checks that every column is there and casts each to the type
                                 it had in training; out comes a Polars DataFrame of exactly those columns
    features  SequenceFeatures   (optional, ``train(engineer=...)``) lags, rolling windows, differences
                                 and date parts computed from the raw rows, in order and per group
    prep      ColumnTransformer  numbers -> median imputation (+ standard scaling unless the estimator
                                 is tree-based); strings/categoricals -> one-hot (unknown values
                                 ignored); dates and date-times -> date parts
    select    (optional)         SelectKBest(k) by a univariate score, or the selector object given
    model     the estimator

With a ``features`` step the columns reaching ``prep`` depend on its parameters (a search may try
several lag sets), so ``prep`` picks its columns by kind (:class:`KindSelector`) when it is fitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sklearn.base import BaseEstimator, TransformerMixin

from nubes.errors import ConfigError
from nubes.ml.frames import column_kind, to_frame

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

_TREE_HINTS = ("Tree", "Forest", "Boosting", "XGB", "LGBM", "CatBoost")


def _kinds(frame: pl.DataFrame) -> dict[str, str]:
    return {name: column_kind(name, dtype) for name, dtype in frame.schema.items()}


class FrameInput(TransformerMixin, BaseEstimator):  # type: ignore[misc]
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


class DateParts(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Date / date-time columns -> numeric parts (year, month, day, weekday, day of year [, hour, minute])."""

    def __init__(self, columns: dict[str, str] | None = None) -> None:
        self.columns = columns

    def fit(self, X: Any, y: Any = None) -> DateParts:
        if self.columns is None and hasattr(X, "schema"):
            self.columns_ = _kinds(X)  # chosen by kind upstream (KindSelector): remember which
        return self

    @staticmethod
    def parts(kind: str) -> tuple[str, ...]:
        return ("year", "month", "day", "weekday", "dayofyear") + (("hour", "minute") if kind == "datetime" else ())

    def transform(self, X: Any) -> np.ndarray:
        import numpy as np
        import polars as pl

        from nubes.ml.features import part_expr

        frame = X if isinstance(X, pl.DataFrame) else to_frame(X, self.columns or {})
        columns = self.columns if self.columns is not None else getattr(self, "columns_", None) or _kinds(frame)
        exprs = [
            part_expr(pl.col(name), part).cast(pl.Float64).alias(f"{name}_{part}")
            for name, kind in columns.items() for part in self.parts(kind)
        ]
        if not exprs:
            return np.empty((frame.height, 0))
        return frame.select(exprs).fill_null(float("nan")).to_numpy().astype(np.float64, copy=False)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        import numpy as np

        columns = self.columns if self.columns is not None else getattr(self, "columns_", {})
        return np.asarray([f"{n}_{p}" for n, k in columns.items() for p in self.parts(k)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


class KindSelector:
    """A ``ColumnTransformer`` column selector: the columns of a Polars frame whose kind is one of ``kinds``."""

    def __init__(self, *kinds: str) -> None:
        self.kinds = tuple(kinds)

    def __call__(self, X: Any) -> list[str]:
        schema = X.schema if hasattr(X, "schema") else {}
        return [name for name, dtype in schema.items() if column_kind(name, dtype) in self.kinds]

    def __repr__(self) -> str:
        return f"KindSelector{self.kinds!r}"


def _ints(value: Any, what: str) -> list[int]:
    values = [value] if isinstance(value, int) else list(value or ())
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ConfigError(f"{what} must be positive integers, not {value!r}")
    return values


class SequenceFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Features computed from the raw rows, in order (``order_by``) and per group (``by``), inside the
    model: lags (``{col}_lag{n}``), rolling statistics over the last ``w`` rows (``{col}_roll{w}_{stat}``,
    partial windows at the start), differences (``{col}_diff{n}``) and parts of the ``date`` column
    (``{date}_{part}``, with ``_sin``/``_cos`` when ``cyclical``). ``columns`` are the series to lag
    (default: every numeric input); ``keep`` the raw columns passed on as they are (default: every
    input but ``order_by``, ``by`` and ``date``).

    Stored with the model, it lets ``/predict`` take raw rows: send the rows to predict preceded by
    at least :attr:`history` rows of each series, in order. Its parameters can be searched like the
    estimator's: ``search={"features__lags": [[1], [1, 2, 7]], "features__windows": [[7], [7, 28]]}``.
    """

    def __init__(self, columns: Sequence[str] | str | None = None, lags: Sequence[int] = (),
                 windows: Sequence[int] = (), stats: Sequence[str] = ("mean",), diffs: Sequence[int] = (),
                 shift: int = 0, date: str | None = None, parts: Sequence[str] = ("dayofyear",), cyclical: bool = True,
                 order_by: str | None = None, by: str | None = None, keep: Sequence[str] | None = None) -> None:
        self.columns = columns
        self.lags = lags
        self.windows = windows
        self.stats = stats
        self.diffs = diffs
        self.shift = shift
        self.date = date
        self.parts = parts
        self.cyclical = cyclical
        self.order_by = order_by
        self.by = by
        self.keep = keep

    @property
    def history(self) -> int:
        """How many earlier rows of a series the features of one row look back at."""
        windows = [w - 1 + self.shift for w in _ints(self.windows, "windows")]
        return max([0, *_ints(self.lags, "lags"), *windows, *_ints(self.diffs, "diffs")])

    def required(self) -> list[str]:
        """The raw columns this step reads besides the series (ordering, grouping, date)."""
        return [c for c in (self.order_by, self.by, self.date) if c is not None]

    def fit(self, X: Any, y: Any = None) -> SequenceFeatures:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> pl.DataFrame:
        out = self.transform(X)
        self.feature_names_out_ = list(out.columns)
        return out

    def _sources(self, frame: pl.DataFrame) -> list[str]:
        if self.columns is None:
            skip = set(self.required())
            return [c for c, k in _kinds(frame).items() if k == "number" and c not in skip]
        return [self.columns] if isinstance(self.columns, str) else list(self.columns)

    def transform(self, X: Any) -> pl.DataFrame:
        import polars as pl

        from nubes.ml import features as F

        frame = X if isinstance(X, pl.DataFrame) else pl.DataFrame(X)
        sources = self._sources(frame)
        order_by, by = self.order_by, self.by
        f = frame
        if self.lags:
            f = F.lags(f, sources, _ints(self.lags, "lags"), order_by=order_by, by=by)
        if self.windows:
            f = F.rolling(f, sources, _ints(self.windows, "windows"), list(self.stats), shift=self.shift, min_periods=1,
                          order_by=order_by, by=by)
        if self.diffs:
            f = F.diffs(f, sources, _ints(self.diffs, "diffs"), order_by=order_by, by=by)
        if self.date is not None:
            f = F.date_parts(f, self.date, list(self.parts), cyclical=self.cyclical)
        made = [c for c in f.columns if c not in frame.columns]
        keep = list(self.keep) if self.keep is not None else [c for c in frame.columns if c not in self.required()]
        missing = [c for c in keep if c not in frame.columns]
        if missing:
            raise ConfigError(f"keep= names column(s) the model does not take: {', '.join(missing)}")
        return f.select([pl.col(c) for c in keep] + [pl.col(c).cast(pl.Float64) for c in made])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        import numpy as np

        return np.asarray(list(getattr(self, "feature_names_out_", [])), dtype=object)

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
                   select: Any = None, classification: bool = False, engineer: Any = None) -> Any:
    """The (unfitted) pipeline :func:`train` cross-validates: see the module docstring."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    scale = (not is_tree_based(estimator)) if scale is None else scale
    if engineer is not None:
        return _engineered(estimator, columns, engineer, scale, _selector(select, classification))
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



def _engineered(estimator: Any, columns: Mapping[str, str], engineer: Any, scale: bool, selector: Any) -> Any:
    """input -> features -> prep (columns chosen by kind when fitted) [-> select] -> model."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    dates: list[tuple[str, Any]] = [("parts", DateParts(None)),
                                    ("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    if scale:
        numbers.append(("scale", StandardScaler()))
        dates.append(("scale", StandardScaler()))
    prep = ColumnTransformer([
        ("num", Pipeline(numbers), KindSelector("number")),
        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), KindSelector("category")),
        ("date", Pipeline(dates), KindSelector("date", "datetime")),
    ], remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=False)
    steps = [("input", FrameInput(dict(columns))), ("features", engineer), ("prep", prep)]
    if selector is not None:
        steps.append(("select", selector))
    steps.append(("model", estimator))
    return Pipeline(steps)


__all__ = ["DateParts", "FrameInput", "KindSelector", "SequenceFeatures", "build_pipeline", "is_tree_based"]
