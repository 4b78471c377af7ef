"""Backends by URI scheme: :func:`register` a :class:`~nubes.storage.base.BaseStore` subclass, :func:`open` a URI.

A backend is registered by name (``"module:Class"``, imported on first use, so an SDK loads only
when its scheme is opened) or as the class itself. Either way it must subclass
:class:`~nubes.storage.base.BaseStore`, whose abstract :meth:`~nubes.storage.base.BaseStore.from_uri`
the registry calls with the part of the URI after ``://`` and the caller's options.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

from nubes.errors import BackendMissing, ConfigError
from nubes.storage.base import BaseStore, ObjectStore

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


@dataclass(frozen=True)
class Backend:
    """One registered scheme: where its class lives and, if it needs one, the SDK and pip extra."""

    target: str | type[BaseStore]  # "module:Class", imported on first use, or the class itself
    extra: str | None  # the pip extra that installs its SDK
    sdk: str | None  # the top-level module of that SDK


_REGISTRY: dict[str, Backend] = {}


def register(scheme: str, target: str | type[BaseStore], *, extra: str | None = None, sdk: str | None = None) -> None:
    """Make ``target`` the backend for ``scheme://`` URIs.

    ``target`` is ``"module:Class"`` (imported lazily, when a URI of that scheme is first opened)
    or a :class:`~nubes.storage.base.BaseStore` subclass. ``sdk`` and ``extra`` name the package it
    needs and the ``nubes[extra]`` that installs it, for the error raised when it is missing.
    """
    if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme):
        raise ConfigError(f"storage schemes are lowercase URI schemes (like 's3' or 'my+fs'), not {scheme!r}")
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        if not module or not attr:
            raise ConfigError(f"register({scheme!r}, ...) takes 'module:Class' or a BaseStore subclass, not {target!r}")
    else:
        _check_backend(scheme, target)
    _REGISTRY[scheme] = Backend(target, extra, sdk)


def registered() -> dict[str, Backend]:
    """The registered schemes and their backends (a copy)."""
    return dict(_REGISTRY)


def open(uri: str, **options: Any) -> ObjectStore:
    """Open the object store at ``uri``; the backend is chosen by its scheme.

    ``file://PATH`` (relative to the working directory unless absolute: ``file:///abs``),
    ``mem://NAME``, ``s3://BUCKET/PREFIX``, ``gs://BUCKET/PREFIX``, ``az://CONTAINER/PREFIX``.
    ``options`` go to the backend's ``from_uri`` and override the SDK's environment configuration.
    """
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(
            f"storage URI {uri!r} has no scheme; use one of "
            + ", ".join(f"{s}://" for s in sorted(_REGISTRY))
            + " (for a local folder: file://PATH)"
        )
    scheme, rest = uri.split("://", 1)
    backend = _REGISTRY.get(scheme.lower())
    if backend is None:
        raise ConfigError(
            f"no storage backend for scheme '{scheme}://' in {uri!r}; known: "
            + ", ".join(f"{s}://" for s in sorted(_REGISTRY))
        )
    return _load(scheme.lower(), backend).from_uri(rest, **options)


def _load(scheme: str, backend: Backend) -> type[BaseStore]:
    if not isinstance(backend.target, str):
        return backend.target
    module_name, _, attr = backend.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if backend.sdk and exc.name and exc.name.split(".")[0] == backend.sdk.split(".")[0]:
            raise BackendMissing(
                f"{scheme}:// storage needs the {backend.sdk} package: pip install 'nubes[{backend.extra}]'"
            ) from exc
        raise
    cls = getattr(module, attr, None)
    _check_backend(scheme, cls)
    assert isinstance(cls, type)  # for the type checker: _check_backend refused anything else
    return cls


def _check_backend(scheme: str, cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, BaseStore)):
        raise ConfigError(
            f"the {scheme}:// backend {cls!r} is not a nubes.storage.BaseStore subclass "
            "(subclass it and implement from_uri and the primitives)"
        )
    if getattr(cls, "__abstractmethods__", None):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise ConfigError(f"the {scheme}:// backend {cls.__name__} does not implement: {missing}")


register("mem", "nubes.storage.memory:MemoryStore")
register("file", "nubes.storage.local:LocalStore")
register("s3", "nubes.storage.s3:S3Store", extra="aws", sdk="boto3")
register("gs", "nubes.storage.gcs:GCSStore", extra="gcp", sdk="google.cloud.storage")
register("az", "nubes.storage.azure:AzureBlobStore", extra="azure", sdk="azure.storage.blob")

__all__ = ["Backend", "open", "register", "registered"]
