"""Per-invocation context variables (kept tiny: imported by ``import nubes``)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

CURRENT_IO: ContextVar[Any] = ContextVar("nubes_invocation_io", default=None)
"""The :class:`~nubes.storage.base.IOStats` of the invocation running in this context, if any:
every store operation made in this context is added to it."""
