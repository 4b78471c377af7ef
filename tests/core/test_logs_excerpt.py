"""nubes.core.logs.excerpt: the one way adapters put an unreadable event into a log line."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nubes.core.logs import excerpt

values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50) | st.binary(max_size=20),
                      lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                      max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(value=values, limit=st.integers(min_value=1, max_value=300))
def test_excerpt_never_raises_and_is_bounded(value: Any, limit: int) -> None:
    text = excerpt(value, limit)
    assert len(text) <= limit + 3
    if len(text) <= limit and not isinstance(value, bytes):
        json.loads(text)  # whole JSON when it fits (bytes go in as their repr string)


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_excerpt_of_what_json_cannot_hold() -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    assert excerpt(deep, 50) == "<list>"  # nested past both the encoder's and repr's recursion
    assert excerpt(BadRepr()) == "<BadRepr>"
    assert excerpt({"blob": object()}).startswith('{"blob": "<object object at')
    assert excerpt("x" * 10, 4) == '"xxx...'
