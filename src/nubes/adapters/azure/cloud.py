"""The cloud object of azure (``nubes.core.clouds.get("azure")``). Minimal for now: identity and its deployer.

The lead's Cloud objects (figures, emulation, packaging) replace this file; keep the ``deployer``
attribute (a :class:`nubes.adapters.base.Deployer`, :mod:`.deploy`), imported on first use.
"""

from __future__ import annotations

from typing import Any


class _Cloud:
    name = "azure"
    title = "Azure Functions"

    @property
    def deployer(self) -> Any:
        from nubes.adapters.azure.deploy import DEPLOYER

        return DEPLOYER


CLOUD = _Cloud()

__all__ = ["CLOUD"]
