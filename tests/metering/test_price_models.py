"""The price-model contract: every plan of every registered cloud (nubes.core.clouds) passes it. A new cloud's
plans join by being registered; nothing here names a cloud."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nubes.core import clouds
from nubes.metering.prices import PriceBook
from nubes.metering.pricing import PriceModel, Usage, model, models

BOOK = PriceBook()
PLANS = models()


def ids(m: PriceModel) -> str:
    return f"{m.cloud}/{m.plan}"


def test_every_cloud_declares_price_models_and_a_default_plan() -> None:
    for name in clouds.names():
        cloud = clouds.get(name)
        assert cloud.name == name
        assert cloud.default_plan in cloud.price_models
        for plan, m in cloud.price_models.items():
            assert isinstance(m, PriceModel) and m.cloud == name and m.plan == plan
        assert model(name) is cloud.price_models[cloud.default_plan]


@pytest.mark.parametrize("m", PLANS, ids=ids)
class TestPriceModelContract:
    def test_figures_are_sourced_and_named_for_their_cloud(self, m: PriceModel) -> None:
        assert m.figures
        for key, fig in m.figures.items():
            assert key.split(".")[0] in (m.cloud, "free"), key
            assert fig.unit and fig.source.startswith("https://") and fig.date, key
            assert fig.value >= 0, key

    def test_fronts_and_limits(self, m: PriceModel) -> None:
        assert m.fronts and len(set(m.fronts)) == len(m.fronts)
        options = list(m.memory_options())
        assert options == sorted(options) and options[0] >= 128 and options[-1] <= m.max_memory_mb
        assert m.fitting_memory(options[0]) == options[0]
        assert m.fitting_memory(m.max_memory_mb + 1) is None
        for front in m.fronts:
            assert 0 < m.http_limit_s(front) <= m.max_duration_s

    @settings(max_examples=60, deadline=None)
    @given(ms=st.floats(0, 900_000), memory=st.sampled_from([128, 256, 512, 1024, 1536, 2048]),
           ops=st.dictionaries(st.sampled_from(["put", "get", "head", "list", "delete"]), st.integers(0, 1000)),
           http=st.booleans(), http_bytes=st.integers(0, 10_000_000), keep=st.floats(0, 2))
    def test_components_are_non_negative_and_add_up(self, m: PriceModel, ms: float, memory: int, ops: dict[str, int],
                                                    http: bool, http_bytes: int, keep: float) -> None:
        for front in m.fronts:
            usage = Usage(ms, memory, memory / 2, None, http, ops, True, front, http_bytes, keep, keep)
            c = m.price(usage, BOOK)
            parts = (c.compute_usd, c.request_usd, c.gateway_usd, c.storage_usd, c.bookkeeping_usd)
            assert all(p >= 0 and math.isfinite(p) for p in parts)
            assert c.total_usd == pytest.approx(sum(parts), rel=1e-12, abs=1e-18)
            assert c.billed_duration_ms >= ms - 1e-6 and c.billed_memory_mb >= 128
            assert c.provider == m.cloud and c.plan == m.plan
            assert c.gateway == (front if http else "none")

    @settings(max_examples=40, deadline=None)
    @given(a=st.floats(0, 100_000), b=st.floats(0, 100_000))
    def test_monotonic_in_duration(self, m: PriceModel, a: float, b: float) -> None:
        lo, hi = sorted((a, b))
        assert m.price(Usage(lo, 512), BOOK).total_usd <= m.price(Usage(hi, 512), BOOK).total_usd

    def test_monotonic_in_memory(self, m: PriceModel) -> None:
        costs = [m.price(Usage(1000.0, mb, mb), BOOK).compute_usd for mb in m.memory_options()]
        assert costs == sorted(costs)

    def test_storage_operations_are_priced_by_the_cloud(self, m: PriceModel) -> None:
        c = m.price(Usage(1.0, 256, ops={"get": 1000, "put": 1000}), BOOK)
        assert c.storage_usd > 0
        assert m.price(Usage(1.0, 256, ops={"delete": 1000}), BOOK).storage_usd == 0.0

    def test_events_have_no_front(self, m: PriceModel) -> None:
        c = m.price(Usage(10.0, 256, http=False), BOOK)
        assert c.gateway == "none" and c.gateway_usd == 0.0

    def test_free_tier_credit_never_exceeds_what_was_billed(self, m: PriceModel) -> None:
        c = m.price(Usage(200.0, 512, ops={"get": 3, "put": 1}), BOOK)
        n = 10_000
        month = {"invocations": n, "gb_seconds": c.gb_seconds * n, "compute_usd": c.compute_usd * n,
                 "gateway_usd": c.gateway_usd * n, "reads": 3 * n, "writes": n}
        credit = m.free_tier_credit(month, BOOK)
        assert 0 <= credit <= c.total_usd * n + 1e-12

    def test_overrides_change_the_price(self, m: PriceModel) -> None:
        key = next(k for k in m.figures if k.startswith(f"{m.cloud}.{m.plan}.")
                   and k.endswith(("gb_second", "gb_second.x86_64", "vcpu_second")))
        doubled = PriceBook({key: m.figures[key].value * 2})
        assert m.price(Usage(1000.0, 512), doubled).compute_usd > m.price(Usage(1000.0, 512), BOOK).compute_usd
