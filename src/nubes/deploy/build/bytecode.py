"""Bytecode compiled by the target interpreter, reproducibly.

The target's ``python3.X`` compiles every module (bytecode differs between minor versions), with
``UNCHECKED_HASH`` invalidation (no source mtime in the file, no stat at import) and
``PYTHONHASHSEED=0`` (set constants are marshalled in a fixed order), file names under the cloud's
task root. Choices, measured in ``bench/build.py``:

* distributions: sourceless ``.pyc`` beside the module (the ``.py`` removed) — smaller than source
  plus ``__pycache__`` and as fast to import; tracebacks keep file names and line numbers;
* nubes and the app: the ``.py`` stays and ``__pycache__/NAME.cpython-3X.pyc`` is added, so
  tracebacks show source lines where the code is the user's to debug.

A ``.py`` the target cannot compile (Python 2 leftovers, templates) is kept as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

from nubes.deploy.build.errors import BuildError
from nubes.deploy.build.stage import Tree

COMPILE_TIMEOUT_S = 1800

# Run by the target interpreter: reads [source, pyc, display name, keep source] from stdin.
_COMPILER = r"""
import json, multiprocessing, os, py_compile, sys
from concurrent.futures import ProcessPoolExecutor

def one(job):
    src, pyc, dfile, keep = job
    try:
        py_compile.compile(src, cfile=pyc, dfile=dfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except (py_compile.PyCompileError, SyntaxError, ValueError, UnicodeDecodeError):
        return [src, False]
    os.chmod(pyc, 0o644)
    if not keep:
        os.unlink(src)
    return [src, True]

if __name__ == "__main__":
    jobs = json.load(sys.stdin)
    workers = max(1, min(2, os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(one, jobs, chunksize=64))
    json.dump(results, sys.stdout)
"""


def find_interpreter(python: str) -> str | None:
    """A ``python{X.Y}`` executable: ``NUBES_BUILD_PYTHON``, the running one, PATH, then pyenv's versions."""
    candidates = [os.environ.get("NUBES_BUILD_PYTHON") or ""]
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        candidates.append(sys.executable)
    candidates.append(shutil.which(f"python{python}") or "")
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        candidates += [str(p / "bin" / f"python{python}") for p in sorted(pyenv.glob(f"{python}.*"), reverse=True)]
    for exe in candidates:
        if exe and Path(exe).is_file() and _version(exe) == python:
            return exe
    return None


def _version(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


def compile_tree(tree: Tree, exe: str, python: str, task_root: str, *, keep_source: set[str]) -> dict[str, int]:
    """Compile every ``.py`` in ``tree`` with ``exe``; returns counts (compiled, sourceless, failed)."""
    tag = "cpython-" + python.replace(".", "")
    jobs: list[list[object]] = []
    meta: list[tuple[str, str, bool]] = []
    for rel in tree.files():
        if not rel.endswith(".py"):
            continue
        who = tree.owner[rel]
        keep = who in ("nubes", "app", "entry") or who in keep_source
        path = PurePosixPath(rel)
        pyc_rel = str(path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc") if keep else rel + "c"
        if path.parent == PurePosixPath("."):
            pyc_rel = f"__pycache__/{path.stem}.{tag}.pyc" if keep else rel + "c"
        (tree.root / pyc_rel).parent.mkdir(parents=True, exist_ok=True)
        jobs.append([str(tree.root / rel), str(tree.root / pyc_rel), f"{task_root.rstrip('/')}/{rel}", keep])
        meta.append((rel, pyc_rel, keep))
    if not jobs:
        return {"compiled": 0, "sourceless": 0, "failed": 0}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    try:
        proc = subprocess.run([exe, "-I", "-c", _COMPILER], input=json.dumps(jobs), capture_output=True, text=True,
                              env=env, timeout=COMPILE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(f"compiling bytecode with {exe} took over {COMPILE_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise BuildError(f"compiling bytecode with {exe} failed: {proc.stderr.strip()[-800:]}")
    results = dict(json.loads(proc.stdout))
    counts = {"compiled": 0, "sourceless": 0, "failed": 0}
    for (rel, pyc_rel, keep), job in zip(meta, jobs, strict=True):
        if not results.get(str(job[0])):
            counts["failed"] += 1
            continue
        counts["compiled"] += 1
        tree.owner[pyc_rel] = tree.owner[rel]
        if not keep:
            counts["sourceless"] += 1
            del tree.owner[rel]
    return counts
