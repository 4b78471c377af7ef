"""Local storage servers on loopback for tests and benchmarks, each started and stopped by PID.

Each module here offers a :class:`ServerProcess` subclass with ``start()``, ``stop()``, ``restart()``,
``outage()`` and the environment variables that point the cloud SDK at it (the SDK's own standard
variables, nothing nubes-specific): ``env()``, or ``with server.environment():`` to set them for a block.
"""

from __future__ import annotations

from nubes.testing.servers.process import ServerProcess, free_port, port_open, wait_until

__all__ = ["ServerProcess", "free_port", "port_open", "wait_until"]
