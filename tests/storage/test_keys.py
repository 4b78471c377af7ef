"""The one key rule set: properties of check_key, and mem:// and file:// refusing exactly the same keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nubes.storage
from nubes.errors import InvalidKey
from nubes.storage.keys import MAX_KEY_BYTES, MAX_SEGMENT_BYTES, RESERVED_SEGMENT, check_key, check_prefix
from nubes.storage.local import LocalStore
from nubes.storage.memory import MemoryStore

_SETTINGS = settings(max_examples=200, deadline=None, database=None)


def _rules_hold(key: str) -> bool:
    """The rules, written out independently of check_key."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    parts = key.split("/")
    return (
        0 < size <= MAX_KEY_BYTES
        and not any(ord(c) < 32 or ord(c) == 127 for c in key)
        and "\\" not in key
        and all(p not in ("", ".", "..", RESERVED_SEGMENT) and len(p.encode("utf-8")) <= MAX_SEGMENT_BYTES for p in parts)
    )


@_SETTINGS
@given(st.one_of(st.text(max_size=40), st.text(st.characters(codec="utf-8"), max_size=300), st.binary(max_size=40).map(
    lambda b: b.decode("utf-8", "surrogateescape"))))
def test_check_key_accepts_exactly_the_rules(key: str) -> None:
    try:
        assert check_key(key) == key
    except InvalidKey as exc:
        assert not _rules_hold(key)
        str(exc).encode("utf-8")  # the message is printable/loggable even for an unencodable key
    else:
        assert _rules_hold(key)


@pytest.mark.parametrize("key", ["\udcff", "a/\udcff", "é\ud800", "\udc80\udc81"], ids=ascii)
def test_unencodable_keys_are_invalid_key_not_unicode_error(key: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidKey) as caught:
        check_key(key)
    assert "\\udc" in str(caught.value) or "\\ud8" in str(caught.value)  # shown escaped, never raw
    for uri in (f"file://{tmp_path}/s", f"mem://keys-{uuid.uuid4().hex}"):
        store = nubes.storage.open(uri)
        with pytest.raises(InvalidKey):
            store.put(key, b"x")
        with pytest.raises(InvalidKey):
            store.get(key)
        with pytest.raises(InvalidKey):
            list(store.list(key))


def test_prefixes() -> None:
    assert check_prefix("") == "" and check_prefix("data/x") == "data/x"
    for bad in ("/x", "a\x00", "\udcff"):
        with pytest.raises(InvalidKey):
            check_prefix(bad)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LocalStore, MemoryStore]]:
    name = f"keys-{uuid.uuid4().hex}"
    local, memory = nubes.storage.open(f"file://{tmp_path}/s", fsync=False), nubes.storage.open(f"mem://{name}")
    assert isinstance(local, LocalStore) and isinstance(memory, MemoryStore)
    yield local, memory
    MemoryStore.drop(name)


_CHARS = st.sampled_from([*"ab./é日 \\:?*", "\x00", "\x7f", "\udcff", "🦆", RESERVED_SEGMENT, "x" * 200, "é" * 100])


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.lists(_CHARS, max_size=8).map("".join))
def test_mem_and_file_refuse_the_same_keys(pair: tuple[LocalStore, MemoryStore], key: str) -> None:
    outcomes = []
    for store in pair:
        try:
            store.put(key, b"v")
            outcomes.append(("stored", store.get(key)))
            store.delete(key)
        except InvalidKey:
            outcomes.append(("InvalidKey", None))
    assert outcomes[0] == outcomes[1], (key, outcomes)
