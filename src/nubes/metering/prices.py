"""Price figures: every figure with its unit, the date it was read and where it comes from.

The figures live with their clouds (``nubes/adapters/<cloud>/prices.py``, beside the plan classes
that use them); :func:`defaults` gathers those of every registered cloud. Figures are first-tier,
on-demand, USD, as published by each provider (``source`` of each; ``note`` marks those not
re-read from their source). A :class:`PriceBook` is the figures in force: the defaults with user
overrides merged in (dotted keys, or the same keys nested as tables:
``{"aws": {"lambda": {"gb_second": {"arm64": 0.0000125}}}}``). An unknown key is a
:class:`~nubes.errors.ConfigError`, so a typo never silently keeps the default.

Storage operation prices are those of each provider's own object store (S3 Standard, GCS Standard,
Azure Blob Hot LRS): an invocation priced on AWS is priced as if its store were S3, whatever the
backend under test (``file://`` and ``mem://`` have no price of their own).

Free tiers are modelled (``free.*``) but applied only when asked (``free_tier = true``), to monthly
totals in bills; an invocation's own cost is always the list price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nubes.errors import ConfigError

CHECKED = "2026-11"  # when the figures were last compared with their sources


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    source: str
    date: str = CHECKED
    note: str = ""


UNVERIFIED = "not re-read from the source when recorded; verify before relying on it"
PER_MILLION = 1e-6
PER_THOUSAND = 1e-3


def defaults() -> dict[str, Figure]:
    """Every price figure of every registered cloud's plans, by key (from each cloud's ``prices`` module)."""
    from nubes.metering.pricing import models

    out: dict[str, Figure] = {}
    for m in models():
        out.update(m.figures)
    return out


def __getattr__(name: str) -> Any:
    if name == "DEFAULTS":  # the figures, as a module attribute (computed: they live in the cloud packages)
        return defaults()
    raise AttributeError(name)


def flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"aws": {"lambda": {"request": 1e-7}}}`` -> ``{"aws.lambda.request": 1e-7}`` (dotted keys pass through)."""
    flat: dict[str, float] = {}
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            if isinstance(value, Figure):
                value = value.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"price {name!r} must be a number, not {value!r}")
            if value < 0:
                raise ConfigError(f"price {name!r} must not be negative, got {value!r}")
            flat[name] = float(value)
    return flat


class PriceBook:
    """The figures in force: the defaults with overrides applied. ``book["aws.lambda.request"]`` is a float."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        flat = flatten(overrides or {})
        self.figures = defaults()
        unknown = sorted(k for k in flat if k not in self.figures)
        if unknown:
            raise ConfigError(
                f"unknown price key(s) {unknown}; known keys look like 'aws.lambda.gb_second.x86_64' "
                "(see `nubes prices`)"
            )
        self.overrides = flat
        self.values: dict[str, float] = {k: float(f.value) for k, f in self.figures.items()}
        self.values.update(flat)

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def get(self, key: str, default: float = 0.0) -> float:
        return self.values.get(key, default)

    def table(self) -> list[dict[str, Any]]:
        """Every figure with its unit, source and date (overridden ones marked)."""
        rows = []
        for key, fig in self.figures.items():
            over = key in self.overrides
            rows.append({"key": key, "value": self.values[key], "unit": fig.unit,
                         "source": "override (config)" if over else fig.source,
                         "date": "" if over else fig.date, "note": fig.note})
        return rows


_DEFAULT_BOOK: PriceBook | None = None


def default_book() -> PriceBook:
    global _DEFAULT_BOOK
    if _DEFAULT_BOOK is None:
        _DEFAULT_BOOK = PriceBook()
    return _DEFAULT_BOOK
