"""``nubes.toml`` ``[deploy.CLOUD]``: read, check the shape, then ask the cloud's deployer what it allows.

::

    [deploy.aws]                       # also [deploy.gcp], [deploy.azure]
    name = "sales"                     # function / app name (default: the App's name)
    region = "us-east-1"               # gcp: region, project; azure: location, resource_group, subscription
    memory = 1024                      # MB
    timeout = 30                       # s
    architecture = "arm64"             # x86_64 | arm64 (aws)
    storage = "s3://bucket/prefix"     # the home store; required; file:// refused
    http = "http-api"                  # aws: http-api | function-url | rest | none
    environment = { KEY = "value" }
    [deploy.aws.routes."POST /train"]  # per-route overrides
    timeout = 29
    [deploy.aws.sources]               # logical object sources: @app.on_object_created(source="landing")
    landing = "s3://landing-bucket/raw/"
    [deploy.aws.queues]                # logical queues: @app.on_message("orders")
    orders = "orders"

The file is ``--config PATH``, else ``NUBES_CONFIG``, else ``nubes.toml`` beside the app's module, else
in the working directory. Every problem is collected and raised together as one
:class:`~nubes.errors.ConfigError`, each line naming its fix, before anything is created.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nubes.adapters.deployment import Target, bindings, split_store
from nubes.errors import ConfigError

COMMON = frozenset({"name", "region", "memory", "timeout", "architecture", "storage", "http", "environment", "routes",
                    "sources", "queues"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ROUTE_KEY = re.compile(r"([A-Z]+) (/\S*)\Z")
LOCAL_SCHEMES = ("file", "mem")


def find(app: Any, explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``nubes.toml`` to read for ``app``: ``explicit`` (``--config``), else the project file
    (:func:`nubes.core.config.project_file`: ``NUBES_CONFIG``, beside the app, the working directory)."""
    from nubes.core.config import project_file

    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"no config file {str(path)!r}; pass --config path/to/nubes.toml")
        return path
    return project_file(getattr(app, "root", None))


def allowed_keys(cloud: str, deployer: Any | None = None) -> frozenset[str]:
    """Every key ``[deploy.CLOUD]`` may hold: the common ones, the cloud deployer's ``settings`` and its
    packaging's ``settings_keys`` (read by the build). ``nubes build`` and ``nubes deploy`` both check with
    this one list, so a table one accepts the other does too."""
    from nubes.core import clouds
    from nubes.deploy.build.engine import packaging_for

    deployer = deployer if deployer is not None else getattr(clouds.get(cloud), "deployer", None)
    return COMMON | frozenset(getattr(deployer, "settings", ())) | frozenset(packaging_for(cloud).settings_keys)


def home_store(app: Any, cloud: str, configured: Any, given: str | None = None) -> tuple[str, Any] | None:
    """The home store a deployed function uses and where it was set, or None: the rule ``App.storage_uri``
    follows at run time (the App's own ``storage=`` wins over the ``NUBES_STORAGE`` the cloud sets), so
    ``App(storage=...)``, then ``--storage`` (``given``), then ``[deploy.CLOUD] storage`` (``configured``), then
    ``NUBES_STORAGE``. Both the build and ``nubes deploy`` choose with it; an App store that differs from an
    explicit one is a :class:`ConfigError` naming both (the deploy would provision one, the code use the other)."""
    in_code = getattr(app, "_storage_uri", None)
    explicit = [("--storage", given), (f"[deploy.{cloud}] storage", configured)]
    for source, uri in explicit:
        if in_code and uri and uri != in_code:
            raise ConfigError(f"App(storage={in_code!r}) and {source} = {uri!r} name different home stores; the deployed "
                              f"code uses App(storage=...): remove storage= from the App (so {source} is used) or make them equal")
    for source, uri in [("App(storage=...)", in_code), *explicit, ("NUBES_STORAGE", os.environ.get("NUBES_STORAGE"))]:
        if uri:
            return source, uri
    return None


def _routes(app: Any) -> list[Any]:
    return [r for r in getattr(getattr(app, "router", None), "routes", ()) if not getattr(r, "internal", False)]


def read_table(path: Path | None, cloud: str) -> dict[str, Any]:
    """The ``[deploy.CLOUD]`` table of ``path``; a missing file or table is an error naming the fix."""
    example = f'[deploy.{cloud}]\nstorage = "<scheme>://bucket/prefix"'
    if path is None:
        raise ConfigError(f"no nubes.toml found beside the app or in the working directory; create one with\n{example}\n"
                          "or pass --config PATH")
    from nubes.core.config import read

    data = read(path)
    deploy = data.get("deploy", {})
    table = deploy.get(cloud) if isinstance(deploy, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [deploy.{cloud}] table; add one, e.g.\n{example}")
    return table


def load(app: Any, cloud: str, deployer: Any, *, config: str | os.PathLike[str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> Target:
    """The validated :class:`Target` for ``app`` on ``cloud``, or :class:`ConfigError` listing every problem."""
    path = find(app, config)
    table = {**read_table(path, cloud), **(overrides or {})}
    where = str(path) if path else "nubes.toml"
    problems: list[str] = []
    target = _shape(app, cloud, table, where, deployer, problems)
    if target is not None:
        problems.extend(bindings(app, target)[1])
        problems.extend(deployer.validate(app, target))
    if problems:
        lines = "\n".join(f"  - {p}" for p in dict.fromkeys(problems))
        raise ConfigError(f"cannot deploy {getattr(app, 'name', 'the app')!r} to {cloud} ({where}); nothing was created:\n{lines}")
    assert target is not None
    return target


def _shape(app: Any, cloud: str, table: Mapping[str, Any], where: str, deployer: Any, problems: list[str]) -> Target | None:
    section = f"{where} [deploy.{cloud}]"
    known = allowed_keys(cloud, deployer)
    unknown = sorted(set(table) - known)
    if unknown:
        problems.append(f"{section}: unknown setting(s) {unknown}; known: {sorted(known)}")
    name = table.get("name", getattr(app, "name", None))
    if not isinstance(name, str) or not name:
        problems.append(f"{section} name must be a non-empty string (default: the App's name)")
    storage = _storage(app, cloud, table.get("storage"), where, problems)
    units = {"memory": " (MB)", "timeout": " (seconds)"}
    for key in ("memory", "timeout", *sorted(getattr(deployer, "whole_numbers", ()))):
        value = table.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            problems.append(f"{section} {key} must be a positive whole number{units.get(key, '')}, not {value!r}")
    for key in ("region", "architecture", "http"):
        if key in table and not isinstance(table[key], str):
            problems.append(f"{section} {key} must be a string, not {table[key]!r}")
    environment = _string_table(table.get("environment", {}), f"{section} environment", problems, values=True)
    for key in environment:
        if not _ENV_NAME.match(key):
            problems.append(f"{section} environment: {key!r} is not a valid variable name (letters, digits, _)")
    sources = _string_table(table.get("sources", {}), f"[deploy.{cloud}.sources]", problems)
    for logical, uri in sources.items():
        if "://" not in uri or uri.split("://", 1)[0] in LOCAL_SCHEMES:
            problems.append(f"[deploy.{cloud}.sources] {logical} = {uri!r}: bind it to a bucket URI of the cloud")
    queues = _string_table(table.get("queues", {}), f"[deploy.{cloud}.queues]", problems)
    routes = _route_overrides(app, table.get("routes", {}), f"[deploy.{cloud}.routes]", problems)
    if problems:
        return None
    extra = {k: v for k, v in table.items() if k not in COMMON}
    return Target(cloud=cloud, name=str(name), storage=str(storage), region=table.get("region"), memory=table.get("memory"),
                  timeout=table.get("timeout"), architecture=table.get("architecture"), http=table.get("http"),
                  environment=environment, routes=routes, sources=sources, queues=queues, extra=extra, source_file=where)


def _storage(app: Any, cloud: str, configured: Any, where: str, problems: list[str]) -> Any:
    """The home store chosen by :func:`home_store`, with a problem for each reason a function cannot use it."""
    section = f"{where} [deploy.{cloud}]"
    try:
        source, storage = home_store(app, cloud, configured) or ("", None)
    except ConfigError as exc:
        problems.append(str(exc))
        return None
    source = f"{where} {source}" if source.startswith("[") else source
    if not storage:
        problems.append(f"{section} has no storage: a deployed function needs a home store in the cloud, e.g. "
                        f'storage = "<scheme>://bucket/prefix" (the local default file://.nubes cannot be used)')
    elif not isinstance(storage, str) or "://" not in storage:
        problems.append(f"{source} {storage!r} is not a store URI; e.g. storage = \"<scheme>://bucket/prefix\"")
    elif storage.split("://", 1)[0] in LOCAL_SCHEMES:
        problems.append(f"{source} {storage!r} is local to this machine; a function cannot reach it: "
                        "use the cloud's object store")
    else:
        try:
            split_store(storage)
        except ConfigError as exc:
            problems.append(f"{source}: {exc}")
    return storage


def _string_table(value: Any, where: str, problems: list[str], *, values: bool = False) -> dict[str, str]:
    if not isinstance(value, Mapping):
        problems.append(f"{where} must be a table of names to strings")
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, str) or (values and isinstance(item, int | float | bool)):
            out[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
        else:
            problems.append(f"{where} {key}: must be a string, not {item!r}")
    return out


def _route_overrides(app: Any, value: Any, where: str, problems: list[str]) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        problems.append(f'{where} must hold tables keyed "METHOD /path", e.g. [deploy.aws.routes."POST /train"]')
        return {}
    declared = {(m, r.path) for r in _routes(app) for m in getattr(r, "methods", ())}
    out: dict[str, dict[str, Any]] = {}
    for key, settings in value.items():
        match = _ROUTE_KEY.match(str(key))
        if match is None or not isinstance(settings, Mapping):
            problems.append(f'{where} {key!r}: key a route as "METHOD /path" with a table of settings, e.g. "POST /train"')
            continue
        if (match[1], match[2]) not in declared:
            known = ", ".join(sorted(f"{m} {p}" for m, p in declared)) or "none"
            problems.append(f"{where} {key!r} names no route of the app; its routes: {known}")
            continue
        bad = sorted(set(settings) - {"timeout", "memory"})
        if bad:
            problems.append(f"{where} {key!r}: unknown setting(s) {bad}; a route can override timeout")
            continue
        out[str(key)] = dict(settings)
    return out


__all__ = ["COMMON", "allowed_keys", "find", "home_store", "load", "read_table"]
