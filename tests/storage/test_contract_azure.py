"""The shared object-store contract against a real Azurite (the Azure Storage emulator) on loopback.

Azurite comes from the repo's ``package.json`` (``npm ci`` in the repo root); without it these
tests are skipped with that instruction. The store is configured only through the standard
``AZURE_STORAGE_CONNECTION_STRING`` variable.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

import nubes.storage
from nubes.storage.base import ObjectStore
from nubes.testing.servers.azurite import Azurite, find_azurite
from nubes.testing.storage_contract import ObjectStoreContract

CONTAINER = "nubes-contract"


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    """One Azurite for the module, AZURE_STORAGE_CONNECTION_STRING pointing at it (restored after)."""
    if find_azurite() is None:
        pytest.skip("Azurite is not installed: run `npm ci` in the repo root (node_modules/.bin/azurite-blob)")
    with Azurite() as server, server.environment():
        server.create_container(CONTAINER)
        yield server


class TestAzureContract(ObjectStoreContract):
    @pytest.fixture
    def store(self, azurite: Azurite) -> ObjectStore:
        return nubes.storage.open(f"az://{CONTAINER}/t-{uuid.uuid4().hex[:12]}")

    @pytest.fixture
    def reopen(self) -> Callable[[ObjectStore], ObjectStore]:
        return lambda store: nubes.storage.open(store.uri)

    @pytest.fixture
    def outage(self, azurite: Azurite) -> Callable[[], AbstractContextManager[None]]:
        return azurite.outage
