"""The ``nubes`` command: each command group lives in its own module and registers on ``cli``; the
extensions' commands (:attr:`nubes.core.extensions.Extension.commands`) are added from their declarations."""

from __future__ import annotations

import importlib

import typer

from nubes.cli import auth, build, deploy, emulate, run  # noqa: F401 - importing registers the commands
from nubes.cli.common import cli
from nubes.core import extensions


def _add_extension_commands() -> None:
    for command in extensions.commands():
        module, _, attr = command.target.partition(":")
        target = getattr(importlib.import_module(module), attr)
        if isinstance(target, typer.Typer):
            cli.add_typer(target, name=command.name, help=command.help or None)
        else:
            cli.command(command.name)(target)


_add_extension_commands()


def main() -> None:
    cli()
