"""Cost arithmetic: one invocation's usage priced the way each provider and plan bills it.

* **AWS Lambda** — memory (MB/1024 GB) x duration rounded up to 1 ms, at the architecture's GB-second
  price; plus the per-request price; plus the API Gateway request price for HTTP invocations
  (``gateway``: ``http`` HTTP API, ``rest`` REST API, ``url`` function URL, ``none``).
* **Cloud Functions 2nd gen** — duration rounded up to 100 ms; vCPU-seconds at the vCPU of the
  memory tier (128 MiB -> 0.083 ... 32 GiB -> 8; a memory between tiers gets the next tier's vCPU)
  plus GiB-seconds of the configured memory; plus the per-invocation price.
* **Azure Functions Consumption** — memory rounded up to 128 MB (128 MB to 1,536 MB) x duration
  rounded up to 1 ms with a 100 ms minimum, at the GB-second price; plus the per-execution price.
  Azure meters the *observed* memory, so which memory is used is a setting (``azure_memory``):
  ``configured`` (the platform's memory setting: the emulator's ``--memory``, ``NUBES_MEMORY_MB``),
  ``observed`` (the process's peak resident set, ``ru_maxrss``), or ``auto`` (configured when the
  invocation is emulated and a memory is set, observed on the real cloud).
* **Azure Flex Consumption** (on demand) — instance memory (512, 2,048 or 4,096 MB; a configured
  memory is rounded up to one of them) x duration with a 1,000 ms minimum, then rounded up to 100 ms.
* **Storage** — each operation of the invocation (``put get head list delete delete_many``) at the
  provider's object-store price; bytes moved inside a region are free and not priced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from nubes.errors import ConfigError
from nubes.metering.prices import PriceBook, default_book

PROVIDERS = ("aws", "gcp", "azure")
PLANS: dict[str, tuple[str, ...]] = {"aws": ("lambda",), "gcp": ("gen2",), "azure": ("consumption", "flex")}
DEFAULT_PLANS = {"aws": "lambda", "gcp": "gen2", "azure": "consumption"}
GATEWAYS = ("http", "rest", "url", "none")
FLEX_SIZES = (512, 2048, 4096)
STORAGE_OPS = ("put", "get", "head", "list", "delete", "delete_many")


@dataclass(frozen=True)
class Usage:
    """What an invocation used: wall duration, memory (configured / peak observed), architecture,
    whether it came through HTTP (a gateway) and its storage operations by kind."""

    duration_ms: float
    memory_mb: float | None = None
    peak_rss_mb: float | None = None
    architecture: str | None = None
    http: bool = True
    ops: Mapping[str, int] = field(default_factory=dict)
    emulated: bool = True


@dataclass(frozen=True)
class Cost:
    provider: str
    plan: str
    gateway: str | None
    billed_duration_ms: int
    billed_memory_mb: int
    gb_seconds: float
    vcpu_seconds: float
    compute_usd: float
    request_usd: float
    gateway_usd: float
    storage_usd: float

    @property
    def total_usd(self) -> float:
        return self.compute_usd + self.request_usd + self.gateway_usd + self.storage_usd

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["total_usd"] = self.total_usd
        return out


def _ceil_to(ms: float, step: float) -> int:
    step = step or 1
    # durations come rounded to the microsecond; keep float noise (200.00000001) from adding a step
    return int(math.ceil(round(ms / step, 6)) * step)


def arch_of(architecture: str | None) -> str:
    return "arm64" if (architecture or "").lower() in ("arm64", "aarch64", "arm") else "x86_64"


def gcf_tier(memory_mb: float, book: PriceBook) -> tuple[int, float]:
    """The (memory tier MiB, vCPU) Cloud Functions 2nd gen gives ``memory_mb``: the smallest tier holding it."""
    for tier, vcpu in book.gcf_tiers:
        if memory_mb <= tier:
            return tier, vcpu
    return book.gcf_tiers[-1]


def azure_memory(usage: Usage, book: PriceBook, mode: str = "auto") -> int:
    """The memory Azure Consumption bills for ``usage``: rounded up to 128 MB, 128 to 1,536 MB."""
    if mode not in ("auto", "configured", "observed"):
        raise ConfigError(f"azure_memory must be auto, configured or observed, not {mode!r}")
    configured = usage.memory_mb
    if mode == "configured" or (mode == "auto" and usage.emulated and configured):
        mb = configured or usage.peak_rss_mb
    else:
        mb = usage.peak_rss_mb or configured
    step = book["azure.consumption.memory_step_mb"]
    lo, hi = book["azure.consumption.min_memory_mb"], book["azure.consumption.max_memory_mb"]
    mb = mb or lo
    return int(min(max(math.ceil(round(mb / step, 6)) * step, lo), hi))


def storage_usd(provider: str, ops: Mapping[str, int], book: PriceBook) -> float:
    values = book.values
    total = 0.0
    for op, count in ops.items():
        if count:
            total += count * values.get(f"{provider}.storage.{op}", 0.0)
    return total


def price(
    usage: Usage,
    provider: str,
    plan: str | None = None,
    *,
    book: PriceBook | None = None,
    gateway: str = "http",
    azure_memory_mode: str = "auto",
) -> Cost:
    """``usage`` priced on ``provider``/``plan`` (default plan: lambda, gen2, consumption)."""
    book = book or default_book()
    plan = plan or DEFAULT_PLANS.get(provider, "")
    if provider not in PLANS or plan not in PLANS[provider]:
        raise ConfigError(f"no price model for {provider!r} plan {plan!r}; known: "
                          + ", ".join(f"{p}/{pl}" for p in PLANS for pl in PLANS[p]))
    d = max(float(usage.duration_ms), 0.0)
    store = storage_usd(provider, usage.ops, book)
    v = book.values
    if provider == "aws":
        if gateway not in GATEWAYS:
            raise ConfigError(f"AWS gateway must be one of {GATEWAYS}, not {gateway!r}")
        mem = usage.memory_mb or v["aws.lambda.default_memory_mb"]
        step = v["aws.lambda.rounding_ms"]
        billed = max(_ceil_to(d, step), int(step))
        gb_s = mem / 1024 * billed / 1000
        gw = gateway if usage.http else "none"
        return Cost(provider, plan, gw, billed, int(mem), gb_s, 0.0,
                    gb_s * v[f"aws.lambda.gb_second.{arch_of(usage.architecture)}"], v["aws.lambda.request"],
                    v[f"aws.gateway.{gw}"], store)
    if provider == "gcp":
        mem = usage.memory_mb or v["gcp.gen2.default_memory_mb"]
        step = v["gcp.gen2.rounding_ms"]
        billed = max(_ceil_to(d, step), int(step))
        _tier, vcpu = gcf_tier(mem, book)
        vcpu_s = vcpu * billed / 1000
        gib_s = mem / 1024 * billed / 1000
        compute = vcpu_s * v["gcp.gen2.vcpu_second"] + gib_s * v["gcp.gen2.gib_second"]
        return Cost(provider, plan, None, billed, int(mem), gib_s, vcpu_s, compute, v["gcp.gen2.invocation"], 0.0, store)
    if plan == "consumption":
        mem = azure_memory(usage, book, azure_memory_mode)
        billed = max(_ceil_to(d, v["azure.consumption.rounding_ms"]), int(v["azure.consumption.min_ms"]))
        gb_s = mem / 1024 * billed / 1000
        return Cost(provider, plan, None, billed, mem, gb_s, 0.0, gb_s * v["azure.consumption.gb_second"],
                    v["azure.consumption.execution"], 0.0, store)
    # flex
    configured = usage.memory_mb or v["azure.flex.default_memory_mb"]
    mem = next((s for s in FLEX_SIZES if configured <= s), FLEX_SIZES[-1])
    billed = max(int(v["azure.flex.min_ms"]), _ceil_to(d, v["azure.flex.rounding_ms"]))
    gb_s = mem / 1024 * billed / 1000
    return Cost(provider, plan, None, billed, mem, gb_s, 0.0, gb_s * v["azure.flex.gb_second"],
                v["azure.flex.execution"], 0.0, store)
