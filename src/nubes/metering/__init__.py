"""Metering: every invocation priced the way its cloud bills it, a ledger of those costs, bills and quotes.

* :mod:`.prices` — the price models as data (figure, unit, source URL, date), overridable in config.
* :mod:`.compute` — the arithmetic per provider and plan (rounding, memory tiers, minimums).
* :mod:`.meter` — the invocation hook every app installs (headers, log fields, ledger records).
* :mod:`.ledger` — buffered, append-only, day-partitioned NDJSON objects in the home store.
* :mod:`.bills` — bills from the ledger with DuckDB, grouped and re-priced on another provider.
* :mod:`.quote` — an invocation's cost on each provider before it runs.

``configure(app, **settings)`` changes an app's metering settings in code (see :mod:`.config`).
Only :mod:`.meter` is imported with ``nubes``; the rest loads when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.metering.meter import Meter


def meter_of(app: App) -> Meter:
    """The app's metering hook (installed by ``App.__init__``); one is added if it was removed."""
    from nubes.metering.meter import Meter

    for hook in app.hooks:
        if isinstance(hook, Meter):
            return hook
    meter = Meter(app)
    app.hooks.append(meter)
    return meter


def configure(app: App, **settings: Any) -> Meter:
    """Set metering settings for ``app`` in code, e.g. ``configure(app, tenant_header="X-Tenant",
    prices={"aws.lambda.gb_second.x86_64": 0.000016}, azure_plan="flex")``."""
    return meter_of(app).configure(**settings)


def flush(app: App, timeout: float = 5.0) -> bool:
    """Write the app's buffered ledger records now; True when none is left."""
    return meter_of(app).flush(timeout)
