"""The key-rule part of the storage contract: one rule set, tested on every backend.

:class:`KeyRulesContract` is a base of :class:`~nubes.testing.storage_contract.ObjectStoreContract`
(a backend adopts both by subclassing the latter). It checks fixed invalid keys
(:data:`INVALID_KEYS`: refused as :class:`~nubes.errors.InvalidKey` by every operation before any
I/O), valid edge keys (:data:`VALID_EDGE_KEYS`) and generated text (hypothesis, ``key_examples``
per backend): anything :func:`~nubes.storage.keys.check_key` refuses is refused, anything it
accepts round-trips.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nubes.errors import InvalidKey
from nubes.storage.base import ObjectStore
from nubes.storage.keys import check_key

INVALID_KEYS = [
    "",
    "/abs",
    "/",
    "a/../b",
    "..",
    "a//b",
    "a/",
    "a\x00b",
    "a\nb",
    "a\tb",
    "del\x7f",
    ".",
    "a/./b",
    "a\\b",
    "\udcff",  # a lone surrogate (an undecodable byte as os.fsdecode gives it): UTF-8 cannot encode it
    "ok/\ud800x",
    ".nubes-internal",
    "a/.nubes-internal/b",
    "x" * 256,  # one segment over 255 bytes
    "a/" + "é" * 128,  # 128 characters, 256 UTF-8 bytes in one segment
    "/".join(["x" * 200] * 6),  # 1,205 bytes
    "é/" * 342 + "é",  # 1,027 UTF-8 bytes of short segments
]
VALID_EDGE_KEYS = [
    "x" * 255,  # the longest segment
    "/".join(["a" * 255, "b" * 255, "c" * 100]),  # long, under any reasonable prefix
    "é" * 127 + "e",  # 255 UTF-8 bytes
    "...",
    "..a/a..",
    ".hidden/.x",
    "-dash/_under/~tilde",
    "sp ace/ lead and trail /x",
    "per%cent/q?mark/hash#/plus+/eq=/amp&/colon:",
    "nubes-internal/.nubes/x.nubes-internal",
    "u/\u2028line sep/\u00a0nbsp/\u0085nel",
]


_KEY_CHARS = st.sampled_from(
    list("abcXYZ019") + list("/./.-_~ %?#+=&:@!$'()[]*,;") + ["\\", "\x00", "\t", "\n", "\x7f", "\x85", "\u2028"]
    + ["é", "ß", "日", "🦆", "\udcff", "\ud800", "\ufeff"]
)
_KEYS = st.one_of(
    st.text(_KEY_CHARS, min_size=0, max_size=24),
    st.lists(st.sampled_from(["a", "..", ".", "", ".nubes-internal", "x" * 255, "y" * 256, "é" * 128]), min_size=1, max_size=5).map(
        "/".join
    ),
)


def keys_of(store: ObjectStore, prefix: str = "") -> list[str]:
    """The keys ``store.list(prefix)`` yields, in order."""
    return [info.key for info in store.list(prefix)]


class KeyRulesContract:
    """Key-rule tests every backend passes; needs the ``store`` fixture of the contract."""

    @pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
    def test_invalid_keys_refused_before_io(self, store: ObjectStore, key: str) -> None:
        before = store.stats.snapshot()
        operations: list[Callable[[], Any]] = [
            lambda: store.put(key, b"x"),
            lambda: store.get(key),
            lambda: store.get_range(key, 0, 1),
            lambda: store.head(key),
            lambda: store.exists(key),
            lambda: store.open(key),
            lambda: store.delete(key),
            lambda: store.delete_many(["fine", key]),
            lambda: store.url(key),
        ]
        for operation in operations:
            with pytest.raises(InvalidKey):
                operation()
        assert store.stats.snapshot() == before
        assert keys_of(store) == []

    def test_invalid_key_error_is_a_value_error(self, store: ObjectStore) -> None:
        with pytest.raises(ValueError):
            store.get("a/../b")

    @pytest.mark.parametrize("prefix", ["\x00", "a\x00", "/abs", "\udcff"], ids=repr)
    def test_invalid_list_prefix_refused(self, store: ObjectStore, prefix: str) -> None:
        with pytest.raises(InvalidKey):
            list(store.list(prefix))

    def valid_key(self, key: str) -> bool:
        """Whether this backend must accept ``key``: the shared rules (:func:`check_key`).

        Only a backend whose platform cannot hold some names (``file://`` on Windows) narrows this.
        """
        try:
            check_key(key)
        except InvalidKey:
            return False
        return True

    def test_edge_keys_round_trip(self, store: ObjectStore) -> None:
        keys = [k for k in VALID_EDGE_KEYS if self.valid_key(k)]
        for i, key in enumerate(keys):
            assert check_key(key) == key
            store.put(key, f"edge {i}".encode())
        for i, key in enumerate(keys):
            assert store.get(key) == f"edge {i}".encode()
            assert store.head(key).key == key
        assert keys_of(store) == sorted(keys)
        store.delete_many(keys)
        assert keys_of(store) == []

    key_examples = 30
    """How many generated keys :meth:`test_generated_keys` tries (each costs about eight calls)."""

    def test_generated_keys(self, store: ObjectStore) -> None:
        """Any text is either refused as InvalidKey before any I/O, or a key that round-trips (one rule set)."""

        @settings(
            max_examples=self.key_examples,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            database=None,
        )
        @given(key=_KEYS)
        def check(key: str) -> None:
            if not self.valid_key(key):
                before = store.stats.snapshot()
                operations: list[Callable[[], Any]] = [
                    lambda: store.put(key, b"x"),
                    lambda: store.get(key),
                    lambda: store.head(key),
                    lambda: store.exists(key),
                    lambda: store.delete(key),
                    lambda: store.url(key),
                ]
                for operation in operations:
                    with pytest.raises(InvalidKey):
                        operation()
                assert store.stats.snapshot() == before
                return
            data = key.encode("utf-8")
            assert store.put(key, data).key == key
            assert store.get(key) == data
            assert store.head(key).size == len(data)
            assert [i.key for i in store.list(key)] == [key]
            store.delete(key)
            assert not store.exists(key)

        check()
        assert keys_of(store) == []


__all__ = ["INVALID_KEYS", "VALID_EDGE_KEYS", "KeyRulesContract", "keys_of"]
