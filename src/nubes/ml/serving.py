"""The built-in model routes (on unless ``App(models=False)``)::

    GET  /_nubes/models                  the registered models, their latest version and aliases
    GET  /_nubes/models/{name}           every live version of one model, with its metadata
    POST /_nubes/models/{name}/predict   predictions for the rows in the body

``predict`` takes JSON (a list of records, ``{"records": [...]}``, ``{"columns": {name: [...]}}``
or one record), CSV (``text/csv``, header row) or Parquet (``application/vnd.apache.parquet``),
and ``?version=N`` or ``?alias=NAME`` (default: the ``production`` alias, else the latest
version). It answers ``{"model", "version", "predictions": [...]}`` plus ``"probabilities"``
(one list per row, in the order of ``"classes"``) when the model has ``predict_proba``. Rows
missing a feature column are a 422 naming the columns; a model whose artifact fails its integrity
checks is a 500 that says so (and nothing from the artifact runs). Models are loaded once per warm
instance (the registry's cache, keyed by version and digest); aliases are resolved per request.
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
    for name in registry.names():
        versions = registry.versions(name)
        if not versions:
            continue
        latest = versions[-1]
        models.append({"name": name, "versions": len(versions), "latest": latest.version,
                       "aliases": registry.aliases(name), "task": latest.task, "estimator": latest.estimator,
                       "created": latest.created, "metrics": latest.metrics})
    return {"app": ctx.app.name, "models": models}


def describe_model(ctx: Context, name: str) -> dict[str, Any]:
    registry = ctx.app.models
    _check(name)
    versions = registry.versions(name)
    if not versions:
        raise HTTPError(404, f"no model {name!r}; registered: {', '.join(registry.names()) or 'none'}")
    return {"name": name, "aliases": registry.aliases(name), "versions": [v.to_dict() for v in versions]}


def predict(ctx: Context, name: str, version: int | None = None, alias: str | None = None) -> dict[str, Any]:
    from nubes.errors import NotFound
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
    except UnsafeModel as exc:
        ctx.log.error("model refused", model=name, version=version, alias=alias, reason=exc.reason, detail=str(exc))
        raise HTTPError(500, str(exc), title="Model Refused", reason=exc.reason) from None
    rows = read_rows(ctx)
    return run(model, rows, name=mv.name, version=mv.version, max_rows=ctx.app.max_rows)


def run(model: Any, rows: Any, *, name: str, version: int, max_rows: int | None = None) -> dict[str, Any]:
    """Predict ``rows`` with ``model`` and shape the answer (422 for missing or bad columns)."""
    from nubes.ml.train import BadColumns, MissingColumns

    count = _count(rows)
    if max_rows is not None and count > max_rows:
        raise HTTPError(413, f"{count:,} rows is more than this app's limit of {max_rows:,} per request",
                        title="Too Many Rows", max_rows=max_rows)
    answer: dict[str, Any] = {"model": name, "version": version}
    if count == 0:
        answer["predictions"] = []
        return answer
    try:
        final, features = _prepare(model, rows)  # the pipeline's transforms run once for both calls
        predictions = final.predict(features)
        answer["predictions"] = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
        if hasattr(final, "predict_proba"):
            try:
                proba = final.predict_proba(features)
            except (AttributeError, NotImplementedError):
                proba = None
            if proba is not None:
                answer["probabilities"] = proba.tolist()
                answer["classes"] = [c.item() if hasattr(c, "item") else c for c in getattr(final, "classes_", [])]
    except MissingColumns as exc:
        raise HTTPError(422, str(exc), missing=exc.columns,
                        errors=[{"name": c, "in": "body", "detail": "missing feature column"} for c in exc.columns]) from None
    except BadColumns as exc:
        raise HTTPError(422, str(exc), errors=[{"name": e["name"], "in": "body", "detail": e["detail"]} for e in exc.errors]) from None
    return answer


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


def read_rows(ctx: Context) -> Any:
    """The request body as rows: a list of records, a dict of columns, or a Polars DataFrame."""
    request = ctx.request
    if request is None or not request.body.strip():
        raise HTTPError(400, "send the rows to predict in the body: JSON records, CSV or Parquet")
    ctype = request.content_type
    if ctype in JSON_TYPES or ctype.endswith("+json") or ctype == "text/plain":
        data = request.json()
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
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise HTTPError(422, "a JSON body is a list of records (objects), {'records': [...]}, "
                                 "{'columns': {name: [...]}} or one record")
        return data
    import polars as pl

    try:
        if ctype in CSV_TYPES:
            return pl.read_csv(io.BytesIO(request.body), infer_schema=False)
        if ctype in PARQUET_TYPES:
            return pl.read_parquet(io.BytesIO(request.body))
    except pl.exceptions.PolarsError as exc:
        raise HTTPError(400, f"cannot read the {ctype} body: {_first_line(exc)}") from None
    raise HTTPError(415, f"request body of type '{ctype}' is not accepted here; send application/json, "
                         "text/csv or application/vnd.apache.parquet")


def _count(rows: Any) -> int:
    if isinstance(rows, list):
        return len(rows)
    if isinstance(rows, dict):
        return len(next(iter(rows.values()), []))
    return int(getattr(rows, "height", 0))


def _check(name: str) -> None:
    from nubes.errors import ConfigError
    from nubes.ml.registry import check_name

    try:
        check_name(name)
    except ConfigError as exc:
        raise HTTPError(404, str(exc)) from None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


__all__ = ["describe_model", "list_models", "predict", "read_rows", "run"]
