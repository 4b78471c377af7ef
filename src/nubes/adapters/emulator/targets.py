"""The worker side: each cloud's deployed adapter around the app, called with the cloud's own payload.

The targets live in the cloud packages (``nubes.adapters.<cloud>.emulation``); each one's
``invoke(meta, body) -> (meta, body)`` is what a worker process runs per invocation, and
:class:`~nubes.adapters.emulator.runtime.Emulator` also calls it in-process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nubes.core import clouds
from nubes.core.app import App


def make_target(provider: str, app: App, settings: Mapping[str, Any]) -> Any:
    """Cloud ``provider``'s function around ``app``, as deployed with ``settings``."""
    return clouds.get(provider).target(app, settings)
