"""The metering extension: what :mod:`nubes.metering` adds to an app (see :mod:`nubes.core.extensions`).

* the :class:`~nubes.metering.meter.Meter` invocation hook (cost headers, log fields, ledger records);
* ``GET /_nubes/costs`` and ``GET /_nubes/quote``;
* the commands ``nubes costs``, ``nubes quote`` and ``nubes prices``.

Importing this module loads no data library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nubes.core.extensions import Command

if TYPE_CHECKING:
    from nubes.core.app import App


class MeteringExtension:
    """Every invocation priced the way its cloud bills it, a ledger of those costs, bills and quotes."""

    name = "metering"
    commands = (
        Command("costs", "nubes.cli.costs:costs", "Bills from the app's cost ledger."),
        Command("quote", "nubes.cli.costs:quote", "An invocation's cost on each provider, before it runs."),
        Command("prices", "nubes.cli.costs:prices", "The price models and their sources."),
    )

    def setup(self, app: App) -> None:
        from nubes.metering.meter import Meter
        from nubes.metering.routes import costs_route, quote_route

        app.hooks.append(Meter(app))
        app.add_internal_route("/_nubes/costs", ["GET"], costs_route, summary="Metered costs from the ledger")
        app.add_internal_route("/_nubes/quote", ["GET"], quote_route,
                               summary="An invocation's cost on each provider, before it runs")
