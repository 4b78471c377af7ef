"""Plan, apply, destroy, status and export for one app on one cloud, through the cloud's deployer.

The deployer is ``nubes.core.clouds.get(cloud).deployer`` (a :class:`nubes.adapters.base.Deployer`);
nothing here knows a cloud by name. State always comes from the cloud (``deployer.actual``), never
from a local file, so an interrupted apply is finished by running it again: the new plan holds only
what is still missing, and every step is idempotent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from nubes.adapters.deployment import TAG_VERSION, Artifact, Change, Resource, StateUnavailable, Target
from nubes.deploy import config as deploy_config
from nubes.deploy.model import Plan, diff, teardown
from nubes.errors import ConfigError, NubesError

CODE = "code_sha256"
"""The property carrying the artifact's hash: ``None`` in a desired resource when nothing was built."""


@dataclass
class Deployment:
    """One app on one cloud: its deployer, validated target and (optional) artifact."""

    app: Any
    cloud: str
    deployer: Any
    target: Target
    artifact: Artifact | None = None

    @classmethod
    def open(cls, app: Any, cloud: str, *, config: str | os.PathLike[str] | None = None,
             artifact: str | os.PathLike[str] | Artifact | None = None) -> Deployment:
        """Validate the config (raising :class:`ConfigError` naming every fix) and read the artifact's manifest."""
        from nubes.core import clouds

        deployer = getattr(clouds.get(cloud), "deployer", None)
        if deployer is None:
            raise ConfigError(f"cloud {cloud!r} cannot deploy yet (its cloud object has no deployer)")
        target = deploy_config.load(app, cloud, deployer, config=config)
        return cls(app, cloud, deployer, target, _checked(artifact, cloud, target))

    def with_artifact(self, artifact: str | os.PathLike[str] | Artifact) -> Deployment:
        """The same deployment (app, validated target) with ``artifact``, checked as :meth:`open` checks it."""
        return replace(self, artifact=_checked(artifact, self.cloud, self.target))

    # -- reading ------------------------------------------------------------------------------------
    def desired(self) -> list[Resource]:
        return list(self.deployer.desired(self.app, self.target, self.artifact))

    def actual(self, desired: list[Resource] | None = None) -> list[Resource]:
        try:
            return list(self.deployer.actual(self.target, self.desired() if desired is None else desired))
        except NubesError:
            raise
        except Exception as exc:  # SDK errors: credentials, endpoint, permissions
            raise StateUnavailable(f"cannot read the deployed state of {self.target.name!r} on {self.cloud}: "
                                   f"{type(exc).__name__}: {exc}") from exc

    def plan(self, *, offline: bool = False) -> Plan:
        """The plan against the cloud's state; ``offline`` plans against nothing deployed (states so in its notes)."""
        notes: list[str] = []
        desired = self.desired()
        if self.artifact is None:
            notes.append("no artifact given: the code is not compared (build with `nubes build` and pass --artifact)")
        if offline:
            notes.append("state not read from the cloud (offline): every resource is shown as created")
            actual: list[Resource] = []
        else:
            actual = self.actual(desired)
        return diff(self.cloud, self.target.name, desired, actual, notes)

    def destroy_plan(self) -> Plan:
        return teardown(self.cloud, self.target.name, self.actual())

    # -- changing -----------------------------------------------------------------------------------
    def apply(self, plan: Plan, on_step: Callable[[Change, str], None] | None = None) -> list[Resource]:
        """Apply ``plan``'s pending changes in order; each is reported to ``on_step(change, "start"|"done")``."""
        needs_code = [c.resource.key for c in plan.pending if c.action != "delete" and CODE in c.resource.properties
                      and c.resource.properties[CODE] is None]
        if needs_code:
            raise ConfigError(f"{', '.join(needs_code)} need the built code: run `nubes build APP --cloud {self.cloud}` "
                              "and pass --artifact path/to/manifest.json")
        done: list[Resource] = []
        for change in plan.pending:
            if on_step:
                on_step(change, "start")
            result = self.deployer.apply(change, self.target, self.artifact)
            if result is not None:
                done.append(result)
            if on_step:
                on_step(change, "done")
        return done

    def url(self, plan: Plan, applied: list[Resource]) -> str | None:
        """The URL after applying ``plan``: from what the apply returned or the state the plan read, and
        read from the cloud only when neither holds it (a front just created)."""
        known = [*applied, *(c.actual for c in plan.changes if c.actual is not None and c.action != "delete")]
        url = self.deployer.endpoint(known) or self.deployer.endpoint(self.actual())
        return str(url) if url else None

    # -- reporting ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Deployed version, URL and drift (the pending changes of a plan without code comparison)."""
        desired = self.desired()
        actual = self.actual(desired)
        versions = sorted({r.tags.get(TAG_VERSION, "") for r in actual if r.tags.get(TAG_VERSION)})
        code = sorted({str(r.outputs[CODE]) for r in actual if r.outputs.get(CODE)})
        drift = diff(self.cloud, self.target.name, desired, actual)
        return {
            "cloud": self.cloud, "name": self.target.name, "deployed": bool([r for r in actual if not r.retain]),
            "version": versions[0] if len(versions) == 1 else (versions or None),
            "code_sha256": code[0] if len(code) == 1 else (code or None),
            "url": self.deployer.endpoint(actual),
            "resources": [{"kind": r.kind, "name": r.name} for r in actual],
            "drift": [c.to_json() for c in drift.pending],
        }

    def export(self, fmt: str) -> dict[str, Any]:
        formats = tuple(self.deployer.export_formats)
        if fmt not in formats:
            raise ConfigError(f"{self.cloud} exports as {', '.join(formats)}, not {fmt!r}")
        return dict(self.deployer.export(self.desired(), self.target, self.artifact, fmt))


def _checked(artifact: str | os.PathLike[str] | Artifact | None, cloud: str, target: Target) -> Artifact | None:
    """The artifact's manifest read, refused when built for another cloud or architecture than ``target``."""
    built = artifact if isinstance(artifact, Artifact) or artifact is None else Artifact.from_manifest(artifact)
    if built is not None and built.cloud != cloud:
        raise ConfigError(f"the artifact {built.path} was built for {built.cloud!r}, not {cloud!r}; "
                          f"build it with `nubes build APP --cloud {cloud}`")
    if built is not None and target.architecture and built.arch and built.arch != target.architecture:
        raise ConfigError(f"the artifact {built.path} was built for {built.arch}, but {target.where('architecture')} is "
                          f"{target.architecture}: rebuild with `nubes build APP --cloud {cloud} --arch {target.architecture}`")
    return built


__all__ = ["CODE", "Deployment", "StateUnavailable"]
