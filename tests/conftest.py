"""Shared fixtures: the contract app, loaded from its file the way `nubes` loads user apps."""

from __future__ import annotations

from pathlib import Path

import pytest

import nubes
from nubes.core.loader import load_app
from nubes.testing import Client

TESTS = Path(__file__).parent


@pytest.fixture(scope="session", autouse=True)
def _internal_routes_open() -> object:
    """The suite exercises the built-in /_nubes/ routes as features; their protection (closed unless
    configured) is tested in tests/core/test_auth.py, which clears this setting where it matters."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NUBES_AUTH_INTERNAL", "open")
        yield
CONTRACT_APP = TESTS / "apps" / "contract_app.py"


@pytest.fixture(scope="session")
def contract_app() -> nubes.App:
    return load_app(f"{CONTRACT_APP}:app")


@pytest.fixture
def client(contract_app: nubes.App) -> Client:
    return Client(contract_app)
