"""Metering settings: defaults, then ``nubes.toml`` ``[metering]``, then environment, then code.

``nubes.toml`` is looked for beside the module that created the app, then in the working directory
(or at ``NUBES_CONFIG``). Example::

    [metering]
    tenant_header = "X-Tenant"
    azure_plan = "flex"            # consumption (default) | flex
    aws_gateway = "rest"           # http (default) | rest | url | none
    [metering.api_keys]            # API key -> tenant (sent as X-Api-Key or Authorization: Bearer)
    "k-123" = "acme"
    [metering.prices]              # any figure of nubes.metering.prices.DEFAULTS
    "aws.lambda.gb_second.x86_64" = 0.0000160000

Environment: ``NUBES_METERING=off`` (no metering at all), ``NUBES_PRICES`` (JSON object, or a path to
a .json/.toml file of price overrides), ``NUBES_TENANT_HEADER``, ``NUBES_AZURE_PLAN``,
``NUBES_AWS_GATEWAY``, ``NUBES_PRICE_LOCAL_AS`` (aws|gcp|azure: how local runs are priced),
``NUBES_LEDGER_FLUSH`` (auto|invocation|batch|background|off), ``NUBES_MEMORY_MB`` (memory assumed when
the platform reports none). In code: ``nubes.metering.configure(app, tenant_header=..., prices=...)``.
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
    aws_gateway: str = "http"
    azure_plan: str = "consumption"
    local_provider: str = "aws"
    memory_mb: int | None = None
    azure_memory: str = "auto"
    free_tier: bool = False
    tenant_header: str | None = None
    api_key_header: str = "x-api-key"
    api_keys: Mapping[str, str] = field(default_factory=dict)
    ledger: bool = True
    flush: str = "auto"
    batch_size: int = 100
    flush_interval_s: float = 1.0
    cloud_batch_size: int = 20  # flush="batch": write when this many records wait ...
    cloud_max_age_s: float = 10.0  # ... or the oldest has waited this long (checked at invocation end)
    max_buffer: int = 100_000

    def validate(self) -> Settings:
        from nubes.metering.compute import GATEWAYS, PLANS

        if self.aws_gateway not in GATEWAYS:
            raise ConfigError(f"metering aws_gateway must be one of {GATEWAYS}, not {self.aws_gateway!r}")
        if self.azure_plan not in PLANS["azure"]:
            raise ConfigError(f"metering azure_plan must be one of {PLANS['azure']}, not {self.azure_plan!r}")
        if self.local_provider not in PLANS:
            raise ConfigError(f"metering local_provider must be one of {tuple(PLANS)}, not {self.local_provider!r}")
        if self.flush not in FLUSH_MODES:
            raise ConfigError(f"metering flush must be one of {FLUSH_MODES}, not {self.flush!r}")
        if self.azure_memory not in ("auto", "configured", "observed"):
            raise ConfigError(f"metering azure_memory must be auto, configured or observed, not {self.azure_memory!r}")
        if self.batch_size < 1 or self.max_buffer < self.batch_size:
            raise ConfigError("metering batch_size must be >= 1 and max_buffer >= batch_size")
        return self

    def plan(self, provider: str) -> str:
        return {"aws": "lambda", "gcp": "gen2", "azure": self.azure_plan}[provider]


_NAMES = {f.name for f in fields(Settings)}


def _toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _from_file(where: list[Path]) -> dict[str, Any]:
    explicit = os.environ.get("NUBES_CONFIG")
    candidates = [Path(explicit)] if explicit else [d / "nubes.toml" for d in where]
    for path in candidates:
        if path.is_file():
            section = _toml(path).get("metering", {})
            if not isinstance(section, dict):
                raise ConfigError(f"{path}: [metering] must be a table")
            return section
    return {}


def _prices_env(text: str) -> dict[str, Any]:
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"NUBES_PRICES is not a JSON object: {exc}") from None
        return value
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"NUBES_PRICES={text!r} is neither a JSON object nor a file")
    if path.suffix == ".toml":
        data = _toml(path)
        return data.get("prices", data)
    return json.loads(path.read_text(encoding="utf-8"))


def _from_env() -> dict[str, Any]:
    env = os.environ
    out: dict[str, Any] = {}
    if env.get("NUBES_METERING", "").lower() in ("off", "0", "false", "no"):
        out["enabled"] = False
    if env.get("NUBES_PRICES"):
        out["prices"] = _prices_env(env["NUBES_PRICES"])
    for name, key in (("NUBES_TENANT_HEADER", "tenant_header"), ("NUBES_AZURE_PLAN", "azure_plan"),
                      ("NUBES_AWS_GATEWAY", "aws_gateway"), ("NUBES_PRICE_LOCAL_AS", "local_provider"),
                      ("NUBES_LEDGER_FLUSH", "flush")):
        if env.get(name):
            out[key] = env[name]
    memory = env.get("NUBES_MEMORY_MB")
    if memory and memory.isdigit():
        out["memory_mb"] = int(memory)
    return out


def merge(base: Settings, changes: Mapping[str, Any]) -> Settings:
    unknown = sorted(set(changes) - _NAMES)
    if unknown:
        raise ConfigError(f"unknown metering setting(s) {unknown}; known: {sorted(_NAMES)}")
    changes = dict(changes)
    if "prices" in changes:
        changes["prices"] = {**dict(base.prices), **dict(changes["prices"] or {})}
    if "api_keys" in changes:
        changes["api_keys"] = {**dict(base.api_keys), **dict(changes["api_keys"] or {})}
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
