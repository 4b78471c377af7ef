"""OpenAPI 3.1 description of an app, derived from its routes' paths, parameters and annotations."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import inspect
import types
import typing
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin
from uuid import UUID

from nubes.core.binding import _EMPTY, Param, _strip
from nubes.core.encoding import FORMATS

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.routing import Route

_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "in": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
    },
    "required": ["type", "title", "status"],
}
_JOB = {
    "type": "object",
    "description": "A job (nubes.core.jobs): poll GET /_nubes/jobs/{id}; the result is at /_nubes/jobs/{id}/result",
    "properties": {
        "id": {"type": "string"}, "route": {"type": "string"}, "method": {"type": "string"}, "path": {"type": "string"},
        "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "submitted": {"type": "string", "format": "date-time"},
        "started": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
        "finished": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
        "attempts": {"type": "integer"},
        "progress": {"type": "object", "properties": {"value": {"anyOf": [{"type": "number"}, {"type": "null"}]},
                                                       "message": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
        "result": {"description": "The handler's JSON result (under 256 KiB) once succeeded"},
        "result_type": {"type": "string"},
        "problem": {"anyOf": [{"$ref": "#/components/schemas/Problem"}, {"type": "null"}]},
        "cost_usd": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "expires": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
        "location": {"type": "string"},
    },
    "required": ["id", "route", "status", "submitted", "attempts", "location"],
}
_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    Decimal: {"type": "number"},
    UUID: {"type": "string", "format": "uuid"},
    date: {"type": "string", "format": "date"},
    datetime: {"type": "string", "format": "date-time"},
    time: {"type": "string", "format": "time"},
    bytes: {"type": "string", "contentMediaType": "application/octet-stream"},
}
_TABLE_NAMES = {("polars", "DataFrame"), ("polars", "LazyFrame"), ("duckdb", "DuckDBPyRelation"), ("pyarrow", "Table")}


class _Schemas:
    """Builds JSON Schemas, collecting named dataclass/pydantic schemas under components."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {"Problem": _PROBLEM, "NubesJob": _JOB}

    def of(self, tp: Any) -> dict[str, Any]:
        tp, nullable = _strip(tp)
        schema = self._of(tp)
        if nullable:
            return {"anyOf": [schema, {"type": "null"}]}
        return schema

    def _of(self, tp: Any) -> dict[str, Any]:
        if tp is Any or tp is inspect.Parameter.empty or tp is None or tp is _EMPTY:
            return {}
        if tp in _SCALARS:
            return dict(_SCALARS[tp])
        origin, args = get_origin(tp), get_args(tp)
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.of(a) for a in args]}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"enum": [m.value for m in tp]}
        if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
            return {"type": "array", "items": self.of(args[0]) if args else {}}
        if origin is dict or tp is dict:
            return {"type": "object", "additionalProperties": self.of(args[1]) if len(args) == 2 else {}}
        schema_fn = getattr(tp, "model_json_schema", None)
        if callable(schema_fn):
            schema = schema_fn(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                self.components[name] = sub
            self.components[tp.__name__] = schema
            return {"$ref": f"#/components/schemas/{tp.__name__}"}
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            name = tp.__name__
            if name not in self.components:
                self.components[name] = {}  # placeholder against recursion
                hints = typing.get_type_hints(tp)
                props, required = {}, []
                for f in dataclasses.fields(tp):
                    props[f.name] = self.of(hints.get(f.name, Any))
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                        required.append(f.name)
                self.components[name] = {"type": "object", "properties": props, "required": required}
            return {"$ref": f"#/components/schemas/{name}"}
        return {}


def _is_table_type(tp: Any) -> bool:
    module = getattr(tp, "__module__", "").split(".", 1)[0].lstrip("_")
    return (module, getattr(tp, "__name__", "")) in _TABLE_NAMES


def _operation(route: Route, method: str, schemas: _Schemas) -> dict[str, Any]:
    name = route.handler.__name__
    if route.internal:  # built-in handlers are named after what they do, not unique across extensions
        name = "nubes_" + "_".join(p.strip("{}").replace(".", "_") for p in route.path.split("/")[2:] if p)
    op: dict[str, Any] = {"operationId": f"{name}_{method.lower()}" if len(route.methods) > 1 or route.internal else name}
    if route.summary:
        op["summary"] = route.summary
    if route.description:
        op["description"] = route.description
    if route.tags:
        op["tags"] = list(route.tags)
    parameters = []
    body: Param | None = None
    for p in route.params:
        if p.source == "body":
            body = p
            continue
        schema = schemas.of(p.annotation)
        if p.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        if p.default is not _EMPTY and p.default is not None and not p.many:
            with contextlib.suppress(TypeError):
                schema["default"] = p.default.value if isinstance(p.default, enum.Enum) else p.default
        entry: dict[str, Any] = {"name": p.name, "in": p.source, "required": p.source == "path" or p.required, "schema": schema}
        if p.many:
            entry["explode"] = True
        parameters.append(entry)
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        content: dict[str, Any]
        if body.annotation is bytes:
            content = {"application/octet-stream": {"schema": {}}}
        elif body.annotation is str:
            content = {"text/plain": {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": schemas.of(body.annotation)}}
        op["requestBody"] = {"required": body.required, "content": content}
    hints: dict[str, Any]
    try:
        hints = typing.get_type_hints(route.handler)
    except Exception:
        hints = {}
    ret = hints.get("return", inspect.Parameter.empty)
    responses: dict[str, Any] = {}
    if ret is type(None):
        responses["204"] = {"description": "No content"}
    elif _is_table_type(ret):
        responses["200"] = {
            "description": "A table: JSON records by default; ?format= or Accept selects another encoding",
            "content": {
                media.split(";")[0]: {"schema": {"type": "array", "items": {"type": "object"}}} if fmt == "json" else {}
                for fmt, media in FORMATS.items()
            },
        }
        parameters = op.setdefault("parameters", [])
        if not any(p["name"] == "format" for p in parameters):
            parameters.append({"name": "format", "in": "query", "required": False, "schema": {"enum": list(FORMATS)}})
    elif ret is bytes:
        responses["200"] = {"description": "Binary content", "content": {"application/octet-stream": {"schema": {}}}}
    else:
        schema = {} if getattr(ret, "__name__", "") == "Response" else schemas.of(ret)
        responses["200"] = {"description": "Success", "content": {"application/json": {"schema": schema}}}
    if route.options.get("job"):
        result = responses.pop("200", None) or responses.pop("204", None)
        responses.clear()
        responses["202"] = {"description": "Accepted as a job: poll the Location (GET /_nubes/jobs/{job_id})",
                            "headers": {"Location": {"schema": {"type": "string"}, "description": "/_nubes/jobs/{job_id}"}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NubesJob"}}}}
        op["x-nubes-job"] = {"status": "/_nubes/jobs/{job_id}", "result": "/_nubes/jobs/{job_id}/result",
                             "result_response": result or {}}
        parameters = op.setdefault("parameters", [])
        parameters.append({"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 255},
                           "description": "A retried submit with the same key returns the same job"})
    problem = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if route.params:
        responses["422"] = {"description": "A parameter or the body did not validate", **problem}
    if body is not None:
        responses["400"] = {"description": "Malformed request body", **problem}
    responses["default"] = {"description": "Error", **problem}
    op["responses"] = responses
    return op


def document(app: App) -> dict[str, Any]:
    """The OpenAPI 3.1 document for everything ``app`` answers: its routes (jobs answer 202 with the
    ``Job`` schema and carry ``x-nubes-job``), the built-in ``/_nubes/`` routes that are enabled
    (tagged ``nubes``), and its event handlers with their bindings per cloud (``x-nubes-events``)."""
    from nubes.core.triggers import listing

    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    auth = app.auth
    for route in sorted(app.router.routes, key=lambda r: r.internal):
        item = paths.setdefault(route.template.openapi_path(), {})
        needed = auth.requirement_for(route)
        for method in sorted(route.methods):
            op = item[method.lower()] = _operation(route, method, schemas)
            if route.internal:
                op["tags"] = ["nubes"]
            if needed is not None:
                _secure(op, needed.describe())
    info: dict[str, Any] = {"title": app.title, "version": app.version}
    if app.description:
        info["description"] = app.description
    components: dict[str, Any] = {"schemas": schemas.components, "securitySchemes": {
        "apiKey": {"type": "apiKey", "in": "header", "name": auth.api_key_header,
                   "description": "An API key configured (hashed) under [auth.api_keys]"},
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "A JWT from the issuer configured under [auth.jwt]"},
    }}
    doc: dict[str, Any] = {"openapi": "3.1.0", "info": info, "paths": paths, "components": components,
                           "tags": [{"name": "nubes", "description": "Built-in routes of nubes (enabled ones only)"}]}
    events = listing(app)
    if events:
        doc["x-nubes-events"] = events
    return doc


def _secure(op: dict[str, Any], needs: str) -> None:
    """Mark ``op`` as needing credentials (an API key or a bearer token) and document its 401/403."""
    op["security"] = [{"apiKey": []}, {"bearer": []}]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    op["responses"].setdefault("401", {"description": "No or invalid credentials", "content": problem})
    op["responses"].setdefault("403", {"description": f"The caller lacks what the route needs: {needs}", "content": problem})
