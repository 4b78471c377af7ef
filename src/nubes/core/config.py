"""The project file, ``nubes.toml``: one reader for every section (``[auth]``, ``[metering]``, ``[deploy.*]`` ...).

The file is ``NUBES_CONFIG`` when set, else ``nubes.toml`` beside the app's file (``app.root``), else
in the working directory. A file that exists but cannot be read is a :class:`~nubes.errors.ConfigError`
naming it; no file means every section is empty.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nubes.errors import ConfigError

FILENAME = "nubes.toml"


def project_file(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The project file for an app rooted at ``root`` (see the module docstring), or None."""
    explicit = os.environ.get("NUBES_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"NUBES_CONFIG={explicit!r} is not a file")
        return path
    for folder in ([Path(root)] if root is not None else []) + [Path.cwd()]:
        candidate = folder / FILENAME
        if candidate.is_file():
            return candidate
    return None


def read(path: Path) -> dict[str, Any]:
    """The whole TOML document at ``path``."""
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def section(name: str, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Table ``name`` (dotted for nested tables: ``"deploy.aws"``) of the project file, or ``{}``."""
    path = project_file(root)
    if path is None:
        return {}
    value: Any = read(path)
    for part in name.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else None
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
    table: dict[str, Any] = value
    return table
