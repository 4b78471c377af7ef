"""Metering settings: defaults, then ``nubes.toml`` ``[metering]``, then environment, then code.

``nubes.toml`` is looked for beside the module that created the app, then in the working directory
(or at ``NUBES_CONFIG``). Example::

    [metering]
    tenant_header = "X-Tenant"
    azure_plan = "flex"            # <cloud>_plan: a plan of that cloud (azure: consumption | flex)
    aws_front = "rest"             # <cloud>_front: how HTTP reaches it when the event does not say
                                   #   (aws: http | rest | url | alb | none; aws_gateway is the old name)
    [metering.api_keys]            # API key -> tenant (sent as X-Api-Key or Authorization: Bearer)
    "k-123" = "acme"
    [metering.prices]              # any figure `nubes prices` lists
    "aws.lambda.gb_second.x86_64" = 0.0000160000

Environment: ``NUBES_METERING=off`` (no metering at all), ``NUBES_PRICES`` (JSON object, or a path to
a .json/.toml file of price overrides), ``NUBES_TENANT_HEADER``, ``NUBES_<CLOUD>_PLAN`` (e.g.
``NUBES_AZURE_PLAN=flex``), ``NUBES_<CLOUD>_FRONT`` (``NUBES_AWS_GATEWAY`` too), ``NUBES_PRICE_LOCAL_AS``
(a cloud: how local runs are priced; default the first registered, aws), ``NUBES_LEDGER_FLUSH``
(auto|invocation|batch|background|off), ``NUBES_SPOOL`` (on|off: the local spool of ledger and
lineage records; default on except on a real cloud), ``NUBES_SPOOL_SYNC`` (interval|always),
``NUBES_COST_HEADERS`` (cost|full|off: which cost headers responses carry), ``NUBES_MEMORY_MB``
(memory assumed when the platform reports none). In code:
``nubes.metering.configure(app, tenant_header=..., prices=..., plans={"azure": "flex"})``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from nubes.errors import ConfigError

FLUSH_MODES = ("auto", "invocation", "batch", "background", "off")


@dataclass(frozen=True)
class Settings:
    enabled: bool = True
    prices: Mapping[str, Any] = field(default_factory=dict)
    plans: Mapping[str, str] = field(default_factory=dict)  # cloud -> plan (default: the cloud's default plan)
    fronts: Mapping[str, str] = field(default_factory=dict)  # cloud -> front when the platform does not say
    local_provider: str | None = None  # how local runs are priced (None: the first registered cloud)
    memory_mb: int | None = None
    free_tier: bool = False
    tenant_header: str | None = None
    api_key_header: str = "x-api-key"
    api_keys: Mapping[str, str] = field(default_factory=dict)
    ledger: bool = True
    flush: str = "auto"
    batch_size: int = 100
    flush_interval_s: float = 1.0
    cloud_batch_size: int = 200  # flush="batch": write when this many records wait ...
    cloud_max_age_s: float = 30.0  # ... or the oldest has waited this long
    max_buffer: int = 100_000
    spool: bool | None = None  # the local spool (None: on, except on a real cloud)
    headers: str = "cost"  # cost (billed duration, cost) | full (+ billed memory, components) | off
    spool_sync: str = "interval"  # interval | always (fsync every record)
    compact_objects: int = 64  # the flusher compacts the ledger after writing this many objects

    def validate(self) -> Settings:
        """Check every setting; clouds named in ``plans``/``fronts``/``local_provider`` are loaded to check them."""
        from nubes.core import clouds
        from nubes.metering.pricing import model

        if self.local_provider is not None:
            clouds.get(self.local_provider)  # ConfigError naming the known clouds
        for cloud, plan in self.plans.items():
            model(cloud, plan)
        for cloud, front in self.fronts.items():
            fronts = model(cloud, self.plans.get(cloud)).fronts
            if front not in fronts:
                raise ConfigError(f"metering {cloud}_front must be one of {', '.join(fronts)}, not {front!r}")
        if self.flush not in FLUSH_MODES:
            raise ConfigError(f"metering flush must be one of {FLUSH_MODES}, not {self.flush!r}")
        if self.headers not in ("cost", "full", "off"):
            raise ConfigError(f"metering headers must be cost, full or off, not {self.headers!r}")
        if self.spool_sync not in ("interval", "always"):
            raise ConfigError(f"metering spool_sync must be interval or always, not {self.spool_sync!r}")
        if self.batch_size < 1 or self.cloud_batch_size < 1 or self.max_buffer < self.batch_size:
            raise ConfigError("metering batch_size and cloud_batch_size must be >= 1, and max_buffer >= batch_size")
        return self

    def plan(self, cloud: str) -> str | None:
        """The plan ``cloud`` is priced on (None: the cloud's default plan)."""
        return self.plans.get(cloud)

    def local_cloud(self) -> str:
        from nubes.core import clouds

        return self.local_provider or clouds.names()[0]


_NAMES = {f.name for f in fields(Settings)}


def _per_cloud(changes: dict[str, Any]) -> dict[str, Any]:
    """``<cloud>_plan`` / ``<cloud>_front`` / ``<cloud>_gateway`` keys folded into ``plans`` / ``fronts``."""
    out = dict(changes)
    for key in list(out):
        cloud, sep, what = key.rpartition("_")
        if sep and cloud and key not in _NAMES and what in ("plan", "front", "gateway"):
            value = out.pop(key)
            target = "plans" if what == "plan" else "fronts"
            out[target] = {**dict(out.get(target) or {}), cloud: value}
    return out


def _from_file(where: list[Path]) -> dict[str, Any]:
    """``[metering]`` of the project file (:func:`nubes.core.config.project_file`: ``NUBES_CONFIG``, else
    ``nubes.toml`` beside the app, else in the working directory)."""
    from nubes.core.config import project_file, read

    path = project_file(where[0] if where else None)
    if path is None:
        return {}
    section = read(path).get("metering", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [metering] must be a table")
    return section


def _prices_env(text: str) -> dict[str, Any]:
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"NUBES_PRICES is not a JSON object: {exc}") from None
    else:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"NUBES_PRICES={text!r} is neither a JSON object nor a file")
        if path.suffix == ".toml":
            from nubes.core.config import read

            data = read(path)
            value = data.get("prices", data)
        else:
            try:
                value = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"NUBES_PRICES={text}: not a JSON file of prices ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"NUBES_PRICES must hold an object of prices (key -> number), not {type(value).__name__}")
    return value


def _from_env() -> dict[str, Any]:
    env = os.environ
    out: dict[str, Any] = {}
    if env.get("NUBES_METERING", "").lower() in ("off", "0", "false", "no"):
        out["enabled"] = False
    if env.get("NUBES_PRICES"):
        out["prices"] = _prices_env(env["NUBES_PRICES"])
    for name, key in (("NUBES_TENANT_HEADER", "tenant_header"), ("NUBES_PRICE_LOCAL_AS", "local_provider"),
                      ("NUBES_LEDGER_FLUSH", "flush"), ("NUBES_SPOOL_SYNC", "spool_sync"),
                      ("NUBES_COST_HEADERS", "headers")):
        if env.get(name):
            out[key] = env[name]
    from nubes.core import clouds

    for cloud in clouds.names():  # NUBES_<CLOUD>_PLAN, NUBES_<CLOUD>_FRONT (NUBES_<CLOUD>_GATEWAY, the old name)
        for what in ("plan", "front", "gateway"):
            value = env.get(f"NUBES_{cloud.upper()}_{what.upper()}")
            if value:
                out[f"{cloud}_{what}"] = value
    if env.get("NUBES_SPOOL"):
        out["spool"] = env["NUBES_SPOOL"].lower() not in ("off", "0", "false", "no")
    memory = env.get("NUBES_MEMORY_MB")
    if memory and memory.isdigit():
        out["memory_mb"] = int(memory)
    return out


def merge(base: Settings, changes: Mapping[str, Any]) -> Settings:
    changes = _per_cloud(dict(changes))
    unknown = sorted(set(changes) - _NAMES)
    if unknown:
        raise ConfigError(f"unknown metering setting(s) {unknown}; known: {sorted(_NAMES)} and <cloud>_plan, <cloud>_front")
    if "prices" in changes:
        changes["prices"] = {**dict(base.prices), **dict(changes["prices"] or {})}
    for name in ("api_keys", "plans", "fronts"):
        if name in changes:
            changes[name] = {**dict(getattr(base, name)), **dict(changes[name] or {})}
    if "flush" in changes and changes["flush"] is False:
        changes["flush"] = "off"
    return replace(base, **changes).validate()


def load(where: list[Path], code: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the file (first ``nubes.toml`` found in ``where``), the environment and ``code``."""
    settings = Settings()
    for layer in (_from_file(where), _from_env(), code or {}):
        if layer:
            settings = merge(settings, layer)
    return settings.validate()
