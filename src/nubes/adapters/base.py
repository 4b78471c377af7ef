"""The Cloud protocol: everything nubes knows about one cloud, behind one interface.

Each cloud package (:mod:`nubes.adapters.aws`, :mod:`~nubes.adapters.gcp`, :mod:`~nubes.adapters.azure`)
has a ``cloud`` module whose ``CLOUD`` implements :class:`Cloud`; :mod:`nubes.core.clouds` finds it by
name. The emulator, metering, build and deploy consume these objects and never branch on a
provider's name. Adding a cloud is one new package that passes the shared contract suites.

Sections (each consumer's part of the protocol):

* identity and facts — ``name``, ``title``, ``figures`` (limits and prices, each with its source);
* metering — ``price_models`` (one per billing plan, see :mod:`nubes.metering.pricing`);
* emulation — ``emulation(...)`` (the provider's contract and limits for :mod:`nubes.adapters.emulator`);
* packaging — ``packaging`` (see :class:`Packaging`, used by :mod:`nubes.deploy.build`);
* deployment — ``deployer`` (used by :mod:`nubes.deploy`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Cloud(Protocol):
    """One cloud. Attributes are read-only; methods never branch on another cloud's name."""

    name: str
    title: str


# -- deployment (nubes.deploy; vocabulary in nubes.adapters.deployment) ------------------------------

@runtime_checkable
class Deployer(Protocol):
    """What :mod:`nubes.deploy` needs from one cloud to plan, apply, destroy and export a deployment.

    ``cloud.CLOUD.deployer`` implements it. ``settings`` lists the cloud-specific keys of its
    ``[deploy.CLOUD]`` table; ``validate`` returns every problem (each naming its fix) before anything
    is created; ``desired`` derives the resources from the app, the target and the artifact (``None``
    when not built: code-dependent properties are then ``None``); ``actual`` reads what exists from the
    cloud (resources tagged with ``target.name``, and the retained ones among ``desired``), never a
    local file; ``apply`` performs one change idempotently (safe to repeat after an interruption) and
    returns the actual resource; ``endpoint`` is the deployment's URL; ``export`` renders resources
    as an infrastructure-as-code document in one of ``export_formats``.
    """

    settings: frozenset[str]
    export_formats: tuple[str, ...]

    def validate(self, app: Any, target: Any) -> list[str]: ...

    def desired(self, app: Any, target: Any, artifact: Any | None) -> list[Any]: ...

    def actual(self, target: Any, desired: list[Any]) -> list[Any]: ...

    def apply(self, change: Any, target: Any, artifact: Any | None) -> Any | None: ...

    def endpoint(self, resources: list[Any]) -> str | None: ...

    def export(self, resources: list[Any], target: Any, artifact: Any | None, fmt: str) -> dict[str, Any]: ...
