"""Safe model artifacts: the skops format read under an exact allow-list, never pickle.

Threat model. Model artifacts live in an object store (the app's home store by default). Anyone
who can write to that store -- a leaked key, a compromised CI job, a careless copy -- can replace
an artifact *and* rewrite the digest recorded next to it (only an HMAC made with
``NUBES_MODEL_KEY``, kept outside the store, stops that; see :mod:`nubes.ml.registry`). With
:mod:`pickle` (and joblib), *loading* such an object runs any code it names. nubes therefore never
unpickles a model. Artifacts are written with ``skops.io`` (a zip of a JSON schema plus ``.npy``
arrays saved with ``allow_pickle=False``) and read back by :func:`loads`, which, in order,

1. refuses anything that is not a zip with a ``schema.json`` (a pickle, a joblib file, random
   bytes), and any zip whose declared sizes exceed the limits (``max_bytes``, entries, schema);
2. parses the schema as JSON and audits every node against the exact allow-list of
   :mod:`nubes.ml.allowlist` -- nothing is imported or built before this; a refusal is logged (the
   ``nubes`` logger, ``"model artifact refused"``) and raised as :class:`UnsafeModel` naming the types;
3. cross-checks with skops' own audit (``get_untrusted_types``): every type it reports must be on
   the allow-list too;
4. calls ``skops.io.loads(data, trusted=[...])`` with exactly those names (never a prefix);
5. bounds-checks the index arrays of every tree in the result (:mod:`nubes.ml.structures`)
   before the model is handed out.

:func:`dumps` applies the same audit at registration, so a model that could not be loaded back is
refused when it is registered, with the call that would trust its extra types.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterable
from typing import Any

from nubes.errors import NubesError
from nubes.ml.allowlist import NUBES_TYPES, audit, describe, extra_names, skops_io, trust, untrust

FORMAT = "skops"
MEDIA_TYPE = "application/vnd.nubes.model+skops"
MAX_BYTES_ENV = "NUBES_MODEL_MAX_BYTES"
MAX_BYTES = 1 << 30  # uncompressed artifact size, all entries together
MAX_ENTRIES = 200_000
MAX_SCHEMA_BYTES = 256 << 20
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PREFIXES = (b"\x80", b"(", b"c", b"]", b"}")


class UnsafeModel(NubesError):
    """An artifact was refused: not written by nubes, tampered with, or naming untrusted types.

    ``reason`` is a short code (``"foreign-format"``, ``"untrusted-types"``, ``"digest-mismatch"``,
    ``"bad-signature"``, ``"unsigned"``, ``"too-large"``, ``"bad-structure"``, ``"bad-graph"``, ``"corrupt"``);
    ``types`` lists the refused type names, if any.
    """

    def __init__(self, message: str, *, reason: str, types: Iterable[str] = ()) -> None:
        self.reason = reason
        self.types = list(types)
        super().__init__(message)


def is_trusted(name: str, extra: Iterable[Any] = ()) -> bool:
    """True if ``name`` is allowed under some loader (the built-in list, :func:`trust`, ``extra``)."""
    from nubes.ml.allowlist import all_allowed

    return name in all_allowed(extra_names(extra))


def _log_refusal(what: str, reason: str, types: list[str], detail: str) -> None:
    from nubes.core.logs import BoundLog, logger

    BoundLog(logger()).warning("model artifact refused", artifact=what, reason=reason, types=types, detail=detail)


def _refuse(message: str, *, reason: str, what: str, types: Iterable[str] = ()) -> UnsafeModel:
    types = list(types)
    _log_refusal(what, reason, types, message)
    return UnsafeModel(message, reason=reason, types=types)


def env_limit(name: str, default: int) -> int:
    """A positive integer limit from the environment variable ``name``, else ``default``."""
    raw = os.environ.get(name)
    try:
        value = int(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def max_bytes() -> int:
    return env_limit(MAX_BYTES_ENV, MAX_BYTES)


def read_schema(data: bytes, *, what: str = "model artifact", limit: int | None = None) -> Any:
    """The parsed ``schema.json`` of a skops artifact, after the format and size checks (step 1)."""
    if not data.startswith(_ZIP_MAGIC):
        hint = " (it looks like a Python pickle)" if data[:1] in _PICKLE_PREFIXES else ""
        raise _refuse(f"refusing to load {what}: it is not in the skops format nubes writes{hint}; "
                      "nubes never unpickles model bytes", reason="foreign-format", what=what)
    limit = max_bytes() if limit is None else limit
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ENTRIES:
                raise _refuse(f"refusing to load {what}: {len(infos):,} entries (limit {MAX_ENTRIES:,})",
                              reason="too-large", what=what)
            total = sum(i.file_size for i in infos)
            if total > limit:
                raise _refuse(f"refusing to load {what}: {total:,} bytes uncompressed (limit {limit:,}; "
                              f"raise it with {MAX_BYTES_ENV})", reason="too-large", what=what)
            names = {i.filename for i in infos}
            if "schema.json" not in names:
                raise _refuse(f"refusing to load {what}: a zip without a skops schema", reason="foreign-format", what=what)
            if archive.getinfo("schema.json").file_size > MAX_SCHEMA_BYTES:
                raise _refuse(f"refusing to load {what}: its schema is larger than {MAX_SCHEMA_BYTES:,} bytes",
                              reason="too-large", what=what)
            raw = archive.read("schema.json")
        return json.loads(raw)
    except UnsafeModel:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, RecursionError, OSError, EOFError,
            NotImplementedError, KeyError) as exc:
        raise _refuse(f"refusing to load {what}: unreadable skops archive ({type(exc).__name__}: {_short(exc)})",
                      reason="corrupt", what=what) from None


def check_schema(schema: Any, *, extra: Iterable[Any] = (), what: str = "model artifact") -> None:
    """Step 2: refuse (and log) a schema naming anything outside the allow-list."""
    try:
        refused = audit(schema, extra)
    except ValueError as exc:
        raise _refuse(f"refusing to load {what}: {exc}", reason="too-large", what=what) from None
    if refused:
        names = sorted({name for _, name, _ in refused})
        raise _refuse(
            f"refusing to load {what}: it would construct or call what is not on nubes' allow-list: "
            f"{describe(refused)}; nothing from it was imported or built",
            reason="untrusted-types", what=what, types=names)


def dumps(model: Any, *, extra: Iterable[Any] = ()) -> bytes:
    """The artifact bytes for ``model``; raises :class:`UnsafeModel` if it could not be loaded back
    under the allow-list (so a model that would be refused at load time is refused at register time)."""
    sio = skops_io()
    try:
        data: bytes = sio.dumps(model, compression=zipfile.ZIP_DEFLATED)
    except Exception as exc:  # skops: UnsupportedTypeException, TypeError ...
        raise UnsafeModel(f"cannot save {type(model).__name__} in the safe skops format: {exc}", reason="unsupported") from exc
    refused = audit(read_schema(data, what="the model", limit=max(max_bytes(), len(data) * 1000)), extra)
    if refused:
        names = sorted({name for _, name, _ in refused})
        raise UnsafeModel(
            "this model contains what is outside nubes' allow-list, so it could not be loaded back: "
            + describe(refused)
            + "; if you trust that code, name it exactly with nubes.ml.trust(" + ", ".join(repr(n) for n in names)
            + ") (or ModelRegistry(trusted=[...]), or NUBES_MODEL_TRUST) before registering and before serving",
            reason="untrusted-types", types=names)
    return data


def loads(data: bytes, *, extra: Iterable[Any] = (), what: str = "model artifact") -> Any:
    """The model in ``data`` (bytes :func:`dumps` wrote), or :class:`UnsafeModel`; never unpickles."""
    from nubes.ml.allowlist import all_allowed
    from nubes.ml.structures import BadStructure, check

    data = bytes(data)
    schema = read_schema(data, what=what)
    check_schema(schema, extra=extra, what=what)
    sio = skops_io()
    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise _refuse(f"refusing to load {what}: unreadable skops archive ({type(exc).__name__}: {_short(exc)})",
                      reason="corrupt", what=what) from None
    allowed = all_allowed(extra_names(extra))
    outside = sorted(t for t in found if t not in allowed)
    if outside:  # skops saw a type our audit did not: refuse rather than guess
        raise _refuse(f"refusing to load {what}: it would construct types outside nubes' allow-list: {', '.join(outside)}",
                      reason="untrusted-types", what=what, types=outside)
    try:
        model = sio.loads(data, trusted=sorted(found))
    except Exception as exc:
        raise _refuse(f"refusing to load {what}: {type(exc).__name__}: {_short(exc)}", reason="corrupt", what=what) from None
    try:
        check(model)
    except BadStructure as exc:
        raise _refuse(f"refusing to load {what}: {exc}", reason="bad-structure", what=what) from None
    return model


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


__all__ = ["FORMAT", "MEDIA_TYPE", "NUBES_TYPES", "UnsafeModel", "check_schema", "dumps", "is_trusted", "loads",
           "read_schema", "trust", "untrust"]
