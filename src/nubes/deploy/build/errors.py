"""The build's error: a message naming what is wrong and how to fix it (the CLI prints it, exit 2)."""

from __future__ import annotations

from typing import Any

from nubes.errors import ConfigError


class BuildError(ConfigError):
    """The app cannot be built as asked; the message says why and what to change.

    ``sizes`` holds (bytes, unit) pairs when the cause is a size limit, for the CLI's report."""

    def __init__(self, message: str, *, sizes: list[tuple[int, Any]] | None = None) -> None:
        super().__init__(message)
        self.sizes = sizes or []
