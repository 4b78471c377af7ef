"""AWS Lambda as one :class:`~nubes.adapters.base.Cloud` object (``CLOUD``), found by
:func:`nubes.core.clouds.get` under the name ``"aws"``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nubes.adapters.aws.limits import FIGURES
from nubes.adapters.aws.prices import PLANS

if TYPE_CHECKING:
    from nubes.adapters.emulator.profile import Profile
    from nubes.core.app import App


class AwsCloud:
    """Everything nubes knows about AWS Lambda; see :class:`nubes.adapters.base.Cloud` for the contract."""

    name = "aws"
    title = "AWS Lambda"
    figures = FIGURES
    price_models = PLANS  # billing plan -> price model (nubes.metering.pricing)
    default_plan = "lambda"

    def emulation(self, **settings: Any) -> Profile:
        from nubes.adapters.aws.emulation import AwsProfile

        return AwsProfile.configure(**settings)

    def binding_problems(self, sources: Mapping[str, str], queues: Mapping[str, str]) -> list[str]:
        """What this cloud refuses in ``[deploy.aws.sources]`` / ``[deploy.aws.queues]`` (its naming rules)."""
        from nubes.adapters.aws.triggers import binding_problems

        return binding_problems(sources, queues)

    def job_dispatcher(self, app: App, *, request: Any = None) -> Any:
        """Jobs run by an asynchronous invocation of this same function (:mod:`nubes.adapters.aws.jobs`)."""
        from nubes.adapters.aws.jobs import LambdaDispatcher

        return LambdaDispatcher.from_environment()

    def target(self, app: App, settings: Mapping[str, Any]) -> Any:
        from nubes.adapters.aws.emulation import AwsTarget

        return AwsTarget(app, settings)

    @property
    def deployer(self) -> Any:
        """The :class:`~nubes.adapters.base.Deployer` of this cloud (:mod:`.deploy`), imported on first use."""
        from nubes.adapters.aws.deploy import DEPLOYER

        return DEPLOYER


CLOUD = AwsCloud()
