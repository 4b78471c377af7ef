"""Which row groups a Polars filter can skip, from the min/max statistics in Parquet footers.

Polars hands a scan its filter as an expression. Polars has no public API to walk an expression's
nodes, so the expression is read from ``Expr.meta.serialize(format="json")``, whose layout Polars does
not promise to keep: ``tests/analytics/test_engine_pins.py`` pins it to the Polars version installed
and fails loudly when an upgrade changes it. What is not recognised here is simply not used to skip
anything (the filter itself is always applied to the rows read), so a layout change can cost speed,
never a wrong answer.

Recognised, anywhere in a chain of ``&``: ``col <op> literal`` and ``literal <op> col`` for
``== != < <= > >=``, ``col.is_between(literal, literal, closed=...)``, ``col.is_null()`` and
``col.is_not_null()``, with int, float, string and date literals.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from nubes.data.engine.parquet_footer import Chunk, Footer

Test = tuple[str, Callable[[Chunk, int], bool]]  # (column, keep(chunk statistics, rows in the group))

_FLIP = {"Lt": "Gt", "LtEq": "GtEq", "Gt": "Lt", "GtEq": "LtEq", "Eq": "Eq", "NotEq": "NotEq"}
_EPOCH = date(1970, 1, 1)


def tests(predicate: Any) -> list[Test]:
    """The statistics tests implied by a Polars predicate (an empty list: nothing can be skipped)."""
    try:
        tree = json.loads(predicate.meta.serialize(format="json"))
    except Exception:
        return []
    out: list[Test] = []
    for node in _conjuncts(tree):
        test = _test(node)
        if test is not None:
            out.append(test)
    return out


def keep(footer: Footer, found: list[Test]) -> list[int]:
    """The row groups of ``footer`` that may hold rows passing every test."""
    kept = []
    for g, group in enumerate(footer.row_groups):
        ok = True
        for column, test in found:
            chunks = group.columns.get(column)
            if chunks and len(chunks) == 1 and not test(chunks[0], group.num_rows):
                ok = False
                break
        if ok:
            kept.append(g)
    return kept


def _conjuncts(tree: Any) -> list[Any]:
    if isinstance(tree, dict) and isinstance(tree.get("BinaryExpr"), dict) and tree["BinaryExpr"].get("op") == "And":
        return _conjuncts(tree["BinaryExpr"].get("left")) + _conjuncts(tree["BinaryExpr"].get("right"))
    return [tree]


def _column(node: Any) -> str | None:
    return node["Column"] if isinstance(node, dict) and isinstance(node.get("Column"), str) else None


def _literal(node: Any) -> Any:
    """The Python value of a literal node, or ``_NONE`` for anything else (nulls included)."""
    lit = node.get("Literal") if isinstance(node, dict) else None
    if not isinstance(lit, dict) or len(lit) != 1:
        return _NONE
    (kind, body), = lit.items()
    if not isinstance(body, dict) or len(body) != 1:
        return _NONE
    (tag, value), = body.items()
    if kind == "Dyn" and tag in ("Int", "Float") and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if kind == "Scalar":
        if tag == "String" and isinstance(value, str):
            return value
        if tag == "Date" and isinstance(value, int):
            return _EPOCH + timedelta(days=value)
        if tag.startswith(("Int", "UInt", "Float")) and isinstance(value, int | float) and not isinstance(value, bool):
            return value
    return _NONE


_NONE = object()


def _comparable(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return type(a) is type(b) and isinstance(a, str | date)


def _test(node: Any) -> Test | None:
    if not isinstance(node, dict):
        return None
    binary = node.get("BinaryExpr")
    if isinstance(binary, dict):
        op, left, right = binary.get("op"), binary.get("left"), binary.get("right")
        column, value = _column(left), _literal(right)
        if column is None:
            column, value, op = _column(right), _literal(left), _FLIP.get(str(op))
        if column is None or value is _NONE or op not in _FLIP:
            return None
        return column, _compare(str(op), value)
    function = node.get("Function")
    if not isinstance(function, dict):
        return None
    kind, inputs = function.get("function"), function.get("input")
    boolean = kind.get("Boolean") if isinstance(kind, dict) else None
    if not isinstance(inputs, list) or not inputs or _column(inputs[0]) is None:
        return None
    column = _column(inputs[0])
    assert column is not None
    if boolean == "IsNull" and len(inputs) == 1:
        return column, lambda c, rows: c.null_count is None or c.null_count > 0
    if boolean == "IsNotNull" and len(inputs) == 1:
        return column, lambda c, rows: c.null_count is None or c.null_count < rows
    between = boolean.get("IsBetween") if isinstance(boolean, dict) else None
    if isinstance(between, dict) and len(inputs) == 3:
        lo, hi = _literal(inputs[1]), _literal(inputs[2])
        closed = between.get("closed")
        if lo is _NONE or hi is _NONE or closed not in ("Both", "Left", "Right", "None"):
            return None
        low = _compare("GtEq" if closed in ("Both", "Left") else "Gt", lo)
        high = _compare("LtEq" if closed in ("Both", "Right") else "Lt", hi)
        return column, lambda c, rows: low(c, rows) and high(c, rows)
    return None


def _compare(op: str, value: Any) -> Callable[[Chunk, int], bool]:
    """Keep a group unless its [min, max] proves no row has ``column <op> value``."""

    def keep(c: Chunk, rows: int) -> bool:
        lo, hi = c.min, c.max
        if lo is None or hi is None or not (_comparable(lo, value) and _comparable(hi, value)):
            return True
        if op == "Eq":
            return bool(lo <= value <= hi)
        if op == "NotEq":
            return not (lo == hi == value)
        if op == "Lt":
            return bool(lo < value)
        if op == "LtEq":
            return bool(lo <= value)
        if op == "Gt":
            return bool(hi > value)
        return bool(hi >= value)  # GtEq

    return keep
