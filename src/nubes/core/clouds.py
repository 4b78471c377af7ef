"""The clouds nubes can run on, by name: a registry of lazily imported cloud objects.

Each cloud is one package under :mod:`nubes.adapters` (``aws``, ``gcp``, ``azure``) whose ``cloud``
module defines ``CLOUD``, an object implementing :class:`nubes.adapters.base.Cloud`: its limits and
prices with sources, its emulation profile, its event builders, packaging and deployment. Code that
needs something provider-specific asks the cloud object for it, never compares provider names.

The registry holds import paths, not modules, so ``import nubes`` loads no cloud package (the same
pattern as :func:`nubes.storage.register` by URI scheme). Adding a cloud is one new package plus
``register("name", "package.module:CLOUD")``; it must pass the shared contract suites in
:mod:`nubes.testing`.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from nubes.errors import ConfigError

_TARGETS: dict[str, str | Any] = {
    "aws": "nubes.adapters.aws.cloud:CLOUD",
    "gcp": "nubes.adapters.gcp.cloud:CLOUD",
    "azure": "nubes.adapters.azure.cloud:CLOUD",
}
_LOADED: dict[str, Any] = {}
_LOCK = threading.Lock()


def register(name: str, target: str | Any) -> None:
    """Register the cloud ``name``: an object, or ``"package.module:attr"`` imported on first use."""
    if not name or not name.isidentifier() or name != name.lower():
        raise ConfigError(f"cloud name {name!r}: use a lower-case identifier such as 'aws'")
    with _LOCK:
        _TARGETS[name] = target
        _LOADED.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered cloud names, in registration order."""
    return tuple(_TARGETS)


def get(name: str) -> Any:
    """The cloud object registered as ``name`` (imported on first use).

    Raises :class:`~nubes.errors.ConfigError` naming the known clouds when ``name`` is not one.
    """
    cloud = _LOADED.get(name)
    if cloud is not None:
        return cloud
    target = _TARGETS.get(name)
    if target is None:
        raise ConfigError(f"unknown cloud {name!r}; use one of: {', '.join(_TARGETS)}")
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        cloud = getattr(importlib.import_module(module), attr or "CLOUD")
    else:
        cloud = target
    with _LOCK:
        _LOADED[name] = cloud
    return cloud


def is_cloud(name: str | None) -> bool:
    """Whether ``name`` is a registered cloud (``"local"`` is not)."""
    return name is not None and name in _TARGETS
