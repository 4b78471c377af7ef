"""The quote sandbox's home store (an overlay: reads fall through to the real home store, writes stay in memory)
passes the storage contract every backend passes, and never writes to the store under it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from nubes.errors import NotFound, PreconditionFailed
from nubes.metering.sandbox import Overlay
from nubes.storage import ObjectStore
from nubes.storage.memory import MemoryStore
from nubes.testing.storage_contract import ObjectStoreContract


def overlay(base: MemoryStore | None = None) -> Overlay:
    tag = uuid.uuid4().hex[:8]
    return Overlay(base or MemoryStore(f"overlay-base-{tag}"), MemoryStore(f"overlay-scratch-{tag}"), name=f"sandbox-{tag}")


class TestOverlayContract(ObjectStoreContract):
    @pytest.fixture
    def store(self) -> ObjectStore:
        return overlay()

    @pytest.fixture
    def reopen(self) -> Callable[[ObjectStore], ObjectStore]:
        return lambda store: store.reopen()  # type: ignore[attr-defined]

    def test_backend_reopens_from_its_uri(self, store: ObjectStore) -> None:
        pytest.skip("an overlay is made by the quote sandbox around real stores; it has no URI to reopen from")

    def test_from_uri_is_refused_with_a_reason(self) -> None:
        from nubes.errors import ConfigError

        with pytest.raises(ConfigError, match="sandbox"):
            Overlay.from_uri("anything")


def test_reads_fall_through_and_writes_never_reach_the_base() -> None:
    base = MemoryStore(f"overlay-real-{uuid.uuid4().hex[:8]}")
    real = base.put("models/m.json", b"real")
    store = overlay(base)
    assert store.get("models/m.json") == b"real"
    with pytest.raises(PreconditionFailed):  # the base's object counts for conditional writes
        store.put("models/m.json", b"x", if_none_match=True)
    store.put("models/m.json", b"sandbox", if_match=real.etag)
    assert store.get("models/m.json") == b"sandbox" and base.get("models/m.json") == b"real"
    store.delete("models/m.json")
    with pytest.raises(NotFound):
        store.get("models/m.json")
    assert base.get("models/m.json") == b"real" and [o.key for o in store.list()] == []
    store.put("new", b"1")
    assert [o.key for o in base.list()] == ["models/m.json"]
