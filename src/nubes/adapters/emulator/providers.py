"""Every emulated cloud's figures and answers in one view, and :func:`provider` to configure one.

The tables themselves live in each cloud package (``nubes.adapters.<cloud>.limits`` and
``.emulation``), each figure and answer with its source; :data:`FIGURES` (``"aws.payload_bytes"``) and
:data:`ANSWERS` (``("aws-http", "function_error")``) gather them from the registered clouds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nubes.adapters.base import Figure
from nubes.adapters.emulator.profile import Answer, Profile, new_request_id
from nubes.core import clouds
from nubes.errors import ConfigError

__all__ = ["ANSWERS", "FIGURES", "PROVIDERS", "Provider", "figure", "new_request_id", "provider"]

Provider = Profile


class _Gathered(Mapping[Any, Any]):
    """A read-only view over every registered cloud's table, built on first use."""

    def __init__(self, build: Any) -> None:
        self._build = build
        self._table: dict[Any, Any] | None = None

    def _get(self) -> dict[Any, Any]:
        if self._table is None:
            self._table = self._build()
        return self._table

    def __getitem__(self, key: Any) -> Any:
        return self._get()[key]

    def __iter__(self) -> Any:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _figures() -> dict[str, Figure]:
    return {f"{name}.{key}": fig for name in clouds.names() for key, fig in clouds.get(name).figures.items()}


def _answers() -> dict[tuple[str, str], Answer]:
    found: dict[tuple[str, str], Answer] = {}
    for name in clouds.names():
        found.update(type(clouds.get(name).emulation()).answers)
    return found


FIGURES: Mapping[str, Figure] = _Gathered(_figures)
ANSWERS: Mapping[tuple[str, str], Answer] = _Gathered(_answers)
PROVIDERS: tuple[str, ...] = tuple(clouds.names())


def figure(name: str) -> float:
    return FIGURES[name].value


def provider(name: str, **settings: Any) -> Profile:
    """The emulation profile of cloud ``name`` configured with ``settings`` (see :meth:`Profile.configure`)."""
    if not clouds.is_cloud(str(name)):
        raise ConfigError(f"--emulate {name!r}: use one of {', '.join(clouds.names())}")
    profile: Profile = clouds.get(str(name)).emulation(**settings)
    return profile
