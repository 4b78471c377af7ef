"""How an app is packaged for Azure Functions (Python v2 model): a zip-deploy package.

``function_app.py`` (the FunctionApp the worker indexes) and ``host.json`` at the root, the app and
nubes beside them, and the distributions built for the target platform in
``.python_packages/lib/site-packages`` so no remote build is needed (deploy with
``WEBSITE_RUN_FROM_PACKAGE`` / zip deploy and ``SCM_DO_BUILD_DURING_DEPLOYMENT=false``). Facts:

* Zip deployment and ``.python_packages``: https://learn.microsoft.com/azure/azure-functions/functions-deployment-technologies
  and https://learn.microsoft.com/azure/azure-functions/python-build-options (custom dependencies).
* Linux images for Python 3.11 / 3.12 are Debian based; wheels are resolved for glibc 2.28 and older
  (a conservative choice), x86_64 only on Consumption and Flex Consumption.
* No package size limit is documented for zip deploy; the size report still lists the total.
"""

from __future__ import annotations

import json
from typing import Any

from nubes.adapters.base import Fit, manylinux_tags, without_routes
from nubes.errors import ConfigError

SITE_PACKAGES = ".python_packages/lib/site-packages"
ENTRY = "function_app.py"
DEFAULT_SETTINGS: dict[str, Any] = {"connection": "AzureWebJobsStorage", "auth_level": "anonymous", "route_prefix": "",
                                    "timeout": 300.0}

_ENTRY = '''"""Azure Functions entry point written by nubes: the worker indexes the FunctionApp `app`."""

import os
import sys
from pathlib import Path

_ROOT = os.path.dirname(os.path.abspath(__file__))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
{storage_line}
from nubes.adapters.azure import function_app  # noqa: E402
from nubes.core.loader import load_app  # noqa: E402

_app = load_app({spec})
{exclude}app = function_app(
    _app,
    connection={connection!r},
    auth_level={auth_level!r},
    route_prefix={route_prefix!r},
    timeout={timeout!r},
)
'''


def entry_text(spec: str, *, storage: str | None, connection: str, auth_level: str, route_prefix: str, timeout: float,
               exclude: list[str] | None = None) -> str:
    """``function_app.py`` for an app loaded by ``spec`` (Python source text of an expression)."""
    storage_line = (f"os.environ.setdefault(\"NUBES_STORAGE\", {storage!r})  # the app settings may override it\n"
                    if storage else "")
    return _ENTRY.format(spec=spec, storage_line=storage_line, connection=connection, auth_level=auth_level,
                         route_prefix=route_prefix, timeout=float(timeout), exclude=without_routes("_app", exclude or []))


def settings_of(settings: dict[str, Any]) -> dict[str, Any]:
    """``[deploy.azure]`` over the defaults, checked (ConfigError naming the key)."""
    from nubes.adapters.azure.functions import _auth_level

    known = (*DEFAULT_SETTINGS, "storage")
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(f"[deploy.azure] has unknown keys {', '.join(unknown)}; known: {', '.join(known)}")
    out = {**DEFAULT_SETTINGS, **{k: v for k, v in settings.items() if k != "storage"}}
    out["auth_level"] = str(_auth_level(out["auth_level"]).value)
    if not isinstance(out["timeout"], (int, float)) or out["timeout"] <= 0:
        raise ConfigError("[deploy.azure] timeout must be a positive number of seconds")
    return out


class AzurePackaging:
    """Azure Functions' packaging facts (see the module docstring for sources)."""

    cloud = "azure"
    settings_keys = (*DEFAULT_SETTINGS, "storage")
    formats = ("zip",)
    architectures = ("x86_64",)
    pythons = ("3.11", "3.12")
    task_root = "/home/site/wwwroot"
    packages_dir = SITE_PACKAGES
    app_dir = ""
    vendor_packages = True
    store_schemes = ("az",)
    adapter_modules = ("nubes.adapters.azure",)
    runtime_requirements: tuple[str, ...] = ()

    def platform_tags(self, arch: str, python: str = "3.12") -> list[str]:
        return manylinux_tags(28, "x86_64")

    def entry_files(self, app_ref: str, *, storage: str, settings: dict[str, Any], arch: str = "x86_64",
                    exclude: list[str] | None = None) -> dict[str, str]:
        from nubes.adapters.azure.functions import host_json

        s = settings_of(settings)
        entry = entry_text(repr(app_ref), storage=storage, connection=s["connection"], auth_level=s["auth_level"],
                           route_prefix=s["route_prefix"], timeout=s["timeout"], exclude=exclude)
        host = json.dumps(host_json(None, route_prefix=s["route_prefix"], timeout=s["timeout"]), indent=2) + "\n"
        return {ENTRY: entry, "host.json": host}

    def check_app(self, app: Any, settings: dict[str, Any]) -> None:
        """Index the FunctionApp once, so a route Azure cannot bind fails at build time."""
        from nubes.adapters.azure.functions import function_app

        s = settings_of(settings)
        function_app(app, connection=s["connection"], auth_level=s["auth_level"], route_prefix=s["route_prefix"],
                     timeout=s["timeout"]).get_functions()

    def image_files(self, python: str, arch: str, *, context_root: str) -> dict[str, str]:
        raise ConfigError("Azure Functions (Consumption, Flex) deploys zip packages: use --format zip for --cloud azure")

    def fit(self, fmt: str, unzipped_bytes: int, zipped_bytes: int) -> Fit:
        return Fit(True, None, (), {"entry": ENTRY, "site_packages": SITE_PACKAGES})


PACKAGING = AzurePackaging()
