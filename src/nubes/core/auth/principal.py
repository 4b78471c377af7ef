"""Who is calling (:class:`Principal`) and what a route requires of them (:class:`Requirement`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nubes.errors import ConfigError

ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``id`` (API key name or JWT subject), ``roles``, ``scopes``, ``tenant``
    (whose data and costs they see), ``method`` (``"api_key"`` or ``"jwt"``) and the token's ``claims``."""

    id: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    tenant: str | None = None
    method: str = "api_key"
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


@dataclass(frozen=True)
class Requirement:
    """What a route needs: an authenticated caller with any one of ``roles`` (none listed: any role)
    and all of ``scopes``. The ``admin`` role satisfies every requirement."""

    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()

    def allows(self, principal: Principal) -> bool:
        if principal.is_admin:
            return True
        if self.roles and not (self.roles & principal.roles):
            return False
        return self.scopes <= principal.scopes

    def describe(self) -> str:
        parts = []
        if self.roles:
            parts.append("role " + " or ".join(sorted(self.roles)))
        if self.scopes:
            parts.append("scope " + " and ".join(sorted(self.scopes)))
        return ", ".join(parts) or "an authenticated caller"


AUTHENTICATED = Requirement()


def requirement(spec: Any, where: str = "auth") -> Requirement | None:
    """Read a route's ``auth=`` setting: ``None``/``False`` (public), ``True`` (any authenticated caller),
    ``"role"``, a list of roles (any of them), ``{"roles": [...], "scopes": [...]}`` or a Requirement."""
    if spec is None or spec is False or spec == "open":
        return None
    if spec is True:
        return AUTHENTICATED
    if isinstance(spec, Requirement):
        return spec
    if isinstance(spec, str):
        return Requirement(roles=frozenset([_name(spec, where)]))
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"roles", "scopes"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; use roles and scopes")
        return Requirement(roles=_names(spec.get("roles", ()), where), scopes=_names(spec.get("scopes", ()), where))
    if isinstance(spec, Iterable):
        return Requirement(roles=_names(spec, where))
    raise ConfigError(f"{where}={spec!r}: use True, a role name, a list of roles or {{'roles': [...], 'scopes': [...]}}")


def _names(values: Any, where: str) -> frozenset[str]:
    if isinstance(values, str):
        values = [values]
    return frozenset(_name(v, where) for v in values)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{where}: role and scope names are non-empty strings, not {value!r}")
    return value.strip()
