"""From a loaded app to its units and their third-party modules (see :mod:`.footprint`).

The base is what every function of the app runs: the cloud's entry file (its adapter), the app
module's top level, :class:`~nubes.App` handling an invocation, and the store backends the app
names (home store, catalog datasets, event stores). Each unit adds what its handlers reach.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from nubes.deploy.build.errors import BuildError
from nubes.deploy.build.footprint import Analysis, Need
from nubes.deploy.build.footprint_ast import _top_level
from nubes.deploy.build.plan import Unit, api_route


def first_party(app_root: Path) -> Callable[[str], bool]:
    """Whether a module belongs to the app: its file lies under ``app_root`` (nubes never does)."""
    root = app_root.resolve()

    def check(name: str) -> bool:
        if not name or name == "nubes" or name.startswith("nubes."):
            return False
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        return isinstance(path, str) and Path(path).resolve().is_relative_to(root)

    return check


def store_classes(uris: list[str]) -> list[type]:
    """The backend classes of the stores at ``uris`` (imported on the build machine)."""
    import importlib

    from nubes.storage import registered

    out = []
    for uri in uris:
        backend = registered().get(uri.split("://", 1)[0].lower()) if "://" in uri else None
        if backend is None or backend.sdk is None:
            continue
        if not isinstance(backend.target, str):  # a class registered directly: already imported
            out.append(backend.target)
            continue
        module, _, attr = backend.target.partition(":")
        try:
            out.append(getattr(importlib.import_module(module), attr))
        except ImportError as exc:
            raise BuildError(f"{uri}: the build machine needs the store's SDK to analyse it ({exc}); "
                             f"pip install 'nubes[{backend.extra}]'") from None
    return out


def app_stores(app: Any, home: str) -> list[str]:
    uris = [home]
    for dataset in getattr(app, "catalog", {}).values() if hasattr(getattr(app, "catalog", None), "values") else []:
        uri = getattr(dataset, "uri", None)
        if isinstance(uri, str):
            uris.append(uri)
    uris += [r.store for r in app.event_routes if getattr(r, "store", None)]
    return sorted(set(uris))


def analyse(app: Any, app_module: str, entry_text: str, stores: list[str], app_root: Path,
            cloud: Any = None) -> tuple[Need, list[Unit], Analysis]:
    """The base need and each unit's own modules (beyond the base). A job route's unit also holds what
    ``cloud``'s job dispatcher (``cloud.job_dispatcher(...).submit``, reached at run time through the
    platform, so never by the handler's own code) imports: Cloud Tasks, the Storage queue client."""
    from nubes.core.context import Context

    handlers = [r.handler for r in app.router.routes] + [r.handler for r in app.event_routes]
    context = getattr(app, "context_class", Context)  # the app's Context, with its extensions' attributes

    def dynamic(cls: type, name: str) -> Any:
        if cls is type(app) or cls in type(app).__mro__:  # attributes the app's extensions added (app.models ...)
            return getattr(app, "_attributes", {}).get(name) or getattr(app, "_lazy", {}).get(name)
        return None

    base = Analysis(first_party(app_root), handlers, dynamic)
    base.code(_top_level(ast.parse(entry_text)), "<entry>", via="entry")
    base.instantiate(type(app), "entry")
    for name in ("handle", "handle_event"):
        base.call_name(name, "entry")
    base.module(app_module, "app module")
    for hook in getattr(app, "hooks", []):  # invocation hooks (metering) run on every invocation
        base.reference(hook, f"hook {type(hook).__name__}")
        for name in ("begin", "end"):
            base.member(type(hook), name, f"hook {type(hook).__name__}")
    for cls in store_classes(stores):
        base.instantiate(cls, f"store {cls.__name__}")
        for klass in cls.__mro__:
            for name, value in vars(klass).items():
                if inspect.isfunction(value) or isinstance(value, property):
                    base.member(cls, name, f"store {cls.__name__}")
    base_modules = base.need.resolved()
    units: dict[str, Unit] = {}
    for route in app.router.routes:
        methods = sorted(route.methods - {"HEAD"}) or sorted(route.methods)
        key = f"{','.join(methods)} {route.path}"
        unit = units.setdefault(key, Unit(key, "http", [f"{m} {route.path}" for m in methods],
                                          [api_route(m, route.path) for m in methods], internal=route.internal))
        _add(unit, base, route.handler, context, base_modules)
        if cloud is not None and (getattr(route, "options", None) or {}).get("job"):
            _add_dispatch(unit, base, cloud, base_modules)
    for route in app.event_routes:
        trigger = {"object_created": "", "message": route.queue or "*", "schedule": route.schedule or route.name}.get(route.kind, "")
        key = f"{route.kind} {trigger}".strip()
        unit = units.setdefault(key, Unit(key, route.kind, []))
        unit.routes.append(f"{route.kind} {route.name}")
        _add(unit, base, route.handler, context, base_modules)
    return base.need, list(units.values()), base


def _add(unit: Unit, base: Analysis, handler: Any, context: type, base_modules: dict[str, str]) -> None:
    run = base.fork()
    run.function(handler, None, unit.key, first_param=context)
    for module, via in run.need.resolved().items():
        if module not in base_modules:
            unit.modules.setdefault(module, via)
    unit.dynamic = [d for d in run.need.dynamic if d not in base.need.dynamic]
    unit.missing = {m: w for m, w in run.need.missing.items() if m not in base.need.missing}


def _add_dispatch(unit: Unit, base: Analysis, cloud: Any, base_modules: dict[str, str]) -> None:
    run = base.fork()
    via = f"{unit.key} (job dispatch)"
    run.instantiate(type(cloud), via)
    run.member(type(cloud), "job_dispatcher", via)
    run.call_name("submit", via)
    for module, where in run.need.resolved().items():
        if module not in base_modules:
            unit.modules.setdefault(module, where)


def host_distribution(module: str) -> str | None:
    """The installed distribution (build machine) that provides ``module``."""
    top = module.split(".")[0]
    owners = _packages_distributions().get(top, [])
    if not owners:
        return _by_file(top)
    if len(set(owners)) == 1:
        return owners[0]
    path = module.replace(".", "/")
    for dist in sorted(set(owners)):
        files = metadata.files(dist) or []
        if any(str(f).startswith(path + "/") or str(f) == path + ".py" for f in files):
            return dist
    return sorted(set(owners))[0]


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


def _by_file(top: str) -> str | None:
    """The distribution whose RECORD lists the file ``top`` is imported from (extension modules such
    as ``_duckdb`` are missing from ``packages_distributions``)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    if not origin:
        return None
    path = Path(origin).resolve()
    for entry in sys.path:
        folder = Path(entry or ".").resolve()
        if path.is_relative_to(folder):
            rel = path.relative_to(folder).as_posix()
            for dist in metadata.distributions(path=[str(folder)]):
                if any(str(f) == rel for f in dist.files or []):
                    return str(dist.metadata["Name"])
    return None


def declared_specifiers() -> dict[str, str]:
    """nubes' own version constraints per distribution (from its installed metadata)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    out: dict[str, str] = {}
    try:
        requires = metadata.requires("nubes") or []
    except metadata.PackageNotFoundError:
        return out
    for line in requires:
        req = Requirement(line)
        if str(req.specifier):
            out.setdefault(canonicalize_name(req.name), str(req.specifier))
    return out
