"""nubes: one serverless analytics app on AWS Lambda, Google Cloud Functions and Azure Functions.

Public API::

    app = nubes.App("name", storage="file://.nubes")
    @app.get("/path/{param}")
    def handler(ctx: nubes.Context, param: int, q: str = "x"): ...

``nubes.Request`` / ``nubes.Response`` are the cloud-neutral HTTP types, ``nubes.HTTPError`` the
error a handler raises to answer 4xx/5xx, and :mod:`nubes.errors` the whole error tree.
Importing nubes loads no data library and no cloud SDK.
"""

from nubes import errors
from nubes.core import extensions as _extensions
from nubes.core.app import App
from nubes.core.context import Context
from nubes.core.request import Request
from nubes.core.response import Response
from nubes.errors import HTTPError, NubesError


def _default_extensions() -> None:
    """Every ``App`` gets the data, ML and metering extensions unless given ``extensions=`` (the
    extension modules are light: their libraries load on first use)."""
    from nubes.data.extension import DataExtension
    from nubes.metering.extension import MeteringExtension
    from nubes.ml.extension import MLExtension

    _extensions.set_defaults([DataExtension, MLExtension, MeteringExtension])


_default_extensions()

__version__ = "0.1.0"

_LAZY = {"Message", "ObjectCreated", "Platform", "Scheduled"}
_SUBMODULES = {"storage", "checks", "testing", "adapters"}


def __getattr__(name: str) -> object:
    """Event types and the submodules load on first use, keeping ``import nubes`` fast."""
    if name in _LAZY:
        from nubes.core import events

        return getattr(events, name)
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"nubes.{name}")
    raise AttributeError(f"module 'nubes' has no attribute {name!r}")

__all__ = [
    "App",
    "Context",
    "HTTPError",
    "Message",
    "NubesError",
    "ObjectCreated",
    "Platform",
    "Request",
    "Response",
    "Scheduled",
    "__version__",
    "errors",
]
