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
