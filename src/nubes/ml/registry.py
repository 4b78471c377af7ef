"""A model registry on any nubes object store: numbered versions, aliases, safe artifacts.

Layout under the registry's prefix (``models/`` in the app's home store for ``app.models``)::

    models/NAME/versions/000001.json      metadata of version 1 (immutable; a tombstone once deleted)
    models/NAME/artifacts/SHA256.skops    the fitted model, content-addressed (see nubes.ml.serialization)
    models/NAME/aliases/production.json   {"version": 1, ...}: which version an alias points to

Version numbers come from conditional writes: a registration lists the versions, then creates
``versions/{n+1}.json`` with ``if_none_match`` -- if another writer created it first, the store
answers *precondition failed* and the registration tries the next number. Two registrations
therefore never get the same version, on every backend, with no lock service. Deleted versions
leave a tombstone so their numbers are never handed out again.

Integrity: the metadata records the artifact's SHA-256, checked before the bytes are parsed, and
the bytes are only ever read by the skops loader with nubes' trusted-type policy (never pickle).
With ``NUBES_MODEL_KEY`` set (or ``key=``), each version's metadata -- digest included -- carries
an HMAC-SHA256 made with that key, and a version whose HMAC is missing or wrong is refused before
anything else is read. The key belongs in the function's secret configuration (environment or a
secrets manager), not in the store: an attacker who can write the store can replace an artifact
and rewrite its digest, but cannot produce a valid HMAC without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nubes.errors import ConfigError, NotFound, PreconditionFailed

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.storage.base import ObjectStore

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
KEY_ENV = "NUBES_MODEL_KEY"
DEFAULT_ALIAS = "production"
CACHE_SIZE = 8
_LIBRARIES = ("nubes", "scikit-learn", "numpy", "scipy", "polars", "skops")


def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ConfigError(f"{what} {name!r}: use letters, digits, '_', '-' and '.', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: what it is, how well it did, where it came from.

    ``metrics`` and ``params`` as registered; ``inputs`` the datasets it was trained on (with the
    etags of their objects at registration); ``features_in`` the raw input columns and their kinds;
    ``libraries`` the versions of the libraries that fitted it; ``code`` the file and SHA-256 of
    the code that registered it; ``artifact`` the key, digest and size of the model bytes.
    """

    name: str
    version: int
    created: str
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    task: str | None = None
    target: str | None = None
    estimator: str | None = None
    features_in: dict[str, str] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    classes: list[Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    code: dict[str, Any] | None = None
    artifact: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    aliases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], aliases: Iterable[str] = ()) -> ModelVersion:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known and k != "aliases"}
        return cls(**values, aliases=sorted(aliases))


class ModelRegistry:
    """Registered models in ``store`` under ``prefix``. ``app.models`` / ``ctx.models`` is the one
    in the app's home store; any store works: ``ModelRegistry(nubes.storage.open("s3://b/ml"))``.

    ``key`` (default: ``NUBES_MODEL_KEY``) signs and verifies version metadata; ``trusted`` adds
    type names or ``prefix.*`` patterns to the artifact policy (:mod:`nubes.ml.serialization`).
    Loaded models are cached per registry object (so per warm instance), keyed by version and
    artifact digest; an alias is looked up on every call, so moving it takes effect at once.
    """

    def __init__(self, store: ObjectStore, *, prefix: str = "models", app: App | None = None,
                 key: str | bytes | None = None, trusted: Iterable[str] = (), cache_size: int = CACHE_SIZE) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.app = app
        self._key = key
        self.trusted = tuple(trusted)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    # -- keys ------------------------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return "/".join(([self.prefix] if self.prefix else []) + list(parts))

    def _version_key(self, name: str, version: int) -> str:
        return self._k(name, "versions", f"{version:06d}.json")

    def _alias_key(self, name: str, alias: str) -> str:
        return self._k(name, "aliases", f"{alias}.json")

    @property
    def key(self) -> bytes | None:
        raw = self._key if self._key is not None else os.environ.get(KEY_ENV)
        if not raw:
            return None
        return raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)

    # -- reading ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every model name with at least one live version (sorted)."""
        out: set[str] = set()
        base = self._k("") if self.prefix else ""
        for info in self.store.list(base):
            rest = info.key[len(base):]
            parts = rest.split("/")
            if len(parts) == 3 and parts[1] == "versions":
                out.add(parts[0])
        live = []
        for n in sorted(out):
            try:
                self._latest(n)
            except NotFound:
                continue
            live.append(n)
        return live

    def _numbers(self, name: str) -> list[int]:
        numbers = []
        for info in self.store.list(self._k(name, "versions", "")):
            stem = info.key.rsplit("/", 1)[-1].removesuffix(".json")
            if stem.isdigit():
                numbers.append(int(stem))
        numbers.sort()
        return numbers

    def _latest(self, name: str) -> int:
        for n in reversed(self._numbers(name)):
            try:
                if self._raw(name, n) is not None:
                    return n
            except NotFound:
                continue
        raise NotFound(f"no model {name!r}", uri=self.store.uri, key=self._k(name, ""))

    def _raw(self, name: str, version: int) -> dict[str, Any] | None:
        """The stored metadata of a version; None for a tombstone; NotFound if never registered."""
        data = json.loads(self.store.get(self._version_key(name, version)))
        return None if data.get("deleted") else data

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` for ``name``."""
        check_name(name)
        out = {}
        for info in self.store.list(self._k(name, "aliases", "")):
            alias = info.key.rsplit("/", 1)[-1].removesuffix(".json")
            try:
                out[alias] = int(json.loads(self.store.get(info.key))["version"])
            except (NotFound, KeyError, ValueError, TypeError):
                continue
        return out

    def versions(self, name: str) -> list[ModelVersion]:
        """Every live version of ``name``, oldest first (empty if there is none)."""
        check_name(name)
        aliases = self.aliases(name)
        out = []
        for n in self._numbers(name):
            try:
                raw = self._raw(name, n)
            except NotFound:
                continue
            if raw is not None:
                out.append(ModelVersion.from_dict(raw, [a for a, v in aliases.items() if v == n]))
        return out

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """The metadata of one version: ``version`` if given, else the one ``alias`` points to, else
        the ``production`` alias if set, else the latest version. :class:`NotFound` if none."""
        check_name(name)
        if version is not None and alias is not None:
            raise ConfigError("give a version or an alias, not both")
        if version is None:
            if alias is not None:
                check_name(alias, "alias")
                try:
                    version = int(json.loads(self.store.get(self._alias_key(name, alias)))["version"])
                except NotFound:
                    raise NotFound(f"model {name!r} has no alias {alias!r}", uri=self.store.uri,
                                   key=self._alias_key(name, alias)) from None
            else:
                try:
                    version = int(json.loads(self.store.get(self._alias_key(name, DEFAULT_ALIAS)))["version"])
                    alias = DEFAULT_ALIAS
                except NotFound:
                    version = self._latest(name)
        try:
            raw = self._raw(name, int(version))
        except NotFound:
            raw = None
        if raw is None:
            raise NotFound(f"model {name!r} has no version {version}", uri=self.store.uri,
                           key=self._version_key(name, int(version)))
        self._verify_signature(raw)
        return ModelVersion.from_dict(raw, [alias] if alias else [])

    def load(self, name: str, version: int | None = None, alias: str | None = None) -> Any:
        """The fitted model (resolved as :meth:`get` says), verified and loaded safely; cached."""
        return self.load_version(self.get(name, version, alias))

    def load_version(self, mv: ModelVersion) -> Any:
        """The model of ``mv``: its artifact digest checked, then the skops loader with the policy."""
        from nubes.ml import serialization

        digest = str(mv.artifact.get("sha256", ""))
        cache_key = (mv.name, mv.version, digest)
        with self._lock:
            model = self._cache.get(cache_key)
            if model is not None:
                self._cache.move_to_end(cache_key)
                return model
        data = self.store.get(str(mv.artifact["key"]))
        actual = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(actual, digest):
            raise serialization.UnsafeModel(
                f"refusing to load model {mv.name!r} version {mv.version}: its artifact was changed after "
                f"registration (SHA-256 {actual[:12]}..., registered {digest[:12]}...)",
                reason="digest-mismatch",
            )
        model = serialization.loads(data, extra=self.trusted, what=f"model {mv.name!r} version {mv.version}")
        with self._lock:
            self._cache[cache_key] = model
            self._cache.move_to_end(cache_key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return model

    def cached(self) -> list[tuple[str, int]]:
        """``(name, version)`` of the models held in this instance's cache (oldest first)."""
        with self._lock:
            return [(n, v) for n, v, _ in self._cache]

    # -- writing ---------------------------------------------------------------------------
    def register(
        self,
        name: str,
        model_or_result: Any,
        *,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        inputs: Iterable[str | Mapping[str, Any]] = (),
        tags: Iterable[str] = (),
        description: str = "",
    ) -> ModelVersion:
        """Save a fitted model (or a :class:`~nubes.ml.TrainResult`) as the next version of ``name``.

        ``metrics`` / ``params`` default to the result's holdout metrics (plus ``cv_mean`` /
        ``cv_std``) and best parameters. ``inputs`` are catalog dataset names (recorded with the
        etags of their objects now), object URIs, or dicts recorded as given.
        """
        from nubes.ml import serialization
        from nubes.ml.train import TrainResult, _plain

        check_name(name)
        result = model_or_result if isinstance(model_or_result, TrainResult) else None
        model = result.model if result is not None else model_or_result
        if not hasattr(model, "predict"):
            raise ConfigError(f"register() takes a fitted model or a TrainResult, not {type(model).__name__}")
        data = serialization.dumps(model, extra=self.trusted)
        digest = hashlib.sha256(data).hexdigest()
        artifact_key = self._k(name, "artifacts", f"{digest}.skops")
        if not self.store.exists(artifact_key):
            try:
                self.store.put(artifact_key, data, content_type=serialization.MEDIA_TYPE, if_none_match=True)
            except PreconditionFailed:
                pass  # the same bytes, written by a concurrent registration
        if result is not None:
            base_metrics = {**result.metrics, "cv_mean": result.cv_mean, "cv_std": result.cv_std}
            base_params = dict(result.best_params)
            training = {k: v for k, v in result.summary().items()
                        if k in ("scoring", "cv", "cv_scores", "n_train", "n_holdout", "timings", "candidates")}
        else:
            base_metrics, base_params, training = {}, _final_params(model), {}
        record: dict[str, Any] = {
            "name": name,
            "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "metrics": _plain(dict(metrics) if metrics is not None else base_metrics),
            "params": _plain(dict(params) if params is not None else base_params),
            "inputs": [self._input(i) for i in inputs],
            "tags": sorted({str(t) for t in tags}),
            "task": result.task if result else _task(model),
            "target": result.target if result else None,
            "estimator": _qualname(_final(model)),
            "features_in": dict(result.inputs) if result else _features_in(model),
            "features": list(result.features) if result else [],
            "classes": result.classes if result else _plain(list(getattr(model, "classes_", []))) or None,
            "training": _plain(training),
            "libraries": _libraries(),
            "code": _caller_code(),
            "artifact": {"key": artifact_key, "sha256": digest, "size": len(data), "format": serialization.FORMAT},
            "description": description,
        }
        numbers = self._numbers(name)
        version = (numbers[-1] if numbers else 0) + 1
        for _ in range(1000):
            record["version"] = version
            body = self._signed(record)
            try:
                self.store.put(self._version_key(name, version), body, content_type="application/json", if_none_match=True)
                return ModelVersion.from_dict(record)
            except PreconditionFailed:
                numbers = self._numbers(name)
                version = max(version, numbers[-1] if numbers else 0) + 1
        raise PreconditionFailed(f"could not claim a version number for model {name!r} after 1000 attempts",
                                 uri=self.store.uri, key=self._k(name, "versions", ""))

    def promote(self, name: str, version: int, alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """Point ``alias`` (default ``production``) at ``version``; returns that version."""
        check_name(alias, "alias")
        mv = self.get(name, int(version))
        key = self._alias_key(name, alias)
        previous = None
        try:
            previous = json.loads(self.store.get(key)).get("version")
        except NotFound:
            pass
        body = {"alias": alias, "version": mv.version, "previous": previous,
                "updated": datetime.now(UTC).isoformat(timespec="milliseconds")}
        self.store.put(key, json.dumps(body).encode(), content_type="application/json")
        return ModelVersion.from_dict(mv.to_dict(), [alias])

    def delete(self, name: str, version: int) -> None:
        """Delete ``version`` of ``name`` (its number is never reused), its aliases, and its artifact
        unless another version shares it. NotFound if there is no such live version."""
        check_name(name)
        key = self._version_key(name, int(version))
        info = self.store.head(key)
        raw = json.loads(self.store.get(key))
        if raw.get("deleted"):
            raise NotFound(f"model {name!r} has no version {version}", uri=self.store.uri, key=key)
        tomb = {"name": name, "version": int(version), "deleted": True,
                "deleted_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
        self.store.put(key, json.dumps(tomb).encode(), content_type="application/json", if_match=info.etag)
        for alias, target in self.aliases(name).items():
            if target == int(version):
                self.store.delete(self._alias_key(name, alias))
        artifact = raw.get("artifact", {}).get("key")
        if artifact and not any(v.artifact.get("key") == artifact for v in self.versions(name)):
            self.store.delete(artifact)
        with self._lock:
            for ck in [ck for ck in self._cache if ck[0] == name and ck[1] == int(version)]:
                del self._cache[ck]

    # -- helpers ---------------------------------------------------------------------------
    def _signed(self, record: Mapping[str, Any]) -> bytes:
        body = dict(record)
        body.pop("signature", None)
        key = self.key
        if key is not None:
            body["signature"] = _hmac(key, body)
        return json.dumps(body, separators=(",", ":"), default=str).encode("utf-8")  # HMAC: over sorted keys

    def _verify_signature(self, raw: Mapping[str, Any]) -> None:
        key = self.key
        if key is None:
            return
        from nubes.ml.serialization import UnsafeModel

        what = f"model {raw.get('name')!r} version {raw.get('version')}"
        signature = raw.get("signature")
        if not signature:
            raise UnsafeModel(f"refusing to load {what}: its metadata is not signed, and {KEY_ENV} is set",
                              reason="unsigned")
        body = {k: v for k, v in raw.items() if k != "signature"}
        if not hmac.compare_digest(str(signature), _hmac(key, body)):
            raise UnsafeModel(f"refusing to load {what}: its metadata signature does not verify with {KEY_ENV} "
                              "(tampered, or signed with another key)", reason="bad-signature")

    def _input(self, item: str | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(item, Mapping):
            return dict(item)
        if not isinstance(item, str):
            raise ConfigError(f"inputs= takes catalog dataset names, URIs or dicts, not {item!r}")
        app = self.app
        if app is not None and item in app.catalog:
            from nubes.data.catalog import resolve

            dataset = app.catalog.get(item)
            resolved = resolve(dataset, app.open_store(dataset.store_uri))
            return {"dataset": item, "uri": dataset.uri,
                    "objects": [{"key": o.key, "etag": o.etag, "size": o.size} for o in resolved.objects]}
        if "://" in item:
            from nubes.data.catalog import split_uri

            store_uri, key = split_uri(item)
            if key:
                from nubes.storage import open as open_store

                info = open_store(store_uri).head(key)
                return {"uri": item, "objects": [{"key": info.key, "etag": info.etag, "size": info.size}]}
            return {"uri": item}
        raise ConfigError(f"input {item!r} is neither a dataset of the app's catalog nor a URI")

    def __repr__(self) -> str:
        return f"<ModelRegistry {self.store.uri}/{self.prefix}>"


def _hmac(key: bytes, body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def _final(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _task(model: Any) -> str | None:
    try:
        from sklearn.base import is_classifier, is_regressor

        return "classification" if is_classifier(model) else ("regression" if is_regressor(model) else None)
    except Exception:  # noqa: BLE001 - metadata only: an unknown estimator has no task
        return None


def _final_params(model: Any) -> dict[str, Any]:
    from nubes.ml.train import _plain

    get = getattr(_final(model), "get_params", None)
    return _plain(get(deep=False)) if callable(get) else {}


def _features_in(model: Any) -> dict[str, str]:
    steps = getattr(model, "steps", None)
    if steps and type(steps[0][1]).__name__ == "FrameInput":
        return dict(steps[0][1].columns or {})
    names = getattr(model, "feature_names_in_", None)
    return {str(n): "number" for n in names} if names is not None else {}


def _libraries() -> dict[str, str]:
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in _LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _caller_code() -> dict[str, Any] | None:
    """The module (outside nubes.ml) that called register(): its file name and SHA-256."""
    import sys

    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("nubes.ml"):
            path = frame.f_globals.get("__file__")
            if not path:
                return {"module": module}
            try:
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                return {"module": module, "file": os.path.basename(path)}
            return {"module": module, "file": os.path.basename(path), "sha256": digest}
        frame = frame.f_back
    return None


__all__ = ["DEFAULT_ALIAS", "KEY_ENV", "ModelRegistry", "ModelVersion", "check_name"]
