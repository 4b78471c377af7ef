"""The plan: desired resources diffed against the ones read back from the cloud.

One model for every cloud (:class:`~nubes.adapters.deployment.Resource`); :func:`diff` gives a
:class:`Plan` of :class:`~nubes.adapters.deployment.Change` in the order they are applied: creates and
updates by ascending ``rank`` (a role before the function that assumes it), deletes after them by
descending rank (triggers before the function). Unchanged resources are listed but never touched,
so a re-run with nothing changed applies nothing. A desired property of ``None`` (not known before
apply, e.g. the code hash when nothing was built) is never a change. Retained resources (buckets,
queues: they hold data) are created when missing and never deleted by a deploy; a destroy deletes
the ones nubes created only when they are empty, and keeps the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nubes.adapters.deployment import TAG_APP, Change, Resource


@dataclass(frozen=True)
class Plan:
    """The changes for one target, in application order; ``kept`` are retained resources a destroy leaves."""

    cloud: str
    name: str
    changes: tuple[Change, ...]
    kept: tuple[Resource, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def pending(self) -> tuple[Change, ...]:
        """The changes that do something (not ``unchanged``)."""
        return tuple(c for c in self.changes if c.action != "unchanged")

    @property
    def empty(self) -> bool:
        return not self.pending

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
        for change in self.changes:
            out[change.action] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"cloud": self.cloud, "name": self.name, "summary": self.counts(),
                "changes": [c.to_json() for c in self.changes],
                "kept": [{"kind": r.kind, "name": r.name} for r in self.kept], "notes": list(self.notes)}


def differences(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{field: (actual, desired)}`` for each desired property the cloud does not have (``None`` = unknown, skipped)."""
    out: dict[str, tuple[Any, Any]] = {}
    for key, want in desired.items():
        if want is None:
            continue
        have = actual.get(key)
        if _normal(have) != _normal(want):
            out[key] = (have, want)
    return out


def _normal(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value


def diff(cloud: str, name: str, desired: Iterable[Resource], actual: Iterable[Resource], notes: Iterable[str] = ()) -> Plan:
    """The plan turning ``actual`` into ``desired`` (see the module doc)."""
    have = {r.key: r for r in actual}
    want = {r.key: r for r in desired}
    forward: list[Change] = []
    for key, resource in want.items():
        current = have.get(key)
        if current is None:
            forward.append(Change("create", resource))
            continue
        changed = differences(resource.properties, current.properties)
        tags = differences(resource.tags, current.tags)
        changed.update({f"tags.{k}": v for k, v in tags.items()})
        forward.append(Change("update" if changed else "unchanged", resource, current, changed))
    forward.sort(key=lambda c: c.resource.rank)
    backward = [Change("delete", r, r) for key, r in have.items() if key not in want and not r.retain]
    backward.sort(key=lambda c: -c.resource.rank)
    return Plan(cloud, name, (*forward, *backward), notes=tuple(notes))


def teardown(cloud: str, name: str, actual: Iterable[Resource]) -> Plan:
    """The plan removing every resource of the deployment except the retained ones (listed as kept)."""
    resources = list(actual)
    created = [r for r in resources if r.retain and r.tags.get(TAG_APP) == name]
    gone = sorted((r for r in resources if not r.retain), key=lambda r: -r.rank) + created
    notes = [f"{r.kind} {r.name} was created by nubes: it is deleted only if empty" for r in created]
    return Plan(cloud, name, tuple(Change("delete", r, r) for r in gone), notes=tuple(notes),
                kept=tuple(r for r in resources if r.retain and r not in created))


__all__ = ["Plan", "diff", "differences", "teardown"]
