"""The cloud object of aws (``nubes.core.clouds.get("aws")``). Minimal for now: identity and its deployer.

The lead's Cloud objects (figures, emulation, packaging) replace this file; keep the ``deployer``
attribute (a :class:`nubes.adapters.base.Deployer`, :mod:`.deploy`), imported on first use.
"""

from __future__ import annotations

from typing import Any


class _Cloud:
    name = "aws"
    title = "AWS Lambda"

    @property
    def deployer(self) -> Any:
        from nubes.adapters.aws.deploy import DEPLOYER

        return DEPLOYER


CLOUD = _Cloud()

__all__ = ["CLOUD"]
