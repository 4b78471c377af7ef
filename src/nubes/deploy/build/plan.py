"""Which routes go in which function: one function when the app fits, else a split by footprint.

A unit is one HTTP route, or the event routes one trigger delivers together (every
object-created route, the message routes of one queue, the routes of one schedule). A unit's
footprint is the base (what the entry imports) plus the distributions its code needs (derived
by :mod:`.footprint`, plus what ``[build.footprints]`` declares). When the whole app is over the
cloud's limit, units are packed into functions first-fit-decreasing, each unit joining the
function it grows least, so a SQL route never carries scikit-learn unless it shares a function
that fits anyway. A unit that alone is over the limit cannot be split further: the build says so
with its sizes.

Every function carries the whole app (one routing table); the API keeps one address by routing
each route key to its function (API Gateway routes ``METHOD /path``; ``$default`` to the function
with the smallest footprint, which answers unknown paths with the app's own 404).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from nubes.deploy.build.errors import BuildError


@dataclass
class Unit:
    """Routes deployed together, with what they need beyond the base."""

    key: str
    kind: str  # "http" | "object_created" | "message" | "schedule"
    routes: list[str]  # "GET /path" route keys (HTTP) or event names
    api_routes: list[str] = field(default_factory=list)  # API Gateway route keys
    modules: dict[str, str] = field(default_factory=dict)  # third-party module -> the code that imports it
    dists: set[str] = field(default_factory=set)
    declared: list[str] = field(default_factory=list)
    dynamic: list[str] = field(default_factory=list)  # app code importing by a computed name (file:line)
    internal: bool = False  # nubes' built-in /_nubes/ routes
    missing: dict[str, str] = field(default_factory=dict)  # imports of modules not installed on the build machine


@dataclass
class Function:
    """One deployable function: its units and distributions (base included)."""

    name: str
    units: list[Unit]
    dists: set[str]
    size: int = 0

    @property
    def routes(self) -> list[str]:
        return [r for u in self.units for r in u.routes]


def api_route(method: str, path: str) -> str:
    """API Gateway's route key for a nubes path (``{rest:path}`` is a greedy ``{rest+}``)."""
    return f"{method} " + re.sub(r"\{(\w+):path\}", r"{\1+}", path)


def plan(app_name: str, units: list[Unit], base: set[str], size_of: Callable[[set[str]], int], limit: int | None,
         *, split: bool, label: Callable[[Function], str | None] = lambda fn: None) -> tuple[list[Function], list[tuple[int, Unit]]]:
    """Functions for ``units`` under ``limit`` bytes (None: no limit), and the built-in units left out.

    Without ``split`` an app over the limit is an error naming the heaviest routes. With it, units
    are packed as the module docstring says (the units needing nothing beyond the base form the first
    function, which also answers ``$default``; ``label`` names the others); a unit of nubes' built-in routes that alone is over the
    limit (``/_nubes/models/*`` carries scikit-learn and Polars) is left out and returned with its
    size, while one of the app's own routes over the limit is an error.
    """
    everything = set(base).union(*(u.dists for u in units)) if units else set(base)
    whole = size_of(everything)
    if limit is None or whole <= limit:
        return [Function(_name(app_name, None), list(units), everything, whole)], []
    sized = [(size_of(base | u.dists), u) for u in units]
    too_big = [(s, u) for s, u in sized if s > limit and not u.internal]
    if not split or too_big:
        worst = sorted(too_big or sized, key=lambda t: -t[0])[:5]
        detail = "; ".join(f"{u.key} needs {mb(s)} ({', '.join(sorted(u.dists)[:6])})" for s, u in worst)
        raise BuildError(f"the app is {mb(whole)} unpacked, over the {mb(limit)} limit; {detail}", sizes=worst)
    excluded = [(s, u) for s, u in sized if s > limit]
    main = Function("", [u for s, u in sized if s <= limit and not u.dists], set(base), size_of(set(base)))
    bins: list[Function] = []
    for size, unit in sorted(((s, u) for s, u in sized if s <= limit and u.dists), key=lambda t: (-t[0], t[1].key)):
        best: tuple[int, int, Function] | None = None
        for fn in bins:
            grown = size_of(fn.dists | unit.dists)
            if grown <= limit and (best is None or (grown - fn.size, fn.size) < best[:2]):
                best = (grown - fn.size, fn.size, fn)
        if best is None:
            bins.append(Function("", [unit], base | unit.dists, size))
        else:
            best[2].units.append(unit)
            best[2].dists |= unit.dists
            best[2].size = size_of(best[2].dists)
    bins.sort(key=lambda f: (f.size, f.routes))
    main.name = _name(app_name, None)
    used = {main.name}
    for fn in bins:
        name = _name(app_name, label(fn) or "fn")
        while name in used:
            name += "-x"
        used.add(name)
        fn.name = name
    return [main, *bins], excluded


def _name(app_name: str, label: str | None) -> str:
    base = re.sub(r"[^A-Za-z0-9-]+", "-", app_name).strip("-") or "app"
    return f"{base}-{label}"[:64] if label else base[:64]


def mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"
