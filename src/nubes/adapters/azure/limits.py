"""Azure Functions limits and defaults as nubes uses them, each with its source (one table for the
adapter, the emulator, build and deploy; prices are in :mod:`.prices`)."""

from __future__ import annotations

from nubes.adapters.base import Figure

MB = 1024 * 1024
_SCALE = "learn.microsoft.com/azure/azure-functions/functions-scale"

FIGURES: dict[str, Figure] = {
    # Consumption plan: functionTimeout 5 min default / 10 min max; 1.5 GB memory per instance; HTTP
    # request 100 MB (host maxRequestBodySize 104857600); "Regardless of the function app timeout
    # setting, 230 seconds is the maximum amount of time that an HTTP triggered function can take to
    # respond ... because of the default idle timeout of Azure Load Balancer"
    # (MicrosoftDocs/azure-docs includes/functions-timeout-duration.md).
    "request_bytes": Figure(100 * MB, _SCALE + "#service-limits"),
    "http_timeout_s": Figure(230, _SCALE + "#timeout"),
    "default_timeout_s": Figure(300, _SCALE + "#timeout"),
    "timeout_max_s": Figure(600, _SCALE + "#timeout"),
    "default_memory_mb": Figure(1536, _SCALE + "#service-limits"),
    "memory_max_mb": Figure(1536, _SCALE + "#service-limits"),
    # Jobs run as a queue-triggered function: an attempt runs up to functionTimeout; nubes deploys
    # Flex Consumption, whose default is 30 minutes and maximum unbounded (set it in host.json). A
    # failed message is visible again after host.json queues.visibilityTimeout (default 00:00:00, at once),
    # up to maxDequeueCount deliveries (default 5; nubes writes [jobs] max_attempts)
    # (learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json).
    "job_timeout_s": Figure(1800, _SCALE + "#timeout (Flex Consumption default; unbounded when configured)"),
    "queue.max_dequeue_count": Figure(5, "learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json"),
    "memory_min_mb": Figure(128, "nubes emulation floor: Consumption has no memory setting and bills observed "
                                 "memory rounded up to 128 MB (learn.microsoft.com/azure/azure-functions/functions-consumption-costs)"),
}
