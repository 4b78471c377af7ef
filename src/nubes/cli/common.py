"""The ``nubes`` Typer app and what every command shares: loading APP and failing with a fix (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from nubes.core.app import App
from nubes.errors import NubesError

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
    """Print ``message`` as an error (literally: ``[deploy.aws]`` is text, not rich markup) and exit ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def load(spec: str) -> App:
    from nubes.core.loader import load_app

    try:
        return load_app(spec)
    except NubesError as exc:
        fail(str(exc))


def request_parts(
    method: str, path: str, query: list[str] | None, header: list[str] | None, data: str | None
) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]], bytes]:
    """Validate ``METHOD PATH [-q k=v] [-H 'K: V'] [-d JSON|@file]``: (verb, query pairs, headers, body).

    Every mistake exits 2 with a message naming the fix. A body without a Content-Type header is sent
    as ``application/json``.
    """
    verb = method.upper()
    if verb not in METHODS:
        fail(f"unknown HTTP method {method!r}; use one of {', '.join(METHODS)}")
    if not path.startswith("/"):
        fail(f"path {path!r} must start with '/', e.g. /items/3")
    pairs = []
    for item in query or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"query parameter {item!r} is not key=value, e.g. -q limit=10")
        pairs.append((key, value))
    headers = []
    for item in header or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            fail(f"header {item!r} is not 'Name: value', e.g. -H 'Accept: text/csv'")
        headers.append((name.strip(), value.strip()))
    body = b""
    if data is not None:
        if data.startswith("@"):
            source = Path(data[1:])
            if not source.is_file():
                fail(f"no file {str(source)!r} to send as the body (from -d {data})")
            body = source.read_bytes()
        else:
            body = data.encode("utf-8")
        if not any(n.lower() == "content-type" for n, _ in headers):
            headers.append(("Content-Type", "application/json"))
    return verb, pairs, headers, body
