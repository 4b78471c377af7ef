"""The wine data shipped with scikit-learn, as the nubes.ml tests use it (13 numeric columns, '_' for '/')."""

from __future__ import annotations

import polars as pl
import pytest


def _wine(labels: bool) -> pl.DataFrame:
    from sklearn.datasets import load_wine

    raw = load_wine()
    names = [n.replace("/", "_") for n in raw.feature_names]
    target = [f"c{t}" for t in raw.target] if labels else raw.target
    return pl.DataFrame(raw.data, schema=names).with_columns(pl.Series("cultivar", target))


@pytest.fixture(scope="session")
def wine_labels() -> pl.DataFrame:
    """Wine with the cultivar as text labels ``c0``, ``c1``, ``c2``."""
    return _wine(labels=True)


@pytest.fixture(scope="session")
def wine_codes() -> pl.DataFrame:
    """Wine with the cultivar as the integers 0, 1, 2."""
    return _wine(labels=False)
