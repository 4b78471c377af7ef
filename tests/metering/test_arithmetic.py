"""The price arithmetic against hand-computed cases, rounding edges included, for every provider and plan."""

from __future__ import annotations

import pytest

from nubes.adapters.gcp.prices import tier as gcf_tier
from nubes.errors import ConfigError
from nubes.metering.prices import PriceBook, defaults
from nubes.metering.pricing import Usage, price

REL = 1e-9


def approx(x: float) -> object:
    return pytest.approx(x, rel=REL, abs=1e-15)


# -- every figure has its unit, a source URL and a date ------------------------------------------
def test_every_figure_has_unit_source_and_date() -> None:
    for key, fig in defaults().items():
        assert fig.unit, key
        assert fig.source.startswith("https://"), key
        assert fig.date, key


def test_first_tier_prices_as_published() -> None:
    book = PriceBook()
    assert book["aws.lambda.gb_second.x86_64"] == 0.0000166667
    assert book["aws.lambda.gb_second.arm64"] == 0.0000133334
    assert book["aws.lambda.request"] == approx(0.20 / 1e6)
    assert book["aws.gateway.http"] == approx(1.00 / 1e6)
    assert book["aws.gateway.rest"] == approx(3.50 / 1e6)
    assert book["gcp.gen2.vcpu_second"] == 0.000024
    assert book["gcp.gen2.gib_second"] == 0.0000025
    assert book["gcp.gen2.invocation"] == approx(0.40 / 1e6)
    assert book["azure.consumption.gb_second"] == 0.000016
    assert book["azure.flex.gb_second"] == 0.000026
    assert book["aws.storage.get"] == approx(0.0004 / 1000)
    assert book["aws.storage.put"] == approx(0.005 / 1000)


# -- AWS Lambda ----------------------------------------------------------------------------------
def test_lambda_x86_512mb_100_2ms_http_api() -> None:
    c = price(Usage(100.2, 512), "aws")
    assert c.billed_duration_ms == 101  # 1 ms rounding, up
    gb_s = 0.5 * 0.101
    assert c.gb_seconds == approx(gb_s)
    assert c.compute_usd == approx(gb_s * 0.0000166667)
    assert c.request_usd == approx(2e-7)
    assert c.gateway_usd == approx(1e-6)
    assert c.total_usd == approx(0.0505 * 0.0000166667 + 2e-7 + 1e-6)


def test_lambda_arm64_1024mb_one_second_rest_api() -> None:
    c = price(Usage(1000.0, 1024, architecture="arm64"), "aws", front="rest")
    assert c.billed_duration_ms == 1000
    assert c.compute_usd == approx(1.0 * 0.0000133334)
    assert c.total_usd == approx(0.0000133334 + 2e-7 + 3.5e-6)


@pytest.mark.parametrize("ms, billed", [(0.0, 1), (0.3, 1), (1.0, 1), (1.0004, 2), (200.0, 200), (200.001, 201)])
def test_lambda_rounds_up_to_the_millisecond(ms: float, billed: int) -> None:
    assert price(Usage(ms, 128), "aws").billed_duration_ms == billed


def test_lambda_events_have_no_gateway_and_function_urls_cost_nothing_extra() -> None:
    assert price(Usage(10, 128, http=False), "aws").gateway_usd == 0.0
    assert price(Usage(10, 128, http=False), "aws").gateway == "none"
    assert price(Usage(10, 128), "aws", front="url").gateway_usd == 0.0
    assert price(Usage(10, 128), "aws", front="none").total_usd == approx(0.125 * 0.010 * 0.0000166667 + 2e-7)


@pytest.mark.parametrize("front, fee", [("http", 1.00e-6), ("rest", 3.50e-6), ("url", 0.0), ("none", 0.0)])
def test_api_gateway_fee_depends_on_the_front(front: str, fee: float) -> None:
    c = price(Usage(10, 128, front=front), "aws")
    assert c.gateway == front and c.gateway_usd == approx(fee)


def test_alb_is_priced_by_lcu_share_of_bytes_or_a_new_connection() -> None:
    # $0.008 per LCU-hour; an LCU is 25 new connections per second or 0.4 GB per hour for Lambda targets
    small = price(Usage(10, 128, front="alb", http_bytes=2_000), "aws")
    assert small.gateway == "alb" and small.gateway_usd == approx(0.008 / (25 * 3600))  # the connection dominates
    big = price(Usage(10, 128, front="alb", http_bytes=4_000_000), "aws")
    assert big.gateway_usd == approx(4_000_000 / 0.4e9 * 0.008)  # the bytes dominate


def test_unknown_front_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="front"):
        price(Usage(10, 128, front="cdn"), "aws")


def test_bookkeeping_puts_and_gets_are_priced_at_storage_prices() -> None:
    c = price(Usage(10, 128, bookkeeping_puts=0.05, bookkeeping_gets=0.05), "aws")
    assert c.bookkeeping_usd == approx(0.05 * 0.005 / 1000 + 0.05 * 0.0004 / 1000)
    assert c.total_usd == approx(c.compute_usd + c.request_usd + c.gateway_usd + c.bookkeeping_usd)


def test_lambda_default_memory_is_128mb() -> None:
    assert price(Usage(10), "aws").billed_memory_mb == 128


# -- Cloud Functions 2nd gen ---------------------------------------------------------------------
def test_gcf_256mib_150ms() -> None:
    c = price(Usage(150.0, 256), "gcp")
    assert c.billed_duration_ms == 200  # 100 ms rounding, up
    assert c.vcpu_seconds == approx(0.167 * 0.2)
    assert c.gb_seconds == approx(0.25 * 0.2)
    assert c.compute_usd == approx(0.167 * 0.2 * 0.000024 + 0.25 * 0.2 * 0.0000025)
    assert c.request_usd == approx(4e-7)
    assert c.total_usd == approx(8.016e-7 + 1.25e-7 + 4e-7)


@pytest.mark.parametrize("ms, billed", [(0.0, 100), (1.0, 100), (100.0, 100), (100.001, 200), (999.9, 1000), (1000.0, 1000)])
def test_gcf_rounds_up_to_100ms(ms: float, billed: int) -> None:
    assert price(Usage(ms, 256), "gcp").billed_duration_ms == billed


@pytest.mark.parametrize("memory, tier, vcpu", [
    (128, 128, 0.083), (256, 256, 0.167), (384, 512, 0.333), (512, 512, 0.333), (1024, 1024, 0.583),
    (2048, 2048, 1.0), (4096, 4096, 2.0), (8192, 8192, 2.0), (16384, 16384, 4.0), (32768, 32768, 8.0),
    (1536, 2048, 1.0),
])
def test_gcf_vcpu_tiers(memory: int, tier: int, vcpu: float) -> None:
    assert gcf_tier(memory, PriceBook()) == (tier, vcpu)
    c = price(Usage(1000.0, memory), "gcp")
    assert c.compute_usd == approx(vcpu * 0.000024 + memory / 1024 * 0.0000025)


# -- Azure Consumption ---------------------------------------------------------------------------
@pytest.mark.parametrize("observed, billed", [(100, 128), (128, 128), (129, 256), (200, 256), (512, 512), (513, 640),
                                              (1536, 1536), (4000, 1536)])
def test_azure_observed_memory_rounds_up_to_128mb(observed: int, billed: int) -> None:
    c = price(Usage(1000.0, 1536, peak_rss_mb=observed, emulated=True), "azure")
    assert c.billed_memory_mb == billed
    assert c.compute_usd == approx(billed / 1024 * 1.0 * 0.000016)


def test_azure_consumption_minimum_100ms_then_1ms() -> None:
    assert price(Usage(50.0, 256, emulated=True), "azure").billed_duration_ms == 100
    assert price(Usage(100.2, 256, emulated=True), "azure").billed_duration_ms == 101
    c = price(Usage(50.0, 200, emulated=True), "azure")
    assert c.total_usd == approx(0.25 * 0.1 * 0.000016 + 2e-7)


def test_azure_consumption_bills_observed_memory_emulated_or_not() -> None:
    # the documentation's example: a process using 160 MB is charged for 256 MB, whatever the instance's 1,536 MB
    for emulated in (False, True):
        assert price(Usage(1000.0, memory_mb=1536, peak_rss_mb=160.0, emulated=emulated), "azure").billed_memory_mb == 256
    assert price(Usage(1000.0, memory_mb=512), "azure").billed_memory_mb == 512  # nothing observed: the setting


def test_azure_flex_bills_its_instance_size_not_the_observed_memory() -> None:
    assert price(Usage(1000.0, memory_mb=2048, peak_rss_mb=160.0), "azure", "flex").billed_memory_mb == 2048


# -- Azure Flex Consumption ----------------------------------------------------------------------
@pytest.mark.parametrize("ms, billed", [(1.0, 1000), (999.0, 1000), (1000.0, 1000), (1000.5, 1100), (1234.0, 1300)])
def test_flex_minimum_1000ms_then_100ms(ms: float, billed: int) -> None:
    assert price(Usage(ms, 2048), "azure", "flex").billed_duration_ms == billed


def test_flex_instance_memory() -> None:
    c = price(Usage(50.0, 2048), "azure", "flex")
    assert c.total_usd == approx(2.0 * 1.0 * 0.000026 + 4e-7)
    assert price(Usage(50.0, 1536), "azure", "flex").billed_memory_mb == 2048
    assert price(Usage(50.0, 512), "azure", "flex").billed_memory_mb == 512
    assert price(Usage(50.0), "azure", "flex").billed_memory_mb == 2048


# -- storage operations --------------------------------------------------------------------------
OPS = {"get": 10, "head": 2, "put": 1, "list": 1, "delete": 3, "delete_many": 1}


def test_storage_operations_per_provider() -> None:
    s3 = (10 + 2) * 0.0004 / 1000 + (1 + 1) * 0.005 / 1000  # HEAD is GET class, LIST is PUT class, deletes free
    assert price(Usage(1, 128, ops=OPS), "aws").storage_usd == approx(s3)
    gcs = (10 + 2) * 0.0004 / 1000 + (1 + 1) * 0.005 / 1000  # class B / class A
    assert price(Usage(1, 256, ops=OPS), "gcp").storage_usd == approx(gcs)
    blob = 1 * 0.05 / 1e4 + 1 * 0.05 / 1e4 + 10 * 0.004 / 1e4 + 2 * 0.004 / 1e4
    assert price(Usage(1, 256, ops=OPS, emulated=True), "azure").storage_usd == approx(blob)
    assert price(Usage(1, 256, ops=OPS), "azure", "flex").storage_usd == approx(blob)


# -- overrides -----------------------------------------------------------------------------------
def test_overrides_dotted_and_nested() -> None:
    book = PriceBook({"aws.lambda.request": 0.0, "gcp": {"gen2": {"vcpu_second": 0.00001}}})
    assert price(Usage(10, 128), "aws", book=book).request_usd == 0.0
    assert price(Usage(1000, 2048), "gcp", book=book).compute_usd == approx(1.0 * 0.00001 + 2.0 * 0.0000025)
    assert book.table()[0]["key"] == "aws.lambda.gb_second.x86_64"
    assert any(r["source"] == "override (config)" for r in book.table())


def test_override_can_change_a_gcf_tier() -> None:
    book = PriceBook({"gcp.gen2.vcpu.1024": 1.0})
    assert gcf_tier(1024, book) == (1024, 1.0)


@pytest.mark.parametrize("bad", [{"aws.lambda.requests": 1.0}, {"aws.lambda.request": "cheap"}, {"aws.lambda.request": -1}])
def test_bad_overrides_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError):
        PriceBook(bad)


def test_unknown_provider_or_plan() -> None:
    with pytest.raises(ConfigError, match="aws"):
        price(Usage(1), "ibm")
    with pytest.raises(ConfigError):
        price(Usage(1), "azure", "premium")
