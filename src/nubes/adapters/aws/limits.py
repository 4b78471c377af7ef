"""AWS Lambda's limits and defaults as nubes uses them, each with its source (one table for the
adapter, the emulator, build and deploy; prices are in :mod:`.prices`)."""

from __future__ import annotations

from nubes.adapters.base import Figure

MB = 1024 * 1024
_QUOTAS = "docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
_ALB = "docs.aws.amazon.com/elasticloadbalancing/latest/application/lambda-functions.html"
_ASYNC = "docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html"

FIGURES: dict[str, Figure] = {
    # Lambda quotas: "Invocation payload (request and response): 6 MB each for request and response
    # (synchronous)"; the service counts 6 MB as 6,291,456 bytes ("Request must be smaller than 6291456 bytes").
    "payload_bytes": Figure(6 * MB, _QUOTAS),
    "timeout_max_s": Figure(900, _QUOTAS),
    "memory_min_mb": Figure(128, _QUOTAS),
    "memory_max_mb": Figure(10240, _QUOTAS),
    "package_unzipped_bytes": Figure(262_144_000, _QUOTAS + " (250 MB unzipped, layers included)"),
    "package_zipped_direct_bytes": Figure(50 * MB, _QUOTAS + " (50 MB zipped, direct upload)"),
    # nubes' emulation defaults (a console-created function has 3 s / 128 MB; nubes apps with
    # duckdb/polars need more, and 30 s is what an API Gateway front end allows anyway).
    "default_timeout_s": Figure(30, "nubes default (API Gateway HTTP API integration maximum)"),
    "default_memory_mb": Figure(1024, "nubes default (nubes.adapters.aws.builders.LambdaContext)"),
    # API Gateway quotas: HTTP API integration timeout 30 s, REST 29 s (default), payload 10 MB.
    "http_api.timeout_s": Figure(30, "docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html"),
    "rest_api.timeout_s": Figure(29, "docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"),
    "api_gateway.body_bytes": Figure(10 * MB, "docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"),
    # ALB with a Lambda target: "The maximum size of the request body that you can send to a Lambda
    # function is 1 MB" and "the response JSON ... is 1 MB".
    "alb.body_bytes": Figure(1 * MB, _ALB),
    "alb.response_bytes": Figure(1 * MB, _ALB),
    # Jobs run as asynchronous invocations of the same function: an attempt runs up to the function's
    # timeout (900 s at most); a failed attempt (error, timeout, out of memory) is retried twice by
    # default, "with a one-minute wait between the first two attempts, and two minutes between the
    # second and third" (docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html).
    "job_timeout_s": Figure(900, _QUOTAS + " (function timeout, also for asynchronous invocations)"),
    "async.retries": Figure(2, _ASYNC),
    "async.first_retry_delay_s": Figure(60, _ASYNC),
    "async.second_retry_delay_s": Figure(120, _ASYNC),
}
