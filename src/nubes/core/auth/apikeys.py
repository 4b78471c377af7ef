"""API keys, stored hashed: the configuration holds ``sha256:<hex>`` of each key, never the key.

Keys are random 256-bit tokens (:func:`new_key`), so one SHA-256 is a sufficient, fast hash: a leaked
configuration does not reveal a usable key. Lookup hashes the presented key and finds it in a dict;
the comparison of equal-length digests is by dict lookup of the digest (an attacker who can time it
learns only a prefix of a hash, not of a key).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from nubes.core.auth.principal import Principal
from nubes.errors import ConfigError

PREFIX = "sha256:"
MAX_KEY_BYTES = 512


def new_key() -> str:
    """A fresh API key (43 URL-safe characters, 256 bits)."""
    return "nbs_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """What to store for ``key``: ``sha256:<hex>``."""
    return PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    """The configured keys: ``{"sha256:<hex>": {"id": name, "roles": [...], "scopes": [...], "tenant": t}}``."""

    def __init__(self, entries: Mapping[str, Any]) -> None:
        self._by_hash: dict[str, Principal] = {}
        for stored, spec in entries.items():
            if not isinstance(stored, str) or not stored.startswith(PREFIX) or len(stored) != len(PREFIX) + 64:
                raise ConfigError(f"API key entry {stored[:12]!r}...: store the hash, not the key: 'sha256:<64 hex digits>' "
                                  "(nubes auth hash-key KEY prints it; nubes auth new-key makes a key and its hash)")
            if not isinstance(spec, Mapping):
                raise ConfigError(f"API key {stored[:16]}...: its value is a table with id, roles, scopes, tenant")
            unknown = set(spec) - {"id", "roles", "scopes", "tenant"}
            if unknown:
                raise ConfigError(f"API key {stored[:16]}...: unknown field(s) {sorted(unknown)}; use id, roles, scopes, tenant")
            self._by_hash[stored.lower()] = Principal(
                id=str(spec.get("id") or stored[len(PREFIX):len(PREFIX) + 8]),
                roles=frozenset(_strings(spec.get("roles", ()))),
                scopes=frozenset(_strings(spec.get("scopes", ()))),
                tenant=str(spec["tenant"]) if spec.get("tenant") is not None else None,
                method="api_key",
            )

    def __bool__(self) -> bool:
        return bool(self._by_hash)

    def find(self, key: str) -> Principal | None:
        """The principal of ``key``, or None when it is not a configured key."""
        if not key or len(key) > MAX_KEY_BYTES:
            return None
        return self._by_hash.get(hash_key(key))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]
