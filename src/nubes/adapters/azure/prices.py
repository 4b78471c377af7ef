"""Azure prices as nubes meters them: the figures and the two plans, Consumption and Flex Consumption.

* **Consumption** bills the memory it *observes* the function using, rounded up to 128 MB (128 to
  1,536 MB), x the execution time rounded up to 1 ms with a 100 ms minimum, at the GB-second price;
  plus the per-execution price. The observed memory is the process's peak resident set
  (``peak_rss_mb``, ``ru_maxrss``) — also under emulation: the emulator's ``--memory`` is the limit
  the instance is killed at, not what is billed. Without an observation, the configured memory.
* **Flex Consumption** (on demand) bills the *instance size* chosen (512, 2,048 or 4,096 MB; a
  configured memory is rounded up to one of them) x the execution time with a 1,000 ms minimum, then
  rounded up to 100 ms; plus the per-execution price.

HTTP reaches the function through the Functions host (no front-end charge); its front end answers
at 230 s whatever the function's timeout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from nubes.metering.prices import PER_MILLION, UNVERIFIED, Figure, PriceBook
from nubes.metering.pricing import PriceModel, Usage, ceil_to

_AZF = "https://azure.microsoft.com/pricing/details/functions/"
_AZF_COSTS = "https://learn.microsoft.com/azure/azure-functions/functions-consumption-costs"
_AZF_FLEX = "https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan"
_SCALE = "https://learn.microsoft.com/azure/azure-functions/functions-scale"
_BLOB = "https://azure.microsoft.com/pricing/details/storage/blobs/"
FLEX_SIZES = (512, 2048, 4096)

FIGURES: dict[str, Figure] = {
    # -- Consumption ------------------------------------------------------------------------------
    "azure.consumption.gb_second": Figure(0.000016, "USD per GB-second (observed memory)", _AZF),
    "azure.consumption.execution": Figure(0.20 * PER_MILLION, "USD per execution", _AZF),
    "azure.consumption.memory_step_mb": Figure(128, "observed memory rounded up to a multiple of this (MB)", _AZF_COSTS),
    "azure.consumption.min_memory_mb": Figure(128, "minimum billed memory (MB)", _AZF, note=UNVERIFIED),
    "azure.consumption.max_memory_mb": Figure(1536, "maximum memory of an instance (MB)", _AZF),
    "azure.consumption.min_ms": Figure(100, "minimum billed execution time (ms)", _AZF, note=UNVERIFIED),
    "azure.consumption.rounding_ms": Figure(1, "execution time rounded up to a multiple of this (ms)", _AZF,
                                            note=UNVERIFIED),
    "azure.consumption.max_duration_s": Figure(600, "function timeout maximum (s)", _SCALE + "#timeout"),
    "azure.consumption.http_timeout_s": Figure(230, "HTTP front end's answer time limit (s)", _SCALE + "#timeout"),
    # -- Flex Consumption (on demand) -------------------------------------------------------------
    "azure.flex.gb_second": Figure(0.000026, "USD per GB-second of instance memory, on demand", _AZF_FLEX),
    "azure.flex.execution": Figure(0.40 * PER_MILLION, "USD per execution, on demand", _AZF, note=UNVERIFIED),
    "azure.flex.min_ms": Figure(1000, "minimum billed execution time (ms)", _AZF_FLEX),
    "azure.flex.rounding_ms": Figure(100, "then rounded up to a multiple of this (ms)", _AZF_FLEX),
    "azure.flex.default_memory_mb": Figure(2048, "instance memory when none is configured (MB)", _AZF_FLEX),
    "azure.flex.max_duration_s": Figure(1800, "function timeout default (s; the maximum is unbounded)", _SCALE + "#timeout",
                                        note=UNVERIFIED),
    "azure.flex.http_timeout_s": Figure(230, "HTTP front end's answer time limit (s)", _SCALE + "#timeout"),
    # -- Azure Blob Storage, Hot tier, LRS --------------------------------------------------------
    "azure.storage.put": Figure(0.05 / 10_000, "USD per write operation", _BLOB, note=UNVERIFIED),
    "azure.storage.list": Figure(0.05 / 10_000, "USD per list operation", _BLOB, note=UNVERIFIED),
    "azure.storage.get": Figure(0.004 / 10_000, "USD per read operation", _BLOB, note=UNVERIFIED),
    "azure.storage.head": Figure(0.004 / 10_000, "USD per 'all other operations' (get properties)", _BLOB,
                                 note=UNVERIFIED),
    "azure.storage.delete": Figure(0.0, "USD per delete (free)", _BLOB),
    "azure.storage.delete_many": Figure(0.0, "USD per delete (free)", _BLOB),
    # -- free tier per month ----------------------------------------------------------------------
    "free.azure.consumption.executions": Figure(1_000_000, "executions per month", _AZF),
    "free.azure.consumption.gb_seconds": Figure(400_000, "GB-seconds per month", _AZF),
    "free.azure.flex.executions": Figure(250_000, "executions per month, on demand", _AZF, note=UNVERIFIED),
    "free.azure.flex.gb_seconds": Figure(100_000, "GB-seconds per month, on demand", _AZF, note=UNVERIFIED),
}


class _AzurePlan(PriceModel):
    cloud = "azure"
    figures = FIGURES
    fronts = ("direct",)

    def http_limit_s(self, front: str | None) -> float:
        return min(self.max_duration_s, FIGURES[f"azure.{self.plan}.http_timeout_s"].value)

    def free_tier_credit(self, month: Mapping[str, float], book: PriceBook) -> float:
        v = book.values
        n, gb_s = month.get("invocations", 0.0), month.get("gb_seconds", 0.0)
        per_gbs = month.get("compute_usd", 0.0) / gb_s if gb_s else 0.0
        credit = min(n, v[f"free.azure.{self.plan}.executions"]) * v[f"azure.{self.plan}.execution"]
        return credit + min(gb_s, v[f"free.azure.{self.plan}.gb_seconds"]) * per_gbs


class ConsumptionPlan(_AzurePlan):
    """Azure Functions Consumption: the observed memory (see the module docstring)."""

    plan = "consumption"
    title = "Azure Functions Consumption"
    bills_observed_memory = True
    default_memory_mb = int(FIGURES["azure.consumption.min_memory_mb"].value)  # what quotes assume: the figures above
    max_memory_mb = int(FIGURES["azure.consumption.max_memory_mb"].value)
    max_duration_s = float(FIGURES["azure.consumption.max_duration_s"].value)

    @staticmethod
    def billed_memory(usage: Usage, book: PriceBook) -> int:
        v = book.values
        step = v["azure.consumption.memory_step_mb"]
        lo, hi = v["azure.consumption.min_memory_mb"], v["azure.consumption.max_memory_mb"]
        mb = usage.peak_rss_mb or usage.memory_mb or lo
        return int(min(max(math.ceil(round(mb / step, 6)) * step, lo), hi))

    def compute(self, usage: Usage, book: PriceBook) -> tuple[int, int, float, float, float, float]:
        v = book.values
        memory = self.billed_memory(usage, book)
        d = max(float(usage.duration_ms), 0.0)
        billed = max(ceil_to(d, v["azure.consumption.rounding_ms"]), int(v["azure.consumption.min_ms"]))
        gb_s = memory / 1024 * billed / 1000
        return billed, memory, gb_s, 0.0, gb_s * v["azure.consumption.gb_second"], v["azure.consumption.execution"]

    def memory_options(self) -> Sequence[int]:
        # nothing to choose: what is observed, in steps, up to the instance's maximum
        step = int(FIGURES["azure.consumption.memory_step_mb"].value)
        return tuple(range(self.default_memory_mb, self.max_memory_mb + 1, step))


class FlexPlan(_AzurePlan):
    """Azure Functions Flex Consumption, on demand: the instance size (see the module docstring)."""

    plan = "flex"
    title = "Azure Functions Flex Consumption (on demand)"
    default_memory_mb = int(FIGURES["azure.flex.default_memory_mb"].value)
    max_memory_mb = 4096
    max_duration_s = float(FIGURES["azure.flex.max_duration_s"].value)

    def compute(self, usage: Usage, book: PriceBook) -> tuple[int, int, float, float, float, float]:
        v = book.values
        configured = usage.memory_mb or v["azure.flex.default_memory_mb"]
        memory = next((s for s in FLEX_SIZES if configured <= s), FLEX_SIZES[-1])
        d = max(float(usage.duration_ms), 0.0)
        billed = max(int(v["azure.flex.min_ms"]), ceil_to(d, v["azure.flex.rounding_ms"]))
        gb_s = memory / 1024 * billed / 1000
        return billed, memory, gb_s, 0.0, gb_s * v["azure.flex.gb_second"], v["azure.flex.execution"]

    def memory_options(self) -> Sequence[int]:
        return FLEX_SIZES


PLANS: dict[str, PriceModel] = {"consumption": ConsumptionPlan(), "flex": FlexPlan()}
