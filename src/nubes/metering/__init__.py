"""Metering: every invocation priced the way its cloud bills it, a ledger of those costs, bills and quotes.

* :mod:`.pricing` — the price-model interface (one class per plan, implemented in each cloud's
  package: ``nubes/adapters/<cloud>/prices.py``) and :mod:`.prices`, the figures in force.
* :mod:`.meter` — the invocation hook every app installs (headers, log fields, ledger records).
* :mod:`.ledger` — the ledger's records, journaled into the home store (:mod:`nubes.storage.journal`);
  :mod:`.rollup` compacts them into Parquet per day and reads them back; :mod:`.reconcile` restores
  missing records from invocation log lines.
* :mod:`.bills` — bills from the ledger with DuckDB, grouped and re-priced on another cloud.
* :mod:`.quote` — an invocation's cost on each cloud before it runs (:mod:`.sandbox` runs the sample).

``configure(app, **settings)`` changes an app's metering settings in code (see :mod:`.config`).
Only :mod:`.meter` is imported with the metering extension; the rest loads when used. Metering
imports :mod:`nubes.data` (catalog, lineage, the storage bridge) for quotes: they resolve the
datasets a route reads and run it on slices of them; and :mod:`nubes.data.sqltext`, the one place
SQL text is quoted, for the DuckDB SQL that :mod:`.rollup` and :mod:`.bills` write over the ledger.
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
    prices={"aws.lambda.gb_second.x86_64": 0.000016}, plans={"azure": "flex"})``."""
    return meter_of(app).configure(**settings)


def flush(app: App, timeout: float = 5.0) -> bool:
    """Write the app's buffered ledger records and lineage entries now; True when none is left."""
    return meter_of(app).flush(timeout)


def compact(app: App) -> dict[str, Any]:
    """Compact the app's ledger into Parquet rollups now (see :mod:`nubes.metering.rollup`); e.g. from a
    schedule on a cloud: ``@app.on_schedule("nubes-compact", cron="0 */15 * * * *")``."""
    from nubes.metering.rollup import compact as compact_store

    meter = meter_of(app)
    meter.flush()
    return compact_store(app.storage, log=app.log)
