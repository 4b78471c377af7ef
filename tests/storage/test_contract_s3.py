"""The shared ObjectStore contract against S3, served by a local moto_server on 127.0.0.1.

The store is configured only through the standard AWS variables (AWS_ENDPOINT_URL, dummy keys,
AWS_DEFAULT_REGION), set for this module and restored afterwards (``MotoServer.environment``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

import nubes.storage
from nubes.errors import NotFound
from nubes.storage import ObjectStore
from nubes.testing.servers.moto import MotoServer
from nubes.testing.storage_contract import ObjectStoreContract

BUCKET = "nubes-contract"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    """A moto_server for this module, with the standard AWS variables pointing at it (restored after)."""
    with MotoServer() as server, server.environment():
        server.create_bucket(BUCKET)
        yield server


class TestS3Contract(ObjectStoreContract):
    """Every contract test, run against s3:// on moto."""

    @pytest.fixture
    def store(self, moto: MotoServer) -> ObjectStore:
        """A fresh, empty store: a unique prefix in the shared bucket, configured from the environment only."""
        return nubes.storage.open(f"s3://{BUCKET}/{uuid.uuid4().hex}")

    @pytest.fixture
    def reopen(self) -> Callable[[ObjectStore], ObjectStore]:
        """A second, independent handle (its own boto3 client) on the same location."""
        return lambda store: nubes.storage.open(store.uri)

    @pytest.fixture
    def outage(self, moto: MotoServer, store: ObjectStore) -> Callable[[], AbstractContextManager[None]]:
        """Inside ``with outage():`` moto is stopped; after it, it runs again on the same port.

        moto is in-memory, so the bucket is re-created and the test store's objects are carried
        over the restart (as they would survive a network outage on S3).
        """
        prefix = store.uri.split("/", 3)[3] + "/"
        return lambda: moto.outage(keep={BUCKET: prefix})


def test_missing_bucket_is_not_found_naming_the_bucket(moto: MotoServer) -> None:
    store = nubes.storage.open("s3://nubes-no-such-bucket/p")
    for call in (lambda: store.get("k"), lambda: store.head("k"), lambda: list(store.list()), lambda: store.put("k", b"x")):
        with pytest.raises(NotFound, match="nubes-no-such-bucket"):
            call()
