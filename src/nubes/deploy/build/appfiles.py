"""The app's own files: its module, the sibling modules it imports, ``catalog.yaml``, ``nubes.toml``
and the files ``[build] include`` names, laid out so the entry file imports it as ``module:attr``."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from nubes.core.loader import load_app
from nubes.deploy.build.errors import BuildError

BESIDE = ("catalog.yaml", "nubes.toml")


@dataclass
class AppSource:
    """A loaded app and where its files are: ``root`` is the folder laid out at the artifact's app dir."""

    app: Any
    root: Path
    module: str  # the app module's import name
    ref: str  # "module:attr" as the entry file loads it
    scope: Path  # modules under this folder are the app's (its folder, or its top package's)

    def first_party_modules(self) -> list[str]:
        root = self.scope.resolve()
        out = []
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if path and not name.startswith("nubes") and Path(path).resolve().is_relative_to(root):
                out.append(name)
        return sorted(out)

    def files(self, include: list[str], under: str) -> list[tuple[Path, str]]:
        """(source, path in the artifact) for every file the app needs at run time."""
        root = self.root.resolve()
        found: dict[str, Path] = {}
        for name in self.first_party_modules():
            path = Path(sys.modules[name].__file__ or "").resolve()
            rel = path.relative_to(root)
            found[rel.as_posix()] = path
            for parent in rel.parents:  # packages above it
                init = root / parent / "__init__.py"
                if str(parent) != "." and init.is_file():
                    found[(parent / "__init__.py").as_posix()] = init
        for name in BESIDE:
            folder = Path(sys.modules[self.module].__file__ or "").resolve().parent
            if (folder / name).is_file():
                found[(folder / name).relative_to(root).as_posix()] = folder / name
        for pattern in include:
            if Path(pattern).is_absolute() or ".." in PurePosixPath(pattern).parts:
                raise BuildError(f"[build] include {pattern!r}: give a pattern relative to the app's folder {root}")
            matches = [p for p in sorted(root.glob(pattern)) if p.is_file() and "__pycache__" not in p.parts]
            if not matches:
                raise BuildError(f"[build] include {pattern!r} matches no file under {root}")
            for path in matches:
                found[path.resolve().relative_to(root).as_posix()] = path.resolve()
        prefix = under.strip("/")
        return [(found[rel], f"{prefix}/{rel}" if prefix else rel) for rel in sorted(found)]

    def check_names(self, entry_files: set[str]) -> None:
        """The app's top-level names must not shadow the entry files, nubes, or what the runtime imports."""
        tops = {PurePosixPath(rel).parts[0] for _, rel in self.files([], "")}
        for name in sorted(tops):
            if name in entry_files:
                raise BuildError(f"the app has a file named {name}, the entry file the cloud loads; rename it (e.g. app.py)")
            if name.removesuffix(".py") == "nubes":
                raise BuildError(f"the app has a module named {name}, which would shadow nubes itself; rename it")


def locate(spec: str, app: Any | None = None) -> AppSource:
    """Load the app named by ``spec`` (unless ``app``, already loaded from it, is given) and find its folder
    and import name (ConfigError on a bad spec)."""
    app = app if app is not None else load_app(spec)
    target, sep, attr = spec.rpartition(":")
    if not sep or "/" in attr or "\\" in attr or len(target) == 1:
        target, attr = spec, "app"
    owner = next((name for name, mod in list(sys.modules.items())
                  if name != "__main__" and isinstance(getattr(mod, "__dict__", None), dict) and mod.__dict__.get(attr) is app), None)
    if owner is None:
        raise BuildError(f"cannot find the module defining {spec}; give APP as path/to/file.py:attr or package.module:attr")
    module = owner
    path = Path(sys.modules[module].__file__ or "").resolve()
    depth = module.count(".") + (1 if path.name == "__init__.py" else 0)
    root = path.parent
    for _ in range(depth):
        root = root.parent
    if importlib.util.find_spec(module.split(".")[0]) is None and module.count("."):
        raise BuildError(f"{module} is not importable from its folder; use a file spec (path/to/file.py:{attr})")
    scope = root / module.split(".")[0] if module.count(".") or path.name == "__init__.py" else root
    return AppSource(app, root, module, f"{module}:{attr}", scope)
