"""``build()``: from an APP spec to deployable artifacts and ``manifest.json`` for one cloud.

Steps (each a progress step): load the app and check it with the cloud's packaging, find its home
store, derive each route's footprint, resolve the distributions for the target platform, stage
them with nubes and the app, slim, compile bytecode with the target interpreter, plan the
functions (a split by footprint when one does not fit), write each archive reproducibly, check
that each function imports in a clean interpreter, and write the manifest.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from packaging.utils import canonicalize_name

from nubes.deploy.build import archive, bytecode, config, derive, stage
from nubes.deploy.build.appfiles import AppSource, locate
from nubes.deploy.build.check import import_check
from nubes.deploy.build.errors import BuildError
from nubes.deploy.build.manifest import artifact_entry, write_manifest
from nubes.deploy.build.plan import Function, Unit, plan
from nubes.deploy.build.resolve import Resolution, Target, download, parse_requirements

Tick = Callable[[int], None]
OWN = ("nubes", "app", "entry")


class Progress(Protocol):
    """Where the build reports its long steps (the CLI draws them with rich)."""

    def step(self, title: str, total: int | None = None) -> contextlib.AbstractContextManager[Tick]: ...


class _Quiet:
    @contextlib.contextmanager
    def step(self, title: str, total: int | None = None) -> Iterator[Tick]:
        yield lambda n: None


@dataclass
class BuildOptions:
    app: str
    cloud: str
    arch: str | None = None
    python: str = "3.12"
    out: Path | None = None
    format: str | None = None
    storage: str | None = None
    bytecode: bool = True
    split: bool = True
    check: bool = True
    keep_stage: bool = False
    limit: int | None = None  # override the cloud's unzipped limit (tests of the split use it)
    wheelhouse: Path | None = None  # keep the resolved wheels here (default: removed with the staging tree)


@dataclass
class BuildResult:
    manifest: dict[str, Any]
    manifest_path: Path
    functions: list[Function]
    excluded: list[tuple[int, Unit]]
    sizes: dict[str, int]  # bytes per owner in the staged tree
    versions: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)


def inputs_digest(opts: BuildOptions, arch: str, fmt: str, store: str, entry: dict[str, str],
                  app_files: list[tuple[Path, str]], cfg: Any) -> str:
    """A digest of everything a build depends on that is on this machine: the options, the entry files,
    the app's files, nubes' own files and the build settings. Two builds with the same digest make
    the same artifact (the wheels are pinned by the resolution), so ``nubes deploy`` reuses it."""
    import hashlib

    from nubes.deploy.build.stage import nubes_files

    h = hashlib.sha256()
    h.update(repr((opts.cloud, arch, fmt, opts.python, store, opts.bytecode, opts.split, opts.limit)).encode())
    h.update(repr((cfg.exclude, cfg.include, cfg.keep_source, cfg.requirements)).encode())
    for name in sorted(entry):
        h.update(name.encode() + b"\0" + entry[name].encode())
    for path, rel in sorted(app_files, key=lambda f: f[1]) + nubes_files("nubes"):
        h.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@dataclass
class Setup:
    """What a build reads before its first long step: the checked options, the located app, its config,
    home store and entry files, the inputs digest and the output folder (:func:`prepare`)."""

    pkg: Any
    arch: str
    fmt: str
    source: AppSource
    cfg: config.BuildConfig
    store: str
    entry: dict[str, str]
    inputs: str
    out: Path


def prepare(opts: BuildOptions, app: Any | None = None) -> Setup:
    """Check ``opts`` against the cloud's packaging and read everything the build depends on (no build).

    ``app`` is the App already loaded from ``opts.app`` (``nubes deploy`` has it), so its file is not
    executed again; without it the spec is loaded here."""
    pkg = packaging_for(opts.cloud)
    arch = opts.arch or pkg.architectures[0]
    fmt = opts.format or pkg.formats[0]
    if arch not in pkg.architectures:
        raise BuildError(f"--arch {arch}: {opts.cloud} offers {', '.join(pkg.architectures)}")
    if fmt not in pkg.formats:
        raise BuildError(f"--format {fmt}: {opts.cloud} takes {', '.join(pkg.formats)}")
    if opts.python not in pkg.pythons:
        raise BuildError(f"--python {opts.python}: {opts.cloud} runs Python {', '.join(pkg.pythons)}")
    source = locate(opts.app, app)
    cfg = config.load(source.root, opts.cloud, pkg.settings_keys)
    pkg.check_app(source.app, cfg.deploy)
    store = config.home_store(source.app, cfg, opts.cloud, pkg.store_schemes, opts.storage)
    entry = pkg.entry_files(source.ref, storage=store, settings=cfg.deploy, arch=arch, exclude=cfg.exclude)
    source.check_names(set(entry))
    inputs = inputs_digest(opts, arch, fmt, store, entry, source.files(cfg.include, pkg.app_dir), cfg)
    out = (opts.out or Path("build") / f"{_slug(source.app.name)}-{opts.cloud}").resolve()
    return Setup(pkg, arch, fmt, source, cfg, store, entry, inputs, out)


def inputs_of(opts: BuildOptions, app: Any | None = None) -> tuple[str, Path]:
    """The inputs digest a build with ``opts`` would record, and the folder it would write (no build)."""
    setup = prepare(opts, app)
    return setup.inputs, setup.out


def packaging_for(cloud: str) -> Any:
    """The cloud's :class:`~nubes.adapters.base.Packaging`: ``CLOUD.packaging`` when the cloud object
    has one, else its package's ``packaging`` module (the cloud is named, never compared)."""
    import importlib

    from nubes.core import clouds

    if not clouds.is_cloud(cloud):
        raise BuildError(f"--cloud {cloud!r}: use one of {', '.join(clouds.names())}")
    try:
        found = getattr(clouds.get(cloud), "packaging", None)
    except ImportError:
        found = None
    if found is not None:
        return found
    try:
        return importlib.import_module(f"nubes.adapters.{cloud}.packaging").PACKAGING
    except ImportError as exc:
        raise BuildError(f"cloud {cloud!r} has no packaging ({exc})") from None


def build(opts: BuildOptions, progress: Progress | None = None, *, setup: Setup | None = None) -> BuildResult:
    """Build ``opts``; ``setup`` is :func:`prepare`'s answer for the same options when the caller has it."""
    steps = progress or _Quiet()
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    with steps.step("Loading the app"):
        setup = setup or prepare(opts)
    pkg, arch, fmt, source, cfg, store, entry, inputs = (setup.pkg, setup.arch, setup.fmt, setup.source, setup.cfg, setup.store,
                                                         setup.entry, setup.inputs)
    app = source.app
    target = Target(opts.python, arch, tuple(pkg.platform_tags(arch, opts.python)))
    with steps.step("Deriving each route's footprint"):
        entry_text = "\n".join(entry[name] for name in sorted(entry) if name.endswith(".py"))
        from nubes.core import clouds

        base_need, units, _ = derive.analyse(app, source.module, entry_text, derive.app_stores(app, store), source.scope,
                                             clouds.get(opts.cloud))
        for module, where in base_need.missing.items():
            raise BuildError(f"the app imports {module!r} ({where}), which is not installed on this machine; install it "
                             "and list it in requirements.txt beside the app")
        units = [u for u in units if not (u.kind == "http" and _excluded(u, cfg.exclude))]
        _apply_declarations(units, cfg)
        app_reqs = [r for r in parse_requirements(cfg.requirements, cfg.requirements_source or "requirements")
                    if r.marker is None or r.marker.evaluate(target.markers())]
        roots, module_dist = _roots(base_need.resolved(), units, app_reqs, pkg.runtime_requirements)
    timings["analyse_s"] = time.perf_counter() - clock

    out = setup.out
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".nubes-build"
    shutil.rmtree(work, ignore_errors=True)
    clock = time.perf_counter()
    with steps.step(f"Resolving for CPython {opts.python} {target.tags[0]}"):
        resolution = download(roots, target, opts.wheelhouse or work / "wheels")
    timings["resolve_s"] = time.perf_counter() - clock
    base_dists = resolution.closure([module_dist[m] for m in base_need.resolved()] + list(pkg.runtime_requirements)
                                    + [r.name for r in app_reqs])
    for unit in units:
        unit.dists = resolution.closure([module_dist[m] for m in unit.modules] + unit.declared) - base_dists
    every = set(base_dists).union(*(u.dists for u in units))

    clock = time.perf_counter()
    tree = stage.Tree(work / "stage")
    if pkg.vendor_packages:
        with steps.step("Staging wheels", total=len(every)) as tick:
            for name in sorted(every):
                stage.unpack(tree, resolution.wheels[name], pkg.packages_dir)
                tick(1)
    stage.copy_files(tree, stage.nubes_files(pkg.app_dir), "nubes")
    stage.copy_files(tree, source.files(cfg.include, pkg.app_dir), "app")
    for name, text in sorted(entry.items()):
        tree.add(name, text.encode("utf-8"), "entry")
    if not pkg.vendor_packages:
        tree.add("requirements.txt", _pinned(resolution, every).encode("utf-8"), "entry")
    with steps.step("Slimming", total=stage.strip_count(tree)) as tick:
        stage.slim(tree, arch, tick)
    timings["stage_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    counts = {"compiled": 0, "sourceless": 0, "failed": 0}
    exe = bytecode.find_interpreter(opts.python)
    if opts.bytecode:
        if exe is None:
            raise BuildError(f"no Python {opts.python} interpreter here to compile bytecode for the target; install "
                             f"python{opts.python}, point NUBES_BUILD_PYTHON at one, or pass --no-bytecode "
                             "(cold starts are then slower: see bench/build.py)")
        with steps.step(f"Compiling bytecode with Python {opts.python}"):
            counts = bytecode.compile_tree(tree, exe, opts.python, pkg.task_root, keep_source=set(cfg.keep_source))
    timings["bytecode_s"] = time.perf_counter() - clock

    sizes = tree.sizes()
    if not pkg.vendor_packages:
        sizes.update({name: resolution.wheels[name].unpacked_bytes for name in every})
    own = sum(sizes.get(o, 0) for o in OWN)

    def size_of(dists: set[str]) -> int:
        return own + sum(sizes.get(d, 0) for d in dists)

    limit = opts.limit if opts.limit is not None else pkg.fit(fmt, 0, 0).limit
    try:
        functions, excluded = plan(app.name, units, set(base_dists), size_of, limit if pkg.vendor_packages else None,
                                   split=opts.split and fmt == "zip", label=_labeller(module_dist, base_dists, sizes))
    except BuildError as exc:
        other = [f for f in pkg.formats if f != fmt]
        hint = f"; build with --format {other[0]} instead" if other else ""
        raise BuildError(f"{exc}{hint}", sizes=exc.sizes) from None
    clock = time.perf_counter()
    entries = []
    deflated = archive.Deflated(tree.root)
    for fn in functions:
        owners = (fn.dists if pkg.vendor_packages else set()) | set(OWN)
        files = tree.files(owners)
        name = f"{_slug(app.name)}-{opts.cloud}" if len(functions) == 1 else fn.name
        if fmt == "image":
            dest = out / f"{name}-image.tar.gz"
            extra = pkg.image_files(opts.python, arch, context_root="task")
            with steps.step(f"Writing {dest.name}", total=len(files)) as tick:
                archive.write_tar_gz(dest, tree.root, [(f"task/{rel}", rel) for rel in files], extra, tick=tick)
        else:
            dest = out / f"{name}.zip"
            with steps.step(f"Compressing for {dest.name}", total=len(files)) as tick:
                deflated.prepare(files, tick)
            archive.write_zip(dest, deflated, [(rel, rel) for rel in files])
        unzipped = sum((tree.root / rel).stat().st_size for rel in files)
        fit = pkg.fit(fmt, unzipped, dest.stat().st_size)
        if not fit.fits:
            raise BuildError(f"{dest.name}: {'; '.join(fit.notes)}; build with --format image" if "image" in pkg.formats
                             else f"{dest.name}: {'; '.join(fit.notes)}")
        if opts.check and exe is not None and pkg.vendor_packages:
            with steps.step(f"Checking that {fn.name} imports in a clean Python {opts.python}"):
                import_check(dest, fmt, exe, pkg, entry, fn, store, arch)
        versions = {n: resolution.wheels[n].version for n in fn.dists}
        entries.append(artifact_entry(fn, dest, fmt, unzipped, fit, versions, sizes, resolution))
    timings["archive_s"] = time.perf_counter() - clock
    manifest = write_manifest(out, inputs=inputs, app=app, ref=source.ref, cloud=opts.cloud, fmt=fmt, target=target, store=store,
                              entries=entries, functions=functions, units=units, slimmed=tree.slimmed, bytecode=counts,
                              notes=tree.notes + _notes(counts, opts) + _excluded_notes(excluded, limit),
                              base=sorted(base_dists), resolution=resolution, excluded=excluded,
                              vendored=pkg.vendor_packages)
    if not opts.keep_stage:
        shutil.rmtree(work, ignore_errors=True)
    return BuildResult(manifest, out / "manifest.json", functions, excluded, sizes,
                       {n: w.version for n, w in resolution.wheels.items()}, timings)


def _excluded(unit: Unit, patterns: list[str]) -> bool:
    paths = {route.split(" ", 1)[1] for route in unit.routes}
    return bool(patterns) and all(any(fnmatch.fnmatchcase(p, pat) for pat in patterns) for p in paths)


def _apply_declarations(units: list[Unit], cfg: config.BuildConfig) -> None:
    for key, dists in cfg.footprints.items():
        matched = [u for u in units if key == u.key or key in u.routes]
        if not matched:
            known = ", ".join(sorted(r for u in units for r in u.routes)[:12])
            raise BuildError(f"{cfg.path}: [build.footprints] {key!r} names no route; routes: {known}")
        for unit in matched:
            unit.declared += dists
    for unit in units:
        for module, where in unit.missing.items():
            raise BuildError(f"{unit.key} imports {module!r} ({where}), which is not installed on this machine; install it "
                             "and list it in requirements.txt beside the app")
        if unit.dynamic and not unit.declared:
            raise BuildError(f"{unit.key} imports a module by a computed name ({', '.join(unit.dynamic)}), so its footprint "
                             f"cannot be derived; declare what it needs in nubes.toml: [build.footprints] "
                             f"{unit.routes[0]!r} = [\"distribution\", ...]")


def _roots(base: dict[str, str], units: list[Unit], app_reqs: list[Any], runtime: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """Requirement strings to resolve and the distribution of every module the code imports."""
    specifiers = derive.declared_specifiers()
    module_dist: dict[str, str] = {}
    needed: set[str] = set()
    for module, via in [*base.items(), *((m, v) for u in units for m, v in u.modules.items())]:
        dist = derive.host_distribution(module)
        if dist is None:
            raise BuildError(f"{via} imports {module!r}, which no installed distribution provides; install it and list it "
                             "in requirements.txt beside the app")
        module_dist[module] = canonicalize_name(dist)
        needed.add(canonicalize_name(dist))
    for unit in units:
        needed.update(canonicalize_name(d) for d in unit.declared)
    needed.update(canonicalize_name(r) for r in runtime)
    app_names = {canonicalize_name(r.name) for r in app_reqs}
    roots = [str(r) for r in app_reqs]
    roots += [f"{name}{specifiers.get(name, '')}" for name in sorted(needed - app_names)]
    return roots, module_dist


def _pinned(resolution: Resolution, names: set[str]) -> str:
    lines = [f"{resolution.wheels[n].project}=={resolution.wheels[n].version}" for n in sorted(names)]
    return "# Written by `nubes build`: exact versions resolved for the target platform.\n" + "\n".join(lines) + "\n"


def _notes(counts: dict[str, int], opts: BuildOptions) -> list[str]:
    notes = []
    if not opts.bytecode:
        notes.append("no bytecode (--no-bytecode): every cold start compiles the modules it imports")
    if counts.get("failed"):
        notes.append(f"{counts['failed']} .py files did not compile for the target and are kept as source")
    return notes


def _labeller(module_dist: dict[str, str], base: set[str], sizes: dict[str, int]) -> Callable[[Function], str | None]:
    """Name a split function after the heaviest distribution its routes import themselves."""

    def label(fn: Function) -> str | None:
        direct = {module_dist[m] for u in fn.units for m in u.modules if m in module_dist} - base
        pool = direct or (fn.dists - base)
        return max(sorted(pool), key=lambda d: sizes.get(d, 0)) if pool else None

    return label


def _excluded_notes(excluded: list[tuple[int, Unit]], limit: int | None) -> list[str]:
    return [f"built-in route {u.key} needs {s / 1e6:.1f} MB ({', '.join(sorted(u.dists)[:5])}), over the {(limit or 0) / 1e6:.1f} MB "
            "limit: left out of the zip functions (a call answers 500, the missing package named in the log); build "
            "--format image to serve it" for s, u in excluded]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or "app"


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False) + "\n"


__all__ = ["AppSource", "BuildOptions", "BuildResult", "Progress", "build"]
