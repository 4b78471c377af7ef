"""The ``nubes`` command. Wiring only: every command calls the library and prints its answer."""

from nubes.cli.main import main

__all__ = ["main"]
