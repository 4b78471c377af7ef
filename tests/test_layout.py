"""The layout's rules that the linters do not check: small modules; provider names compared only in cloud packages."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "nubes"
CLOUDS = ("aws", "gcp", "azure")
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_module_is_under_the_size_limit() -> None:
    big = {str(p.relative_to(SRC)): n for p in _modules() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by concept): {big}"


def _compares_a_provider_name(node: ast.AST) -> bool:
    if not isinstance(node, ast.Compare):
        return False
    for side in [node.left, *node.comparators]:
        names = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
        if any(isinstance(n, ast.Constant) and n.value in CLOUDS for n in names):
            return True
    return False


def test_no_code_outside_a_cloud_package_branches_on_a_provider_name() -> None:
    found = []
    for path in _modules():
        relative = path.relative_to(SRC)
        if relative.parts[:2] in {("adapters", c) for c in CLOUDS}:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found += [f"{relative}:{n.lineno}" for n in ast.walk(tree) if _compares_a_provider_name(n)]
    assert not found, f"ask the cloud object (nubes.core.clouds.get(name)) instead of comparing names: {found}"


def test_the_checker_sees_a_comparison() -> None:
    tree = ast.parse("if cloud == 'aws': pass\nif x in ('gcp', 'y'): pass\nif x == 'awsome': pass")
    assert [n.lineno for n in ast.walk(tree) if _compares_a_provider_name(n)] == [1, 2]
