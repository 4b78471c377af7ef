"""Price models as data: every figure with its unit, the date it was read and where it comes from.

Figures are first-tier, on-demand, USD, as published by each provider (see ``SOURCE`` of each).
``DEFAULTS`` is the list; :func:`price_book` merges user overrides into it (dotted keys, or the same
keys nested as tables: ``{"aws": {"lambda": {"gb_second": {"arm64": 0.0000125}}}}``). An unknown
key is a :class:`~nubes.errors.ConfigError`, so a typo never silently keeps the default.

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


_LAMBDA_WP = "https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html"
_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
_APIGW_WP = ("https://docs.aws.amazon.com/whitepapers/latest/best-practices-api-gateway-private-apis-integration/"
             "cost-optimization.html")
_APIGW = "https://aws.amazon.com/api-gateway/pricing/"
_FURL = "https://docs.aws.amazon.com/lambda/latest/dg/urls-configuration.html"
_S3 = "https://aws.amazon.com/s3/pricing/"
_RUN = "https://cloud.google.com/run/pricing"
_GCF_MEM = "https://cloud.google.com/functions/docs/configuring/memory"
_GCS = "https://cloud.google.com/storage/pricing"
_AZF = "https://azure.microsoft.com/pricing/details/functions/"
_AZF_COSTS = "https://learn.microsoft.com/azure/azure-functions/functions-consumption-costs"
_AZF_FLEX = "https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan"
_BLOB = "https://azure.microsoft.com/pricing/details/storage/blobs/"
_UNVERIFIED = "not re-read from the source when recorded; verify before relying on it"

PER_MILLION = 1e-6
PER_THOUSAND = 1e-3

DEFAULTS: dict[str, Figure] = {
    # -- AWS Lambda ------------------------------------------------------------------------------
    "aws.lambda.gb_second.x86_64": Figure(0.0000166667, "USD per GB-second (memory MB/1024 x billed s)", _LAMBDA_WP),
    "aws.lambda.gb_second.arm64": Figure(0.0000133334, "USD per GB-second", _LAMBDA,
                                         note="Arm price from a third-party copy of the pricing page"),
    "aws.lambda.request": Figure(0.20 * PER_MILLION, "USD per request", _LAMBDA_WP),
    "aws.lambda.rounding_ms": Figure(1, "billed duration rounded up to a multiple of this (ms)", _LAMBDA_WP),
    "aws.lambda.default_memory_mb": Figure(128, "MB when the platform says nothing (Lambda's default)", _LAMBDA),
    # API Gateway in front of the function (HTTP requests only; events have no gateway)
    "aws.gateway.http": Figure(1.00 * PER_MILLION, "USD per HTTP API request (first 300 M/month)", _APIGW_WP),
    "aws.gateway.rest": Figure(3.50 * PER_MILLION, "USD per REST API request (first 333 M/month)", _APIGW_WP),
    "aws.gateway.url": Figure(0.0, "USD per Lambda function URL request (no charge beyond Lambda's)", _FURL),
    "aws.gateway.none": Figure(0.0, "USD per request invoked directly (SDK / event source)", _LAMBDA),
    # S3 Standard requests
    "aws.storage.put": Figure(0.005 * PER_THOUSAND, "USD per PUT/COPY/POST/LIST request", _S3),
    "aws.storage.list": Figure(0.005 * PER_THOUSAND, "USD per LIST request (PUT class)", _S3),
    "aws.storage.get": Figure(0.0004 * PER_THOUSAND, "USD per GET request", _S3),
    "aws.storage.head": Figure(0.0004 * PER_THOUSAND, "USD per HEAD request (GET class)", _S3),
    "aws.storage.delete": Figure(0.0, "USD per DELETE request (free)", _S3),
    "aws.storage.delete_many": Figure(0.0, "USD per multi-object delete (free)", _S3),
    # -- Google Cloud Functions 2nd gen (Cloud Run functions, request-based billing) ---------------
    "gcp.gen2.vcpu_second": Figure(0.000024, "USD per vCPU-second (tier 1)", _RUN),
    "gcp.gen2.gib_second": Figure(0.0000025, "USD per GiB-second (tier 1)", _RUN),
    "gcp.gen2.invocation": Figure(0.40 * PER_MILLION, "USD per invocation", _RUN),
    "gcp.gen2.rounding_ms": Figure(100, "billed duration rounded up to a multiple of this (ms)", _RUN),
    "gcp.gen2.default_memory_mb": Figure(256, "MiB when the platform says nothing (GCF's default)", _GCF_MEM),
    # memory (MiB) -> vCPU, as Cloud Functions 2nd gen allocates them
    "gcp.gen2.vcpu.128": Figure(0.083, "vCPU at 128 MiB", _GCF_MEM),
    "gcp.gen2.vcpu.256": Figure(0.167, "vCPU at 256 MiB", _GCF_MEM),
    "gcp.gen2.vcpu.512": Figure(0.333, "vCPU at 512 MiB", _GCF_MEM),
    "gcp.gen2.vcpu.1024": Figure(0.583, "vCPU at 1 GiB", _GCF_MEM),
    "gcp.gen2.vcpu.2048": Figure(1.0, "vCPU at 2 GiB", _GCF_MEM),
    "gcp.gen2.vcpu.4096": Figure(2.0, "vCPU at 4 GiB", _GCF_MEM),
    "gcp.gen2.vcpu.8192": Figure(2.0, "vCPU at 8 GiB", _GCF_MEM),
    "gcp.gen2.vcpu.16384": Figure(4.0, "vCPU at 16 GiB", _GCF_MEM),
    "gcp.gen2.vcpu.32768": Figure(8.0, "vCPU at 32 GiB", _GCF_MEM),
    # GCS Standard operations
    "gcp.storage.put": Figure(0.005 * PER_THOUSAND, "USD per class A operation (insert)", _GCS),
    "gcp.storage.list": Figure(0.005 * PER_THOUSAND, "USD per class A operation (list)", _GCS),
    "gcp.storage.get": Figure(0.0004 * PER_THOUSAND, "USD per class B operation (get)", _GCS),
    "gcp.storage.head": Figure(0.0004 * PER_THOUSAND, "USD per class B operation (get metadata)", _GCS),
    "gcp.storage.delete": Figure(0.0, "USD per delete (free)", _GCS),
    "gcp.storage.delete_many": Figure(0.0, "USD per delete (free)", _GCS),
    # -- Azure Functions Consumption --------------------------------------------------------------
    "azure.consumption.gb_second": Figure(0.000016, "USD per GB-second (observed memory)", _AZF),
    "azure.consumption.execution": Figure(0.20 * PER_MILLION, "USD per execution", _AZF),
    "azure.consumption.memory_step_mb": Figure(128, "memory rounded up to a multiple of this (MB)", _AZF_COSTS),
    "azure.consumption.min_memory_mb": Figure(128, "minimum billed memory (MB)", _AZF, note=_UNVERIFIED),
    "azure.consumption.max_memory_mb": Figure(1536, "maximum memory of an instance (MB)", _AZF),
    "azure.consumption.min_ms": Figure(100, "minimum billed execution time (ms)", _AZF, note=_UNVERIFIED),
    "azure.consumption.rounding_ms": Figure(1, "execution time rounded up to a multiple of this (ms)", _AZF,
                                            note=_UNVERIFIED),
    # -- Azure Functions Flex Consumption (on demand) ---------------------------------------------
    "azure.flex.gb_second": Figure(0.000026, "USD per GB-second of instance memory, on demand", _AZF_FLEX),
    "azure.flex.execution": Figure(0.40 * PER_MILLION, "USD per execution, on demand", _AZF, note=_UNVERIFIED),
    "azure.flex.min_ms": Figure(1000, "minimum billed execution time (ms)", _AZF_FLEX),
    "azure.flex.rounding_ms": Figure(100, "then rounded up to a multiple of this (ms)", _AZF_FLEX),
    "azure.flex.default_memory_mb": Figure(2048, "instance memory when none is configured (MB)", _AZF_FLEX),
    # Azure Blob Storage, Hot tier, LRS
    "azure.storage.put": Figure(0.05 / 10_000, "USD per write operation", _BLOB, note=_UNVERIFIED),
    "azure.storage.list": Figure(0.05 / 10_000, "USD per list operation", _BLOB, note=_UNVERIFIED),
    "azure.storage.get": Figure(0.004 / 10_000, "USD per read operation", _BLOB, note=_UNVERIFIED),
    "azure.storage.head": Figure(0.004 / 10_000, "USD per 'all other operations' (get properties)", _BLOB,
                                 note=_UNVERIFIED),
    "azure.storage.delete": Figure(0.0, "USD per delete (free)", _BLOB),
    "azure.storage.delete_many": Figure(0.0, "USD per delete (free)", _BLOB),
    # -- free tiers per month (applied to bills only when free_tier is on) -------------------------
    "free.aws.lambda.requests": Figure(1_000_000, "requests per month", _LAMBDA),
    "free.aws.lambda.gb_seconds": Figure(400_000, "GB-seconds per month", _LAMBDA),
    "free.aws.gateway.requests": Figure(1_000_000, "API calls per month, first 12 months", _APIGW, note=_UNVERIFIED),
    "free.aws.storage.get": Figure(20_000, "GET requests per month, first 12 months", _S3, note=_UNVERIFIED),
    "free.aws.storage.put": Figure(2_000, "PUT/LIST requests per month, first 12 months", _S3, note=_UNVERIFIED),
    "free.gcp.gen2.requests": Figure(2_000_000, "invocations per month", _RUN),
    "free.gcp.gen2.vcpu_seconds": Figure(180_000, "vCPU-seconds per month", _RUN, note=_UNVERIFIED),
    "free.gcp.gen2.gib_seconds": Figure(360_000, "GiB-seconds per month", _RUN, note=_UNVERIFIED),
    "free.gcp.storage.class_a": Figure(5_000, "class A operations per month", _GCS, note=_UNVERIFIED),
    "free.gcp.storage.class_b": Figure(50_000, "class B operations per month", _GCS, note=_UNVERIFIED),
    "free.azure.consumption.executions": Figure(1_000_000, "executions per month", _AZF),
    "free.azure.consumption.gb_seconds": Figure(400_000, "GB-seconds per month", _AZF),
    "free.azure.flex.executions": Figure(250_000, "executions per month, on demand", _AZF, note=_UNVERIFIED),
    "free.azure.flex.gb_seconds": Figure(100_000, "GB-seconds per month, on demand", _AZF, note=_UNVERIFIED),
}



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
        unknown = sorted(k for k in flat if k not in DEFAULTS)
        if unknown:
            raise ConfigError(
                f"unknown price key(s) {unknown}; known keys look like 'aws.lambda.gb_second.x86_64' "
                "(see nubes.metering.prices.DEFAULTS)"
            )
        self.overrides = flat
        self.values: dict[str, float] = {k: float(f.value) for k, f in DEFAULTS.items()}
        self.values.update(flat)
        tiers = sorted(int(k.rsplit(".", 1)[1]) for k in self.values if k.startswith("gcp.gen2.vcpu."))
        self.gcf_tiers = tuple((t, self.values[f"gcp.gen2.vcpu.{t}"]) for t in tiers)

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def get(self, key: str, default: float = 0.0) -> float:
        return self.values.get(key, default)

    def table(self) -> list[dict[str, Any]]:
        """Every figure with its unit, source and date (overridden ones marked)."""
        rows = []
        for key, fig in DEFAULTS.items():
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
