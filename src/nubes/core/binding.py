"""Binding request data to handler parameters, driven by the handler's signature.

A handler's first parameter receives the :class:`~nubes.Context`. Every other parameter is bound
by name: from the path parameters, then the query string (a ``list[...]`` annotation takes every
repeat of its key), except a parameter named ``body``, which receives the request body — parsed
JSON by default, built into a dataclass or pydantic model when annotated with one, raw ``bytes``
or ``str`` when annotated so. Values are converted by annotation (str, int, float, bool, Decimal,
UUID, date, datetime, time, Enum, Literal, ``X | None``, ``list[X]``); a value that does not
convert, or a required one that is missing, is reported as a 422 naming the parameter.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import parse_qsl

from nubes.core.request import Request
from nubes.errors import ConfigError, HTTPError, ValidationError


class _Empty:
    """Marks 'no default' and 'no annotation' (``inspect.Parameter.empty``, without importing inspect)."""

    def __repr__(self) -> str:
        return "<empty>"


_EMPTY: Any = _Empty()
_TRUE = {"1", "true", "yes", "on", "t", "y", ""}
_FALSE = {"0", "false", "no", "off", "f", "n"}
SCALARS: tuple[type, ...] = (str, int, float, bool, Decimal, date, datetime, time)


def _is_uuid(tp: Any) -> bool:
    return getattr(tp, "__name__", "") == "UUID" and getattr(tp, "__module__", "") == "uuid"


class Param:
    """One bindable handler parameter (a plain class: ``dataclasses`` would import ``inspect`` at ``import nubes``).

    ``source`` is "path", "query" or "body"; ``annotation`` the type with Optional/Annotated stripped;
    ``many`` marks ``list[...]`` (every repeat of the query key).
    """

    __slots__ = ("annotation", "default", "many", "name", "nullable", "required", "source")

    def __init__(self, name: str, source: str, annotation: Any, required: bool, default: Any, many: bool,
                 nullable: bool) -> None:
        self.name, self.source, self.annotation = name, source, annotation
        self.required, self.default, self.many, self.nullable = required, default, many, nullable

    def __repr__(self) -> str:
        return f"Param({self.name!r}, {self.source!r}, {self.annotation!r}, required={self.required})"

    @property
    def item_type(self) -> Any:
        return get_args(self.annotation)[0] if self.many and get_args(self.annotation) else (str if self.many else self.annotation)


def _strip(annotation: Any) -> tuple[Any, bool]:
    """Remove ``Annotated`` and ``Optional``; return (type, nullable)."""
    nullable = False
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            nullable = nullable or len(args) < len(get_args(annotation))
            if len(args) != 1:
                return annotation, nullable
            annotation = args[0]
        else:
            return annotation, nullable


def signature_params(fn: Callable[..., Any], path_params: list[str], where: str) -> list[Param]:
    """Inspect ``fn`` once, at registration; raise :class:`ConfigError` for what cannot bind."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read the handler's signature: {exc}") from None
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # unresolvable forward references
        raise ConfigError(f"{where}: cannot resolve the handler's type annotations: {exc}") from None
    positional = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not positional or positional[0].kind is inspect.Parameter.KEYWORD_ONLY:
        raise ConfigError(f"{where}: a handler takes the Context as its first parameter, e.g. def handler(ctx): ...")
    params: list[Param] = []
    for p in positional[1:]:
        annotation, nullable = _strip(hints.get(p.name, Any))
        if annotation is inspect.Parameter.empty:
            annotation = Any
        source = "path" if p.name in path_params else ("body" if p.name == "body" else "query")
        many = get_origin(annotation) in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset)
        if source != "body":
            item = get_args(annotation)[0] if many and get_args(annotation) else (str if many else annotation)
            if not _convertible(item):
                raise ConfigError(
                    f"{where}: parameter '{p.name}' is annotated {annotation!r}, which a {source} parameter cannot take; "
                    "use str, int, float, bool, Decimal, UUID, date, datetime, time, an Enum, a Literal, "
                    "list[...] of those, or name it 'body' to receive the request body"
                )
        if source == "path" and many:
            raise ConfigError(f"{where}: path parameter '{p.name}' cannot be a list")
        has_default = p.default is not inspect.Parameter.empty
        default = p.default if has_default else (None if nullable else _EMPTY)
        required = not has_default and not nullable and not (many and source == "query")
        params.append(Param(p.name, source, annotation, required, default, many and source == "query", nullable))
    declared = {p.name for p in params}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    missing = [name for name in path_params if name not in declared]
    if missing and not takes_kwargs:
        raise ConfigError(f"{where}: path parameter(s) {', '.join(missing)} have no handler parameter of that name")
    return params


def _convertible(tp: Any) -> bool:
    if tp is Any or get_origin(tp) is Literal or _is_uuid(tp):
        return True
    return isinstance(tp, type) and (issubclass(tp, SCALARS) or issubclass(tp, enum.Enum))


def convert(value: str, tp: Any) -> Any:
    """Convert one text value to ``tp``; raise ValueError with a reason on failure."""
    if tp is Any or tp is str:
        return value
    if get_origin(tp) is Literal:
        for option in get_args(tp):
            try:
                if convert(value, type(option)) == option:
                    return option
            except ValueError:
                continue
        raise ValueError("must be one of " + ", ".join(repr(o) for o in get_args(tp)))
    if tp is bool:
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("must be a boolean (true/false, 1/0, yes/no, on/off)")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if str(member.value) == value or member.name == value:
                return member
        raise ValueError("must be one of " + ", ".join(repr(str(m.value)) for m in tp))
    try:
        if tp is int:
            if "_" in value:
                raise ValueError
            return int(value)
        if tp is float:
            return float(value)
        if tp is Decimal:
            result = Decimal(value)
            if not result.is_finite():
                raise ValueError
            return result
        if _is_uuid(tp):
            return tp(value)
        if tp in (datetime, date, time):
            try:
                return tp.fromisoformat(value)
            except ValueError:
                return tp.fromisoformat(value.replace(" ", "+"))  # an unencoded '+' arrives as a space
        return tp(value)
    except (ValueError, TypeError, ArithmeticError, InvalidOperation):
        raise ValueError(f"must be {_describe(tp)}") from None


def _describe(tp: Any) -> str:
    return {
        int: "an integer",
        float: "a number",
        Decimal: "a decimal number",
        date: "an ISO 8601 date (YYYY-MM-DD)",
        datetime: "an ISO 8601 date-time",
        time: "an ISO 8601 time",
    }.get(tp, "a UUID" if _is_uuid(tp) else f"a {getattr(tp, '__name__', tp)}")


def bind(params: list[Param], request: Request, path_values: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for the handler, or a :class:`ValidationError` naming every bad parameter."""
    kwargs: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for p in params:
        try:
            if p.source == "body":
                value = _bind_body(p, request)
            elif p.source == "path":
                value = convert(path_values[p.name], p.annotation)
            elif p.many:
                raw = request.query.getlist(p.name)
                value = [convert(v, p.item_type) for v in raw] if raw else ([] if p.default is _EMPTY else p.default)
            elif p.name in request.query:
                value = convert(request.query[p.name], p.annotation)
            elif p.required:
                raise ValueError("is required")
            else:
                value = p.default
        except ValueError as exc:
            errors.append({"name": p.name, "in": p.source, "detail": str(exc)})
            continue
        except _BodyErrors as exc:
            errors.extend(exc.errors)
            continue
        kwargs[p.name] = value
    if errors:
        raise ValidationError(errors)
    return kwargs


class _BodyErrors(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors


_JSON_TYPES = ("application/json", "text/json")


def _bind_body(p: Param, request: Request) -> Any:
    tp = p.annotation
    if not request.body:
        if p.required:
            raise ValueError("is required: send a request body")
        return p.default
    if tp is bytes:
        return request.body
    if tp is str:
        return request.text()
    ctype = request.content_type
    if ctype == "application/x-www-form-urlencoded":
        data: Any = dict(parse_qsl(request.text(), keep_blank_values=True))
    elif not ctype or ctype in _JSON_TYPES or ctype.endswith("+json") or ctype == "text/plain":
        data = request.json()
    else:
        raise HTTPError(415, f"request body of type '{ctype}' is not accepted here; send application/json")
    return build(tp, data, "body")


def build(tp: Any, data: Any, loc: str) -> Any:
    """Build ``tp`` from JSON ``data``; raise _BodyErrors naming the failing location."""
    tp, nullable = _strip(tp)
    if data is None:
        if nullable or tp is Any:
            return None
        raise _BodyErrors([{"name": loc, "in": "body", "detail": "may not be null"}])
    if tp is Any:
        return data
    validate = getattr(tp, "model_validate", None)
    if callable(validate):  # a pydantic model
        try:
            return validate(data)
        except Exception as exc:
            errs = getattr(exc, "errors", None)
            if not callable(errs):
                raise
            raise _BodyErrors(
                [{"name": ".".join([loc, *map(str, e.get("loc", ()))]), "in": "body", "detail": e.get("msg", "")} for e in errs()]
            ) from None
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        return _build_dataclass(tp, data, loc)
    origin = get_origin(tp) or tp
    args = get_args(tp)
    if origin in (list, tuple, set, frozenset):
        if not isinstance(data, list):
            raise _BodyErrors([{"name": loc, "in": "body", "detail": "must be an array"}])
        item = args[0] if args else Any
        return origin(build(item, v, f"{loc}[{i}]") for i, v in enumerate(data))
    if origin in (dict, Mapping):
        if not isinstance(data, dict):
            raise _BodyErrors([{"name": loc, "in": "body", "detail": "must be an object"}])
        value_type = args[1] if len(args) == 2 else Any
        return {k: build(value_type, v, f"{loc}.{k}") for k, v in data.items()}
    if tp is float and isinstance(data, (int, float)) and not isinstance(data, bool):
        return float(data)
    if tp in (int, str, bool) and type(data) is tp:
        return data
    if tp is Decimal and isinstance(data, (int, float)) and not isinstance(data, bool):
        return Decimal(str(data))
    if isinstance(data, str) and _convertible(tp):
        try:
            return convert(data, tp)
        except ValueError as exc:
            raise _BodyErrors([{"name": loc, "in": "body", "detail": str(exc)}]) from None
    if get_origin(tp) is Literal and data in get_args(tp):
        return data
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            pass
    raise _BodyErrors([{"name": loc, "in": "body", "detail": f"must be {_describe(tp) if tp in (int, float) else _json_name(tp)}"}])


def _json_name(tp: Any) -> str:
    return {str: "a string", bool: "a boolean"}.get(tp, f"a {getattr(tp, '__name__', tp)}")


def _build_dataclass(tp: type, data: Any, loc: str) -> Any:
    import dataclasses

    if not isinstance(data, dict):
        raise _BodyErrors([{"name": loc, "in": "body", "detail": f"must be a JSON object ({tp.__name__})"}])
    hints = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
    kwargs: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name in data:
        if name not in fields:
            errors.append({"name": f"{loc}.{name}", "in": "body", "detail": "is not a known field"})
    for name, field in fields.items():
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                errors.append({"name": f"{loc}.{name}", "in": "body", "detail": "is required"})
            continue
        try:
            kwargs[name] = build(hints.get(name, Any), data[name], f"{loc}.{name}")
        except _BodyErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise _BodyErrors(errors)
    try:
        return tp(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ validation
        raise _BodyErrors([{"name": loc, "in": "body", "detail": str(exc)}]) from None
