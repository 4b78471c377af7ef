"""The data catalog: which datasets an app has, where they live, in what shape, and whether to trust them.

A dataset is declared in code (``app.dataset(name, uri, ...)``) or in a ``catalog.yaml`` beside the
app's module (same fields). Its URI goes through :mod:`nubes.storage`, and is one of:

* a single object: ``s3://bucket/sales/2024.parquet``;
* a glob: ``gs://bucket/events/*.ndjson`` (``*`` stays within a folder, ``**`` crosses folders);
* a prefix (ends with ``/`` or has no file extension): every object under it with the dataset's
  format extension, or — for datasets written by ``ctx.write`` — exactly the files its
  ``_manifest.json`` lists, so readers never see a half-written version.

Formats are Parquet, CSV and NDJSON, inferred from the extension unless given.
``partitioning="hive"`` reads ``key=value/`` folders as columns.

nubes' own records (:data:`INTERNAL_FOLDERS`: ``_nubes/`` holds the ledger, lineage and jobs,
``.nubes-internal/`` a local store's bookkeeping) are never part of a dataset: a URI naming one is
refused when declared, and resolution leaves out every object with such a folder in its key, so a glob
like ``**/*.ndjson`` over the home store matches the app's data and nothing of nubes' (``ctx.sql``,
``ctx.table``, checks and ``POST /_nubes/sql`` all read through :func:`resolve`).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nubes.data.formats import FORMATS, check_format, extension_format
from nubes.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from nubes.data.checks import Check
    from nubes.data.engine.caches import Bounded
    from nubes.storage.base import ObjectInfo, ObjectStore

MANIFEST = "_manifest.json"
CHECK_KINDS = ("not_null", "unique", "accepted_values", "in_range", "row_count", "freshness", "schema", "sql")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_GLOB = re.compile(r"[*?\[]")
#: Folder names reserved for nubes' own records, at any depth of a key.
INTERNAL_FOLDERS = frozenset({"_nubes", ".nubes-internal"})


def internal(key: str) -> bool:
    """True when ``key`` lies in one of nubes' own folders (:data:`INTERNAL_FOLDERS`)."""
    return not INTERNAL_FOLDERS.isdisjoint(key.split("/"))


@dataclass(frozen=True)
class Dataset:
    """A catalog entry. ``store_uri`` + ``pattern`` locate its objects (``pattern`` None: a prefix)."""

    name: str
    uri: str
    format: str
    schema: Mapping[str, str] | None = None
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    partitioning: str | None = None
    store_uri: str = ""
    pattern: str | None = None

    @property
    def is_glob(self) -> bool:
        return self.pattern is not None and bool(_GLOB.search(self.pattern))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uri": self.uri,
            "format": self.format,
            "description": self.description,
            "owner": self.owner,
            "tags": list(self.tags),
            "partitioning": self.partitioning,
            "declared_schema": dict(self.schema) if self.schema else None,
            "checks": [{"check": c.name, "severity": c.severity} for c in self.checks],
        }


def split_uri(uri: str) -> tuple[str, str | None]:
    """``(store URI, key-or-glob)`` for a dataset URI; the second is None for a prefix dataset."""
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(f"dataset URI {uri!r} needs a scheme: file://, mem://, s3://, gs:// or az://")
    scheme, rest = uri.split("://", 1)
    glob = _GLOB.search(rest)
    head = rest[: glob.start()] if glob else rest
    if rest.endswith("/") or "/" not in rest.strip("/"):
        return f"{scheme}://{rest.rstrip('/')}", None
    cut = head.rfind("/")
    store, pattern = rest[:cut], rest[cut + 1 :]
    if not glob and not Path(pattern).suffix:
        return f"{scheme}://{rest.rstrip('/')}", None  # no file extension: a folder of files
    if not store:
        raise ConfigError(f"dataset URI {uri!r} has no store part before the key")
    return f"{scheme}://{store}", pattern


def make_dataset(
    name: str,
    uri: str,
    *,
    format: str | None = None,
    schema: Mapping[str, str] | None = None,
    description: str = "",
    owner: str = "",
    tags: Iterable[str] = (),
    checks: Iterable[Check] = (),
    partitioning: str | Sequence[str] | None = None,
) -> Dataset:
    """Validate the declaration and build a :class:`Dataset`; every mistake is a ConfigError with a fix."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"dataset name {name!r} must be an SQL identifier: letters, digits and '_', not starting with a digit")
    store_uri, pattern = split_uri(uri)
    if internal(uri.split("://", 1)[1]):
        raise ConfigError(f"dataset {name!r}: {uri!r} is inside nubes' own records ({'/, '.join(sorted(INTERNAL_FOLDERS))}/); "
                          "read them with `nubes costs` and `nubes lineage`, or keep the app's data elsewhere")
    fmt = format or (extension_format(pattern) if pattern is not None else "parquet")
    if fmt is None:
        raise ConfigError(f"dataset {name!r}: cannot infer the format of {uri!r}; pass format='parquet'|'csv'|'ndjson'")
    try:
        fmt = check_format(str(fmt))
    except ConfigError:
        raise ConfigError(f"dataset {name!r}: format {fmt!r} is not one of {', '.join(FORMATS)}") from None
    if partitioning not in (None, "hive") and not isinstance(partitioning, (list, tuple)):
        raise ConfigError(f"dataset {name!r}: partitioning is 'hive' (key=value folders) or None, not {partitioning!r}")
    checks = tuple(checks)
    if checks:  # nubes.data.checks is loaded only by apps that declare checks
        from nubes.data.checks import Check

    for check in checks:
        if not isinstance(check, Check):
            raise ConfigError(f"dataset {name!r}: {check!r} is not a check; use nubes.checks.not_null(...) and friends")
    return Dataset(
        name=name,
        uri=uri,
        format=fmt,
        schema=dict(schema) if schema else None,
        description=description,
        owner=owner,
        tags=tuple(tags),
        checks=checks,
        partitioning="hive" if partitioning else None,
        store_uri=store_uri,
        pattern=pattern,
    )


class Catalog:
    """The datasets of one app, by name. Declarations in ``catalog.yaml`` are read on first use."""

    def __init__(self, yaml_path: Path | None = None) -> None:
        self._datasets: dict[str, Dataset] = {}
        self._yaml_path = yaml_path
        self._yaml_loaded = yaml_path is None

    def add(self, dataset: Dataset, *, replace_existing: bool = False) -> Dataset:
        self._load_yaml()
        if dataset.name in self._datasets and not replace_existing:
            raise ConfigError(f"dataset {dataset.name!r} is declared twice ({self._datasets[dataset.name].uri} and {dataset.uri})")
        self._datasets[dataset.name] = dataset
        return dataset

    def get(self, name: str) -> Dataset:
        self._load_yaml()
        try:
            return self._datasets[name]
        except KeyError:
            known = ", ".join(sorted(self._datasets)) or "none"
            raise ConfigError(f"no dataset named {name!r} in the catalog (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        self._load_yaml()
        return name in self._datasets

    def __iter__(self) -> Iterator[Dataset]:
        self._load_yaml()
        return iter(sorted(self._datasets.values(), key=lambda d: d.name))

    def __len__(self) -> int:
        self._load_yaml()
        return len(self._datasets)

    def _load_yaml(self) -> None:
        if self._yaml_loaded:
            return
        self._yaml_loaded = True
        assert self._yaml_path is not None
        if self._yaml_path.is_file():
            for dataset in load_yaml(self._yaml_path):
                if dataset.name not in self._datasets:  # code declarations win
                    self._datasets[dataset.name] = dataset


def load_yaml(path: Path) -> list[Dataset]:
    """Datasets declared in a ``catalog.yaml``: ``datasets: {name: {uri: ..., format: ..., checks: [...]}}``."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    entries = doc.get("datasets") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: expected a top-level 'datasets:' mapping of name -> {{uri: ..., ...}}")
    out = []
    allowed = {"uri", "format", "schema", "description", "owner", "tags", "checks", "partitioning"}
    for name, spec in entries.items():
        if not isinstance(spec, dict) or "uri" not in spec:
            raise ConfigError(f"{path}: dataset {name!r} needs at least 'uri:'")
        unknown = set(spec) - allowed
        if unknown:
            raise ConfigError(f"{path}: dataset {name!r} has unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        fields = dict(spec)
        fields["checks"] = [_check_from_yaml(path, name, c) for c in spec.get("checks") or []]
        uri = fields.pop("uri")
        try:
            out.append(make_dataset(str(name), uri, **fields))
        except TypeError as exc:
            raise ConfigError(f"{path}: dataset {name!r}: {exc}") from None
    return out


def _check_from_yaml(path: Path, dataset: str, spec: Any) -> Check:
    """``not_null: col`` / ``unique: [a, b]`` / ``in_range: {column: x, min: 0}`` -> the check object."""
    from nubes.data import checks

    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{path}: dataset {dataset!r}: each check is one 'kind: arguments' entry, e.g. '- not_null: id'")
    (kind, args), = spec.items()
    if kind not in CHECK_KINDS:
        raise ConfigError(f"{path}: dataset {dataset!r}: unknown check {kind!r}; use one of {', '.join(CHECK_KINDS)}")
    factory: Callable[..., Check] = getattr(checks, kind)
    try:
        if isinstance(args, dict):
            return factory(**args)
        if kind == "accepted_values" and isinstance(args, list) and len(args) == 2:
            return factory(args[0], args[1])
        return factory(args)
    except TypeError as exc:
        raise ConfigError(f"{path}: dataset {dataset!r}: check {kind}: {exc}") from None


# -- resolving a dataset to its objects ---------------------------------------------------------
@dataclass
class Resolved:
    """The objects that make up a dataset right now, and how to read them."""

    dataset: Dataset
    store: ObjectStore
    objects: list[ObjectInfo] = field(default_factory=list)
    manifest: dict[str, Any] | None = None

    @property
    def fingerprint(self) -> tuple[tuple[str, str], ...]:
        """Changes whenever any object of the dataset changes: the version a check result belongs to."""
        return tuple((o.key, o.etag) for o in self.objects)

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)


def resolve(dataset: Dataset, store: ObjectStore, *, listings: Bounded[Any] | None = None,
            manifests: Bounded[Any] | None = None) -> Resolved:
    """List the dataset's current objects (one HEAD or LIST, plus its manifest if any). Empty -> NotFound.

    ``listings`` (a cache with a TTL) keeps the LIST of a glob or plain prefix for its TTL;
    ``manifests`` keeps a manifest and its objects by the manifest's etag (checked by a HEAD each time).
    """
    pattern = dataset.pattern
    if pattern is not None and not dataset.is_glob:
        return Resolved(dataset, store, [store.head(pattern)])
    objects: list[ObjectInfo] | None
    if pattern is None:
        found = _from_manifest(store, manifests)
        if found is not None:
            return Resolved(dataset, store, [o for o in found[1] if not internal(o.key)], found[0])
        key: tuple[str, ...] = (store.uri, "", dataset.format)
        objects = listings.get(key) if listings is not None else None
        if objects is None:
            objects = [
                o for o in store.list("")
                if not any(part.startswith(("_", ".")) for part in o.key.split("/")) and extension_format(o.key) == dataset.format
            ]
    else:
        key = (store.uri, pattern)
        objects = listings.get(key) if listings is not None else None
        if objects is None:
            fixed = _GLOB.split(pattern, 1)[0]
            regex = glob_regex(pattern)
            objects = [o for o in store.list(fixed) if regex.fullmatch(o.key) and not internal(o.key)]
    if not objects:
        raise NotFound(f"dataset {dataset.name!r} has no objects matching", uri=store.uri, key=pattern or "")
    if listings is not None:
        listings.put(key, objects)
    return Resolved(dataset, store, list(objects))


def _from_manifest(store: ObjectStore, manifests: Bounded[Any] | None) -> tuple[dict[str, Any], list[ObjectInfo]] | None:
    """A written dataset's manifest and objects (files of a version never change: kept by the manifest's etag)."""
    if manifests is None:
        try:
            manifest = json.loads(store.get(MANIFEST))
        except NotFound:
            return None
        return manifest, [store.head(key) for key in manifest.get("files", [])]
    try:
        etag = store.head(MANIFEST).etag
    except NotFound:
        return None
    found: tuple[dict[str, Any], list[ObjectInfo]] | None = manifests.get((store.uri, etag))
    if found is None:
        try:
            manifest = json.loads(store.get(MANIFEST))
        except NotFound:
            return None
        found = manifests.put((store.uri, etag), (manifest, [store.head(key) for key in manifest.get("files", [])]))
    return found


def glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` stay within one folder; ``**`` crosses folders; ``[...]`` as in fnmatch."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out += re.escape(pattern[i])
                i += 1
            else:
                out += fnmatch.translate(pattern[i : end + 1])[4:-3]
                i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)
