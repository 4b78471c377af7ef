"""The ``nubes`` Typer app and what every command shares: loading APP and failing with a fix (exit 2)."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console

from nubes.core.app import App
from nubes.core.errors import NubesError

cli = typer.Typer(
    name="nubes",
    help="Run one analytics app locally and on AWS Lambda, Google Cloud Functions and Azure Functions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)

AppArg = Annotated[str, typer.Argument(metavar="APP", help="path/to/file.py:attr or package.module:attr (attr defaults to 'app')")]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def load(spec: str) -> App:
    from nubes.core.loader import load_app

    try:
        return load_app(spec)
    except NubesError as exc:
        fail(str(exc))
