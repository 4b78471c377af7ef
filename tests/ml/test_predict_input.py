"""The predict route's fast JSON path (records read straight into typed Polars columns) answers exactly
what the general path answers, for any records: fuzzed with hypothesis."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nubes.ml.frames import BadColumns, MissingColumns, to_frame
from nubes.ml.serving import _fast_records

COLUMNS = {"x": "number", "y": "number", "z": "number"}
MIXED = {"x": "number", "kind": "category", "day": "date"}

values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=6), st.sampled_from(["2024-01-02", "1.5", "", "x", "2024-13-40"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
records = st.lists(st.dictionaries(st.sampled_from([*COLUMNS, "extra"]), values, max_size=4), max_size=8)


def _general(rows: list[dict[str, object]]) -> object:
    try:
        return to_frame(rows, COLUMNS)
    except (MissingColumns, BadColumns) as exc:
        return type(exc)


def _same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    if a.schema != b.schema or a.height != b.height:
        return False
    for left, right in zip(a.iter_rows(), b.iter_rows(), strict=True):
        for u, v in zip(left, right, strict=True):
            if isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v):
                continue
            if u != v:
                return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records)
def test_fast_path_equals_general_path(rows: list[dict[str, object]]) -> None:
    body = json.dumps(rows).encode()
    fast = _fast_records(body, COLUMNS)
    if fast is None:
        return  # the general path answers
    general = _general(json.loads(body))
    try:
        via_fast = to_frame(fast, COLUMNS)
    except (MissingColumns, BadColumns) as exc:
        assert general is type(exc), (rows, general)
        return
    assert isinstance(general, pl.DataFrame), (rows, general)
    assert _same(via_fast, general), (rows, via_fast, general)


@pytest.mark.parametrize("body", [b'{"x": 1}', b'[{"x": NaN}]', b"[1, 2]", b'[{"x": "1.5"}]', b"[" * 5000, b'[{"y": 1}]',
                                  b'[{"x": [1]}]', b'[{"x": 1e400}]'])
def test_bodies_the_fast_path_leaves_to_the_general_one(body: bytes) -> None:
    assert _fast_records(body, COLUMNS) is None


def test_text_columns_always_take_the_general_path() -> None:
    assert _fast_records(b'[{"x": 1, "kind": "a", "day": "2024-01-01"}]', MIXED) is None
