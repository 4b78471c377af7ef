"""Google Cloud Functions (2nd gen) as one :class:`~nubes.adapters.base.Cloud` object (``CLOUD``), found by
:func:`nubes.core.clouds.get` under the name ``"gcp"``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nubes.adapters.gcp.limits import FIGURES
from nubes.adapters.gcp.prices import PLANS

if TYPE_CHECKING:
    from nubes.adapters.emulator.profile import Profile
    from nubes.core.app import App


class GcpCloud:
    """Everything nubes knows about Google Cloud Functions (2nd gen); see :class:`nubes.adapters.base.Cloud` for the contract."""

    name = "gcp"
    title = "Google Cloud Functions (2nd gen)"
    figures = FIGURES
    price_models = PLANS  # billing plan -> price model (nubes.metering.pricing)
    default_plan = "gen2"

    def emulation(self, **settings: Any) -> Profile:
        from nubes.adapters.gcp.emulation import GcpProfile

        return GcpProfile.configure(**settings)

    def binding_problems(self, sources: Mapping[str, str], queues: Mapping[str, str]) -> list[str]:
        """What this cloud refuses in ``[deploy.gcp.sources]`` / ``[deploy.gcp.queues]`` (its naming rules)."""
        from nubes.adapters.gcp.triggers import binding_problems

        return binding_problems(sources, queues)

    def job_dispatcher(self, app: App, *, request: Any = None) -> Any:
        """Jobs run by a Cloud Tasks HTTP task to this same function (:mod:`nubes.adapters.gcp.jobs`)."""
        from nubes.adapters.gcp.jobs import CloudTasksDispatcher

        return CloudTasksDispatcher.from_environment(request)

    def target(self, app: App, settings: Mapping[str, Any]) -> Any:
        from nubes.adapters.gcp.emulation import GcpTarget

        return GcpTarget(app, settings)

    @property
    def deployer(self) -> Any:
        """The :class:`~nubes.adapters.base.Deployer` of this cloud (:mod:`.deploy`), imported on first use."""
        from nubes.adapters.gcp.deploy import DEPLOYER

        return DEPLOYER


CLOUD = GcpCloud()
