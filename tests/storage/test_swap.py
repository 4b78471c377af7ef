"""storage.swap: read an object with its etag, write it back only if nobody changed it (mem:// and file://)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import nubes.storage
from nubes.errors import PreconditionFailed
from nubes.storage.base import ObjectStore
from nubes.storage.swap import read_with_etag, swap


@pytest.fixture(params=["mem", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return nubes.storage.open(f"mem://swap-{uuid.uuid4().hex}" if request.param == "mem" else f"file://{tmp_path}")


def test_swap_replaces_only_what_was_read(store: ObjectStore) -> None:
    assert read_with_etag(store, "m.json") == (None, None)
    swap(store, "m.json", b"1", None)  # created: it did not exist
    with pytest.raises(PreconditionFailed):
        swap(store, "m.json", b"x", None)  # a second creator loses
    content, etag = read_with_etag(store, "m.json")
    assert content == b"1" and etag
    _, same = read_with_etag(store, "m.json")
    swap(store, "m.json", b"2", etag)
    with pytest.raises(PreconditionFailed):
        swap(store, "m.json", b"3", same)  # read before the write above: stale
    assert read_with_etag(store, "m.json")[0] == b"2"
    store.delete("m.json")
    with pytest.raises(PreconditionFailed):
        swap(store, "m.json", b"4", etag)  # deleted meanwhile: an etag matches nothing
