"""How an app is packaged for Google Cloud Functions (2nd gen): a source zip for Cloud Build.

The Python buildpack installs ``requirements.txt`` (pinned here to exact versions) and serves
``main.py`` with functions-framework; nubes itself and the app's files are vendored in the zip (nubes
is not installed from an index). Both targets live in one ``main.py``: ``main`` (HTTP) and ``events``
(CloudEvents: Cloud Storage, Pub/Sub). Facts, with sources:

* Source deployments: ``main.py`` and ``requirements.txt`` at the root of the source; the buildpack
  runs ``pip install -r requirements.txt`` (https://cloud.google.com/functions/docs/writing/specifying-dependencies-python).
* python311 / python312 run on Ubuntu 22.04 (glibc 2.35), python313 on Ubuntu 24.04 (glibc 2.39)
  (https://cloud.google.com/functions/docs/runtime-support). x86_64 only.
* Deployment size: 100 MB compressed sources and 500 MB uncompressed with modules for 1st gen; 2nd gen
  lists no limit (https://cloud.google.com/functions/quotas); the 1st gen figures are reported as notes.
"""

from __future__ import annotations

from typing import Any

from nubes.adapters.base import Fit, manylinux_tags, without_routes
from nubes.adapters.gcp.limits import FIGURES
from nubes.errors import ConfigError

SOURCE_ZIP_NOTE = int(FIGURES["source_zip_bytes"].value)  # the one table of GCP limits (limits.py)
GLIBC = {"3.11": 35, "3.12": 35, "3.13": 39}

_MAIN = '''"""Cloud Functions entry point written by `nubes build`: targets `main` (HTTP) and `events` (CloudEvents)."""

import os
import sys

_ROOT = os.path.dirname(os.path.abspath(__file__))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
os.environ.setdefault("NUBES_STORAGE", {storage!r})  # the function's environment may override it

from nubes.adapters.gcp import cloud_event_function, http_function  # noqa: E402
from nubes.core.loader import load_app  # noqa: E402

app = load_app({app_ref!r})
{exclude}main = http_function(app{schedules})
events = cloud_event_function(app)
'''


class GcpPackaging:
    """Cloud Functions' packaging facts (see the module docstring for sources)."""

    cloud = "gcp"
    formats = ("zip",)
    architectures = ("x86_64",)
    pythons = ("3.11", "3.12", "3.13")
    task_root = "/workspace"
    packages_dir = ""
    app_dir = ""
    vendor_packages = False
    store_schemes = ("gs",)
    adapter_modules = ("nubes.adapters.gcp", "nubes.adapters.gcp.functions")
    runtime_requirements: tuple[str, ...] = ("functions-framework",)
    settings_keys = ("storage", "schedules")

    def platform_tags(self, arch: str, python: str = "3.12") -> list[str]:
        return manylinux_tags(GLIBC.get(python, 35), "x86_64")

    def entry_files(self, app_ref: str, *, storage: str, settings: dict[str, Any], arch: str = "x86_64",
                    exclude: list[str] | None = None) -> dict[str, str]:
        self.check_app(None, settings)
        schedules = ", schedules=True" if settings.get("schedules") else ""
        return {"main.py": _MAIN.format(storage=storage, app_ref=app_ref, schedules=schedules,
                                          exclude=without_routes("app", exclude or []))}

    def check_app(self, app: Any, settings: dict[str, Any]) -> None:
        unknown = sorted(set(settings) - set(self.settings_keys))
        if unknown:
            raise ConfigError(f"[deploy.gcp] has unknown keys {', '.join(unknown)}; known: {', '.join(self.settings_keys)}")
        if not isinstance(settings.get("schedules", False), bool):
            raise ConfigError("[deploy.gcp] schedules must be true or false")

    def image_files(self, python: str, arch: str, *, context_root: str) -> dict[str, str]:
        raise ConfigError("Cloud Functions deploys source zips: use --format zip for --cloud gcp")

    def fit(self, fmt: str, unzipped_bytes: int, zipped_bytes: int) -> Fit:
        notes: tuple[str, ...] = ()
        if zipped_bytes > SOURCE_ZIP_NOTE:
            notes = (f"{zipped_bytes / 1e6:.1f} MB zipped is over 1st gen's 100 MB source limit (2nd gen lists none)",)
        return Fit(True, None, notes, {"targets": {"http": "main", "events": "events"}, "runtime": "python"})


PACKAGING = GcpPackaging()
