"""Raw-socket HTTP/1.1 for tests that send what no client library would: every exchange is bounded
in time (a deadline, not a per-read timeout) and in what it reads (one response, at most 1 MB)."""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass

MAX_ANSWER = 1 << 20


@dataclass
class Answer:
    """What the server did: ``status`` of its first response (None: it closed without answering),
    the raw bytes read, whether it ``closed`` the connection, and ``seconds`` until then."""

    status: int | None
    raw: bytes
    closed: bool
    seconds: float

    @property
    def refused(self) -> bool:
        """A 4xx answer, or the connection closed without an answer."""
        return self.status is None or 400 <= self.status < 500

    def header(self, name: str) -> list[str]:
        head = self.raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        return [line.split(":", 1)[1].strip() for line in head if line.split(":", 1)[0].strip().lower() == name.lower()]


def _response_end(data: bytes) -> int | None:
    """The length of the first complete response in ``data`` (None if not complete yet)."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    length = 0
    for line in data[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    end = head_end + 4 + length
    return end if len(data) >= end else None


def _read_answer(sock: socket.socket, deadline: float, started: float, wait_close: bool) -> Answer:
    data = b""
    closed = False
    while time.monotonic() < deadline and len(data) < MAX_ANSWER:
        if not wait_close and _response_end(data) is not None:
            break
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") and len(data.split(b" ", 2)) > 1 else None
    return Answer(status, data, closed, time.monotonic() - started)


def exchange(port: int, data: bytes, *, timeout: float = 10.0, wait_close: bool = False, host: str = "127.0.0.1") -> Answer:
    """Send ``data`` and read the first response (or, with ``wait_close``, until the server closes)."""
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            return Answer(None, b"", True, time.monotonic() - started)
        return _read_answer(sock, started + timeout, started, wait_close)


def stream(port: int, head: bytes, total: int, *, chunked: bool = True, piece: int = 1 << 16, timeout: float = 60.0,
           fill: bytes | None = None, host: str = "127.0.0.1") -> tuple[Answer, int]:
    """Send ``head`` then up to ``total`` body bytes (random, or ``fill`` repeated; as chunks when
    ``chunked``) until the server answers or closes; return its answer and the bytes sent by then."""
    started = time.monotonic()
    deadline = started + timeout
    sent = 0
    block = (fill * (piece // len(fill) + 1))[:piece] if fill else os.urandom(piece)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(head)
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], max(0.0, deadline - time.monotonic()))
            if readable:
                break
            if not writable:
                continue
            size = min(piece, total - sent)
            data = (f"{size:x}\r\n".encode() + block[:size] + b"\r\n") if chunked else block[:size]
            try:
                sock.sendall(data)
            except (ConnectionResetError, BrokenPipeError):
                return Answer(None, b"", True, time.monotonic() - started), sent
            sent += size
        return _read_answer(sock, deadline, started, False), sent


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` now, in MB (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")
