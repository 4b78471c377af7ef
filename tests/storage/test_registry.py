"""The declared backend interface: BaseStore is an ABC with abstract from_uri, and the registry uses it."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import nubes.storage
from nubes.errors import ConfigError
from nubes.storage import BaseStore, ObjectStore, registry
from nubes.storage.memory import MemoryStore


@pytest.fixture
def scheme() -> Iterator[str]:
    name = f"test{uuid.uuid4().hex[:8]}"
    yield name
    registry._REGISTRY.pop(name, None)


class Renamed(MemoryStore):
    """A backend of its own: mem:// under another scheme."""

    scheme = "renamed"


class NotAStore:
    @classmethod
    def from_uri(cls, rest: str, **options: Any) -> NotAStore:
        return cls()


class Partial(BaseStore):
    """Implements from_uri and nothing else."""

    @classmethod
    def from_uri(cls, rest: str, **options: Any) -> Partial:
        raise AssertionError("never opened")


def test_public_api_of_the_readme() -> None:
    for name in ("open", "register", "registered", "ObjectStore", "BaseStore", "RangeReader", "check_key", "IOStats", "ObjectInfo"):
        assert hasattr(nubes.storage, name), name
    assert nubes.storage.check_key("a/b") == "a/b"


def test_base_store_declares_the_primitives_and_from_uri() -> None:
    assert {"from_uri", "_put", "_get_range", "_head", "_list", "_delete"} <= BaseStore.__abstractmethods__
    with pytest.raises(TypeError):
        Partial("x")  # type: ignore[abstract]


def test_every_built_in_backend_implements_the_interface() -> None:
    for scheme, backend in nubes.storage.registered().items():
        assert isinstance(backend.target, str)
        module, _, attr = backend.target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError:
            continue  # its SDK is not installed here
        assert issubclass(cls, BaseStore) and not cls.__abstractmethods__, scheme
        assert cls.scheme == scheme


def test_register_a_class(scheme: str) -> None:
    nubes.storage.register(scheme, Renamed)
    name = uuid.uuid4().hex
    try:
        store = nubes.storage.open(f"{scheme}://{name}/p")
        assert type(store) is Renamed and isinstance(store, ObjectStore)
        store.put("k", b"v")
        assert nubes.storage.open(f"mem://{name}/p").get("k") == b"v"  # same buckets as mem://
    finally:
        MemoryStore.drop(name)


def test_register_by_name_is_checked_when_opened(scheme: str) -> None:
    nubes.storage.register(scheme, f"{__name__}:NotAStore")
    with pytest.raises(ConfigError, match=r"not a nubes\.storage\.BaseStore subclass"):
        nubes.storage.open(f"{scheme}://x")
    nubes.storage.register(scheme, f"{__name__}:Partial")
    with pytest.raises(ConfigError, match="does not implement: _delete, _get_range, _head, _list, _put"):
        nubes.storage.open(f"{scheme}://x")


@pytest.mark.parametrize("target", [NotAStore, Partial, "no-colon", ":Class", "module:"])
def test_register_refuses_what_cannot_be_a_backend(scheme: str, target: Any) -> None:
    with pytest.raises(ConfigError):
        nubes.storage.register(scheme, target)
    assert scheme not in nubes.storage.registered()


@pytest.mark.parametrize("bad", ["", "S3", "1x", "a b", "x://"])
def test_register_refuses_bad_schemes(bad: str) -> None:
    with pytest.raises(ConfigError, match="scheme"):
        nubes.storage.register(bad, Renamed)
