"""The app's home store: App(storage=...), else NUBES_STORAGE, else file://.nubes under the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

import nubes
from nubes.errors import BackendMissing, ConfigError
from nubes.testing import Client


def test_default_home_store_is_dot_nubes_beside_the_app_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default home store does not depend on the working directory: it is .nubes beside the app's file."""
    from nubes.core.loader import load_app

    project = tmp_path / "project"
    project.mkdir()
    (project / "notes_app.py").write_text(
        "import nubes\n"
        "app = nubes.App('home')\n"
        "@app.put('/notes/{name}')\n"
        "def save(ctx: nubes.Context, name: str, body: str) -> dict:\n"
        "    info = ctx.storage.put(f'notes/{name}.txt', body.encode(), content_type='text/plain')\n"
        "    return {'etag': info.etag, 'size': info.size}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("NUBES_STORAGE", raising=False)
    app = load_app(f"{project / 'notes_app.py'}:app")
    r = Client(app).put("/notes/first", content="hello", headers={"content-type": "text/plain"})
    assert r.json()["size"] == 5
    assert (project / ".nubes" / "notes" / "first.txt").read_text() == "hello"
    assert not (elsewhere / ".nubes").exists()
    assert app.storage_uri == (project / ".nubes").as_uri()


def test_env_and_argument_choose_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBES_STORAGE", "mem://from-env")
    assert nubes.App("a").storage.uri.startswith("mem://from-env")
    assert nubes.App("b", storage="mem://explicit").storage.uri.startswith("mem://explicit")


def test_storage_errors_in_handlers_become_http_answers() -> None:
    app = nubes.App("errs", storage="mem://errs")

    @app.get("/objects/{key:path}")
    def read(ctx: nubes.Context, key: str) -> bytes:
        return ctx.storage.get(key)

    client = Client(app)
    missing = client.get("/objects/nope.csv")
    assert missing.status_code == 404 and "nope.csv" in missing.json()["detail"]
    assert client.get("/objects/a/%2E%2E/b").status_code == 400  # '..' segment: InvalidKey


def test_bad_storage_uri_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no storage backend for scheme 'ftp://'"):
        _ = nubes.App("x", storage="ftp://host/path").storage
    with pytest.raises(ConfigError, match="has no scheme"):
        _ = nubes.App("x", storage="just-a-folder").storage


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "nubes.storage.s3", raising=False)
    with pytest.raises(BackendMissing, match=r"pip install 'nubes\[aws\]'"):
        nubes.storage.open("s3://bucket/prefix")
