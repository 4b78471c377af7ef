"""What the build reads besides the app: ``nubes.toml`` (``[build]``, ``[deploy.<cloud>]``), a
``requirements.txt`` beside the app, and the home store a deployed function must use.

``nubes.toml`` (``NUBES_CONFIG``, else beside the app, else in the working directory)::

    [build]
    requirements = ["requests>=2"]            # distributions the app needs beyond nubes' (or requirements.txt)
    include = ["data/*.csv"]                  # files the app reads at run time, relative to the app's folder
    keep_source = ["some_dist"]               # distributions whose .py files stay (they read their own source)
    exclude = ["/_nubes/models*"]             # route paths (fnmatch) left out of the artifacts: they answer 404

    [build.footprints]                        # what the code cannot show: imports by a computed name
    "GET /report" = ["openpyxl"]

    [deploy.aws]
    storage = "s3://bucket/prefix"            # the function's home store
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nubes.deploy.build.errors import BuildError
from nubes.errors import ConfigError

LOCAL_SCHEMES_HINT = "a folder on the build machine"


@dataclass
class BuildConfig:
    """The ``[build]`` and ``[deploy.<cloud>]`` settings that apply to one build."""

    path: Path | None = None
    requirements: list[str] = field(default_factory=list)
    requirements_source: str = ""
    include: list[str] = field(default_factory=list)
    keep_source: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    footprints: dict[str, list[str]] = field(default_factory=dict)
    deploy: dict[str, Any] = field(default_factory=dict)


def load(app_root: Path, cloud: str, packaging_keys: tuple[str, ...] = ()) -> BuildConfig:
    """Settings for building the app in ``app_root`` for ``cloud`` (BuildError naming the key on a mistake).

    ``[deploy.<cloud>]`` is shared with ``nubes deploy``: :attr:`BuildConfig.deploy` keeps the keys the
    cloud's packaging reads (``packaging_keys``); the keys allowed are
    :func:`nubes.deploy.config.allowed_keys`, the list ``nubes deploy`` checks too, so a typo is caught by
    both and a key one accepts the other accepts.
    """
    from nubes.core.config import project_file, read

    cfg = BuildConfig()
    try:  # the file nubes deploy and the running app read too (NUBES_CONFIG, beside the app, the working directory)
        path = project_file(app_root)
        data: dict[str, Any] = read(path) if path is not None else {}
    except ConfigError as exc:
        raise BuildError(str(exc)) from None
    cfg.path = path
    build = _table(data, "build", path)
    known = {"requirements", "include", "keep_source", "exclude", "footprints"}
    unknown = sorted(set(build) - known)
    if unknown:
        raise BuildError(f"{path}: [build] has unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    cfg.requirements = _strings(build, "requirements", path)
    cfg.requirements_source = f"{path} [build] requirements" if cfg.requirements else ""
    req_file = app_root / "requirements.txt"
    if req_file.is_file():
        cfg.requirements += req_file.read_text(encoding="utf-8").splitlines()
        cfg.requirements_source = str(req_file)
    cfg.include = _strings(build, "include", path)
    cfg.keep_source = _strings(build, "keep_source", path)
    cfg.exclude = _strings(build, "exclude", path)
    for pattern in cfg.exclude:
        if not pattern.startswith("/"):
            raise BuildError(f"{path}: [build] exclude {pattern!r}: a route path pattern such as '/_nubes/models*'")
    footprints = build.get("footprints", {})
    if not isinstance(footprints, dict):
        raise BuildError(f"{path}: [build.footprints] must be a table of 'METHOD /path' = [distributions]")
    for key, value in footprints.items():
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BuildError(f"{path}: [build.footprints] {key!r} must be a list of distribution names")
        cfg.footprints[str(key)] = list(value)
    deploy = _table(data, "deploy", path)
    section = deploy.get(cloud, {})
    if not isinstance(section, dict):
        raise BuildError(f"{path}: [deploy.{cloud}] must be a table")
    from nubes.deploy.config import allowed_keys

    allowed = allowed_keys(cloud) | set(packaging_keys)
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise BuildError(f"{path}: [deploy.{cloud}] has unknown keys {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    cfg.deploy = {k: v for k, v in section.items() if k in packaging_keys}
    return cfg


def home_store(app: Any, cfg: BuildConfig, cloud: str, store_schemes: tuple[str, ...], given: str | None) -> str:
    """The home store URI a deployed function uses, chosen as ``nubes deploy`` chooses it
    (:func:`nubes.deploy.config.home_store`: ``App(storage=)``, ``--storage``, ``[deploy.<cloud>] storage``,
    then ``NUBES_STORAGE``). It must be a network store: the default ``file://.nubes`` would
    be the read-only task root (or a per-instance ``/tmp``)."""
    from nubes.deploy.config import home_store as choose
    from nubes.errors import ConfigError
    from nubes.storage import registered

    try:
        chosen = choose(app, cloud, cfg.deploy.get("storage"), given)
    except ConfigError as exc:
        raise BuildError(str(exc)) from None
    example = f"{store_schemes[0]}://BUCKET/PREFIX" if store_schemes else "s3://BUCKET/PREFIX"
    how = (f"give one with App(storage={example!r}), `nubes build --storage {example}`, "
           f"nubes.toml [deploy.{cloud}] storage = {example!r}, or NUBES_STORAGE")
    if chosen is not None:
        source, uri = chosen
        if not isinstance(uri, str) or "://" not in uri:
            raise BuildError(f"{source} = {uri!r} is not a storage URI; {how}")
        scheme = uri.split("://", 1)[0].lower()
        backend = registered().get(scheme)
        if backend is None:
            raise BuildError(f"{source} = {uri!r}: no storage backend for {scheme}://; {how}")
        if backend.sdk is None:
            raise BuildError(f"{source} = {uri!r} is {LOCAL_SCHEMES_HINT} or memory, not a store a deployed function can reach "
                             f"(its task root is read-only and /tmp is per instance); {how}")
        return uri
    raise BuildError(f"a deployed function needs a cloud home store (models, lineage, the cost ledger), not the default "
                     f"file://.nubes; {how}")


def _table(data: dict[str, Any], key: str, path: Path | None) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise BuildError(f"{path}: [{key}] must be a table")
    return value


def _strings(table: dict[str, Any], key: str, path: Path | None) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BuildError(f"{path}: [build] {key} must be a list of strings")
    return list(value)
