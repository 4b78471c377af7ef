"""Cloud Functions (2nd gen) limits and defaults as nubes uses them, each with its source (one table
for the adapter, the emulator, build and deploy; prices are in :mod:`.prices`)."""

from __future__ import annotations

from nubes.adapters.base import Figure

MB = 1024 * 1024
_QUOTAS = "cloud.google.com/functions/quotas"
_MEMORY = "cloud.google.com/functions/docs/configuring/memory"
_TIMEOUT = "cloud.google.com/functions/docs/configuring/timeout"

FIGURES: dict[str, Figure] = {
    # Cloud Functions 2nd gen (Cloud Run functions): 32 MiB HTTP request and response;
    # HTTP timeout default 60 s, max 60 min; memory 128 MiB to 32 GiB, default 256 MiB.
    "request_bytes": Figure(32 * MB, _QUOTAS),
    "response_bytes": Figure(32 * MB, _QUOTAS),
    "default_timeout_s": Figure(60, _TIMEOUT),
    "timeout_max_s": Figure(3600, _TIMEOUT),
    "default_memory_mb": Figure(256, _MEMORY),
    "memory_min_mb": Figure(128, _MEMORY),
    "memory_max_mb": Figure(32768, _MEMORY),
    "source_zip_bytes": Figure(100 * MB, _QUOTAS + " (source upload via the API, zipped)"),
}
