"""``nubes auth new-key | hash-key``: API keys for ``[auth.api_keys]`` (only their hashes are stored)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from nubes.cli.common import cli, fail

auth_cli = typer.Typer(help="API keys for [auth] in nubes.toml: make one, or hash one you have.", no_args_is_help=True)
cli.add_typer(auth_cli, name="auth")


@auth_cli.command("new-key")
def new_key(
    id: Annotated[str, typer.Option("--id", help="a name for the key's holder (shown as ctx.principal.id)")] = "key",
    role: Annotated[list[str] | None, typer.Option("--role", help="a role the key carries (repeatable), e.g. admin")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="the tenant whose data and costs the key sees")] = None,
) -> None:
    """Make a new API key: prints the key (give it to the caller, once) and the nubes.toml entry (its hash)."""
    from nubes.core.auth import hash_key
    from nubes.core.auth import new_key as make

    key = make()
    print(f"key: {key}")
    print(_entry(hash_key(key), id, role or [], tenant))


@auth_cli.command("hash-key")
def hash_key(
    key: Annotated[str, typer.Argument(help="the API key to hash")],
    id: Annotated[str, typer.Option("--id")] = "key",
    role: Annotated[list[str] | None, typer.Option("--role")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
) -> None:
    """Print the nubes.toml entry for an existing API key (at least 32 characters)."""
    from nubes.core.auth import hash_key as digest

    if len(key) < 32:
        fail("an API key needs at least 32 characters; `nubes auth new-key` makes one")
    print(_entry(digest(key), id, role or [], tenant))


def _entry(hashed: str, id: str, roles: list[str], tenant: str | None) -> str:
    lines = [f'[auth.api_keys."{hashed}"]', f"id = {json.dumps(id)}", f"roles = {json.dumps(roles)}"]
    if tenant:
        lines.append(f"tenant = {json.dumps(tenant)}")
    return "\n".join(lines)
