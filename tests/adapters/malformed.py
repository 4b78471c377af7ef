"""Hostile inputs shared by the malformed-event tests of the three adapters.

* :func:`mutations` breaks a real event systematically: every field of it (object members and
  array items, at every depth) deleted, nulled, replaced by a value of each wrong type, by a huge
  number or string, by a lone surrogate, by ``[null]``...
* :data:`json_values` / :data:`texts` are hypothesis strategies for arbitrary JSON-ish values whose
  text may hold lone surrogates, control characters and percent signs.
* :class:`StrictStderr` stands in for standard error: it encodes strictly as UTF-8 (as a stream
  that is not ``backslashreplace`` would) and checks that every log line is one JSON object.
* :func:`assert_problem` checks a problem+json body: its status, and that it leaks no traceback,
  local path or storage URI.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

DELETE = object()
SURROGATE = "\ud800"
HUGE_INT = 10**12
HOSTILE: tuple[tuple[str, Any], ...] = (
    ("deleted", DELETE),
    ("null", None),
    ("false", False),
    ("zero", 0),
    ("negative", -1),
    ("huge int", HUGE_INT),
    ("float", 1.5),
    ("nan", float("nan")),
    ("empty text", ""),
    ("surrogate", f"a{SURROGATE}b"),
    ("control chars", "\x00\r\n\t"),
    ("huge text", "x" * 65_536),
    ("percent", "%zz%"),
    ("bad base64", "!!not base64!!"),
    ("empty array", []),
    ("[null]", [None]),
    ("[number]", [7]),
    ("empty object", {}),
    ("object of null", {"k": None}),
    ("object of surrogates", {SURROGATE: SURROGATE}),
)
"""What every field of an event is replaced with, by name."""


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every location inside ``value`` (object members and array items, at every depth)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def replaced(event: Any, path: tuple[Any, ...], value: Any, *, raw: str | None = None) -> Any:
    """A copy of ``event`` (a JSON document; ``raw`` its text, if known) with the location ``path``
    set to ``value`` (or removed: :data:`DELETE`)."""
    out = json.loads(raw if raw is not None else json.dumps(event))
    holder = out
    for step in path[:-1]:
        holder = holder[step]
    if value is DELETE:
        del holder[path[-1]]
    else:
        holder[path[-1]] = copy.deepcopy(value)
    return out


def mutations(event: Any) -> Iterator[tuple[str, Any]]:
    """``(label, broken event)`` for every location of ``event`` and every hostile value, then a few
    whole-event replacements; plus a base64 body that is not base64 where the event has a body."""
    raw = json.dumps(event)
    for path in paths(event):
        for name, value in HOSTILE:
            yield f"{'.'.join(map(str, path))} -> {name}", replaced(event, path, value, raw=raw)
    if isinstance(event, dict) and "body" in event:
        for body in ("!!!", "QUJ", "é", f"{SURROGATE}"):
            yield f"isBase64Encoded with body {body!r}", {**json.loads(raw), "isBase64Encoded": True, "body": body}
    for name, value in HOSTILE[1:]:
        yield f"event -> {name}", copy.deepcopy(value)


_SURROGATES = st.sampled_from(["\ud800", "\udbff\udbff", "\udcff", "\udfff"])
texts = st.one_of(
    st.text(max_size=30),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=8), _SURROGATES, st.text(max_size=8)),
    st.sampled_from(["", "GET", "POST", "/", "%", "%zz", "a=b&c", "!!!", "2.0", "1.0", "true", "\x00"]),
)
"""Text, often with a lone surrogate or a token an event would hold."""
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True), texts,
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12
)
"""Arbitrary JSON-ish values (plus NaN and lone surrogates, which a direct invoke can carry)."""


class StrictStderr(io.TextIOBase):
    """A stderr that refuses what UTF-8 cannot encode and checks every line is one JSON object."""

    encoding = "utf-8"

    def __init__(self) -> None:
        self.lines = 0
        self._partial = ""

    def write(self, text: str) -> int:
        text.encode("utf-8")  # strict: a lone surrogate raises here, as on a strict stream
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        for line in complete:
            assert isinstance(json.loads(line), dict), line[:200]
            self.lines += 1
        return len(text)


_LEAKS = re.compile(r"Traceback|File \"|/work/|/tmp/|/home/|site-packages|\b(?:file|s3|gs|az|mem)://")


def assert_problem(body: bytes | str, status: int, content_type: str | None = None) -> dict[str, Any]:
    """``body`` is an RFC 9457 problem for ``status`` that leaks no traceback, path or storage URI."""
    if content_type is not None:
        assert content_type.split(";")[0].strip() == "application/problem+json", content_type
    doc = json.loads(body)
    assert isinstance(doc, dict) and doc.get("status") == status and doc.get("title"), doc
    assert _LEAKS.search(json.dumps(doc)) is None, doc
    return doc


@contextlib.contextmanager
def strict_stderr() -> Iterator[StrictStderr]:
    """Standard error replaced by a :class:`StrictStderr` (in the test body: pytest's capture swaps
    ``sys.stderr`` back between a fixture's setup and the test)."""
    saved, sys.stderr = sys.stderr, StrictStderr()
    try:
        yield sys.stderr  # type: ignore[misc]
    finally:
        sys.stderr = saved
