"""file:// passes the shared ObjectStore contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import nubes.storage
from nubes.storage import ObjectStore
from nubes.storage.local import LocalStore
from nubes.testing.storage_contract import ObjectStoreContract


class TestLocalStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ObjectStore:
        store = nubes.storage.open(f"file://{tmp_path / 'store'}")
        assert isinstance(store, LocalStore)
        return store

    @pytest.fixture
    def reopen(self) -> Callable[[ObjectStore], ObjectStore]:
        return lambda store: nubes.storage.open(store.uri)
