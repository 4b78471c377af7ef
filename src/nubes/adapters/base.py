"""The Cloud protocol: everything nubes knows about one cloud, behind one interface.

Each cloud package (:mod:`nubes.adapters.aws`, :mod:`~nubes.adapters.gcp`, :mod:`~nubes.adapters.azure`)
has a ``cloud`` module whose ``CLOUD`` implements :class:`Cloud`; :mod:`nubes.core.clouds` finds it by
name. The emulator, metering, build and deploy consume these objects and never branch on a
provider's name. Adding a cloud is one new package that passes the shared contract suites
(:mod:`nubes.testing.cloud_contract`).

Sections (each consumer's part of the protocol):

* identity and facts — ``name``, ``title``, ``figures`` (limits, each a :class:`Figure` with its source);
* metering — ``price_models`` (billing plan → price model, see :mod:`nubes.metering.pricing`) and
  ``default_plan``;
* emulation — ``emulation(**settings)`` returns the cloud's :class:`~nubes.adapters.emulator.profile.Profile`
  (front-end limits and answers, payloads in and out, event payloads) and ``target(app, settings)``
  the worker-side function as deployed;
* jobs and triggers — ``job_dispatcher(app, request=...)`` (how a job starts on this cloud:
  :mod:`nubes.core.job_runs`) and ``binding_problems(sources, queues)`` (this cloud's naming rules for
  ``[deploy.<cloud>.sources]`` / ``[deploy.<cloud>.queues]``: :mod:`nubes.core.triggers`);
* packaging — ``packaging`` (see :class:`Packaging`, used by :mod:`nubes.deploy.build`);
* deployment — ``deployer`` (used by :mod:`nubes.deploy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from nubes.adapters.emulator.profile import Profile
    from nubes.core.app import App


@dataclass(frozen=True)
class Figure:
    """One published limit or default of a cloud: its ``value`` and the ``source`` it comes from."""

    value: float
    source: str


# -- identity, facts, emulation ------------------------------------------------------------------------
@runtime_checkable
class Cloud(Protocol):
    """One cloud. Attributes are read-only; nothing here branches on another cloud's name."""

    name: str
    """The registry name (``aws``): what ``--emulate``, ``--cloud`` and ``Platform.provider`` say."""
    title: str
    """A human name (``AWS Lambda``)."""
    figures: Mapping[str, Figure]
    """Every limit and default nubes uses for this cloud, with its source (keys like ``payload_bytes``)."""

    def emulation(self, **settings: Any) -> Profile:
        """The cloud's emulation profile configured with ``timeout``, ``memory``, ``function_name``,
        ``front`` (how HTTP reaches the function) and ``request_limit``; ConfigError names the fix."""
        ...

    def job_dispatcher(self, app: App, *, request: Any = None) -> Any:
        """A :class:`~nubes.core.job_runs.JobDispatcher` starting jobs by this cloud's asynchronous
        execution of the same function (``request``: the submitting request, for its URL)."""
        ...

    def binding_problems(self, sources: Mapping[str, str], queues: Mapping[str, str]) -> list[str]:
        """What this cloud refuses among logical sources (name -> store URI) and queues (name -> its
        queue/topic name), each problem naming the rule; empty when all are valid."""
        ...

    def target(self, app: App, settings: Mapping[str, Any]) -> Any:
        """The worker side: ``app`` wrapped by this cloud's adapter exactly as deployed; its
        ``invoke(meta, body) -> (meta, body)`` runs one invocation (see :mod:`nubes.adapters.emulator`)."""
        ...
