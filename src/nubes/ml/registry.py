"""A model registry on any nubes object store: numbered versions, aliases, safe artifacts.

Layout under the registry's prefix (``models/`` in the app's home store for ``app.models``)::

    models/NAME/versions/000001.json      metadata of version 1 (immutable; a tombstone once deleted)
    models/NAME/artifacts/SHA256.skops    the fitted model, content-addressed (see nubes.ml.serialization;
                                          .onnx for sequence models, see nubes.ml.sequence)
    models/NAME/aliases/production.json   {"version": 1, ...}: which version an alias points to

Version numbers come from conditional writes: a registration lists the versions, then creates
``versions/{n+1}.json`` with ``if_none_match`` -- if another writer created it first, the store
answers *precondition failed* and the registration tries the next number. Two registrations
therefore never get the same version, on every backend, with no lock service. Deleted versions
leave a tombstone so their numbers are never handed out again.

Integrity: the metadata records the artifact's SHA-256, checked before the bytes are parsed, and
the bytes are only ever read by the skops loader under nubes' exact allow-list (never pickle;
see :mod:`nubes.ml.serialization`), or, for ONNX sequence models, checked by :mod:`nubes.ml.onnx_graph`.
With ``NUBES_MODEL_KEY`` set (or ``key=``), each version's metadata -- digest included -- carries
an HMAC-SHA256 made with that key, and a version whose HMAC is missing or wrong is refused before
anything else is read. The key belongs in the function's secret configuration (environment or a
secrets manager), not in the store: an attacker who can write the store can replace an artifact
and rewrite its digest, but cannot produce a valid HMAC without the key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nubes.errors import ConfigError, NotFound, PreconditionFailed
from nubes.ml import provenance
from nubes.ml.records import MAX_VERSION, CorruptRecord, ModelVersion, check_name, group, parse_record, version_number
from nubes.storage.swap import read_with_etag, swap

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.storage.base import ObjectStore
KEY_ENV = "NUBES_MODEL_KEY"
DEFAULT_ALIAS = "production"
CACHE_SIZE = 8


class ModelRegistry:
    """Registered models in ``store`` under ``prefix``. ``app.models`` / ``ctx.models`` is the one
    in the app's home store; any store works: ``ModelRegistry(nubes.storage.open("s3://b/ml"))``.

    ``key`` (default: ``NUBES_MODEL_KEY``) signs and verifies version metadata; ``trusted`` adds
    exact class or function names to the artifact allow-list (:mod:`nubes.ml.allowlist`).
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
        self._record_cache: dict[str, tuple[str, Any]] = {}
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
    def _read(self, key: str) -> dict[str, Any]:
        """One stored record, parsed (NotFound, CorruptRecord)."""
        return parse_record(self.store.get(key), key=key)

    def _records(self, name: str | None = None) -> dict[str, dict[str, Any] | CorruptRecord]:
        """Every version and alias record (of ``name``, or of all models) with one LIST; a record
        is read again only when its etag changed since this registry object last read it, so a
        warm instance answers listings with a LIST alone and still sees every promotion and
        registration at once (they change the listing's etags)."""
        base = self._k("") if self.prefix else ""
        listed = self._k(name, "") if name is not None else base
        out: dict[str, dict[str, Any] | CorruptRecord] = {}
        live: set[str] = set()
        for info in self.store.list(listed):
            parts = info.key[len(base):].split("/")
            if len(parts) != 3 or parts[1] not in ("versions", "aliases") or not parts[2].endswith(".json"):
                continue
            live.add(info.key)
            with self._lock:
                cached = self._record_cache.get(info.key)
            if cached is not None and cached[0] == info.etag:
                out[info.key] = cached[1]
                continue
            try:
                value: dict[str, Any] | CorruptRecord = self._read(info.key)
            except NotFound:
                continue  # deleted between the listing and the read
            except CorruptRecord as exc:
                value = exc
            with self._lock:
                self._record_cache[info.key] = (info.etag, value)
            out[info.key] = value
        with self._lock:
            for key in [k for k in self._record_cache if k.startswith(listed) and k not in live]:
                del self._record_cache[key]
        return out

    def catalog(self) -> dict[str, dict[str, Any]]:
        """``{name: {"versions": [ModelVersion...], "aliases": {alias: version}, "corrupt": [keys]}}``
        for every model with a live version, from one LIST (see :meth:`_records`)."""
        return group(self._records(), self._k("") if self.prefix else "")

    def names(self) -> list[str]:
        """Every model name with at least one live version (sorted)."""
        return sorted(self.catalog())

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
            except (NotFound, CorruptRecord):
                continue
        raise NotFound(f"no model {name!r}", uri=self.store.uri, key=self._k(name, ""))

    def _raw(self, name: str, version: int) -> dict[str, Any] | None:
        """The stored metadata of a version; None for a tombstone; NotFound if never registered;
        CorruptRecord if the file is not a version record."""
        key = self._version_key(name, version)
        data = self._read(key)
        if data.get("deleted"):
            return None
        if version_number(data.get("version"), key=key) != version or data.get("name") != name:
            raise CorruptRecord(f"the registry record {key} describes another version or model", key=key)
        return data

    def _alias_version(self, name: str, alias: str) -> int:
        key = self._alias_key(name, alias)
        return version_number(self._read(key).get("version"), key=key)

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` for ``name`` (aliases whose record is corrupt are left out)."""
        aliases: dict[str, int] = self._entry(name)["aliases"]
        return aliases

    def versions(self, name: str) -> list[ModelVersion]:
        """Every live version of ``name``, oldest first (empty if there is none; corrupt records left out)."""
        versions: list[ModelVersion] = self._entry(name)["versions"]
        return versions

    def _entry(self, name: str) -> dict[str, Any]:
        check_name(name)
        entry = group(self._records(name), self._k("") if self.prefix else "").get(name)
        return entry or {"versions": [], "aliases": {}, "corrupt": []}

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """The metadata of one version: ``version`` if given, else the one ``alias`` points to, else
        the ``production`` alias if set, else the latest version. :class:`NotFound` if none;
        :class:`CorruptRecord` if the alias or version record is damaged."""
        check_name(name)
        if version is not None and alias is not None:
            raise ConfigError("give a version or an alias, not both")
        if version is None:
            if alias is not None:
                check_name(alias, "alias")
                try:
                    version = self._alias_version(name, alias)
                except NotFound:
                    raise NotFound(f"model {name!r} has no alias {alias!r}", uri=self.store.uri,
                                   key=self._alias_key(name, alias)) from None
            else:
                try:
                    version = self._alias_version(name, DEFAULT_ALIAS)
                    alias = DEFAULT_ALIAS
                except NotFound:
                    version = self._latest(name)
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < MAX_VERSION:
            raise NotFound(f"model {name!r} has no version {version}", uri=self.store.uri, key=self._k(name, "versions", ""))
        try:
            raw = self._raw(name, version)
        except NotFound:
            raw = None
        if raw is None:
            raise NotFound(f"model {name!r} has no version {version}", uri=self.store.uri,
                           key=self._version_key(name, version))
        self._verify_signature(raw)
        try:
            return ModelVersion.from_dict(raw, [alias] if alias else [])
        except TypeError:
            raise CorruptRecord(f"the registry record {self._version_key(name, version)} lacks required fields",
                                key=self._version_key(name, version)) from None

    @property
    def signed(self) -> bool:
        """True when version metadata is signed and verified (``NUBES_MODEL_KEY`` or ``key=``)."""
        return self.key is not None

    def integrity(self) -> str:
        """One sentence on what protects this registry's artifacts (shown by ``nubes models show``)."""
        if self.signed:
            return (f"artifacts are SHA-256 digest-checked and their metadata is HMAC-signed with {KEY_ENV}; "
                    "unsigned or tampered versions are refused")
        return (f"artifacts are SHA-256 digest-checked but unsigned: {KEY_ENV} is not set, so anyone who can "
                "write the store can replace an artifact together with its digest (only the type allow-list "
                f"then stands between them and your process); set {KEY_ENV} to sign and verify versions")

    def load(self, name: str, version: int | None = None, alias: str | None = None) -> Any:
        """The fitted model (resolved as :meth:`get` says), verified and loaded safely; cached."""
        return self.load_version(self.get(name, version, alias))

    def load_version(self, mv: ModelVersion) -> Any:
        """The model of ``mv``: its artifact's size (before it is fetched) and digest checked, then the
        loader of its format (skops under the allow-list, or an ONNX graph under the operator allow-list)."""
        from nubes.ml import serialization

        digest = str(mv.artifact.get("sha256", ""))
        cache_key = (mv.name, mv.version, digest)
        with self._lock:
            model = self._cache.get(cache_key)
            if model is not None:
                self._cache.move_to_end(cache_key)
                return model
        what = f"model {mv.name!r} version {mv.version}"
        key = mv.artifact.get("key")
        expected = f"{self._k(mv.name, 'artifacts', '')}"
        if not isinstance(key, str) or not key.startswith(expected) or ".." in key:
            raise serialization.UnsafeModel(f"refusing to load {what}: its artifact key is not in the model's folder",
                                            reason="corrupt")
        fmt = mv.artifact.get("format", serialization.FORMAT)
        data = self._artifact(key, mv.artifact.get("size"), fmt, what)
        actual = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(actual, digest):
            raise serialization.UnsafeModel(
                f"refusing to load {what}: its artifact was changed after "
                f"registration (SHA-256 {actual[:12]}..., registered {digest[:12]}...)",
                reason="digest-mismatch",
            )
        if fmt == serialization.FORMAT:
            model = serialization.loads(data, extra=self.trusted, what=what)
        else:  # "onnx" (_artifact refused any other format)
            from nubes.ml.sequence import SequenceModel

            model = SequenceModel.from_artifact(data, mv.training.get("sequence") or {}, what=what)
        with self._lock:
            self._cache[cache_key] = model
            self._cache.move_to_end(cache_key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return model

    def _artifact(self, key: str, size: Any, fmt: Any, what: str) -> bytes:
        """The artifact bytes, never more than its format's limit: the recorded size (signed with the
        record when the registry has a key) is checked first, at most ``size + 1`` bytes are fetched,
        and anything but exactly ``size`` is refused."""
        from nubes.ml import onnx_graph, serialization

        if fmt == serialization.FORMAT:
            limit, env = serialization.max_bytes(), serialization.MAX_BYTES_ENV
        elif fmt == "onnx":
            limit, env = onnx_graph.max_bytes(), onnx_graph.MAX_BYTES_ENV
        else:
            raise serialization.UnsafeModel(f"refusing to load {what}: unknown artifact format {str(fmt)[:40]!r}",
                                            reason="foreign-format")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:  # (every record has had one)
            raise serialization.UnsafeModel(f"refusing to load {what}: its record gives no artifact size", reason="corrupt")
        if size > limit:
            raise serialization.UnsafeModel(f"refusing to load {what}: its artifact is {size:,} bytes, over the limit "
                                            f"of {limit:,} (raise it with {env})", reason="too-large")
        data = self.store.get_range(key, 0, size + 1)
        if len(data) != size:
            raise serialization.UnsafeModel(
                f"refusing to load {what}: its artifact is not the {size:,} bytes registered (it was changed after "
                "registration)", reason="digest-mismatch")
        return data

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
            raise ConfigError(f"register() takes a fitted model, a TrainResult or a SequenceModel, not {type(model).__name__}")
        sequence = getattr(model, "nubes_sequence", False)
        if sequence:  # nubes.ml.sequence.SequenceModel: the ONNX bytes, checked when it was made
            data, fmt, media, suffix = model.onnx, "onnx", "application/onnx", "onnx"
        else:
            data = serialization.dumps(model, extra=self.trusted)
            fmt, media, suffix = serialization.FORMAT, serialization.MEDIA_TYPE, "skops"
        digest = hashlib.sha256(data).hexdigest()
        artifact_key = self._k(name, "artifacts", f"{digest}.{suffix}")
        if not self.store.exists(artifact_key):
            with contextlib.suppress(PreconditionFailed):  # the same bytes, written by a concurrent registration
                self.store.put(artifact_key, data, content_type=media, if_none_match=True)
        if result is not None:
            base_metrics = {**result.metrics, "cv_mean": result.cv_mean, "cv_std": result.cv_std}
            base_params = dict(result.best_params)
            training = {k: v for k, v in result.summary().items()
                        if k in ("scoring", "cv", "cv_scores", "n_train", "n_holdout", "timings", "candidates",
                                 "feature_steps", "history")}
        elif sequence:
            base_metrics, base_params, training = {}, {"window": model.window}, {"sequence": model.spec()}
        else:
            base_metrics, base_params, training = {}, provenance.final_params(model), {}
        if sequence:
            task, target, features_in = model.task, model.target, dict(model.columns)
            layers = "+".join(op for op in model.graph["ops"] if op in ("LSTM", "GRU", "RNN", "Conv")) or "graph"
            estimator, classes = f"onnx:{layers}", model.classes
        else:
            task = result.task if result else provenance.task(model)
            target = result.target if result else None
            features_in = dict(result.inputs) if result else provenance.features_in(model)
            estimator = provenance.qualname(provenance.final(model))
            classes = result.classes if result else _plain(list(getattr(model, "classes_", []))) or None
        record: dict[str, Any] = {
            "name": name,
            "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "metrics": _plain(dict(metrics) if metrics is not None else base_metrics),
            "params": _plain(dict(params) if params is not None else base_params),
            "inputs": [self._input(i) for i in inputs],
            "tags": sorted({str(t) for t in tags}),
            "task": task,
            "target": target,
            "estimator": estimator,
            "features_in": features_in,
            "features": list(result.features) if result else [],
            "classes": _plain(classes),
            "training": _plain(training),
            "libraries": provenance.libraries(),
            "code": provenance.caller_code(),
            "artifact": {"key": artifact_key, "sha256": digest, "size": len(data), "format": fmt},
            "description": description,
        }
        numbers = self._numbers(name)
        version = (numbers[-1] if numbers else 0) + 1
        for _ in range(1000):
            record["version"] = version
            body = self._signed(record)
            try:
                self.store.put(self._version_key(name, version), body, content_type="application/json", if_none_match=True)
                return ModelVersion.from_dict(json.loads(body))
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
        with contextlib.suppress(NotFound, CorruptRecord):  # promoting repairs a damaged alias record
            previous = self._read(key).get("version")
        body = {"alias": alias, "version": mv.version, "previous": previous,
                "updated": datetime.now(UTC).isoformat(timespec="milliseconds")}
        self.store.put(key, json.dumps(body).encode(), content_type="application/json")
        return ModelVersion.from_dict(mv.to_dict(), [alias])

    def delete(self, name: str, version: int) -> None:
        """Delete ``version`` of ``name`` (its number is never reused), its aliases, and its artifact
        unless another version shares it. NotFound if there is no such live version."""
        check_name(name)
        key = self._version_key(name, int(version))
        content, etag = read_with_etag(self.store, key)
        if content is None:
            raise NotFound(f"model {name!r} has no version {version}", uri=self.store.uri, key=key)
        try:
            raw = parse_record(content, key=key)
        except CorruptRecord:
            raw = {}  # a damaged record can still be deleted
        if raw.get("deleted"):
            raise NotFound(f"model {name!r} has no version {version}", uri=self.store.uri, key=key)
        tomb = {"name": name, "version": int(version), "deleted": True,
                "deleted_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
        swap(self.store, key, json.dumps(tomb).encode(), etag)
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


__all__ = ["DEFAULT_ALIAS", "KEY_ENV", "CorruptRecord", "ModelRegistry", "ModelVersion", "check_name"]
