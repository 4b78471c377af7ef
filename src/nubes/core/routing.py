"""Path templates and the router.

A template is a ``/``-separated path whose segments may hold ``{name}`` parameters (one segment,
possibly with literal text around it: ``/reports/{day}.csv``); a final ``{name:path}`` captures the
rest of the path, slashes included. Matching works on the raw path segment by segment, decoding
each segment, so an encoded ``%2F`` stays inside its parameter. Literal segments win over
parameters, and a ``:path`` tail is tried last, whatever the registration order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from nubes.core.binding import Param
from nubes.errors import ConfigError, HTTPError

_PARAM = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class PathTemplate:
    """A compiled route path; :meth:`match` returns the decoded parameters or None."""

    def __init__(self, template: str) -> None:
        if not template.startswith("/"):
            raise ConfigError(f"route path {template!r} must start with '/'")
        self.template = template
        self.names: list[str] = []
        self.tail: str | None = None
        self._segments: list[tuple[str, re.Pattern[str] | str]] = []
        raw_segments = template[1:].split("/") if template != "/" else []
        for index, segment in enumerate(raw_segments):
            specs = _PARAM.findall(segment)
            if "{" in _PARAM.sub("", segment) or "}" in _PARAM.sub("", segment):
                raise ConfigError(f"route path {template!r}: unbalanced braces in segment {segment!r}")
            if not specs:
                self._segments.append(("literal", segment))
                continue
            pattern = ""
            last = 0
            for m in _PARAM.finditer(segment):
                name, _, kind = m.group(1).partition(":")
                self._add_name(name)
                if kind == "path":
                    if index != len(raw_segments) - 1 or m.group(0) != segment:
                        raise ConfigError(f"route path {template!r}: '{{{m.group(1)}}}' must be the whole last segment")
                    self.tail = name
                elif kind:
                    raise ConfigError(
                        f"route path {template!r}: unknown parameter kind ':{kind}'; "
                        "only '{name:path}' exists (types come from the handler's annotations)"
                    )
                pattern += re.escape(segment[last : m.start()]) + f"(?P<{name}>.+?)"
                last = m.end()
            pattern += re.escape(segment[last:])
            if self.tail is None:
                kind = "param" if len(specs) == 1 and segment == "{" + specs[0] + "}" else "mixed"
                self._segments.append((kind, re.compile(pattern + r"\Z", re.S)))
        # literal < mixed < param, position by position; a tail sorts after everything
        order = {"literal": 0, "mixed": 1, "param": 2}
        self.sort_key = (self.tail is not None, tuple(order[k] for k, _ in self._segments))

    def _add_name(self, name: str) -> None:
        if not _NAME.match(name):
            raise ConfigError(f"route path {self.template!r}: '{name}' is not a valid parameter name")
        if name in self.names:
            raise ConfigError(f"route path {self.template!r}: parameter '{name}' appears twice")
        self.names.append(name)

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        fixed = self._segments
        if self.tail is None:
            if len(segments) != len(fixed):
                return None
        elif len(segments) <= len(fixed):
            return None
        values: dict[str, str] = {}
        for (kind, spec), raw in zip(fixed, segments, strict=False):
            text = unquote(raw)
            if kind == "literal":
                if text != spec:
                    return None
                continue
            m = spec.fullmatch(text)  # type: ignore[union-attr]
            if m is None:
                return None
            values.update(m.groupdict())
        if self.tail is not None:
            rest = [unquote(s) for s in segments[len(fixed) :]]
            if not rest or rest == [""]:
                return None
            values[self.tail] = "/".join(rest)
        return values

    def openapi_path(self) -> str:
        return _PARAM.sub(lambda m: "{" + m.group(1).partition(":")[0] + "}", self.template)


class Route:
    """A registered handler: its path template, methods and bindable parameters.

    ``query_format`` says whether ``?format=`` picks a table encoding (not when the handler has a
    ``format`` query parameter of its own).
    """

    def __init__(
        self,
        *,
        path: str,
        methods: frozenset[str],
        handler: Callable[..., Any],
        params: list[Param],
        template: PathTemplate,
        name: str,
        summary: str | None = None,
        description: str | None = None,
        tags: tuple[str, ...] = (),
        internal: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.path, self.methods, self.handler, self.params = path, methods, handler, params
        self.template, self.name, self.summary, self.description = template, name, summary, description
        self.tags, self.internal, self.options = tags, internal, options if options is not None else {}
        self.query_format = not any(p.name == "format" and p.source == "query" for p in params)

    def __repr__(self) -> str:
        return f"<Route {','.join(sorted(self.methods))} {self.path} -> {self.name}>"


class Router:
    """Routes in match order; :meth:`match` resolves a method and raw path or raises 404/405."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, route: Route) -> None:
        for other in self.routes:
            if other.template.openapi_path() == route.template.openapi_path() and other.methods & route.methods:
                dup = ", ".join(sorted(other.methods & route.methods))
                raise ConfigError(f"route {dup} {route.path} is already handled by {other.name}")
        self.routes.append(route)
        self.routes.sort(key=lambda r: r.template.sort_key)  # stable: registration order breaks ties

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
        segments = raw_path[1:].split("/") if raw_path not in ("", "/") else []
        allowed: set[str] = set()
        for route in self.routes:
            values = route.template.match(segments)
            if values is None:
                continue
            if method in route.methods or (method == "HEAD" and "GET" in route.methods):
                return route, values
            allowed |= route.methods
        if allowed:
            if "GET" in allowed:
                allowed.add("HEAD")
            allowed.add("OPTIONS")
            allow = ", ".join(sorted(allowed))
            if method == "OPTIONS":
                raise _Options(allow)
            raise HTTPError(
                405, f"{method} is not allowed on {unquote(raw_path)}; allowed: {allow}", headers={"Allow": allow}
            )
        raise HTTPError(404, f"no route matches {unquote(raw_path) or '/'}")


class _Options(Exception):
    """Internal: an OPTIONS request on a path with no OPTIONS handler; answered 204 with Allow."""

    def __init__(self, allow: str) -> None:
        self.allow = allow
