"""The vocabulary of deployment, shared by the engine (:mod:`nubes.deploy`) and each cloud's deployer.

A deployment is described as a list of :class:`Resource` (kind, name, managed properties, tags) that
a cloud's :class:`~nubes.adapters.base.Deployer` derives from the app and its :class:`Target` (the
``[deploy.CLOUD]`` table of ``nubes.toml``, validated). The engine diffs the desired resources
against the ones the deployer reads back from the cloud and hands each :class:`Change` back to the
deployer to apply. Nothing here imports a cloud SDK or knows a cloud's name.

:class:`Artifact` is the contract of ``manifest.json`` written by ``nubes build`` (issue 12):
``cloud, format, path, python, arch, unzipped_bytes, zipped_bytes, sha256, packages[...]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from nubes.errors import ConfigError, NubesError

TAG_APP = "nubes:app"
"""The tag (label ``nubes-app`` where a cloud forbids ':') naming the deployment a resource belongs to."""
TAG_VERSION = "nubes:version"

Action = Literal["create", "update", "delete", "unchanged"]
T = TypeVar("T")


class StateUnavailable(NubesError):
    """The cloud's state could not be read (no credentials, unreachable); the message says why and how to fix it."""


@dataclass(frozen=True)
class Resource:
    """One cloud resource as nubes manages it.

    ``kind`` is the cloud's type (``aws.lambda.function``), ``name`` its name or identifier, unique
    within the kind. ``properties`` are the settings nubes manages (JSON values; a value of ``None``
    in a desired resource means "not known before apply", and is never reported as a change).
    ``retain`` marks data holders (buckets, queues): created when missing, never deleted.
    ``rank`` orders application: lower ranks are created first and deleted last.
    ``outputs`` (actual resources only) are what the cloud answered: ARNs, URLs, ids.
    ``info`` is shown in plans but not managed (e.g. triggers declared in the package itself).
    """

    kind: str
    name: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    rank: int = 0
    retain: bool = False
    outputs: Mapping[str, Any] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "properties": dict(self.properties), "tags": dict(self.tags),
                "retain": self.retain}


@dataclass(frozen=True)
class Change:
    """What applying one resource does: ``action`` and, for updates, the fields that differ (old, new)."""

    action: Action
    resource: Resource  # the desired resource (the actual one for a delete)
    actual: Resource | None = None
    fields: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "kind": self.resource.kind, "name": self.resource.name}
        if self.fields:
            out["changes"] = {k: {"from": old, "to": new} for k, (old, new) in self.fields.items()}
        if self.action == "create":
            out["properties"] = dict(self.resource.properties)
        if self.resource.info:
            out["info"] = dict(self.resource.info)
        return out


@dataclass(frozen=True)
class Target:
    """One ``[deploy.CLOUD]`` table, checked for shape (each deployer checks what its cloud allows).

    ``storage`` is the home store URI; ``sources`` maps logical object sources to store URIs and
    ``queues`` logical queues to the cloud's queue/topic names; ``routes`` holds per-route overrides
    keyed ``"METHOD /path"``; ``extra`` the cloud-specific keys (``project``, ``resource_group`` ...).
    """

    cloud: str
    name: str
    storage: str
    region: str | None = None
    memory: int | None = None
    timeout: int | None = None
    architecture: str | None = None
    http: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    routes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    queues: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    source_file: str = "nubes.toml"

    def where(self, key: str | None = None) -> str:
        """``nubes.toml [deploy.aws] memory``: where a setting lives, for messages."""
        return f"{self.source_file} [deploy.{self.cloud}]" + (f" {key}" if key else "")


@dataclass(frozen=True)
class Artifact:
    """A built package (``manifest.json`` of ``nubes build``); ``path`` is absolute."""

    cloud: str
    format: str
    path: Path
    python: str
    arch: str
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    handler: str | None = None
    image_uri: str | None = None
    manifest: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest_path: str | os.PathLike[str]) -> Artifact:
        """Read ``manifest.json`` (or a directory holding one); ``path`` is resolved beside it."""
        where = Path(manifest_path)
        if where.is_dir():
            where = where / "manifest.json"
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the build manifest {where}: {exc}; build with `nubes build APP --cloud ...`") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: a build manifest is a JSON object")
        missing = [k for k in ("cloud", "format", "path", "python", "arch", "sha256") if k not in data]
        if missing:
            raise ConfigError(f"{where}: the build manifest lacks {missing}; rebuild with `nubes build`")
        path = Path(str(data["path"]))
        if not path.is_absolute():
            path = (where.parent / path).resolve()
        return cls(cloud=str(data["cloud"]), format=str(data["format"]), path=path, python=str(data["python"]),
                   arch=str(data["arch"]), sha256=str(data["sha256"]).lower(),
                   zipped_bytes=int(data.get("zipped_bytes") or 0), unzipped_bytes=int(data.get("unzipped_bytes") or 0),
                   handler=data.get("handler"), image_uri=data.get("image_uri"), manifest=data)

    def read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the artifact {self.path}: {exc}; rebuild with `nubes build`") from None


@dataclass(frozen=True)
class Bindings:
    """The real resources an app's event handlers bind to under one target.

    ``objects``: store URI (``s3://bucket``) -> key prefixes watched there; ``queues``: the cloud's
    queue/topic name -> the logical names handlers use; ``schedules``: schedule name -> its cron text.
    """

    objects: Mapping[str, tuple[str, ...]]
    queues: Mapping[str, tuple[str, ...]]
    schedules: Mapping[str, str]

    @property
    def empty(self) -> bool:
        return not (self.objects or self.queues or self.schedules)


def bindings(app: Any, target: Target) -> tuple[Bindings, list[str]]:
    """Resolve each event handler of ``app`` to a real resource of ``target``: (bindings, problems).

    ``on_object_created(source="landing")`` binds to ``target.sources["landing"]``; ``store="s3://..."``
    to that store; neither to the home store. ``on_message("orders")`` binds to ``target.queues["orders"]``.
    ``on_schedule(name, cron=...)`` needs its cron. Each problem names the fix.
    """
    objects: dict[str, set[str]] = {}
    queues: dict[str, set[str]] = {}
    schedules: dict[str, str] = {}
    problems: list[str] = []
    for route in getattr(app, "event_routes", ()):
        handler = route.name or "an event handler"
        if route.kind == "object_created":
            source = getattr(route, "source", None)
            if source is not None:
                uri = target.sources.get(source)
                if uri is None:
                    problems.append(f"{handler} listens to source {source!r}, which {target.where('sources')} does not bind: "
                                    f"add {source} = \"<scheme>://bucket/prefix\" under [deploy.{target.cloud}.sources]")
                    continue
            else:
                uri = route.store or target.storage
            scheme, bucket, base = split_store(uri)
            if source is None and route.store is None:
                base = ""  # today a store-less handler matches the bucket's keys as they are (core.events)
            key = join_key(base, route.prefix) + ("/" if route.prefix.endswith("/") else "")
            objects.setdefault(f"{scheme}://{bucket}", set()).add(key)
        elif route.kind == "message":
            logical = route.queue
            if logical in (None, "*"):
                problems.append(f"{handler} listens to any queue; a deployed function is bound to named queues: "
                                "use @app.on_message(\"orders\") and bind it in [deploy.CLOUD.queues]".replace("CLOUD", target.cloud))
                continue
            real = target.queues.get(logical)
            if real is None:
                problems.append(f"{handler} listens to queue {logical!r}, which {target.where('queues')} does not bind: "
                                f"add {logical} = \"<queue name>\" under [deploy.{target.cloud}.queues]")
                continue
            queues.setdefault(real, set()).add(logical)
        elif route.kind == "schedule":
            name = route.schedule or ""
            if not route.cron:
                problems.append(f"{handler}: schedule {name!r} has no cron; declare when it fires: "
                                f"@app.on_schedule({name!r}, cron=\"0 0 2 * * *\")")
            elif schedules.get(name, route.cron) != route.cron:
                problems.append(f"schedule {name!r} is declared with two crons ({schedules[name]!r}, {route.cron!r}); use one")
            else:
                schedules[name] = route.cron
    return Bindings({k: tuple(sorted(v)) for k, v in sorted(objects.items())},
                    {k: tuple(sorted(v)) for k, v in sorted(queues.items())}, dict(sorted(schedules.items()))), problems


@dataclass(frozen=True)
class JobsNeeds:
    """What an app's jobs ask of a deployment: ``routes`` (``"POST /train"``) and ``max_attempts``
    (``[jobs] max_attempts``: each cloud's retry count is set to match, see ``nubes.core.jobs``)."""

    routes: tuple[str, ...]
    max_attempts: int


def jobs(app: Any) -> JobsNeeds | None:
    """The jobs ``app`` declares (``@app.job``, ``job=True``), or None: an app without jobs gets no job resources."""
    routes = tuple(sorted(f"{m} {r.path}" for r in getattr(app, "routes", ()) if (getattr(r, "options", None) or {}).get("job")
                          for m in sorted(getattr(r, "methods", ()))))
    if not routes:
        return None
    return JobsNeeds(routes, int(app.jobs.max_attempts))


class ModuleDeployer:
    """The engine hooks every cloud delegates the same way: ``actual``/``apply`` to ``<package>.deploy_state``
    (``read``, ``apply``) and ``export`` to ``<package>.deploy_export`` (``render``), imported on first use
    so planning and exporting never load an SDK they do not need."""

    package = ""
    whole_numbers: frozenset[str] = frozenset()

    def _module(self, name: str) -> Any:
        import importlib

        return importlib.import_module(f"{self.package}.{name}")

    def actual(self, target: Target, desired: list[Resource]) -> list[Resource]:
        return list(self._module("deploy_state").read(self, target, desired))

    def apply(self, change: Change, target: Target, artifact: Artifact | None) -> Resource | None:
        result: Resource | None = self._module("deploy_state").apply(self, change, target, artifact)
        return result

    def export(self, resources: list[Resource], target: Target, artifact: Artifact | None, fmt: str) -> dict[str, Any]:
        return dict(self._module("deploy_export").render(self, resources, target, artifact, fmt))


def split_store(uri: str) -> tuple[str, str, str]:
    """``("s3", "bucket", "prefix")`` for ``s3://bucket/prefix/``; the prefix has no leading or trailing '/'."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not rest.strip("/"):
        raise ConfigError(f"store URI {uri!r} needs a scheme and a bucket, e.g. s3://bucket/prefix")
    bucket, _, prefix = rest.strip("/").partition("/")
    return scheme, bucket, prefix.strip("/")


def join_key(*parts: str) -> str:
    """Object key prefixes joined with single '/' (empty parts dropped)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def unless_absent(absent: Callable[[Exception], bool], call: Callable[[], T]) -> T | None:
    """``call()``, or None when it raises an error ``absent`` recognises (not found, already gone: the
    cloud's codes); any other error is raised. The deployers read and delete idempotently with it."""
    try:
        return call()
    except Exception as exc:
        if absent(exc):
            return None
        raise


_CLIENTS: dict[tuple[Any, ...], Any] = {}


def clients_for(key: tuple[Any, ...], make: Callable[[], T]) -> T:
    """``make()`` once per ``key`` (a cloud's clients for one target and environment): a credential,
    an SDK client or a CLI login costs from a tenth of a second to seconds, and a plan applies many changes."""
    if key not in _CLIENTS:
        _CLIENTS[key] = make()
    return _CLIENTS[key]  # type: ignore[no-any-return]


def apply_change(handlers: Mapping[str, Callable[[Any, Change, Target, Artifact | None], None]], clients: Any, change: Change,
                 target: Target, artifact: Artifact | None) -> Resource | None:
    """Apply ``change`` with its kind's handler; the resource as now deployed (None once deleted)."""
    handlers[change.resource.kind](clients, change, target, artifact)
    return change.resource if change.action != "delete" else None


__all__ = ["TAG_APP", "TAG_VERSION", "Action", "Artifact", "Bindings", "Change", "JobsNeeds", "ModuleDeployer", "Resource",
           "StateUnavailable", "Target", "apply_change", "bindings", "clients_for", "jobs", "join_key", "split_store",
           "unless_absent"]


def terraform_name(name: str) -> str:
    """A resource name as a Terraform block label (letters, digits and ``_``; ``main`` if nothing is left)."""
    import re

    return re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "main"
