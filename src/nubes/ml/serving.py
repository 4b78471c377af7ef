"""The built-in model routes (on unless ``App(models=False)``)::

    GET  /_nubes/models                  the registered models, their latest version and aliases
    GET  /_nubes/models/{name}           every live version of one model, with its metadata
    POST /_nubes/models/{name}/predict   predictions for the rows in the body

``predict`` takes JSON (a list of records, ``{"records": [...]}``, ``{"columns": {name: [...]}}``,
one record, or -- for a model fitted on bare arrays -- a list of rows ``[[...], ...]``), CSV
(``text/csv``, header row) or Parquet (``application/vnd.apache.parquet``), and ``?version=N`` or
``?alias=NAME`` (default: the ``production`` alias, else the latest version). It answers
``{"model", "version", "predictions": [...]}`` plus ``"probabilities"`` (one list per row, in the
order of ``"classes"``) when the model has ``predict_proba``. Sequence models (ONNX, see
:mod:`nubes.ml.sequence`) answer one prediction per row, ``null`` for rows without a full window of
history before them. Rows missing a feature column, values that do not convert and rows a plain
estimator cannot take are 422s naming the problem; a damaged alias or version record is a 409; a
model whose artifact fails its integrity checks is a 500 that says so (and nothing from the
artifact runs).

Loaded models are cached per warm instance (the registry's cache, keyed by version and digest);
aliases are resolved per request. The listings read the registry with one LIST per call and read
a record again only when its etag changed (:meth:`ModelRegistry._records`), so a warm instance
sees every promotion and registration at once without re-reading what did not change.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from nubes.errors import HTTPError

if TYPE_CHECKING:
    from nubes.core.context import Context

JSON_TYPES = ("application/json", "text/json", "")
CSV_TYPES = ("text/csv", "application/csv")
PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet", "application/parquet")


def list_models(ctx: Context) -> dict[str, Any]:
    registry = ctx.app.models
    models = []
    for name, entry in sorted(registry.catalog().items()):
        versions = entry["versions"]
        latest = versions[-1]
        item = {"name": name, "versions": len(versions), "latest": latest.version, "aliases": entry["aliases"],
                "task": latest.task, "estimator": latest.estimator, "created": latest.created, "metrics": latest.metrics}
        if entry["corrupt"]:
            item["corrupt"] = entry["corrupt"]
        models.append(item)
    return {"app": ctx.app.name, "models": models}


def describe_model(ctx: Context, name: str) -> dict[str, Any]:
    registry = ctx.app.models
    _check(name)
    entry = registry._entry(name)
    if not entry["versions"]:
        raise HTTPError(404, f"no model {name!r}; registered: {', '.join(registry.names()) or 'none'}")
    answer = {"name": name, "aliases": entry["aliases"], "versions": [v.to_dict() for v in entry["versions"]],
              "integrity": registry.integrity()}
    if entry["corrupt"]:
        answer["corrupt"] = entry["corrupt"]
    return answer


def predict(ctx: Context, name: str, version: int | None = None, alias: str | None = None) -> dict[str, Any]:
    from nubes.errors import NotFound
    from nubes.ml.records import CorruptRecord
    from nubes.ml.serialization import UnsafeModel

    _check(name)
    if version is not None and alias is not None:
        raise HTTPError(422, "give ?version= or ?alias=, not both",
                        errors=[{"name": "alias", "in": "query", "detail": "not with version"}])
    registry = ctx.app.models
    try:
        mv = registry.get(name, version, alias)
        model = registry.load_version(mv)
    except NotFound as exc:
        raise HTTPError(404, _first_line(exc)) from None
    except CorruptRecord as exc:
        ctx.log.error("model record corrupt", model=name, version=version, alias=alias, key=exc.key)
        raise HTTPError(409, _first_line(exc), title="Corrupt Registry Record") from None
    except UnsafeModel as exc:
        ctx.log.error("model refused", model=name, version=version, alias=alias, reason=exc.reason, detail=str(exc))
        raise HTTPError(500, str(exc), title="Model Refused", reason=exc.reason) from None
    rows = read_rows(ctx, columns=input_columns(model))
    return run(model, rows, name=mv.name, version=mv.version, max_rows=ctx.app.max_rows)


def input_columns(model: Any) -> dict[str, str] | None:
    """``{column: kind}`` of a nubes pipeline's raw input (its ``FrameInput`` step), else None."""
    steps = getattr(model, "steps", None)
    if steps and type(steps[0][1]).__name__ == "FrameInput":
        return dict(steps[0][1].columns or {})
    return None


def run(model: Any, rows: Any, *, name: str, version: int, max_rows: int | None = None) -> dict[str, Any]:
    """Predict ``rows`` with ``model`` and shape the answer (422 for missing or bad columns)."""
    from nubes.ml.frames import BadColumns, MissingColumns

    count = _count(rows)
    _within(count, max_rows)
    answer: dict[str, Any] = {"model": name, "version": version}
    if count == 0:
        answer["predictions"] = []
        return answer
    try:
        if getattr(model, "nubes_sequence", False):  # nubes.ml.sequence.SequenceModel (ONNX)
            answer.update(model.answer(rows))
            return answer
        if input_columns(model) is None:
            rows = _plain_input(model, rows)
        final, features = _prepare(model, rows)  # the pipeline's transforms run once for both calls
        answer.update(_outputs(final, features, plain=input_columns(model) is None))
    except MissingColumns as exc:
        raise HTTPError(422, str(exc), missing=exc.columns,
                        errors=[{"name": c, "in": "body", "detail": "missing feature column"} for c in exc.columns]) from None
    except BadColumns as exc:
        raise HTTPError(422, str(exc), errors=[{"name": e["name"], "in": "body", "detail": e["detail"]} for e in exc.errors]) from None
    return answer


def _outputs(final: Any, features: Any, *, plain: bool) -> dict[str, Any]:
    """``predictions`` (and ``probabilities`` / ``classes``): one pass through the model where its
    own ``predict`` is the arg-max of ``predict_proba`` (forests, calibrated classifiers)."""
    import numpy as np

    out: dict[str, Any] = {}
    try:
        proba = _proba(final, features)
        classes = getattr(final, "classes_", None)
        if proba is not None and _predict_is_argmax(final) and classes is not None and proba.ndim == 2:
            predictions = np.asarray(classes).take(np.argmax(proba, axis=1), axis=0)
        else:
            predictions = final.predict(features)
    except (ValueError, TypeError) as exc:
        if not plain:
            raise
        raise HTTPError(422, f"the model could not take these rows: {_first_line(exc)}",
                        hint="send the columns the model was fitted on, as records or as a list of rows") from None
    out["predictions"] = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
    if proba is not None:
        out["probabilities"] = proba.tolist()
        out["classes"] = [c.item() if hasattr(c, "item") else c for c in getattr(final, "classes_", [])]
    return out


def _proba(final: Any, features: Any) -> Any:
    if not hasattr(final, "predict_proba"):
        return None
    try:
        proba = final.predict_proba(features)
    except (AttributeError, NotImplementedError):
        return None
    return proba if hasattr(proba, "ndim") else None


def _predict_is_argmax(final: Any) -> bool:
    """True for estimators whose ``predict`` is exactly ``classes_[argmax(predict_proba)]`` (single output)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble._forest import ForestClassifier

    return isinstance(final, ForestClassifier | CalibratedClassifierCV) and getattr(final, "n_outputs_", 1) == 1


def _prepare(model: Any, rows: Any) -> tuple[Any, Any]:
    """(final estimator, its input): a pipeline's transform steps applied once -- exactly what
    ``Pipeline.predict`` and ``predict_proba`` each do before calling the final estimator."""
    steps = getattr(model, "steps", None)
    if not steps or len(steps) < 2 or not hasattr(model, "__getitem__"):
        return model, rows
    final = steps[-1][1]
    if final == "passthrough" or not hasattr(final, "predict"):
        return model, rows
    return final, model[:-1].transform(rows)


def _plain_input(model: Any, rows: Any) -> Any:
    """Rows for an estimator registered without nubes' input step: records ordered by the model's
    ``feature_names_in_`` (422 naming missing ones), or rows given as lists of numbers."""
    import numpy as np

    from nubes.ml.frames import BadColumns

    names = getattr(model, "feature_names_in_", None)
    if isinstance(rows, list) and rows and all(isinstance(r, list) for r in rows):
        try:
            return np.asarray(rows, dtype=float)
        except (TypeError, ValueError):
            raise BadColumns([{"name": "(rows)", "detail": "each row must be a list of numbers of one length"}]) from None
    if names is None:
        width = getattr(model, "n_features_in_", "its")
        raise HTTPError(422, f"this model was fitted without column names, so records cannot be matched to its {width} "
                             "inputs; send a list of rows ([[...], ...]) in the order it was fitted on")
    from nubes.ml.frames import to_frame

    return to_frame(rows, {str(n): "number" for n in names})  # MissingColumns / BadColumns name the problem


def read_rows(ctx: Context, columns: dict[str, str] | None = None) -> Any:
    """The request body as rows: a list of records, a list of rows, a dict of columns, or a Polars
    DataFrame. CSV and Parquet bodies are read up to ``ctx.app.max_rows`` + 1 rows (Parquet's footer
    count is checked before any page is decoded): more is a 413. With ``columns`` (the model's raw
    inputs and kinds), a JSON list of records for a model of numeric inputs is read straight into
    typed columns by Polars (:func:`_fast_records`); anything that path cannot read exactly goes
    through the general path."""
    request = ctx.request
    if request is None or not request.body.strip():
        raise HTTPError(400, "send the rows to predict in the body: JSON records, CSV or Parquet")
    ctype = request.content_type
    if ctype in JSON_TYPES or ctype.endswith("+json") or ctype == "text/plain":
        if columns:
            fast = _fast_records(request.body, columns)
            if fast is not None:
                return fast
        return _json_rows(request.json())
    import polars as pl

    max_rows = ctx.app.max_rows
    first = None if max_rows is None else max_rows + 1  # never decode more rows than the 413 needs to see
    try:
        if ctype in CSV_TYPES:
            frame = pl.read_csv(io.BytesIO(request.body), infer_schema=False, n_rows=first)
            _within(frame.height, max_rows, at_least=True)
            return frame
        if ctype in PARQUET_TYPES:
            if max_rows is not None:  # the footer's row count first: a small compressed body can hold millions
                _within(pl.scan_parquet(io.BytesIO(request.body)).select(pl.len()).collect().item(), max_rows)
            frame = pl.read_parquet(io.BytesIO(request.body), n_rows=first)
            _within(frame.height, max_rows, at_least=True)  # (a footer that under-counts)
            return frame
    except pl.exceptions.PolarsError as exc:
        raise HTTPError(400, f"cannot read the {ctype} body: {_first_line(exc)}") from None
    raise HTTPError(415, f"request body of type '{ctype}' is not accepted here; send application/json, "
                         "text/csv or application/vnd.apache.parquet")


def _json_rows(data: Any) -> Any:
    if isinstance(data, dict):
        if "records" in data or "instances" in data:
            data = data.get("records", data.get("instances"))
        elif "columns" in data and isinstance(data["columns"], dict):
            columns = data["columns"]
            lengths = {len(v) for v in columns.values() if isinstance(v, list)}
            if len(lengths) > 1 or not all(isinstance(v, list) for v in columns.values()):
                raise HTTPError(422, "'columns' must map each column name to a list, all of one length")
            return columns
        else:
            data = [data]
    if isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        return data
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise HTTPError(422, "a JSON body is a list of records (objects), {'records': [...]}, "
                             "{'columns': {name: [...]}}, one record, or a list of rows ([[...], ...])")
    return data


def _fast_records(body: bytes, columns: dict[str, str]) -> Any:
    """A Polars frame of ``columns`` read from a JSON array of records, or None to take the general path.

    Only for models whose inputs are all numbers: Polars reads a JSON number, boolean or null into a
    Float64 column exactly as the general path converts it, and refuses anything else (a string, a
    list, NaN), which then goes the general way. For text columns it would turn ``false`` into
    ``"false"`` where the general path writes ``"False"``, so those never take this path."""
    import polars as pl

    if not columns or any(kind != "number" for kind in columns.values()) or body.lstrip()[:1] != b"[":
        return None
    try:
        frame = pl.read_json(io.BytesIO(body), schema=dict.fromkeys(columns, pl.Float64))
    except (pl.exceptions.PolarsError, ValueError, TypeError, OverflowError):
        return None
    if frame.height and any(frame[c].null_count() == frame.height for c in frame.columns):
        return None  # absent from every record, or all null: let the general path tell which
    return frame


def _within(count: int, max_rows: int | None, *, at_least: bool = False) -> None:
    """A 413 when ``count`` rows (``at_least``: more than ``max_rows``, reading stopped there) exceed ``max_rows``."""
    if max_rows is not None and count > max_rows:
        what = "the body has more rows than" if at_least else f"{count:,} rows is more than"
        raise HTTPError(413, f"{what} this app's limit of {max_rows:,} per request",
                        title="Too Many Rows", max_rows=max_rows)


def _count(rows: Any) -> int:
    if isinstance(rows, list):
        return len(rows)
    if isinstance(rows, dict):
        return len(next(iter(rows.values()), []))
    return int(getattr(rows, "height", 0))


def _check(name: str) -> None:
    from nubes.errors import ConfigError
    from nubes.ml.records import check_name

    try:
        check_name(name)
    except ConfigError as exc:
        raise HTTPError(404, str(exc)) from None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


__all__ = ["describe_model", "input_columns", "list_models", "predict", "read_rows", "run"]
