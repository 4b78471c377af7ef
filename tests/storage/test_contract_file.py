"""file:// passes the shared ObjectStore contract, as on Linux and with each other platform's code paths forced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import nubes.storage
from nubes.storage import ObjectStore
from nubes.storage.local import LocalStore
from nubes.storage.local_dirs import windows_name_error
from nubes.testing.storage_contract import ObjectStoreContract

from .conftest import force_profile


class TestLocalStore(ObjectStoreContract):
    profile = "linux"

    @pytest.fixture
    def store(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
        force_profile(monkeypatch, self.profile)
        store = nubes.storage.open(f"file://{tmp_path / 'store'}")
        assert isinstance(store, LocalStore)
        return store

    @pytest.fixture
    def reopen(self) -> Callable[[ObjectStore], ObjectStore]:
        return lambda store: nubes.storage.open(store.uri)


class TestLocalStoreMacOSProfile(TestLocalStore):
    """Descriptors and flock, but no os.setxattr: etags and content types in sidecars."""

    profile = "macos"


class TestLocalStoreWindowsProfile(TestLocalStore):
    """Paths checked before each act, msvcrt locks, sidecars, Windows name rules."""

    profile = "windows"

    def valid_key(self, key: str) -> bool:
        return super().valid_key(key) and not any(windows_name_error(part) for part in key.split("/"))


class TestLocalStoreOtherProfile(TestLocalStore):
    """Neither descriptors nor fcntl/msvcrt: paths, sidecars, O_EXCL lock files."""

    profile = "other"
