"""Fixtures for metering tests: the example app (tests/apps/metering_app.py) with its own home store and
a generated Parquet dataset of a few MB, loaded fresh for each test the way `nubes` loads apps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import nubes
from nubes.core.loader import load_app

TESTS = Path(__file__).resolve().parent.parent
METERING_APP = TESTS / "apps" / "metering_app.py"


@pytest.fixture(scope="session")
def data_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file:// store holding trips.parquet (about 5 MB, 4 row groups), made once per session."""
    import importlib.util

    folder = tmp_path_factory.mktemp("metering-data")
    spec = importlib.util.spec_from_file_location("_metering_app_maker", METERING_APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    uri = f"file://{folder}"
    module.make_trips(uri)
    return uri


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_uri: str) -> str:
    uri = f"file://{tmp_path / 'home'}"
    monkeypatch.setenv("NUBES_STORAGE", uri)
    monkeypatch.setenv("METERING_DATA", data_uri)
    monkeypatch.setenv("NUBES_COST_HEADERS", "full")  # the tests read the components (the default sends two headers)
    for name in ("NUBES_METERING", "NUBES_PRICES", "NUBES_TENANT_HEADER", "NUBES_AZURE_PLAN", "NUBES_AWS_GATEWAY",
                 "NUBES_PRICE_LOCAL_AS", "NUBES_LEDGER_FLUSH", "NUBES_MEMORY_MB", "NUBES_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture
def app(home: str) -> nubes.App:
    return load_app(f"{METERING_APP}:app")


def header(headers: Any, name: str) -> str | None:
    """A header from a dict-like of any case."""
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v[0] if isinstance(v, list) else v
    return None
