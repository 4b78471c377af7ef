"""Reproducible archives: the same files give the same bytes, hence the same sha256.

Entries are sorted, every timestamp is 1980-01-01 (the zip epoch) or 0 (tar), permissions are
0644 for files and 0755 for executables and folders, owners are root, and compression settings
are fixed. Writes go to a temporary file renamed into place.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from nubes.deploy.build.errors import BuildError

COMPRESS_LEVEL = 6

Tick = Callable[[int], None]


def _folders(paths: Iterable[str]) -> list[str]:
    out: set[str] = set()
    for rel in paths:
        parent = PurePosixPath(rel).parent
        while str(parent) != ".":
            out.add(str(parent) + "/")
            parent = parent.parent
    return sorted(out)


@contextmanager
def atomic(dest: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``dest`` (mode 0644, fsynced) only when the block ends without error."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode(path: Path) -> int:
    return 0o755 if os.stat(path).st_mode & 0o111 else 0o644


class Deflated:
    """Raw-deflated file contents, compressed once per build and shared by every zip that holds them
    (a split writes the same distribution into several functions). Compression runs on two threads
    (zlib releases the GIL)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, tuple[int, int, bytes]] = {}

    def prepare(self, rels: list[str], tick: Tick | None = None) -> None:
        todo = sorted({r for r in rels if r not in self._cache}, key=lambda r: -(self.root / r).stat().st_size)
        with ThreadPoolExecutor(max_workers=2) as pool:
            for rel, entry in zip(todo, pool.map(self._deflate, todo), strict=True):
                self._cache[rel] = entry
                if tick:
                    tick(1)

    def get(self, rel: str) -> tuple[int, int, bytes]:
        if rel not in self._cache:
            self._cache[rel] = self._deflate(rel)
        return self._cache[rel]

    def _deflate(self, rel: str) -> tuple[int, int, bytes]:
        data = (self.root / rel).read_bytes()
        packer = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -15)
        return zlib.crc32(data), len(data), packer.compress(data) + packer.flush()


_DOS_DATE = (1 << 5) | 1  # 1980-01-01
_UTF8 = 0x800


def write_zip(dest: Path, deflated: Deflated, files: list[tuple[str, str]], *, tick: Tick | None = None) -> None:
    """Zip ``files`` ([(path in the archive, path under the staging root)]) into ``dest``, byte for byte
    the same for the same files (no zip64: over 4 GiB or 65,535 entries is an error)."""
    entries = sorted(files)
    folders = _folders(name for name, _ in entries)
    if len(entries) + len(folders) > 0xFFFF:
        raise BuildError(f"{dest.name}: {len(entries)} files is more than a zip without zip64 holds; build --format image")
    central = bytearray()
    count = 0
    with atomic(dest) as out:
        offset = 0
        items = [(f, None) for f in folders] + [(name, rel) for name, rel in entries]
        for name, rel in items:
            raw = name.encode("utf-8")
            if rel is None:
                method, crc, size, payload, attr = 0, 0, 0, b"", (0o40755 << 16) | 0x10
            else:
                crc, size, payload = deflated.get(rel)
                method, attr = 8, (0o100000 | _mode(deflated.root / rel)) << 16
            if offset + len(payload) + 30 + len(raw) > 0xFFFFFFFF:
                raise BuildError(f"{dest.name} would be over 4 GiB; build --format image")
            header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, _UTF8, method, 0, _DOS_DATE, crc, len(payload), size, len(raw), 0)
            out.write(header + raw + payload)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 20, 20, _UTF8, method, 0, _DOS_DATE, crc,
                                   len(payload), size, len(raw), 0, 0, 0, 0, attr, offset) + raw
            offset += len(header) + len(raw) + len(payload)
            count += 1
            if tick and rel is not None:
                tick(1)
        out.write(bytes(central))
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), offset, 0))


def write_tar_gz(dest: Path, root: Path, files: list[tuple[str, str]], extra: dict[str, str], *, tick: Tick | None = None) -> None:
    """A gzipped tar (a container build context): ``files`` plus ``extra`` texts (e.g. the Dockerfile)."""
    entries = sorted([(name, rel, None) for name, rel in files] + [(name, "", text) for name, text in extra.items()])
    with atomic(dest) as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=COMPRESS_LEVEL) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in _folders(name for name, _, _ in entries):
            info = tarfile.TarInfo(folder.rstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, rel, text in entries:
            data = text.encode("utf-8") if text is not None else (root / rel).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            info.mode = 0o644 if text is not None else _mode(root / rel)
            tar.addfile(info, io.BytesIO(data))
            if tick:
                tick(1)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
