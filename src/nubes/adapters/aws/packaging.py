"""How an app is packaged for AWS Lambda (Python runtimes, zip or container image).

Everything the cloud-neutral build (:mod:`nubes.deploy.build`) must not know about Lambda: the
entry file, the layout (everything at the task root ``/var/task``), the platform tags of each
runtime's operating system, and the size limits, each with its source:

* Deployment package (zip): 50 MB zipped for a direct upload (larger goes through S3) and
  250 MB unzipped including layers (262,144,000 bytes); container image 10 GB.
  https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
* python3.12 and later run on Amazon Linux 2023 (glibc 2.34); python3.11 on Amazon Linux 2
  (glibc 2.26). https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html
* Base images: ``public.ecr.aws/lambda/python:3.X`` with the runtime interface client; the function
  code goes to ``${LAMBDA_TASK_ROOT}`` and ``CMD`` names the handler.
  https://docs.aws.amazon.com/lambda/latest/dg/python-image.html
"""

from __future__ import annotations

from typing import Any

from nubes.adapters.aws.limits import FIGURES
from nubes.adapters.base import Fit, manylinux_tags, without_routes
from nubes.errors import ConfigError

UNZIPPED_MAX = int(FIGURES["package_unzipped_bytes"].value)  # the one table of AWS limits (limits.py)
DIRECT_UPLOAD_MAX = int(FIGURES["package_zipped_direct_bytes"].value)
IMAGE_MAX = 10 * 1024**3
GLIBC = {"3.11": 26, "3.12": 34, "3.13": 34, "3.14": 34}
HANDLER = "lambda_function.handler"
_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}

_ENTRY = '''"""AWS Lambda entry point written by `nubes build` (handler: {handler})."""

import os
import sys

_ROOT = os.path.dirname(os.path.abspath(__file__))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
os.environ.setdefault("NUBES_STORAGE", {storage!r})  # the function's environment may override it
os.environ.setdefault("NUBES_ARCHITECTURE", {arch!r})

from nubes.adapters.aws import handler as _make_handler  # noqa: E402
from nubes.core.loader import load_app  # noqa: E402

_app = load_app({app_ref!r})
{exclude}handler = _make_handler(_app{base_path})
'''


class AwsPackaging:
    """Lambda's packaging facts (see the module docstring for sources)."""

    cloud = "aws"
    formats = ("zip", "image")
    architectures = ("x86_64", "arm64")
    pythons = ("3.11", "3.12", "3.13")
    task_root = "/var/task"
    packages_dir = ""
    app_dir = ""
    vendor_packages = True
    store_schemes = ("s3",)
    adapter_modules = ("nubes.adapters.aws", "nubes.adapters.aws.entry")
    runtime_requirements: tuple[str, ...] = ()
    settings_keys = ("storage", "base_path")

    def platform_tags(self, arch: str, python: str = "3.12") -> list[str]:
        return manylinux_tags(GLIBC.get(python, 34), _MACHINE[arch])

    def entry_files(self, app_ref: str, *, storage: str, settings: dict[str, Any], arch: str = "x86_64",
                    exclude: list[str] | None = None) -> dict[str, str]:
        _check_keys(settings, self.settings_keys)
        base_path = settings.get("base_path")
        if base_path is not None and (not isinstance(base_path, str) or not base_path.startswith("/")):
            raise ConfigError(f"[deploy.aws] base_path = {base_path!r}: a path such as '/v1'")
        extra = f", base_path={base_path!r}" if base_path else ""
        return {"lambda_function.py": _ENTRY.format(handler=HANDLER, storage=storage, arch=arch, app_ref=app_ref, base_path=extra,
                                                  exclude=without_routes("_app", exclude or []))}

    def check_app(self, app: Any, settings: dict[str, Any]) -> None:
        _check_keys(settings, self.settings_keys)

    def image_files(self, python: str, arch: str, *, context_root: str) -> dict[str, str]:
        platform = "linux/arm64" if arch == "arm64" else "linux/amd64"
        dockerfile = (
            "# Written by `nubes build --format image`: the function on AWS's Lambda Python base image.\n"
            f"FROM --platform={platform} public.ecr.aws/lambda/python:{python}\n"
            f"COPY {context_root}/ ${{LAMBDA_TASK_ROOT}}/\n"
            f'CMD ["{HANDLER}"]\n'
        )
        return {"Dockerfile": dockerfile}

    def fit(self, fmt: str, unzipped_bytes: int, zipped_bytes: int) -> Fit:
        if fmt == "image":
            fits = unzipped_bytes <= IMAGE_MAX
            return Fit(fits, IMAGE_MAX, () if fits else (f"{_mb(unzipped_bytes)} is over the 10 GB image limit",))
        needs_s3 = zipped_bytes > DIRECT_UPLOAD_MAX
        notes: list[str] = []
        if needs_s3:
            notes.append(f"{_mb(zipped_bytes)} zipped is over the 50 MB direct upload: deploy it through S3")
        fits = unzipped_bytes <= UNZIPPED_MAX
        if not fits:
            notes.append(f"{_mb(unzipped_bytes)} unzipped is over Lambda's 250 MB (262,144,000 bytes, layers included)")
        return Fit(fits, UNZIPPED_MAX, tuple(notes), {"handler": HANDLER, "upload": "s3" if needs_s3 else "direct"})


def _check_keys(settings: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(f"[deploy.aws] has unknown keys {', '.join(unknown)}; known: {', '.join(known)}")


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


PACKAGING = AwsPackaging()
