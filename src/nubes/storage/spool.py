"""The local spool of a :class:`~nubes.storage.journal.Journal`: one append-only file per segment.

A segment file is ``DIR/<segment id>.seg``: a header line (``#nubes-journal 1 {json}``: stream,
key prefix, chunk size, transform), then one ``partition<TAB>json`` line per record, written with
``write(2)`` as records are appended. Its writer holds an exclusive ``flock`` on it for as long as it
lives, so a file nobody holds belongs to a dead process and may be replayed by anyone. A torn last
line (the process died inside a ``write``) is ignored: its caller had not answered yet.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

MAGIC = b"#nubes-journal 1 "

try:  # an exclusive, non-blocking lock that dies with its process (POSIX, then Windows)
    import fcntl

    def try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True
except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True


def new_segment_id() -> str:
    """A segment id: UTC time (so keys sort oldest first) and 64 random bits."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.urandom(8).hex()}"


def spool_dir(uri: str, stream: str) -> str | None:
    """The default spool folder of ``stream`` over the store at ``uri`` (None for ``mem://``: nothing outlives it).

    ``NUBES_SPOOL_DIR/<digest of the URI>/<stream>`` if that variable is set; for ``file://PATH``,
    inside the store's internal folder (``PATH/.nubes-internal/spool/<stream>``, on the same disk as
    the data); otherwise ``$XDG_STATE_HOME`` (default ``~/.local/state``) ``/nubes/spool/<digest>/<stream>``.
    """
    if uri.startswith("mem://"):
        return None
    import hashlib

    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    base = os.environ.get("NUBES_SPOOL_DIR")
    if base:
        return os.path.join(base, digest, stream)
    if uri.startswith("file://"):  # the path exactly as the file:// backend opens it
        root = os.path.abspath(os.path.expanduser(uri[len("file://"):]))
        return os.path.join(root, ".nubes-internal", "spool", stream)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "nubes", "spool", digest, stream)


# -- segments -----------------------------------------------------------------------------------------
class Segment:
    """Records of one flush period, by partition, in append order; with a spool, also a locked file."""

    __slots__ = ("count", "done", "fd", "groups", "id", "path", "started")

    def __init__(self, sid: str, path: str | None, fd: int | None) -> None:
        self.id, self.path, self.fd = sid, path, fd
        self.groups: dict[str, list[bytes]] | None = {}  # None: released from memory, re-read from the file
        self.count = 0
        self.done: set[str] = set()  # keys already stored
        self.started = time.monotonic()

    def load(self) -> dict[str, list[bytes]]:
        if self.groups is None:
            assert self.path is not None
            _header, self.groups = read_segment(self.path)
        return self.groups

    def close(self, unlink: bool) -> None:
        if self.path is not None and unlink:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None


def read_segment(path: str) -> tuple[dict[str, Any], dict[str, list[bytes]]]:
    """A spool file's header and its complete lines by partition (a torn last line is ignored: the
    process died inside that ``write``, before its caller could answer)."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n")
    lines = data[: end + 1].splitlines() if end >= 0 else []
    if not lines or not lines[0].startswith(MAGIC):
        raise ValueError(f"{path} is not a nubes journal segment")
    header = json.loads(lines[0][len(MAGIC):])
    groups: dict[str, list[bytes]] = {}
    for line in lines[1:]:
        partition, sep, body = line.partition(b"\t")
        if sep and body:
            groups.setdefault(partition.decode(), []).append(body)
    return header, groups


def spooled(directory: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every complete record in the spool ``directory`` (live segments included), as
    ``(segment id, partition, record)``.

    Read-only: for readers that must see what writers still hold. A record may also be in the store
    already (its segment being written right now): readers keep one record per id, or skip the
    segments whose objects (``<prefix><partition>/<segment id>-<chunk>.ndjson``) they found.
    """
    for sid, partition, line in spooled_lines(directory):
        yield sid, partition, json.loads(line)


def spooled_lines(directory: str) -> Iterator[tuple[str, str, bytes]]:
    """:func:`spooled`, each record as the JSON line the writer wrote (no newline), not decoded."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".seg"))
    except FileNotFoundError:
        return
    for name in names:
        try:
            _header, groups = read_segment(os.path.join(directory, name))
        except (OSError, ValueError):
            continue
        for partition, lines in groups.items():
            for line in lines:
                yield name[:-4], partition, line


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
