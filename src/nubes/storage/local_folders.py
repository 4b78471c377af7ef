"""The folders a ``file://`` store handle holds open: its root and nubes' own folders under ``.nubes-internal/``.

Opened once per handle and shared by its threads, so the hot path pays no extra system call for
them. A root found deleted (asked only when an operation found nothing: a deleted folder has no
entries) or a nubes folder found missing is opened again; a handle whose root is renamed away
keeps using it where it went. Handles replaced this way stay open until the store is collected:
another thread may still be acting in them, and closing one could let its descriptor number be
reused under that thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from nubes.errors import StorageError
from nubes.storage.keys import RESERVED_SEGMENT
from nubes.storage.local_dirs import Dir, MissingBelowRoot, open_root, subfolder

T = TypeVar("T")


class Folders:
    """The root folder at ``path`` and nubes' folders in it (``tmp``, ``locks``, ``meta``), held for one store handle."""

    def __init__(self, path: str, *, uri: str, fds: bool) -> None:
        self.path = path
        self.uri = uri
        self.fds = fds  # descriptors (FdDir) or paths (PathDir): read once, tests force it
        self.lock = threading.RLock()
        self._root: Dir | None = None
        self.real_roots: tuple[str, ...] = ()  # the root's path as absolute link targets name it
        self._held: dict[str, Dir] = {}
        self._retired: list[Dir] = []

    def root(self, *, create: bool = False) -> Dir:
        """The root folder (made first if ``create``); FileNotFoundError if there is none."""
        root = self._root
        if root is not None:
            return root
        with self.lock:
            if self._root is None:
                try:
                    if create:
                        os.makedirs(self.path, exist_ok=True)
                    self._root = open_root(self.path, fds=self.fds)
                except (FileExistsError, NotADirectoryError):
                    raise StorageError("the store's folder is a file, not a folder", uri=self.uri) from None
                real = os.path.realpath(self.path)
                self.real_roots = (real,) if real == self.path else (real, self.path)
            return self._root

    def stale(self, root: Dir, missing: FileNotFoundError | None = None) -> bool:
        """True (and every held folder is dropped) if ``root`` was deleted since it was opened.

        ``missing`` is what the operation met: a name missing below a folder found in the root
        proves the root alive without asking the file system.
        """
        if isinstance(missing, MissingBelowRoot):
            return False
        try:
            if root.stat().st_nlink:
                return False
        except OSError:
            pass
        with self.lock:
            if self._root is root:
                self.retire()
        return True

    def rooted(self, act: Callable[[Dir], T], *, create: bool = False) -> T:
        """``act(root)``; again with the root opened anew if it found nothing because the root was deleted."""
        root = self.root(create=create)
        try:
            return act(root)
        except FileNotFoundError as exc:
            if not self.stale(root, exc):
                raise
        return act(self.root(create=create))

    def folder(self, name: str, *, create: bool = True) -> Dir:
        """nubes' folder ``.nubes-internal/NAME``, made if missing (unless not ``create``: FileNotFoundError).

        These must be plain folders: a link in their place is refused, never followed.
        """
        folder = self._held.get(name)
        if folder is not None:
            return folder
        with self.lock:
            folder = self._held.get(name)
            if folder is None:
                internal = self._held.get(RESERVED_SEGMENT)
                if internal is None:
                    root = self.root(create=create)
                    internal = subfolder(root, RESERVED_SEGMENT, uri=self.uri) if create else root.child(RESERVED_SEGMENT)
                    self._held[RESERVED_SEGMENT] = internal
                folder = subfolder(internal, name, uri=self.uri) if create else internal.child(name)
                self._held[name] = folder
            return folder

    def in_folder(self, name: str, act: Callable[[Dir], T]) -> T:
        """``act(folder)`` in nubes' folder ``name``; again in a new one if the folder (or the root) was removed."""
        try:
            return act(self.folder(name))
        except FileNotFoundError:
            self.retire()
        return act(self.folder(name))

    def retire(self) -> None:
        """Drop every held folder (kept open until :meth:`close`), so the next use opens them again."""
        with self.lock:
            self._retired += [*self._held.values(), *([self._root] if self._root is not None else [])]
            self._held = {}
            self._root = None

    def close(self) -> None:
        """Close every folder ever held (when the store handle is collected)."""
        self.retire()
        for folder in self._retired:
            with contextlib.suppress(OSError):
                folder.close()
        self._retired.clear()


__all__ = ["Folders"]
