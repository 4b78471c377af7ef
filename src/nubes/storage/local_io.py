"""Whole reads and writes on file descriptors, for the ``file://`` store (no file objects on the hot path)."""

from __future__ import annotations

import io
import os

from nubes.storage.base import Data

CHUNK = 1024 * 1024
"""A stream is copied this many bytes at a time (never read whole)."""

_pread = getattr(os, "pread", None)


def read_at(fd: int, size: int, offset: int) -> bytes:
    """``pread`` where it exists; elsewhere (Windows) seek and read: each call has its own descriptor."""
    if _pread is not None:
        return bytes(_pread(fd, size, offset))
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def write_all(fd: int, data: Data) -> int:
    """Write ``data`` to ``fd``: bytes in one go, a file-like object CHUNK bytes at a time (never whole)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return write_view(fd, memoryview(data).cast("B"))
    size = 0
    readinto = getattr(data, "readinto", None)
    if readinto is not None and not isinstance(data, io.TextIOBase):
        buffer = memoryview(bytearray(CHUNK))  # one buffer for the whole stream, no allocation per chunk
        try:
            n = readinto(buffer)
        except (NotImplementedError, io.UnsupportedOperation):  # e.g. a RawIOBase with read() only
            n = -1
        if n != -1:
            while n:
                size += write_view(fd, buffer[:n])
                n = readinto(buffer)
            return size
    while chunk := data.read(CHUNK):
        if isinstance(chunk, str):
            raise TypeError("put takes bytes or a binary file-like object, not a text file")
        size += write_view(fd, memoryview(chunk).cast("B"))
    return size


def write_view(fd: int, view: memoryview) -> int:
    written = 0
    total = len(view)
    while written < total:
        written += os.write(fd, view[written:] if written else view)
    return total


__all__ = ["CHUNK", "read_at", "write_all", "write_view"]
