"""Resolving an app's distributions for the target platform (not the build machine's).

``pip download --only-binary=:all: --implementation cp --python-version X.Y --platform TAG ...``
fetches the wheels a function needs for the cloud's operating system and CPU; each wheel's
``METADATA`` then gives the dependency graph, evaluated with the target's environment markers, so
a route's footprint is the closure of the distributions its code imports.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from nubes.deploy.build.errors import BuildError

PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Target:
    """The interpreter and machine a function runs on."""

    python: str  # "3.12"
    arch: str  # "x86_64" | "arm64"
    tags: tuple[str, ...]  # wheel platform tags, most preferred first

    def markers(self, extra: str = "") -> dict[str, str]:
        machine = "aarch64" if self.arch == "arm64" else self.arch
        return {
            "python_version": self.python, "python_full_version": f"{self.python}.0", "implementation_name": "cpython",
            "implementation_version": f"{self.python}.0", "platform_python_implementation": "CPython",
            "platform_machine": machine, "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix",
            "platform_release": "", "platform_version": "", "extra": extra,
        }


@dataclass(frozen=True)
class Wheel:
    """One resolved wheel: its distribution, the modules it provides and what it requires."""

    path: Path
    name: str  # canonical distribution name
    project: str  # the name as the project spells it
    version: str
    requires: tuple[str, ...]
    modules: tuple[str, ...]  # dotted module prefixes it installs ("duckdb", "google.cloud.storage")
    unpacked_bytes: int


@dataclass
class Resolution:
    """The wheels resolved for a target and the dependency graph between them."""

    target: Target
    wheels: dict[str, Wheel] = field(default_factory=dict)

    def closure(self, names: Iterable[str]) -> set[str]:
        """Canonical names of ``names`` and everything they require on the target (extras followed)."""
        seen: set[str] = set()
        todo: list[tuple[str, frozenset[str]]] = [(canonicalize_name(n), frozenset()) for n in names]
        done_extras: set[tuple[str, frozenset[str]]] = set()
        while todo:
            name, extras = todo.pop()
            if (name, extras) in done_extras:
                continue
            done_extras.add((name, extras))
            wheel = self.wheels.get(name)
            if wheel is None:
                raise BuildError(f"{name} is required but was not resolved for the target; "
                                 "declare it in requirements.txt beside the app")
            seen.add(name)
            for line in wheel.requires:
                req = Requirement(line)
                if req.marker is not None and not any(req.marker.evaluate(self.target.markers(e)) for e in ("", *extras)):
                    continue
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
        return seen

    def module_owner(self, module: str) -> str | None:
        """The distribution providing ``module`` (longest matching prefix), or None."""
        best: tuple[int, str] | None = None
        for wheel in self.wheels.values():
            for prefix in wheel.modules:
                if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), wheel.name)
        return best[1] if best else None


_MEMO: dict[tuple[tuple[str, ...], Target, str], Resolution] = {}


def download(roots: list[str], target: Target, dest: Path, *, log: list[str] | None = None) -> Resolution:
    """Resolve ``roots`` (requirement strings) for ``target`` into wheels under ``dest``.

    Within one process the same roots, target and folder give the same resolution without asking
    the index again, while its wheels are still there (repeated builds: tests, bench/build.py)."""
    key = (tuple(sorted(set(roots))), target, str(dest.resolve()))
    known = _MEMO.get(key)
    if known is not None and all(w.path.is_file() for w in known.wheels.values()):
        return known
    dest.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="resolve-", dir=dest))
    cmd = [sys.executable, "-m", "pip", "download", "--dest", str(scratch), "--only-binary=:all:", "--implementation", "cp",
           "--python-version", target.python, "--progress-bar", "off", "--disable-pip-version-check"]
    for tag in target.tags:
        cmd += ["--platform", tag]
    cmd += sorted(set(roots))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False,
                              env={**os.environ, "PIP_NO_INPUT": "1"})
    except subprocess.TimeoutExpired:
        shutil.rmtree(scratch, ignore_errors=True)
        raise BuildError(f"pip download did not finish in {PIP_TIMEOUT_S} s; check the package index") from None
    if log is not None:
        log.append(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise BuildError(_pip_failure(proc.stderr or proc.stdout, target))
    resolution = Resolution(target)
    for path in sorted(scratch.glob("*.whl")):
        final = dest / path.name
        os.replace(path, final)
        wheel = read_wheel(final)
        resolution.wheels[wheel.name] = wheel
    shutil.rmtree(scratch, ignore_errors=True)
    _MEMO[key] = resolution
    return resolution


def _pip_failure(text: str, target: Target) -> str:
    missing = re.search(r"No matching distribution found for (\S+)", text)
    where = f"CPython {target.python} on {target.tags[0]}"
    if missing:
        return (f"no wheel of {missing.group(1)} for {where}: nubes builds without compiling, so pick a version that "
                f"publishes wheels for this platform (or another --python / --arch)")
    tail = "\n".join(line for line in text.strip().splitlines()[-6:])
    return f"pip could not resolve the app's distributions for {where}:\n{tail}"


def read_wheel(path: Path) -> Wheel:
    """Name, version, requirements, modules and unpacked size of the wheel at ``path``."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        meta_name = next((n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
        if meta_name is None:
            raise BuildError(f"{path.name} has no METADATA; it is not a valid wheel")
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode("utf-8", "replace"))
        size = sum(i.file_size for i in infos)
    project = str(meta["Name"])
    return Wheel(path, canonicalize_name(project), project, str(meta["Version"]), tuple(meta.get_all("Requires-Dist") or ()),
                 tuple(sorted(_modules(names))), size)


def _modules(names: list[str]) -> set[str]:
    """Dotted module prefixes a wheel installs (namespace packages resolved one level deeper)."""
    files = [f for f in (installed_path(n) for n in names) if f is not None]
    dirs_with_init = {str(PurePosixPath(f).parent) for f in files if PurePosixPath(f).name == "__init__.py"}
    found: set[str] = set()
    for f in files:
        parts = PurePosixPath(f).parts
        if not parts or parts[0].endswith((".dist-info", ".libs")):
            continue
        if len(parts) == 1:
            stem = parts[0].split(".", 1)[0]
            if parts[0].endswith((".py", ".so", ".pyd")) and stem.isidentifier():
                found.add(stem)
            continue
        # walk down through namespace directories (no __init__.py) to the first real package or module
        for depth in range(1, len(parts)):
            package = "/".join(parts[:depth])
            if package in dirs_with_init:
                found.add(package.replace("/", "."))
                break
            if depth == len(parts) - 1:  # a module file inside namespace directories
                stem = parts[-1].split(".", 1)[0]
                if stem.isidentifier():
                    found.add(".".join([*parts[:-1], stem]))
    return {m for m in found if all(p.isidentifier() for p in m.split("."))}


def installed_path(name: str) -> str | None:
    """Where a wheel member is installed relative to site-packages (None: not installed, e.g. scripts)."""
    first, _, rest = name.partition("/")
    if first.endswith(".data"):
        kind, _, inner = rest.partition("/")
        return inner if kind in ("purelib", "platlib") and inner else None
    return name if not name.endswith("/") else None


def parse_requirements(lines: Iterable[str], source: str) -> list[Requirement]:
    """Requirement lines (a requirements.txt or ``[build] requirements``); options are refused with a fix."""
    out = []
    for number, raw in enumerate(lines, 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise BuildError(f"{source}:{number}: {line!r}: pip options are not supported here; list requirements only "
                             "(the build resolves them for the target platform itself)")
        try:
            out.append(Requirement(line))
        except InvalidRequirement as exc:
            raise BuildError(f"{source}:{number}: {line!r} is not a requirement: {exc}") from None
    return out


def applies(req: Requirement, target: Target) -> bool:
    """Whether a requirement's marker holds on the target."""
    return req.marker is None or Marker(str(req.marker)).evaluate(target.markers())
