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
from dataclasses import dataclass, field
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


# -- deployment (nubes.deploy; vocabulary in nubes.adapters.deployment) ------------------------------

@runtime_checkable
class Deployer(Protocol):
    """What :mod:`nubes.deploy` needs from one cloud to plan, apply, destroy and export a deployment.

    ``cloud.CLOUD.deployer`` implements it. ``settings`` lists the cloud-specific keys of its
    ``[deploy.CLOUD]`` table, and ``whole_numbers`` those among them that must be positive whole numbers
    (checked with the common keys, so ``desired`` may convert them with ``int``); ``validate`` returns
    every problem (each naming its fix) before anything is created; ``desired`` derives the resources
    from the app, the target and the artifact (``None`` when not built: code-dependent properties are
    then ``None``); ``actual`` reads what exists from the cloud (resources tagged with ``target.name``,
    and the retained ones among ``desired``), never a local file; ``apply`` performs one change
    idempotently (safe to repeat after an interruption) and returns the actual resource; ``endpoint`` is
    the deployment's URL; ``export`` renders resources as an infrastructure-as-code document in one of
    ``export_formats``.
    """

    settings: frozenset[str]
    whole_numbers: frozenset[str]
    export_formats: tuple[str, ...]

    def validate(self, app: Any, target: Any) -> list[str]: ...

    def desired(self, app: Any, target: Any, artifact: Any | None) -> list[Any]: ...

    def actual(self, target: Any, desired: list[Any]) -> list[Any]: ...

    def apply(self, change: Any, target: Any, artifact: Any | None) -> Any | None: ...

    def endpoint(self, resources: list[Any]) -> str | None: ...

    def export(self, resources: list[Any], target: Any, artifact: Any | None, fmt: str) -> dict[str, Any]: ...


# == packaging (used by nubes.deploy.build) ========================================================


@dataclass(frozen=True)
class Fit:
    """Whether an artifact fits its cloud: ``fits``, the binding ``limit`` in bytes (None: no known
    limit), ``notes`` for the size report and ``facts`` copied into the manifest (e.g. AWS's upload path)."""

    fits: bool
    limit: int | None = None
    notes: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Packaging(Protocol):
    """How one cloud wants a function packaged: everything :mod:`nubes.deploy.build` must not know.

    The build engine is cloud-neutral: it resolves wheels for :meth:`platform_tags`, stages them under
    ``packages_dir`` (when ``vendor_packages``), compiles bytecode with file names under ``task_root``,
    writes :meth:`entry_files` and asks :meth:`fit` whether the result fits. Paths are POSIX, relative
    to the artifact's root. Every figure carries its source in the implementing module.
    """

    cloud: str                        # the cloud's name, as in nubes.core.clouds
    formats: tuple[str, ...]          # artifact formats it builds, the default first ("zip", "image")
    architectures: tuple[str, ...]    # "x86_64", "arm64": the first is the default
    pythons: tuple[str, ...]          # runtime versions it offers ("3.11", "3.12", ...)
    task_root: str                    # where the artifact is unpacked at run time (bytecode file names)
    packages_dir: str                 # where distributions go inside the artifact ("" = its root)
    app_dir: str                      # where nubes and the app's files go ("" = its root)
    vendor_packages: bool             # True: distributions go in the artifact; False: requirements.txt only
    store_schemes: tuple[str, ...]    # its own object stores, suggested when no cloud store is given
    settings_keys: tuple[str, ...]    # the [deploy.<cloud>] keys the package itself depends on (the rest are deploy's)
    adapter_modules: tuple[str, ...]  # nubes modules the entry point imports (their imports are the base footprint)
    runtime_requirements: tuple[str, ...]  # distributions the entry needs beyond those imports (none usually)

    def platform_tags(self, arch: str, python: str) -> list[str]:
        """Wheel platform tags to resolve for ``arch`` and runtime ``python``, most preferred first."""
        ...

    def entry_files(self, app_ref: str, *, storage: str, settings: dict[str, Any], arch: str = "x86_64",
                    exclude: list[str] | None = None) -> dict[str, str]:
        """The files that start the app (``app_ref`` is ``module:attr`` importable from ``app_dir``):
        path -> text. ``settings`` is the app's ``[deploy.<cloud>]`` table (unknown keys raise
        ConfigError); routes matching ``exclude`` are removed at load (see :func:`without_routes`)."""
        ...

    def check_app(self, app: Any, settings: dict[str, Any]) -> None:
        """Fail early (ConfigError naming the fix) on what this cloud cannot run, e.g. an unbindable trigger."""
        ...

    def image_files(self, python: str, arch: str, *, context_root: str) -> dict[str, str]:
        """For ``image``: the container build files (e.g. a Dockerfile copying ``context_root``)."""
        ...

    def fit(self, fmt: str, unzipped_bytes: int, zipped_bytes: int) -> Fit:
        """Whether an artifact of these sizes can be deployed in format ``fmt``."""
        ...


def manylinux_tags(glibc_minor: int, machine: str) -> list[str]:
    """Wheel tags for a Linux with glibc ``2.{glibc_minor}`` on ``machine`` (``x86_64``, ``aarch64``):
    ``manylinux_2_{glibc_minor}`` down to ``manylinux_2_17`` plus the legacy aliases, which pip matches
    exactly (given only ``manylinux2014`` it silently picks old releases)."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc_minor, 16, -1)]
    tags.append(f"manylinux2014_{machine}")
    if machine == "x86_64":
        tags += ["manylinux_2_12_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64"]
    return tags


def without_routes(app_var: str, paths: list[str]) -> str:
    """Entry-file lines removing the routes whose path matches ``paths`` (fnmatch patterns, from
    ``[build] exclude``) from the loaded app, so they answer 404 rather than fail on a missing package."""
    if not paths:
        return ""
    return (f"_EXCLUDED = {sorted(paths)!r}  # [build] exclude: left out of this artifact\n"
            f"{app_var}.router.routes[:] = [r for r in {app_var}.router.routes\n"
            f"                              if not any(__import__('fnmatch').fnmatchcase(r.path, p) for p in _EXCLUDED)]\n")
