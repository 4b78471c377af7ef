"""The staging tree: wheels unpacked for the target, nubes and the app copied, then slimmed.

Every file is owned by one thing (a distribution's canonical name, ``nubes``, ``app`` or ``entry``),
so sizes are reported per package and a split function takes only the owners it needs. Slimming
removes what a function never uses, each rule measured:

* ``__pycache__`` and ``.pyc`` shipped in wheels (bytecode is compiled for the target afterwards);
* ``tests/`` packages inside distributions; ``.pyi`` stubs; dist-info ``RECORD`` (hashes of files
  that slimming changes);
* symbols: ``strip --strip-unneeded`` on shared objects, except under ``*.libs/`` (auditwheel's
  vendored libraries: stripping numpy.libs breaks numpy with "ELF load command address/offset not
  page-aligned").
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import subprocess
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from nubes.deploy.build.errors import BuildError
from nubes.deploy.build.resolve import Wheel, installed_path

NUBES_EXCLUDED = ("cli", "testing")  # nubes packages a function never imports (the CLI needs typer/rich)
_ELF_MACHINES = {62: "x86_64", 183: "arm64"}
_HOST = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(), "")
STRIP_BATCH = 200

Tick = Callable[[int], None]


@dataclass
class Tree:
    """A staging folder and the owner of every file in it (POSIX paths relative to ``root``)."""

    root: Path
    owner: dict[str, str] = field(default_factory=dict)
    slimmed: dict[str, int] = field(default_factory=dict)  # rule -> bytes removed
    notes: list[str] = field(default_factory=list)

    def add(self, rel: str, data: bytes, owner: str, *, executable: bool = False) -> None:
        path = self._safe(rel)
        if rel in self.owner:
            return  # two wheels shipping one file (a namespace __init__): the first stays
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o755 if executable else 0o644)
        self.owner[rel] = owner

    def remove(self, rel: str, rule: str) -> None:
        path = self.root / rel
        self.slimmed[rule] = self.slimmed.get(rule, 0) + path.stat().st_size
        path.unlink()
        del self.owner[rel]

    def sizes(self) -> dict[str, int]:
        """Bytes on disk per owner."""
        out: dict[str, int] = {}
        for rel, who in self.owner.items():
            out[who] = out.get(who, 0) + (self.root / rel).stat().st_size
        return out

    def files(self, owners: Iterable[str] | None = None) -> list[str]:
        wanted = None if owners is None else set(owners)
        return sorted(rel for rel, who in self.owner.items() if wanted is None or who in wanted)

    def _safe(self, rel: str) -> Path:
        parts = PurePosixPath(rel).parts
        if not parts or rel.startswith("/") or ".." in parts or "\\" in rel or any(":" in p for p in parts[:1]):
            raise BuildError(f"refusing to stage {rel!r}: a path outside the artifact")
        return self.root.joinpath(*parts)


def unpack(tree: Tree, wheel: Wheel, under: str) -> None:
    """Install ``wheel`` into ``tree`` below ``under`` the way an installer lays out site-packages."""
    with zipfile.ZipFile(wheel.path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            rel = installed_path(info.filename)
            if rel is None:
                continue
            mode = (info.external_attr >> 16) & 0o777
            tree.add(_join(under, rel), zf.read(info), wheel.name, executable=bool(mode & 0o111))


def copy_files(tree: Tree, files: Iterable[tuple[Path, str]], owner: str) -> None:
    for source, rel in files:
        tree.add(rel, source.read_bytes(), owner, executable=bool(source.stat().st_mode & stat.S_IXUSR))


def nubes_files(under: str) -> list[tuple[Path, str]]:
    """nubes' own modules for a function: everything but the CLI and the test helpers."""
    import nubes

    package = Path(nubes.__file__).resolve().parent
    out = []
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if not path.is_file() or "__pycache__" in rel.parts or rel.parts[0] in NUBES_EXCLUDED:
            continue
        if path.suffix in (".py", ".typed", ".json", ".yaml", ".toml", ".txt"):
            out.append((path, _join(under, "nubes/" + rel.as_posix())))
    return out


def slim(tree: Tree, arch: str, tick: Tick | None = None) -> None:
    """Apply the slimming rules (module docstring) to distribution files only."""
    third_party = [rel for rel, who in tree.owner.items() if who not in ("nubes", "app", "entry")]
    for rel in sorted(third_party):
        parts = PurePosixPath(rel).parts
        if "__pycache__" in parts or rel.endswith(".pyc"):
            tree.remove(rel, "__pycache__ and .pyc from wheels")
        elif "tests" in parts[:-1] and parts.index("tests") >= 1 and not parts[0].endswith(".dist-info"):
            tree.remove(rel, "tests/")
        elif rel.endswith(".pyi"):
            tree.remove(rel, ".pyi stubs")
        elif parts[-1] == "RECORD" and len(parts) >= 2 and parts[-2].endswith(".dist-info"):
            tree.remove(rel, "dist-info RECORD")
    strip(tree, arch, tick)


def strip(tree: Tree, arch: str, tick: Tick | None = None) -> None:
    """``strip --strip-unneeded`` every shared object outside ``*.libs/`` built for ``arch``."""
    tool = _strip_tool(arch)
    candidates = []
    for rel, who in sorted(tree.owner.items()):
        parts = PurePosixPath(rel).parts
        if who in ("nubes", "app", "entry") or any(p.endswith(".libs") for p in parts[:-1]):
            continue
        if ".so" in parts[-1] and _elf_machine(tree.root / rel) == arch:
            candidates.append(rel)
    if not candidates:
        return
    if tool is None:
        tree.notes.append(f"no strip tool for {arch} on this machine: {len(candidates)} shared objects kept unstripped")
        return
    before = sum((tree.root / rel).stat().st_size for rel in candidates)
    for start in range(0, len(candidates), STRIP_BATCH):
        batch = candidates[start:start + STRIP_BATCH]
        proc = subprocess.run([tool, "--strip-unneeded", *[str(tree.root / rel) for rel in batch]],
                              capture_output=True, text=True, check=False, timeout=600)
        if proc.returncode != 0:
            tree.notes.append(f"strip reported: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
        if tick:
            tick(len(batch))
    after = sum((tree.root / rel).stat().st_size for rel in candidates)
    tree.slimmed["strip --strip-unneeded"] = before - after


def strip_count(tree: Tree) -> int:
    return sum(1 for rel in tree.owner if ".so" in PurePosixPath(rel).name)


def _strip_tool(arch: str) -> str | None:
    if arch == _HOST:
        return shutil.which("strip")
    return shutil.which("aarch64-linux-gnu-strip" if arch == "arm64" else "x86_64-linux-gnu-strip")


def _elf_machine(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return _ELF_MACHINES.get(machine)


def _join(under: str, rel: str) -> str:
    return f"{under.strip('/')}/{rel}" if under.strip("/") else rel
