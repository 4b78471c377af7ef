"""JWT bearer tokens, verified with PyJWT (signature, ``exp``/``nbf``/``iat`` with leeway, issuer, audience).

Keys come from a JWKS: a file (``jwks = "path/to/jwks.json"`` or ``file://...``) read once, or an
``https://`` URL (no other scheme: keys fetched in clear text could be swapped) fetched by PyJWT's
:class:`jwt.PyJWKClient`, the set cached ``JWKS_LIFESPAN_S``; a token with an unknown ``kid`` refetches
it at most once per ``JWKS_REFETCH_S``, so tokens with made-up kids cannot make every request a fetch.
Asymmetric algorithms only, unless a shared secret is configured explicitly (``secret_env`` names the
environment variable holding it, and then only HS256/384/512 are accepted). ``alg: none`` is never
accepted. Verified tokens are cached by their SHA-256 until they expire (bounded), so a warm
instance verifies each token's signature once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nubes.core.auth.principal import Principal
from nubes.errors import ConfigError

ASYMMETRIC: tuple[str, ...] = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
SYMMETRIC: tuple[str, ...] = ("HS256", "HS384", "HS512")
MAX_TOKEN_CHARS = 8192
JWKS_LIFESPAN_S = 300.0
JWKS_REFETCH_S = 60.0
_SETTINGS = {"issuer", "audience", "jwks", "secret_env", "algorithms", "leeway", "roles_claim", "scopes_claim",
             "tenant_claim", "subject_claim", "cache_size"}


class InvalidToken(Exception):
    """The token was refused; the message is safe to show the caller."""


class JwtVerifier:
    """Verify bearer tokens against one issuer's keys; see the module docstring."""

    def __init__(self, settings: Mapping[str, Any], *, base: Path | None = None) -> None:
        unknown = set(settings) - _SETTINGS
        if unknown:
            raise ConfigError(f"[auth.jwt]: unknown setting(s) {sorted(unknown)}; known: {sorted(_SETTINGS)}")
        self.issuer = settings.get("issuer")
        self.audience = settings.get("audience")
        if not self.issuer or not self.audience:
            raise ConfigError("[auth.jwt] needs issuer and audience (the values your identity provider puts in iss and aud)")
        self.leeway = float(settings.get("leeway", 30))
        self.roles_claim = str(settings.get("roles_claim", "roles"))
        self.scopes_claim = str(settings.get("scopes_claim", "scope"))
        self.tenant_claim = str(settings.get("tenant_claim", "tenant"))
        self.subject_claim = str(settings.get("subject_claim", "sub"))
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = int(settings.get("cache_size", 1024))
        self._lock = threading.Lock()
        self._secret: str | None = None
        self._jwks_client: Any = None
        self._keyset: Any = None
        secret_env = settings.get("secret_env")
        jwks = settings.get("jwks")
        if secret_env:
            self._secret = os.environ.get(str(secret_env))
            if not self._secret:
                raise ConfigError(f"[auth.jwt] secret_env = {secret_env!r}, but that environment variable is empty")
            allowed = SYMMETRIC
        elif jwks:
            self._jwks = str(jwks)
            scheme = self._jwks.partition("://")[0].lower() if "://" in self._jwks else ""
            if scheme not in ("", "https", "file"):
                raise ConfigError(f"[auth.jwt] jwks {self._jwks!r}: use an https:// URL or a file path "
                                  "(keys fetched over plain http could be replaced on the way)")
            self._base = base
            self._refetched = float("-inf")
            allowed = ASYMMETRIC
        else:
            raise ConfigError("[auth.jwt] needs jwks (a JWKS file or URL) or secret_env (for HS256 tokens)")
        algorithms = settings.get("algorithms") or list(allowed)
        bad = [a for a in algorithms if a not in allowed]
        if bad:
            raise ConfigError(f"[auth.jwt] algorithms {bad} are not allowed with this key source; use some of {list(allowed)}")
        self.algorithms = list(algorithms)

    def verify(self, token: str) -> Principal:
        """The principal the token names; :class:`InvalidToken` when it cannot be trusted."""
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise InvalidToken("the bearer token is not a JWT")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        now = time.time()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and hit[1] > now:
                self._cache.move_to_end(digest)
                return hit[0]
        claims = self._decode(token)
        principal = self._principal(claims)
        expires = float(claims.get("exp", now))
        with self._lock:
            self._cache[digest] = (principal, expires + self.leeway)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    def _decode(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            key = self._secret if self._secret is not None else self._signing_key(token)
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=self.algorithms, audience=self.audience, issuer=self.issuer, leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", self.subject_claim]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the bearer token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the bearer token is not valid: {_short(exc)}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidToken(f"the bearer token is not valid: {_short(exc)}") from None
        return claims

    def _signing_key(self, token: str) -> Any:
        import jwt

        if self._jwks.lower().startswith("https://"):
            return self._url_key(jwt.get_unverified_header(token).get("kid"))
        if self._keyset is None:
            path = Path(self._jwks.removeprefix("file://"))
            if not path.is_absolute() and self._base is not None:
                path = self._base / path
            try:
                self._keyset = jwt.PyJWKSet.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, jwt.PyJWKSetError) as exc:
                raise ConfigError(f"[auth.jwt] jwks {str(path)!r} cannot be read as a JWKS: {exc}") from None
        kid = jwt.get_unverified_header(token).get("kid")
        for jwk in self._keyset.keys:
            if kid is None or jwk.key_id == kid:
                return jwk.key
        raise InvalidToken("no key in the JWKS matches the bearer token's kid")

    def _url_key(self, kid: Any) -> Any:
        """The key ``kid`` names in the JWKS at the URL: from the cached set, else from one refetch
        if none happened in the last ``JWKS_REFETCH_S`` (a key rotation is picked up; a flood is not)."""
        import jwt

        try:
            with self._lock:
                if self._jwks_client is None:
                    self._jwks_client = jwt.PyJWKClient(self._jwks, cache_jwk_set=True, lifespan=JWKS_LIFESPAN_S, timeout=5)
            client = self._jwks_client
            key = client.match_kid(client.get_signing_keys(), kid)
            if key is None:
                with self._lock:
                    now = time.monotonic()
                    due = now - self._refetched >= JWKS_REFETCH_S
                    if due:
                        self._refetched = now
                if due:
                    key = client.match_kid(client.get_signing_keys(refresh=True), kid)
        except jwt.PyJWKClientError as exc:
            raise InvalidToken(f"no key to verify the bearer token: {_short(exc)}") from None
        if key is None:
            raise InvalidToken("no key in the JWKS matches the bearer token's kid")
        return key.key

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        tenant = claims.get(self.tenant_claim)
        return Principal(
            id=str(claims[self.subject_claim]),
            roles=frozenset(_words(claims.get(self.roles_claim))),
            scopes=frozenset(_words(claims.get(self.scopes_claim) or claims.get("scp"))),
            tenant=str(tenant) if tenant is not None else None,
            method="jwt",
            claims=dict(claims),
        )


def _words(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
