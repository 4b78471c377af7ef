"""AWS prices as nubes meters them: the figures (each with unit, source and date) and the Lambda plan.

Fronts (how an HTTP request reaches the function; ``Platform.front`` from the event, else the
``front`` setting, else ``http``):

* ``http`` — API Gateway HTTP API, per request; ``rest`` — API Gateway REST API, per request;
* ``url`` — a Lambda function URL: no charge beyond Lambda's;
* ``alb`` — an Application Load Balancer, billed per LCU-hour, an LCU being the largest of four
  dimensions over the hour (new connections, active connections, processed bytes, rule
  evaluations). Per request nubes charges the larger of two shares of an LCU-hour: its processed
  bytes (request + response; 0.4 GB per LCU-hour for Lambda targets) and one new connection
  (25 per second per LCU). The sum over requests bounds the hour's LCU charge from above when
  clients do not reuse connections; active connections and rule evaluations (the first 10 rules
  are free) are not metered. The fixed charge per ALB-hour is not per invocation and is left out
  of invocation costs (it is listed, for totals, in ``nubes prices``).
* ``none`` — invoked directly (SDK, event sources): no front.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nubes.metering.prices import PER_MILLION, PER_THOUSAND, UNVERIFIED, Figure, PriceBook
from nubes.metering.pricing import PriceModel, Usage, arch_of, ceil_to

_LAMBDA_WP = "https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html"
_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
_QUOTAS = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
_APIGW_WP = ("https://docs.aws.amazon.com/whitepapers/latest/best-practices-api-gateway-private-apis-integration/"
             "cost-optimization.html")
_APIGW = "https://aws.amazon.com/api-gateway/pricing/"
_APIGW_QUOTAS = "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"
_HTTP_QUOTAS = "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html"
_FURL = "https://docs.aws.amazon.com/lambda/latest/dg/urls-configuration.html"
_ELB = "https://aws.amazon.com/elasticloadbalancing/pricing/"
_ELB_NOTE = "from a transcription of the pricing page's US East example; " + UNVERIFIED
_S3 = "https://aws.amazon.com/s3/pricing/"

FIGURES: dict[str, Figure] = {
    # -- AWS Lambda ------------------------------------------------------------------------------
    "aws.lambda.gb_second.x86_64": Figure(0.0000166667, "USD per GB-second (memory MB/1024 x billed s)", _LAMBDA_WP),
    "aws.lambda.gb_second.arm64": Figure(0.0000133334, "USD per GB-second", _LAMBDA,
                                         note="Arm price from a third-party copy of the pricing page"),
    "aws.lambda.request": Figure(0.20 * PER_MILLION, "USD per request", _LAMBDA_WP),
    "aws.lambda.rounding_ms": Figure(1, "billed duration rounded up to a multiple of this (ms)", _LAMBDA_WP),
    "aws.lambda.default_memory_mb": Figure(128, "MB when the platform says nothing (Lambda's default)", _LAMBDA),
    "aws.lambda.max_memory_mb": Figure(10240, "largest memory setting (MB; 1 MB steps from 128)", _QUOTAS),
    "aws.lambda.max_duration_s": Figure(900, "function timeout maximum (s)", _QUOTAS),
    # -- fronts (HTTP requests only; events have none) ---------------------------------------------
    "aws.gateway.http": Figure(1.00 * PER_MILLION, "USD per HTTP API request (first 300 M/month)", _APIGW_WP),
    "aws.gateway.rest": Figure(3.50 * PER_MILLION, "USD per REST API request (first 333 M/month)", _APIGW_WP),
    "aws.gateway.url": Figure(0.0, "USD per Lambda function URL request (no charge beyond Lambda's)", _FURL),
    "aws.gateway.none": Figure(0.0, "USD per request invoked directly (SDK / event source)", _LAMBDA),
    "aws.gateway.http.timeout_s": Figure(30, "HTTP API integration timeout (s)", _HTTP_QUOTAS),
    "aws.gateway.rest.timeout_s": Figure(29, "REST API integration timeout, default maximum (s)", _APIGW_QUOTAS),
    "aws.gateway.alb.lcu_hour": Figure(0.008, "USD per LCU-hour (Application Load Balancer)", _ELB, note=_ELB_NOTE),
    "aws.gateway.alb.lcu_lambda_bytes_per_hour": Figure(0.4e9, "bytes processed per LCU-hour for Lambda targets (0.4 GB)",
                                                        _ELB, note=_ELB_NOTE),
    "aws.gateway.alb.lcu_new_connections_per_s": Figure(25, "new connections per second per LCU", _ELB, note=_ELB_NOTE),
    "aws.gateway.alb.hour": Figure(0.0225, "USD per ALB-hour (fixed; not part of invocation costs)", _ELB, note=_ELB_NOTE),
    # -- S3 Standard requests --------------------------------------------------------------------
    "aws.storage.put": Figure(0.005 * PER_THOUSAND, "USD per PUT/COPY/POST/LIST request", _S3),
    "aws.storage.list": Figure(0.005 * PER_THOUSAND, "USD per LIST request (PUT class)", _S3),
    "aws.storage.get": Figure(0.0004 * PER_THOUSAND, "USD per GET request", _S3),
    "aws.storage.head": Figure(0.0004 * PER_THOUSAND, "USD per HEAD request (GET class)", _S3),
    "aws.storage.delete": Figure(0.0, "USD per DELETE request (free)", _S3),
    "aws.storage.delete_many": Figure(0.0, "USD per multi-object delete (free)", _S3),
    # -- free tier per month (applied to bills only when free_tier is on) --------------------------
    "free.aws.lambda.requests": Figure(1_000_000, "requests per month", _LAMBDA),
    "free.aws.lambda.gb_seconds": Figure(400_000, "GB-seconds per month", _LAMBDA),
    "free.aws.gateway.requests": Figure(1_000_000, "API calls per month, first 12 months", _APIGW, note=UNVERIFIED),
    "free.aws.storage.get": Figure(20_000, "GET requests per month, first 12 months", _S3, note=UNVERIFIED),
    "free.aws.storage.put": Figure(2_000, "PUT/LIST requests per month, first 12 months", _S3, note=UNVERIFIED),
}


class LambdaPlan(PriceModel):
    """Lambda on demand: memory (MB/1024 GB) x duration rounded up to 1 ms at the architecture's
    GB-second price, plus the per-request price, plus the front's charge."""

    cloud = "aws"
    plan = "lambda"
    title = "AWS Lambda (on demand)"
    figures = FIGURES
    fronts = ("http", "rest", "url", "alb", "none")
    default_memory_mb = int(FIGURES["aws.lambda.default_memory_mb"].value)  # what quotes assume: the figures above
    max_memory_mb = int(FIGURES["aws.lambda.max_memory_mb"].value)
    max_duration_s = float(FIGURES["aws.lambda.max_duration_s"].value)

    def compute(self, usage: Usage, book: PriceBook) -> tuple[int, int, float, float, float, float]:
        v = book.values
        memory = usage.memory_mb or v["aws.lambda.default_memory_mb"]
        step = v["aws.lambda.rounding_ms"]
        billed = max(ceil_to(max(float(usage.duration_ms), 0.0), step), int(step))
        gb_s = memory / 1024 * billed / 1000
        return (billed, int(memory), gb_s, 0.0, gb_s * v[f"aws.lambda.gb_second.{arch_of(usage.architecture)}"],
                v["aws.lambda.request"])

    def gateway_usd(self, front: str, usage: Usage, book: PriceBook) -> float:
        if front != "alb":
            return super().gateway_usd(front, usage, book)
        v = book.values
        by_bytes = max(usage.http_bytes, 0) / v["aws.gateway.alb.lcu_lambda_bytes_per_hour"]
        by_connection = 1.0 / (v["aws.gateway.alb.lcu_new_connections_per_s"] * 3600)
        return max(by_bytes, by_connection) * v["aws.gateway.alb.lcu_hour"]

    def prices_bytes(self, front: str | None) -> bool:
        return front == "alb"

    def memory_options(self) -> Sequence[int]:
        return (128, *range(192, 10241, 64))

    def http_limit_s(self, front: str | None) -> float:
        limit = FIGURES.get(f"aws.gateway.{front or self.fronts[0]}.timeout_s")
        return min(self.max_duration_s, limit.value) if limit else self.max_duration_s

    def free_tier_credit(self, month: Mapping[str, float], book: PriceBook) -> float:
        v = book.values
        n, gb_s = month.get("invocations", 0.0), month.get("gb_seconds", 0.0)
        per_gbs = month.get("compute_usd", 0.0) / gb_s if gb_s else 0.0
        credit = min(n, v["free.aws.lambda.requests"]) * v["aws.lambda.request"]
        credit += min(gb_s, v["free.aws.lambda.gb_seconds"]) * per_gbs
        credit += min(n, v["free.aws.gateway.requests"]) * (month.get("gateway_usd", 0.0) / n if n else 0.0)
        credit += min(month.get("reads", 0.0), v["free.aws.storage.get"]) * v["aws.storage.get"]
        credit += min(month.get("writes", 0.0), v["free.aws.storage.put"]) * v["aws.storage.put"]
        return credit


PLANS: dict[str, PriceModel] = {"lambda": LambdaPlan()}
