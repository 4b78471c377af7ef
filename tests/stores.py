"""A store wrapper for tests that count reads: every GET's key and byte count, in order."""

from __future__ import annotations

from typing import Any


class Recording:
    """``store`` as it is, recording ``(key, bytes returned)`` for each ``get`` and ``get_range``."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.got: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get(self, key: str) -> bytes:
        data: bytes = self._store.get(key)
        self.got.append((key, len(data)))
        return data

    def get_range(self, key: str, start: int, end: int | None) -> bytes:
        data: bytes = self._store.get_range(key, start, end)
        self.got.append((key, len(data)))
        return data
