"""``manifest.json``: what was built, for whom, how big, and which route runs where.

Top level (the issue's fields): ``cloud, format, path, python, arch, unzipped_bytes, zipped_bytes,
sha256, packages[{name, version, unzipped_bytes}]`` describe the artifact; a split build has one
entry per function under ``functions`` and the top level then sums them (``path`` is the output
folder, ``sha256`` the digest of the functions' names and digests). ``routing`` maps API route keys
to functions; ``footprints`` says what each route needs and which code imports it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from nubes.adapters.base import Fit
from nubes.deploy.build.plan import Function, Unit
from nubes.deploy.build.resolve import Resolution, Target

OWN = ("nubes", "app", "entry")


def artifact_entry(fn: Function, dest: Path, fmt: str, unzipped: int, fit: Fit, versions: dict[str, str],
                   sizes: dict[str, int], resolution: Resolution) -> dict[str, Any]:
    packages: list[dict[str, Any]] = [{"name": resolution.wheels[n].project, "version": versions[n], "unzipped_bytes": sizes.get(n, 0)}
                for n in sorted(fn.dists)]
    packages += [{"name": o, "version": "", "unzipped_bytes": sizes.get(o, 0)} for o in OWN if sizes.get(o)]
    packages.sort(key=lambda p: (-p["unzipped_bytes"], p["name"]))
    return {
        "name": fn.name, "format": fmt, "path": str(dest), "unzipped_bytes": unzipped, "zipped_bytes": dest.stat().st_size,
        "sha256": _sha256(dest), "fits": fit.fits, "limit_bytes": fit.limit, "notes": list(fit.notes), **fit.facts,
        "routes": [r for u in fn.units if u.kind == "http" for r in u.routes],
        "events": [r for u in fn.units if u.kind != "http" for r in u.routes],
        "packages": packages,
    }


def write_manifest(out: Path, *, inputs: str, app: Any, ref: str, cloud: str, fmt: str, target: Target, store: str,
                   entries: list[dict[str, Any]], functions: list[Function], units: list[Unit], slimmed: dict[str, int],
                   bytecode: dict[str, int], notes: list[str], base: list[str], resolution: Resolution,
                   excluded: list[tuple[int, Unit]], vendored: bool = True) -> dict[str, Any]:
    from nubes import __version__ as nubes_version

    single = len(entries) == 1
    top = dict(entries[0]) if single else {
        "path": str(out),
        "unzipped_bytes": sum(e["unzipped_bytes"] for e in entries),
        "zipped_bytes": sum(e["zipped_bytes"] for e in entries),
        "sha256": hashlib.sha256(json.dumps([[e["name"], e["sha256"]] for e in entries]).encode()).hexdigest(),
        "fits": all(e["fits"] for e in entries),
        "packages": _union(entries),
    }
    routing = [{"route": r, "function": fn.name} for fn in functions for u in fn.units for r in u.api_routes]
    routing.append({"route": "$default", "function": functions[0].name})
    manifest = {
        "cloud": cloud, "format": fmt, "path": top["path"], "python": target.python, "arch": target.arch,
        "unzipped_bytes": top["unzipped_bytes"], "zipped_bytes": top["zipped_bytes"], "sha256": top["sha256"],
        "packages": top["packages"], "fits": top["fits"],
        "inputs_sha256": inputs,  # what was built from (see engine.inputs_digest): equal inputs, equal artifact
        "app": app.name, "app_ref": ref, "store": store, "nubes": nubes_version, "platform_tags": list(target.tags),
        "split": not single,
        "vendored": vendored,  # False: packages come from requirements.txt, installed by the cloud's build
        "functions": entries,
        "routing": sorted(routing, key=lambda r: (r["route"] == "$default", r["route"])),
        "excluded": [{"unit": u.key, "routes": u.routes, "needs_bytes": size,
                      "packages": sorted(resolution.wheels[d].project for d in u.dists)} for size, u in excluded],
        "base_packages": [resolution.wheels[n].project for n in base],
        "footprints": [{"unit": u.key, "routes": u.routes, "packages": sorted(resolution.wheels[d].project for d in u.dists),
                        "declared": u.declared, "imports": dict(sorted(u.modules.items()))} for u in units],
        "slimmed_bytes": dict(sorted(slimmed.items())),
        "bytecode": bytecode,
        "notes": notes,
    }
    for key in ("handler", "upload", "entry", "site_packages", "targets", "runtime", "limit_bytes", "notes"):
        if single and key in top and key not in ("notes",):
            manifest.setdefault(key, top[key])
    _write_atomic(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def _union(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        for p in entry["packages"]:
            seen.setdefault(p["name"], p)
    return sorted(seen.values(), key=lambda p: (-p["unzipped_bytes"], p["name"]))


def _sha256(path: Path) -> str:
    from nubes.deploy.build.archive import sha256

    return sha256(path)


def _write_atomic(path: Path, text: str) -> None:
    from nubes.deploy.build.archive import atomic

    with atomic(path) as out:
        out.write(text.encode("utf-8"))
