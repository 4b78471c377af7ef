"""Authentication and authorization: who calls (API keys, JWT bearer tokens) and what each route needs.

``App(auth=...)`` takes an :class:`Auth` (or ``False`` to switch authentication off entirely; the
default ``None`` reads ``[auth]`` from ``nubes.toml`` and the environment). Per route:
``@app.get(path, auth=True | "role" | ["role", ...] | {"roles": [...], "scopes": [...]})``; the
handler sees the caller as ``ctx.principal`` (None when anonymous).

Secure by default: every built-in route under ``/_nubes/`` needs the ``admin`` role unless the app
opens it (``internal="open"``, or per route in ``routes``); with no credentials configured such a route
answers 401 saying how to configure them. Credentials that are present but wrong are a 401 on any
route; a caller without the needed role or scope gets 403. Answers are problem+json.

``nubes.toml``::

    [auth]
    internal = "admin"            # what /_nubes/ routes need: a role, true (any caller) or "open"
    default = false               # what the app's own routes need when they do not say (false: public)
    [auth.api_keys."sha256:<64 hex>"]     # the hash of the key (nubes auth new-key), never the key
    id = "ci-bot"
    roles = ["admin"]
    tenant = "acme"
    [auth.jwt]
    issuer = "https://login.example.com/"
    audience = "sales-api"
    jwks = "jwks.json"            # a file beside nubes.toml, or an https:// URL
    [auth.routes]
    "/_nubes/models/{name}/predict" = "predictor"     # per-route override (any route path)

Environment: ``NUBES_API_KEYS`` (JSON of the api_keys table), ``NUBES_JWT_ISSUER``,
``NUBES_JWT_AUDIENCE``, ``NUBES_JWT_JWKS``, ``NUBES_AUTH_INTERNAL``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nubes.core.auth.apikeys import ApiKeys, hash_key, new_key
from nubes.core.auth.principal import ADMIN, AUTHENTICATED, Principal, Requirement, requirement
from nubes.errors import ConfigError, HTTPError

if TYPE_CHECKING:
    from nubes.core.auth.tokens import JwtVerifier
    from nubes.core.request import Request
    from nubes.core.routing import Route

__all__ = ["ADMIN", "AUTHENTICATED", "Auth", "Principal", "Requirement", "hash_key", "new_key", "requirement"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="nubes"'}
_SETTINGS = {"api_keys", "jwt", "default", "internal", "routes", "api_key_header"}


class Auth:
    """An app's authentication settings and route policy (see the module docstring)."""

    def __init__(
        self,
        *,
        api_keys: Mapping[str, Any] | None = None,
        jwt: Mapping[str, Any] | None = None,
        default: Any = None,
        internal: Any = ADMIN,
        routes: Mapping[str, Any] | None = None,
        api_key_header: str = "x-api-key",
        base: Path | None = None,
    ) -> None:
        self.api_keys = ApiKeys(api_keys or {})
        self.jwt: JwtVerifier | None = None
        if jwt:
            from nubes.core.auth.tokens import JwtVerifier

            self.jwt = JwtVerifier(jwt, base=base)
        self.default = requirement(default, "auth default")
        self.internal = requirement(internal, "auth internal")
        self.routes = {path: requirement(spec, f"auth route {path}") for path, spec in (routes or {}).items()}
        self.api_key_header = api_key_header.lower()

    @property
    def configured(self) -> bool:
        """Whether any credential can be accepted at all."""
        return bool(self.api_keys) or self.jwt is not None

    @classmethod
    def from_config(cls, root: str | os.PathLike[str] | None) -> Auth:
        """Settings from ``[auth]`` in ``nubes.toml`` and the environment (which wins)."""
        from nubes.core import config

        path = config.project_file(root)
        table = dict(config.section("auth", root))
        unknown = set(table) - _SETTINGS
        if unknown:
            raise ConfigError(f"[auth]: unknown setting(s) {sorted(unknown)}; known: {sorted(_SETTINGS)}")
        env = os.environ
        if env.get("NUBES_API_KEYS"):
            try:
                keys = json.loads(env["NUBES_API_KEYS"])
            except ValueError as exc:
                raise ConfigError(f"NUBES_API_KEYS is not a JSON object of hashed keys: {exc}") from None
            if not isinstance(keys, dict):
                raise ConfigError("NUBES_API_KEYS must be a JSON object: {\"sha256:<hex>\": {\"id\": ..., \"roles\": [...]}}")
            table["api_keys"] = {**table.get("api_keys", {}), **keys}
        jwt = dict(table.get("jwt", {}))
        for name, key in (("NUBES_JWT_ISSUER", "issuer"), ("NUBES_JWT_AUDIENCE", "audience"), ("NUBES_JWT_JWKS", "jwks")):
            if env.get(name):
                jwt[key] = env[name]
        table["jwt"] = jwt or None
        if env.get("NUBES_AUTH_INTERNAL"):
            table["internal"] = _flag(env["NUBES_AUTH_INTERNAL"])
        return cls(**table, base=path.parent if path else None)

    # -- the policy -------------------------------------------------------------------------------
    def requirement_for(self, route: Route) -> Requirement | None:
        """What ``route`` needs: its own ``auth=``, else ``[auth.routes]``, else the internal/default policy."""
        if "auth" in route.options:
            return requirement(route.options["auth"], f"route {route.path} auth")
        if route.path in self.routes:
            return self.routes[route.path]
        return self.internal if route.internal else self.default

    def authenticate(self, request: Request) -> Principal | None:
        """The caller named by the request's credentials, None when it carries none; 401 when they are wrong."""
        headers = request.headers
        key = headers.get(self.api_key_header)
        if key is not None:
            principal = self.api_keys.find(key)
            if principal is None:
                raise HTTPError(401, "the API key is not valid", headers=_CHALLENGE)
            return principal
        authorization = headers.get("authorization")
        if authorization is None:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HTTPError(401, "use 'Authorization: Bearer <token>' or the X-API-Key header", headers=_CHALLENGE)
        if self.jwt is not None and token.count(".") == 2:
            from nubes.core.auth.tokens import InvalidToken

            try:
                return self.jwt.verify(token)
            except InvalidToken as exc:
                raise HTTPError(401, str(exc), headers=_CHALLENGE) from None
        principal = self.api_keys.find(token)
        if principal is None:
            raise HTTPError(401, "the bearer token is not valid", headers=_CHALLENGE)
        return principal

    def check(self, request: Request, needed: Requirement | None) -> Principal | None:
        """Authenticate ``request`` and enforce ``needed``: the principal, or a 401/403 HTTPError."""
        principal = self.authenticate(request)
        if needed is None:
            return principal
        if principal is None:
            if not self.configured:
                raise HTTPError(401, f"this route needs {needed.describe()}, and this app accepts no credentials yet: "
                                     "add API keys or a JWT issuer under [auth] in nubes.toml (or NUBES_API_KEYS), "
                                     "or open the route with [auth] internal = \"open\"", headers=_CHALLENGE)
            raise HTTPError(401, f"this route needs {needed.describe()}: send an API key (X-API-Key) or a bearer token",
                            headers=_CHALLENGE)
        if not needed.allows(principal):
            raise HTTPError(403, f"{principal.id} may not call this route: it needs {needed.describe()}")
        return principal


class NoAuth(Auth):
    """``App(auth=False)``: no authentication; every route, built-in ones included, is open."""

    def __init__(self) -> None:
        super().__init__(internal=None)

    def requirement_for(self, route: Route) -> Requirement | None:
        return None

    def check(self, request: Request, needed: Requirement | None) -> Principal | None:
        return None


def _flag(value: str) -> Any:
    lowered = value.strip().lower()
    if lowered in ("open", "false", "off", "0", "no"):
        return None
    if lowered in ("true", "on", "1", "yes"):
        return True
    return value.strip()
