"""The ``nubes`` command: each command group lives in its own module and registers on ``cli``."""

from __future__ import annotations

from nubes.cli import build, costs, data, emulate, models, run  # noqa: F401 - importing registers the commands
from nubes.cli.common import cli


def main() -> None:
    cli()
