"""Azure Functions as one :class:`~nubes.adapters.base.Cloud` object (``CLOUD``), found by
:func:`nubes.core.clouds.get` under the name ``"azure"``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nubes.adapters.azure.limits import FIGURES
from nubes.adapters.azure.prices import PLANS

if TYPE_CHECKING:
    from nubes.adapters.emulator.profile import Profile
    from nubes.core.app import App


class AzureCloud:
    """Everything nubes knows about Azure Functions; see :class:`nubes.adapters.base.Cloud` for the contract."""

    name = "azure"
    title = "Azure Functions"
    figures = FIGURES
    price_models = PLANS  # billing plan -> price model (nubes.metering.pricing)
    default_plan = "consumption"

    def emulation(self, **settings: Any) -> Profile:
        from nubes.adapters.azure.emulation import AzureProfile

        return AzureProfile.configure(**settings)

    def binding_problems(self, sources: Mapping[str, str], queues: Mapping[str, str]) -> list[str]:
        """What this cloud refuses in ``[deploy.azure.sources]`` / ``[deploy.azure.queues]`` (its naming rules)."""
        from nubes.adapters.azure.triggers import binding_problems

        return binding_problems(sources, queues)

    def job_dispatcher(self, app: App, *, request: Any = None) -> Any:
        """Jobs run by a Storage queue message to this function app (:mod:`nubes.adapters.azure.jobs`)."""
        from nubes.adapters.azure.jobs import QueueDispatcher

        return QueueDispatcher.for_app(app)

    def target(self, app: App, settings: Mapping[str, Any]) -> Any:
        from nubes.adapters.azure.emulation import AzureTarget

        return AzureTarget(app, settings)

    @property
    def deployer(self) -> Any:
        """The :class:`~nubes.adapters.base.Deployer` of this cloud (:mod:`.deploy`), imported on first use."""
        from nubes.adapters.azure.deploy import DEPLOYER

        return DEPLOYER


CLOUD = AzureCloud()
