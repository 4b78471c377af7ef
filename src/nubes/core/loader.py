"""Finding the user's App from an ``APP`` spec: ``path/to/file.py[:attr]`` or ``package.module[:attr]``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from nubes.core.app import App
from nubes.errors import ConfigError

SPEC_HELP = "APP is path/to/file.py:attr or package.module:attr (attr defaults to 'app')"


def load_app(spec: str) -> App:
    """Import the module named by ``spec`` the way production would and return its App.

    A file is imported as a top-level module named after its stem, with its folder first on
    ``sys.path`` so its sibling imports work. Raises :class:`ConfigError` with a fix for every
    way the spec can be wrong, and for an import that fails (naming the file and line).
    """
    target, _, attr = spec.rpartition(":") if _has_attr(spec) else (spec, "", "")
    attr = attr or "app"
    if not target:
        raise ConfigError(f"empty APP {spec!r}; {SPEC_HELP}")
    module = _import_file(Path(target)) if _looks_like_file(target) else _import_module(target)
    obj = getattr(module, attr, None)
    if isinstance(obj, App):
        return obj
    apps = [name for name, value in vars(module).items() if isinstance(value, App)]
    found = f"; it defines {', '.join(apps)} (use {target}:{apps[0]})" if apps else "; it defines no nubes.App"
    if obj is None:
        raise ConfigError(f"{target} has no attribute '{attr}'{found}")
    raise ConfigError(f"{target}:{attr} is a {type(obj).__name__}, not a nubes.App{found}")


def _has_attr(spec: str) -> bool:
    head, sep, tail = spec.rpartition(":")
    return bool(sep) and bool(tail) and "/" not in tail and "\\" not in tail and len(head) != 1  # not a drive letter


def _looks_like_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target or Path(target).is_file()


def _import_file(path: Path) -> ModuleType:
    if not path.exists():
        raise ConfigError(f"no file {str(path)!r} (from {Path.cwd()}); {SPEC_HELP}")
    if path.is_dir():
        init = path / "__init__.py"
        if not init.exists():
            raise ConfigError(f"{str(path)!r} is a folder, not a Python file; {SPEC_HELP}")
        path = init
    path = path.resolve()
    folder = path.parent
    name = folder.name if path.name == "__init__.py" else path.stem
    sys.path.insert(0, str(folder.parent if path.name == "__init__.py" else folder))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {str(path)!r} as Python; {SPEC_HELP}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ConfigError(f"importing {path} failed: {_where(exc, str(path))}") from exc
    return module


def _import_module(name: str) -> ModuleType:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(f"no module named {name!r} (from {Path.cwd()}); {SPEC_HELP}") from exc
        raise ConfigError(f"importing {name} failed: {_where(exc, None)}") from exc
    except Exception as exc:
        raise ConfigError(f"importing {name} failed: {_where(exc, None)}") from exc


def _where(exc: BaseException, filename: str | None) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename and "nubes/core/loader" not in f.filename]
    place = ""
    if user:
        f = user[-1]
        place = f" ({f.filename}, line {f.lineno})"
    if isinstance(exc, SyntaxError) and exc.filename:
        place = f" ({exc.filename}, line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}{place}"
