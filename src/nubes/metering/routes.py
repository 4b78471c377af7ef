"""``GET /_nubes/costs`` and ``GET /_nubes/quote``: bills and quotes over HTTP (as ``nubes costs`` / ``nubes quote``).

Imported by ``App.__init__`` to register the routes, so it imports nothing heavy at module level.
Both read the whole ledger of the app (every tenant's records): put them behind the same access
control as the rest of ``/_nubes/``.
"""

from __future__ import annotations

from typing import Any

from nubes.core.context import Context  # at run time: binding resolves the handlers' annotations


def costs_route(
    ctx: Context,
    by: str = "route",
    since: str | None = None,
    until: str | None = None,
    what_if: str | None = None,
    tenant: str | None = None,
    free_tier: bool = False,
) -> dict[str, Any]:
    """The app's bill from its cost ledger, grouped by request, route, tenant, day or provider.

    ``what_if=aws|gcp|azure`` re-prices the same invocations on another provider.
    """
    from nubes.errors import ConfigError, HTTPError
    from nubes.metering import meter_of
    from nubes.metering.bills import bill

    tenant = _visible_tenant(ctx, tenant)
    meter_of(ctx.app).flush(timeout=2.0)
    try:
        return bill(ctx.app, by=by, since=since, until=until, what_if=what_if or None, tenant=tenant,
                    free_tier=free_tier or None)
    except ConfigError as exc:
        raise HTTPError(422, str(exc)) from None


def quote_route(
    ctx: Context,
    path: str,
    method: str = "GET",
    q: list[str] | None = None,
    data: str | None = None,
    memory: int | None = None,
    provider: list[str] | None = None,
    basis: str | None = None,
) -> dict[str, Any]:
    """Estimate what ``method path`` will cost on each provider before it runs (low, expected, high).

    ``q`` adds query parameters (``key=value``, repeatable), ``data`` a JSON body, ``memory`` the
    memory in MB, ``provider`` restricts the providers, ``basis`` forces history, sample or sizes.
    """
    from nubes.errors import ConfigError, HTTPError
    from nubes.metering.quote import quote

    if not path.startswith("/"):
        raise HTTPError(422, f"path {path!r} must start with '/'")
    pairs = []
    for item in q or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HTTPError(422, f"q={item!r} is not key=value")
        pairs.append((key, value))
    try:
        return quote(ctx.app, method, path, query=pairs, body=(data or "").encode(), memory_mb=memory,
                     providers=provider or None, method_hint=basis)
    except ConfigError as exc:
        raise HTTPError(422, str(exc)) from None


def _visible_tenant(ctx: Context, asked: str | None) -> str | None:
    """Whose costs the caller may see: an admin (or an app without authentication) any tenant's; any
    other caller only its own tenant's (403 when it has none, or asks for another)."""
    from nubes.errors import HTTPError

    principal = ctx.principal
    if principal is None or principal.is_admin:
        return asked
    if not principal.tenant:
        raise HTTPError(403, f"{principal.id} has no tenant, so it may see no costs; an admin sees every tenant's")
    if asked not in (None, principal.tenant):
        raise HTTPError(403, f"{principal.id} may see only the costs of tenant {principal.tenant!r}")
    return str(principal.tenant)
