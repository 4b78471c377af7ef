"""Google Cloud Functions (2nd gen): everything nubes knows about Google Cloud.

``http_function(app)`` and ``cloud_event_function(app)`` are the functions-framework targets
(:mod:`.functions`); :mod:`.builders` renders the payloads the emulator and tests send.
The names below load :mod:`.functions` (and Flask with functions-framework) on first use, so the
cloud's figures and prices (:mod:`.cloud`, :mod:`.prices`) can be read cheaply and without that extra.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MAX_REQUEST_BYTES", "MAX_RESPONSE_BYTES", "PUBSUB_PUBLISHED", "SCHEDULE_ATTRIBUTE", "SCHEDULE_PATH",
    "STORAGE_FINALIZED", "cloud_event_function", "current_platform", "event_from_cloud_event", "http_function",
    "request_from_flask", "response_to_flask",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nubes.adapters.gcp import functions

        return getattr(functions, name)
    raise AttributeError(f"module 'nubes.adapters.gcp' has no attribute {name!r}")
