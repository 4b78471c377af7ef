"""The registry's stored records: version metadata (:class:`ModelVersion`) and alias files, parsed
strictly so that a damaged or foreign record is a :class:`CorruptRecord` (a 409 when served), never
an exception from deep inside the registry."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nubes.errors import ConfigError, NubesError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
MAX_VERSION = 10**9


class CorruptRecord(NubesError, ValueError):
    """A version or alias file of the registry is not what the registry writes (``key`` says which).

    Served as a 409 problem: the stored state conflicts with what the registry expects; re-promote
    the alias or re-register the model."""

    def __init__(self, message: str, *, key: str) -> None:
        self.key = key
        super().__init__(message)


def version_number(value: Any, *, key: str) -> int:
    """A version number from a stored record: a positive JSON integer (``CorruptRecord`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < MAX_VERSION:
        raise CorruptRecord(f"the registry record {key} holds version {str(value)[:40]!r}, not a version number; "
                            "promote a version again (nubes models APP promote NAME VERSION)", key=key)
    return value


def parse_record(data: bytes, *, key: str) -> dict[str, Any]:
    """A stored version or alias record (a JSON object), or :class:`CorruptRecord`."""
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        raise CorruptRecord(f"the registry record {key} is not a JSON object: it was damaged or written by "
                            "something else; re-register or re-promote", key=key)
    return record


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
    the code that registered it; ``artifact`` the key, digest, size and format of the model bytes;
    ``signed`` whether the stored metadata carries an HMAC.
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
    signed: bool = False

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], aliases: Iterable[str] = ()) -> ModelVersion:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known and k not in ("aliases", "signed")}
        return cls(**values, aliases=sorted(aliases), signed=bool(data.get("signature") or data.get("signed")))


def group(records: Mapping[str, dict[str, Any] | CorruptRecord], base: str) -> dict[str, dict[str, Any]]:
    """Version and alias records (``{key: record}``, keys under ``base``) grouped per model:
    ``{name: {"versions": [ModelVersion...], "aliases": {alias: version}, "corrupt": [keys]}}``,
    models without a live version left out. Tombstones are skipped; damaged records are listed
    under ``corrupt`` and otherwise ignored."""
    models: dict[str, dict[str, Any]] = {}
    for key, record in sorted(records.items()):
        name, kind, file = key[len(base):].split("/")
        entry = models.setdefault(name, {"raw": {}, "aliases": {}, "corrupt": []})
        stem = file.removesuffix(".json")
        try:
            if isinstance(record, CorruptRecord):
                raise record
            if kind == "aliases":
                entry["aliases"][stem] = version_number(record.get("version"), key=key)
            elif stem.isdigit() and not record.get("deleted"):
                if version_number(record.get("version"), key=key) != int(stem) or record.get("name") != name:
                    raise CorruptRecord(f"the registry record {key} describes another version or model", key=key)
                entry["raw"][int(stem)] = (key, record)
        except CorruptRecord:
            entry["corrupt"].append(key)
    out = {}
    for name, entry in models.items():
        aliases = entry["aliases"]
        versions = []
        for n in sorted(entry["raw"]):
            key, record = entry["raw"][n]
            try:
                versions.append(ModelVersion.from_dict(record, [a for a, v in aliases.items() if v == n]))
            except TypeError:
                entry["corrupt"].append(key)
        if versions:
            out[name] = {"versions": versions, "aliases": dict(sorted(aliases.items())), "corrupt": entry["corrupt"]}
    return out


__all__ = ["MAX_VERSION", "CorruptRecord", "ModelVersion", "check_name", "group", "parse_record", "version_number"]
