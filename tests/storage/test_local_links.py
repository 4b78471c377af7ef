"""file:// and symbolic links, against a model: a link is followed only if it stays beneath the root.

The model is the file system's own resolution (``os.path.realpath(strict=True)``): a key whose real path is a
file inside the root reads that file; anything else (outside, missing, a folder) is an error and
never returns, lists, overwrites or deletes anything outside. Layouts of links are generated.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nubes.storage
from nubes.errors import InvalidKey, NotFound, StorageError

from .conftest import force_profile

LINK_AT = ["l1", "a/l2", "a/b/l3", "c/l4"]
RELATIVE = ["f", "../a/f", "b", "..", "b/g", "../c/h", "l2", "missing", "../../out/f", "../../out", "../out/f", "../../../out/s",
            "../l1", "./b/../f", "b/../../c"]
ABSOLUTE = ["root/a/f", "root/a", "root", "out/f", "out", "root/c/h", "root/.nubes-internal"]
KEYS = ["l1", "a/l2", "a/b/l3", "c/l4", "l1/g", "l1/f", "l1/h", "a/l2/g", "a/l2/f", "l1/b/g", "c/l4/h", "a/l2/s/f", "l1/s/f"]
SECRET = b"SECRET outside the root"


def _layout(base: Path, links: dict[str, str]) -> tuple[Path, Path]:
    root, out = base / "root", base / "out"
    for folder in (root / "a" / "b", root / "c", root / ".nubes-internal", out / "s"):
        folder.mkdir(parents=True)
    for name, content in {"a/f": b"inside a/f", "a/b/g": b"inside a/b/g", "c/h": b"inside c/h", ".nubes-internal/f": b"internal"}.items():
        (root / name).write_bytes(content)
    for name in ("f", "g", "h", "s/f"):
        (out / name).write_bytes(SECRET)
    for at, target in links.items():
        full = root / at
        if full.parent.is_dir() and not full.parent.is_symlink() and not os.path.lexists(full):
            full.symlink_to(str(base / target) if target in ABSOLUTE else target)
    return root, out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _expected(root: Path, key: str) -> bytes | None:
    try:
        real = os.path.realpath(root / key, strict=True)  # as the kernel resolves: every step must exist
    except OSError:
        return None
    inside = real.startswith(str(root) + os.sep) and not real.startswith(str(root / ".nubes-internal"))
    return Path(real).read_bytes() if inside and os.path.isfile(real) else None


_LINKS = st.dictionaries(st.sampled_from(LINK_AT), st.sampled_from(RELATIVE + ABSOLUTE), max_size=4)


@pytest.mark.parametrize("name", ["linux", "windows"])
@settings(max_examples=60, deadline=None, database=None)
@given(links=_LINKS, keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=4))
def test_links_are_followed_only_beneath_the_root(name: str, links: dict[str, str], keys: list[str]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        force_profile(monkeypatch, name)  # descriptors, or paths checked before each act
        base = Path(tempfile.mkdtemp(prefix="nubes-links-"))
        try:
            root, out = _layout(base, links)
            secrets = _snapshot(out)
            store = nubes.storage.open(f"file://{root}", fsync=False)
            for key in keys:
                expected = _expected(root, key)
                try:
                    got = store.get(key)
                except (NotFound, InvalidKey):
                    got = None
                assert got == expected, (key, links)
            listed = {info.key: info.size for info in store.list()}
            for key, size in listed.items():
                assert _expected(root, key) is not None and size == len(store.get(key)), (key, links)
            for key in keys:
                for act in (lambda k=key: store.put(k, b"written"), lambda k=key: store.delete(k)):
                    with contextlib.suppress(StorageError):  # refused (outside, a folder...): fine
                        act()
            assert _snapshot(out) == secrets, links  # nothing outside written or deleted
        finally:
            shutil.rmtree(base)


def test_a_relative_link_may_not_climb_out_and_back(tmp_path: Path) -> None:
    """``../root/a/f`` from the root leaves it before coming back: refused, although its real path is inside."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f").write_bytes(b"f")
    (root / "back").symlink_to("../root/a/f")
    (root / "fine").symlink_to("a/f")
    store = nubes.storage.open(f"file://{root}")
    with pytest.raises(InvalidKey, match="outside"):
        store.get("back")
    assert store.get("fine") == b"f"


def test_link_loops_end(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "x").symlink_to("y")
    (root / "y").symlink_to("x")
    (root / "self").symlink_to("self/z")
    store = nubes.storage.open(f"file://{root}")
    for key in ("x", "y/z", "self"):
        with pytest.raises((InvalidKey, NotFound)):
            store.get(key)
    assert list(store.list()) == []


def test_put_replaces_a_link_inside_the_root_not_its_target(tmp_path: Path) -> None:
    store = nubes.storage.open(f"file://{tmp_path}/root")
    store.put("real", b"target")
    (tmp_path / "root" / "alias").symlink_to("real")
    info = store.put("alias", b"new", if_match=store.head("alias").etag)
    assert store.get("real") == b"target" and store.get("alias") == b"new" and info.size == 3
    assert not (tmp_path / "root" / "alias").is_symlink()
