"""Helpers of :mod:`.footprint`: reading Python source as ASTs and resolving names to live objects."""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


_MISSING = object()


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _value(expr: ast.AST, scope: dict[str, Any], local: dict[str, Any]) -> Any:
    """The live object a ``name`` or ``module.attr`` chain denotes, else ``_MISSING``."""
    if isinstance(expr, ast.Name):
        return local.get(expr.id, scope.get(expr.id, _MISSING))
    if isinstance(expr, ast.Attribute):
        base = _value(expr.value, scope, local)
        if isinstance(base, (types.ModuleType, type)):
            return getattr(base, expr.attr, _MISSING)
    return _MISSING


def _constructed(expr: ast.AST, scope: dict[str, Any], local: dict[str, Any]) -> type | None:
    """The class ``expr`` instantiates when it is ``Class(...)``."""
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        obj = local.get(expr.func.id, scope.get(expr.func.id))
        if isinstance(obj, type):
            return obj
    return None


def _annotation_class(annotation: ast.AST, scope: dict[str, Any]) -> type | None:
    """The class a simple annotation names (``Context``, ``"Context"``, ``nubes.Context``), else None."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return None
    obj: Any = _MISSING
    if isinstance(annotation, ast.Name):
        obj = scope.get(annotation.id, _MISSING)
    elif isinstance(annotation, ast.Attribute) and isinstance(annotation.value, ast.Name):
        base = scope.get(annotation.value.id)
        obj = getattr(base, annotation.attr, _MISSING) if isinstance(base, types.ModuleType) else _MISSING
    return obj if isinstance(obj, type) and obj is not Any else None


def _closure(fn: Any) -> dict[str, Any]:
    cells = getattr(fn, "__closure__", None) or ()
    out = {}
    for name, cell in zip(fn.__code__.co_freevars, cells, strict=False):
        try:
            out[name] = cell.cell_contents
        except ValueError:
            continue
    return out


def _nodes(body: Iterable[ast.AST]) -> Iterable[ast.AST]:
    """Every node under ``body``, skipping ``if TYPE_CHECKING:`` blocks (they never run)."""
    stack = list(reversed(list(body)))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _dotted(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            stack.extend(reversed(node.orelse))
            continue
        yield node
        children: list[ast.AST]
        if isinstance(node, ast.AnnAssign):  # annotations are not evaluated (nubes uses postponed annotations)
            children = [node.target] + ([node.value] if node.value is not None else [])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            children = [*node.decorator_list, *node.args.defaults, *(d for d in node.args.kw_defaults if d), *node.body]
        elif isinstance(node, ast.arg):
            children = []
        else:
            children = list(ast.iter_child_nodes(node))
        stack.extend(reversed(children))


def _top_level(tree: ast.Module) -> list[ast.AST]:
    """Module statements that run on import: function bodies excluded, their decorators and defaults kept."""
    out: list[ast.AST] = []

    def visit(stmts: Iterable[ast.stmt]) -> None:
        for stmt in stmts:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.extend(stmt.decorator_list)
                out.extend(d for d in stmt.args.defaults + stmt.args.kw_defaults if d is not None)
            elif isinstance(stmt, ast.ClassDef):
                out.extend(stmt.decorator_list + stmt.bases)
                visit(stmt.body)
            elif isinstance(stmt, ast.If) and _dotted(stmt.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                visit(stmt.orelse)
            else:
                out.append(stmt)

    visit(tree.body)
    return out


def _absolute(node: ast.ImportFrom, module: str, filename: str) -> str:
    if not node.level:
        return node.module or ""
    package = module if Path(filename).name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


@functools.lru_cache(maxsize=1024)
def _is_module(top: str) -> bool:
    """Whether ``top`` names an importable top-level module (not a synthetic ``__module__`` value)."""
    if top in sys.modules:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _submodule(package: str, name: str) -> bool:
    """Whether ``package.name`` is a module on ``sys.path`` (looked up in the folders, never imported:
    ``from google.cloud import tasks_v2`` names a module, ``from duckdb import connect`` a function)."""
    parts = package.split(".")
    for entry in sys.path:
        folder = Path(entry or ".").joinpath(*parts)
        if (folder / name / "__init__.py").is_file() or (folder / f"{name}.py").is_file():
            return True
    return False


def _import(name: str) -> types.ModuleType | None:
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        return importlib.import_module(name)
    except Exception:
        return None


def _attr_or_module(base: str, name: str) -> Any:
    module = _import(base)
    if module is not None and hasattr(module, name):
        return getattr(module, name)
    return _import(f"{base}.{name}")


@functools.lru_cache(maxsize=512)
def _module_tree(filename: str | None) -> ast.Module | None:
    if not filename or not filename.endswith(".py"):
        return None
    try:
        return ast.parse(Path(filename).read_text(encoding="utf-8"), filename)
    except (OSError, SyntaxError, ValueError):
        return None


@functools.lru_cache(maxsize=4096)
def _function_node(code: types.CodeType) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    tree = _module_tree(code.co_filename)
    if tree is None:
        return None
    best = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == code.co_name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if first <= code.co_firstlineno <= node.lineno:
                return node
            if best is None and node.lineno == code.co_firstlineno:
                best = node
    return best
