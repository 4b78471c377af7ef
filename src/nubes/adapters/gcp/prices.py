"""Google Cloud prices as nubes meters them: the figures and the Cloud Functions 2nd gen plan.

Cloud Functions 2nd gen (Cloud Run functions, request-based billing): duration rounded up to
100 ms; vCPU-seconds at the vCPU of the memory tier (128 MiB -> 0.083 ... 32 GiB -> 8; a memory
between tiers gets the next tier's vCPU) plus GiB-seconds of the configured memory; plus the
per-invocation price. HTTP reaches the function directly (no front-end charge).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nubes.metering.prices import PER_MILLION, PER_THOUSAND, UNVERIFIED, Figure, PriceBook
from nubes.metering.pricing import PriceModel, Usage, ceil_to

_RUN = "https://cloud.google.com/run/pricing"
_GCF_MEM = "https://cloud.google.com/functions/docs/configuring/memory"
_GCF_TIMEOUT = "https://cloud.google.com/functions/docs/configuring/timeout"
_GCS = "https://cloud.google.com/storage/pricing"
_TIERS = {128: 0.083, 256: 0.167, 512: 0.333, 1024: 0.583, 2048: 1.0, 4096: 2.0, 8192: 2.0, 16384: 4.0, 32768: 8.0}

FIGURES: dict[str, Figure] = {
    "gcp.gen2.vcpu_second": Figure(0.000024, "USD per vCPU-second (tier 1)", _RUN),
    "gcp.gen2.gib_second": Figure(0.0000025, "USD per GiB-second (tier 1)", _RUN),
    "gcp.gen2.invocation": Figure(0.40 * PER_MILLION, "USD per invocation", _RUN),
    "gcp.gen2.rounding_ms": Figure(100, "billed duration rounded up to a multiple of this (ms)", _RUN),
    "gcp.gen2.default_memory_mb": Figure(256, "MiB when the platform says nothing (GCF's default)", _GCF_MEM),
    "gcp.gen2.max_duration_s": Figure(3600, "HTTP function timeout maximum (s)", _GCF_TIMEOUT),
    # memory (MiB) -> vCPU, as Cloud Functions 2nd gen allocates them
    **{f"gcp.gen2.vcpu.{mib}": Figure(vcpu, f"vCPU at {mib} MiB", _GCF_MEM) for mib, vcpu in _TIERS.items()},
    # GCS Standard operations
    "gcp.storage.put": Figure(0.005 * PER_THOUSAND, "USD per class A operation (insert)", _GCS),
    "gcp.storage.list": Figure(0.005 * PER_THOUSAND, "USD per class A operation (list)", _GCS),
    "gcp.storage.get": Figure(0.0004 * PER_THOUSAND, "USD per class B operation (get)", _GCS),
    "gcp.storage.head": Figure(0.0004 * PER_THOUSAND, "USD per class B operation (get metadata)", _GCS),
    "gcp.storage.delete": Figure(0.0, "USD per delete (free)", _GCS),
    "gcp.storage.delete_many": Figure(0.0, "USD per delete (free)", _GCS),
    # free tier per month
    "free.gcp.gen2.requests": Figure(2_000_000, "invocations per month", _RUN),
    "free.gcp.gen2.vcpu_seconds": Figure(180_000, "vCPU-seconds per month", _RUN, note=UNVERIFIED),
    "free.gcp.gen2.gib_seconds": Figure(360_000, "GiB-seconds per month", _RUN, note=UNVERIFIED),
    "free.gcp.storage.class_a": Figure(5_000, "class A operations per month", _GCS, note=UNVERIFIED),
    "free.gcp.storage.class_b": Figure(50_000, "class B operations per month", _GCS, note=UNVERIFIED),
}


def tiers(book: PriceBook) -> tuple[tuple[int, float], ...]:
    """``(memory tier MiB, vCPU)`` pairs in force (overrides included), smallest first."""
    found = sorted(int(k.rsplit(".", 1)[1]) for k in book.values if k.startswith("gcp.gen2.vcpu."))
    return tuple((t, book.values[f"gcp.gen2.vcpu.{t}"]) for t in found)


def tier(memory_mb: float, book: PriceBook) -> tuple[int, float]:
    """The (memory tier MiB, vCPU) Cloud Functions 2nd gen gives ``memory_mb``: the smallest tier holding it."""
    all_tiers = tiers(book)
    return next(((t, v) for t, v in all_tiers if memory_mb <= t), all_tiers[-1])


class Gen2Plan(PriceModel):
    """Cloud Functions 2nd gen, request-based billing (see the module docstring)."""

    cloud = "gcp"
    plan = "gen2"
    title = "Cloud Functions 2nd gen (request-based)"
    figures = FIGURES
    fronts = ("direct",)
    default_memory_mb = int(FIGURES["gcp.gen2.default_memory_mb"].value)  # what quotes assume: the figures above
    max_memory_mb = 32768
    max_duration_s = float(FIGURES["gcp.gen2.max_duration_s"].value)

    def compute(self, usage: Usage, book: PriceBook) -> tuple[int, int, float, float, float, float]:
        v = book.values
        memory = usage.memory_mb or v["gcp.gen2.default_memory_mb"]
        step = v["gcp.gen2.rounding_ms"]
        billed = max(ceil_to(max(float(usage.duration_ms), 0.0), step), int(step))
        _tier, vcpu = tier(memory, book)
        vcpu_s = vcpu * billed / 1000
        gib_s = memory / 1024 * billed / 1000
        compute = vcpu_s * v["gcp.gen2.vcpu_second"] + gib_s * v["gcp.gen2.gib_second"]
        return billed, int(memory), gib_s, vcpu_s, compute, v["gcp.gen2.invocation"]

    def memory_options(self) -> Sequence[int]:
        return tuple(_TIERS)

    def free_tier_credit(self, month: Mapping[str, float], book: PriceBook) -> float:
        v = book.values
        credit = min(month.get("invocations", 0.0), v["free.gcp.gen2.requests"]) * v["gcp.gen2.invocation"]
        # the compute credit, split by the free vCPU-s and GiB-s grants, is bounded by what was billed
        credit += min(month.get("compute_usd", 0.0), v["free.gcp.gen2.vcpu_seconds"] * v["gcp.gen2.vcpu_second"]
                      + v["free.gcp.gen2.gib_seconds"] * v["gcp.gen2.gib_second"])
        credit += min(month.get("reads", 0.0), v["free.gcp.storage.class_b"]) * v["gcp.storage.get"]
        credit += min(month.get("writes", 0.0), v["free.gcp.storage.class_a"]) * v["gcp.storage.put"]
        return credit


PLANS: dict[str, PriceModel] = {"gen2": Gen2Plan()}
