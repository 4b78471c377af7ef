"""file:// under attack: folders swapped for symbolic links while operations run.

Two kinds of test:

* deterministic: the swap is made at the worst moment of one operation (after nubes resolved a
  folder, before it acts in it), by wrapping the folder handles; with descriptors the operation
  still acts inside the root. The same swap against the path fallback (forced) does escape, which
  shows the tests can fail and is the weaker guarantee the module docstring states for Windows.
* a race: another process swaps folders (and nubes' own folders) for links to an outside folder
  in a tight loop while threads put, get, read ranges, open, head, list and delete; afterwards
  nothing outside may have been written, read, listed or deleted. Counts are printed like the
  attack that found the bug (153 of 2,302 writes escaped before), and a naive writer under the
  same attacker is shown to escape, so the attacker is real.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nubes.storage
from nubes.errors import InvalidKey, StorageError
from nubes.storage import local_dirs, local_lock, local_meta
from nubes.storage.local import INTERNAL

SECRET_SIZE = 7777  # every file outside has this size; nubes' workers never write it
SECRET = (b"SECRET" * SECRET_SIZE)[:SECRET_SIZE]


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    for folder in (outside, outside / "sub", outside / "tmp", outside / "locks"):
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("k0", "k1", "k2", "k3", "secret-0", "secret-1", "x"):
            (folder / name).write_bytes(SECRET)
    return outside


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry below ``folder``: files with their content, folders and links as None."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(folder))
            found[rel] = full.read_bytes() if full.is_file() and not full.is_symlink() else None
    return found


def _escapes(before: dict[str, bytes | None], after: dict[str, bytes | None]) -> dict[str, list[str]]:
    return {
        "written": sorted(k for k in after if k not in before or after[k] != before[k]),
        "deleted": sorted(k for k in before if k not in after),
    }


# -- deterministic: the swap at the worst moment -----------------------------------------------
@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, Path, Any]:
    """``(root, outside, store)``: a store at ``root`` (opened after ``mode``, when a test asks for it first)
    and a folder outside it holding SECRET files under the names the tests use."""
    root = tmp_path / "root"
    return root, _outside(tmp_path), nubes.storage.open(f"file://{root}")


def _swap(root: Path, name: str, outside: Path) -> None:
    """Move ``root/name`` aside (it stays inside the root) and put a link to ``outside`` in its place."""
    os.rename(root / name, root / f"{name}.aside")
    os.symlink(outside, root / name)


@pytest.fixture(params=["fds", "paths"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fds" and not local_dirs.DIR_FDS:
        pytest.skip("this platform has no directory descriptors")
    monkeypatch.setattr(local_dirs, "DIR_FDS", request.param == "fds")
    return str(request.param)


def _after_first(monkeypatch: pytest.MonkeyPatch, cls: type, method: str, when: Callable[[Any, tuple[Any, ...]], bool],
                 then: Callable[[], None]) -> list[bool]:
    """Wrap ``cls.method`` so ``then()`` runs once, right after the first call ``when`` accepts returns."""
    fired: list[bool] = []
    original = getattr(cls, method)

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if not fired and when(self, args):
            fired.append(True)
            then()
        return result

    monkeypatch.setattr(cls, method, wrapped)
    return fired


def _child_named(name: str) -> Callable[[Any, tuple[Any, ...]], bool]:
    return lambda self, args: bool(args) and args[0] == name


@pytest.mark.parametrize("op", ["put", "put_if_none_match", "put_if_match", "get", "head", "delete", "list"])
def test_folder_swapped_after_it_was_resolved(
    mode: str, scene: tuple[Path, Path, Any], monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    root, outside, store = scene
    etag = store.put("d/x", b"inside").etag
    store.put("d/y", b"inside too")
    before = _tree(outside)
    folder_cls = local_dirs.FdDir if mode == "fds" else local_dirs.PathDir
    fired = _after_first(monkeypatch, folder_cls, "child", _child_named("d"), lambda: _swap(root, "d", outside))
    outcome: Any
    try:
        if op == "put":
            outcome = store.put("d/x", b"new")
        elif op == "put_if_none_match":
            outcome = store.put("d/k2", b"new", if_none_match=True)
        elif op == "put_if_match":
            outcome = store.put("d/x", b"new", if_match=etag)
        elif op == "get":
            outcome = store.get("d/x")
        elif op == "head":
            outcome = store.head("d/x").size
        elif op == "delete":
            outcome = store.delete("d/x")
        else:
            outcome = [(i.key, i.size) for i in store.list("d/")]
    except StorageError as exc:
        outcome = exc
    assert fired, "the swap did not happen"
    escapes = _escapes(before, _tree(outside))
    leaked = outcome in (SECRET, SECRET_SIZE) or (isinstance(outcome, list) and any(s == SECRET_SIZE for _, s in outcome))
    if mode == "paths":  # check-then-act, the fallback's stated limit: reads and deletes are fooled
        if op.startswith("put"):  # ... writes re-check the folder just before the rename, which catches this one
            assert escapes == {"written": [], "deleted": []} and isinstance(outcome, StorageError), (escapes, outcome)
        else:
            assert leaked or escapes["deleted"], (op, outcome, escapes)
        return
    assert escapes == {"written": [], "deleted": []}, escapes
    assert not leaked, outcome
    aside = root / "d.aside"  # the folder the operation held: it acted there, inside the root
    if op in ("put", "put_if_match"):
        assert (aside / "x").read_bytes() == b"new"
    elif op == "put_if_none_match":
        assert (aside / "k2").read_bytes() == b"new"
    elif op == "get":
        assert outcome == b"inside"
    elif op == "delete":
        assert not (aside / "x").exists() and (aside / "y").exists()
    elif op == "list":
        assert outcome == [("d/x", 6), ("d/y", 10)]


def test_swapped_link_is_refused_when_met(scene: tuple[Path, Path, Any]) -> None:
    """A link present when the operation resolves its folder is not followed out of the root."""
    root, outside, store = scene
    store.put("d/x", b"inside")
    before = _tree(outside)
    _swap(root, "d", outside)
    for call in (lambda: store.put("d/k0", b"w"), lambda: store.get("d/k0"), lambda: store.head("d/secret-0"),
                 lambda: store.delete("d/k1"), lambda: store.delete_many(["d/k2", "d/k3"]), lambda: store.exists("d/x")):
        with pytest.raises(InvalidKey):
            call()
    assert [i.key for i in store.list()] == ["d.aside/x"]
    assert list(store.list("d/")) == []
    assert _escapes(before, _tree(outside)) == {"written": [], "deleted": []}


def test_internal_folder_swapped_for_a_link(scene: tuple[Path, Path, Any]) -> None:
    root, outside, store = scene
    store.put("a", b"1")
    before = _tree(outside)
    (root / INTERNAL).rename(root / "internal.aside")
    (root / INTERNAL).symlink_to(outside, target_is_directory=True)
    held = store.put("b", b"2")  # the folders this handle holds are the real ones
    assert held.size == 1 and (root / "b").read_bytes() == b"2"
    fresh = nubes.storage.open(f"file://{root}")
    with pytest.raises(StorageError, match="not a plain folder"):
        fresh.put("c", b"3")
    assert fresh.get("a") == b"1"
    assert _escapes(before, _tree(outside)) == {"written": [], "deleted": []}


# -- the race ----------------------------------------------------------------------------------
_ATTACKER = textwrap.dedent(
    """
    import os, random, sys, time
    root, outside, seconds, ready = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    folders = ["d0", "d1", "d0/sub", "d1/sub"]
    internal = [".nubes-internal/tmp", ".nubes-internal/locks", ".nubes-internal/meta", ".nubes-internal"]
    rng = random.Random(7)
    swaps = 0
    open(ready, "w").close()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        target = rng.choice(internal) if rng.random() < 0.2 else rng.choice(folders)
        path = os.path.join(root, target)
        aside = path + ".aside"
        try:
            os.rename(path, aside)
        except OSError:
            continue
        try:
            os.symlink(os.path.join(outside, "tmp") if "internal" in target else outside, path)
            swaps += 1
            time.sleep(rng.choice([0, 0, 0.0005, 0.002]))  # the link stays a moment
            os.unlink(path)
        except OSError:
            pass
        try:
            os.rename(aside, path)
        except OSError:
            pass
    print(swaps)
    """
)


@pytest.fixture
def attacker(tmp_path: Path) -> Iterator[Callable[[Path, Path, float], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(root: Path, outside: Path, seconds: float) -> subprocess.Popen[str]:
        ready = tmp_path / f"attacker-ready-{len(started)}"
        child = subprocess.Popen(
            [sys.executable, "-c", _ATTACKER, str(root), str(outside), str(seconds), str(ready)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        started.append(child)
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.005)
        return child

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
        child.communicate()


def _key(rng: random.Random) -> str:
    return f"{rng.choice(['d0', 'd1'])}/{rng.choice(['', 'sub/'])}{rng.choice(['k', 'secret-'])}{rng.randrange(4)}"


def _work(root: Path, seed: int, deadline: float, counts: Counter[str], problems: list[str], lock: threading.Lock) -> None:
    """One worker: random operations on keys whose names also exist outside, every result checked."""
    rng = random.Random(seed)
    store: Any = None
    local: Counter[str] = Counter()
    n = 0
    while time.monotonic() < deadline:
        if n % 40 == 0:
            store = nubes.storage.open(f"file://{root}")  # fresh handles resolve nubes' folders again
        n += 1
        op = rng.choice(["put", "put_inm", "put_im", "get", "range", "open", "head", "exists", "list", "delete", "delete_many"])
        key = _key(rng)
        data = b"WORKER" * rng.randrange(10, 60)
        local[f"{op} attempted"] += 1
        try:
            seen: list[Any] = []
            if op == "put":
                store.put(key, data)
            elif op == "put_inm":
                store.put(key, data, if_none_match=True)
            elif op == "put_im":
                store.put(key, data, if_match=store.head(key).etag)
            elif op == "get":
                seen.append(store.get(key))
            elif op == "range":
                seen.append(store.get_range(key, 0, 6))
            elif op == "open":
                with store.open(key) as f:
                    seen.append(f.read())
            elif op == "head":
                seen.append(store.head(key).size)
            elif op == "exists":
                store.exists(key)
            elif op == "list":
                seen += [i.size for i in store.list(rng.choice(["", "d0/", "d1/sub/", "d0/s"]))]
            elif op == "delete":
                store.delete(key)
            else:
                store.delete_many([key, _key(rng)])
            local[f"{op} succeeded"] += 1
            for value in seen:
                if value == SECRET_SIZE or (isinstance(value, bytes) and value.startswith(SECRET[:6])):
                    local[f"{op} read outside"] += 1
                    with lock:
                        problems.append(f"{op} {key!r} returned data from outside the root")
        except StorageError as exc:
            local[f"{op} refused: {type(exc).__name__}"] += 1
        except Exception as exc:  # anything else is a bug: nubes raises only its storage errors
            with lock:
                problems.append(f"{op} {key!r} raised {type(exc).__name__}: {exc}")
    with lock:
        counts.update(local)


@pytest.mark.parametrize("profile", ["linux", "sidecars+lockfile"])
def test_concurrent_swaps_never_escape_the_root(
    tmp_path: Path, attacker: Callable[[Path, Path, float], subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch, profile: str
) -> None:
    if not local_dirs.DIR_FDS:
        pytest.skip("race-free confinement needs directory descriptors (not on this platform)")
    if profile != "linux":
        monkeypatch.setattr(local_meta, "HAS_XATTR", False)
        monkeypatch.setattr(local_lock, "KIND", "lockfile")
    outside = _outside(tmp_path)
    root = tmp_path / "root"
    seed_store = nubes.storage.open(f"file://{root}")
    for folder in ("d0", "d1", "d0/sub", "d1/sub"):
        seed_store.put(f"{folder}/k0", b"WORKER seed")
    before = _tree(outside)
    seconds = 3.0
    child = attacker(root, outside, seconds + 0.5)
    counts: Counter[str] = Counter()
    problems: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    workers = [threading.Thread(target=_work, args=(root, i, deadline, counts, problems, lock)) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out, err = child.communicate(timeout=60)
    swaps = int(out.strip() or 0)
    escapes = _escapes(before, _tree(outside))
    attempted = sum(v for k, v in counts.items() if k.endswith("attempted"))
    writes = sum(v for k, v in counts.items() if k.startswith("put") and k.endswith("attempted"))
    print(f"\n[{profile}] {swaps} swaps; {attempted} operations ({writes} writes); written outside: "
          f"{len(escapes['written'])}, deleted outside: {len(escapes['deleted'])}, read/listed outside: "
          f"{sum(v for k, v in counts.items() if k.endswith('read outside'))}")
    for name, count in sorted(counts.items()):
        print(f"  {name}: {count}")
    assert swaps > 100, f"the attacker barely ran ({swaps} swaps): {err}"
    assert attempted > 200 and counts["put succeeded"] > 0 and counts["get succeeded"] > 0, counts
    assert sum(v for k, v in counts.items() if "refused: InvalidKey" in k) > 0, "no operation ever met a swapped link"
    assert escapes == {"written": [], "deleted": []}, escapes
    assert problems == [], problems[:10]


def test_the_attacker_makes_a_naive_writer_escape(
    tmp_path: Path, attacker: Callable[[Path, Path, float], subprocess.Popen[str]]
) -> None:
    """Control: writing by path (what file:// did before) under the same attacker lands outside."""
    outside = _outside(tmp_path)
    root = tmp_path / "root"
    for folder in ("d0", "d1", "d0/sub", "d1/sub"):
        (root / folder).mkdir(parents=True)
    before = _tree(outside)
    attacker(root, outside, 5.0)
    deadline = time.monotonic() + 5.0
    tries = 0
    while time.monotonic() < deadline and not _escapes(before, _tree(outside))["written"]:
        for _ in range(200):
            tries += 1
            folder = root / "d0"
            if folder.is_dir() and not folder.is_symlink():  # the check the old code made, then the act
                tmp = root / "naive.part"
                tmp.write_bytes(b"naive")
                with contextlib.suppress(OSError):
                    os.replace(tmp, folder / "naive")
    assert _escapes(before, _tree(outside))["written"], f"no naive write escaped in {tries} tries: the attacker is not effective"
