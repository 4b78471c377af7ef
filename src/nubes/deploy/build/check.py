"""The build-time check of a derived footprint: each function, unpacked alone into a fresh folder,
imports its entry file (which loads the app) and every module its routes import, in an isolated
interpreter of the target version. A distribution the analysis or a declaration missed fails the
build here rather than the first request in the cloud."""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from nubes.deploy.build.errors import BuildError
from nubes.deploy.build.plan import Function

CHECK_TIMEOUT_S = 300

_SCRIPT = r"""
import importlib, json, os, sys
root, packages, entry, modules = json.loads(sys.argv[1])
sys.path[:0] = [root] + ([os.path.join(root, packages)] if packages else [])
os.chdir(root)
failed = []
importlib.import_module(entry)
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
if failed:
    sys.exit("\n".join(failed))
"""


def import_check(artifact: Path, fmt: str, exe: str, pkg: Any, entry: dict[str, str], fn: Function, store: str, arch: str) -> None:
    import json
    import platform

    if {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower()) != arch:
        return  # the target's binaries cannot run here
    entry_module = next(name for name in sorted(entry) if name.endswith(".py")).removesuffix(".py")
    modules = sorted({m for unit in fn.units for m in unit.modules})
    with tempfile.TemporaryDirectory(prefix="nubes-check-") as tmp:
        root = Path(tmp)
        if fmt == "image":
            with tarfile.open(artifact) as tar:
                tar.extractall(root, filter="data")
            root = root / "task"
        else:
            with zipfile.ZipFile(artifact) as zf:
                zf.extractall(root)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NUBES_"))}
        env.update({"NUBES_STORAGE": store, "NUBES_METERING": "off", "NUBES_LOG_LEVEL": "off"})
        args = json.dumps([str(root), pkg.packages_dir, entry_module, modules])
        try:
            proc = subprocess.run([exe, "-I", "-c", _SCRIPT, args], capture_output=True, text=True, env=env, cwd=root,
                                  timeout=CHECK_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise BuildError(f"{fn.name}: importing the function took over {CHECK_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        raise BuildError(f"{fn.name} does not import in a clean Python with only its own packages:\n  " + "\n  ".join(detail)
                         + "\nadd what is missing to requirements.txt beside the app, or declare it for the route in "
                         "nubes.toml [build.footprints]")
