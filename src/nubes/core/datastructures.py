"""Multi-mappings for query strings and headers.

``MultiDict`` keeps every (key, value) pair in arrival order; mapping access (``m[key]``,
``m.get(key)``) gives the first value, ``getlist(key)`` all of them, ``multi_items()`` every pair.
``Headers`` is the same with case-insensitive keys (stored lower-case, as HTTP/2 sends them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar, overload

T = TypeVar("T")

Pairs = Mapping[str, str | Iterable[str]] | Iterable[tuple[str, str]] | None


def _pairs(source: Pairs) -> list[tuple[str, str]]:
    if source is None:
        return []
    if isinstance(source, MultiDict):
        return list(source._items)
    if isinstance(source, list) and all(type(p) is tuple and len(p) == 2 for p in source):
        return source
    if isinstance(source, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in source.items():
            if isinstance(value, (list, tuple)):
                out.extend((str(key), str(v)) for v in value)
            else:
                out.append((str(key), str(value)))
        return out
    return [(str(k), str(v)) for k, v in source]


class MultiDict(Mapping[str, str]):
    """An immutable ordered multi-mapping of str to str."""

    __slots__ = ("_index", "_items")

    def _norm(self, key: str) -> str:
        return key

    def __init__(self, source: Pairs = None) -> None:
        lower = type(self)._norm is not MultiDict._norm
        items = []
        index: dict[str, list[str]] = {}
        for key, value in _pairs(source):
            if lower:
                key = key.lower()
            items.append((key, value))
            values = index.get(key)
            if values is None:
                index[key] = [value]
            else:
                values.append(value)
        self._items = tuple(items)
        self._index = index

    def __getitem__(self, key: str) -> str:
        return self._index[self._norm(key)][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._norm(key) in self._index

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: T) -> str | T: ...
    def get(self, key: str, default: Any = None) -> Any:
        values = self._index.get(self._norm(key))
        return values[0] if values else default

    def getlist(self, key: str) -> list[str]:
        """Every value of ``key``, in order (empty if absent)."""
        return list(self._index.get(self._norm(key), ()))

    def multi_items(self) -> list[tuple[str, str]]:
        """Every (key, value) pair, in order, repeats included."""
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MultiDict):
            return type(self) is type(other) and self._items == other._items
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._items)!r})"


class Headers(MultiDict):
    """Immutable HTTP headers: a :class:`MultiDict` whose keys are case-insensitive (kept lower-case)."""

    __slots__ = ()

    def _norm(self, key: str) -> str:
        return key.lower()


class MutableHeaders(Headers):
    """Response headers: case-insensitive, ordered, settable. ``h[k] = v`` replaces; ``add`` appends."""

    __slots__ = ()

    def __setitem__(self, key: str, value: str) -> None:
        self._set(key, [str(value)])

    def add(self, key: str, value: str) -> None:
        self._set(key, [*self.getlist(key), str(value)])

    def setdefault(self, key: str, value: str) -> str:
        if key not in self:
            self[key] = value
        return self[key]

    def update(self, other: Pairs) -> None:
        for key, value in _pairs(other):
            self[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._set(key, [])

    def pop(self, key: str, default: Any = None) -> Any:
        value = self.get(key, default)
        if key in self:
            del self[key]
        return value

    def _set(self, key: str, values: list[str]) -> None:
        norm = key.lower()
        if norm in self._index:
            self._items = tuple([(k, v) for k, v in self._items if k != norm] + [(norm, v) for v in values])
        elif len(values) == 1:
            self._items += ((norm, values[0]),)  # the common case: a new header, appended
        else:
            self._items += tuple((norm, v) for v in values)
        if values:
            self._index[norm] = values
        else:
            self._index.pop(norm, None)

    __hash__ = None  # type: ignore[assignment]
