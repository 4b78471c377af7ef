"""Google Cloud Functions (2nd gen): everything nubes knows about Google Cloud.

``http_function(app)`` and ``cloud_event_function(app)`` are the functions-framework targets
(:mod:`.functions`); :mod:`.builders` renders the payloads the emulator and tests send.
"""

from nubes.adapters.gcp.functions import (
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    PUBSUB_PUBLISHED,
    SCHEDULE_ATTRIBUTE,
    SCHEDULE_PATH,
    STORAGE_FINALIZED,
    cloud_event_function,
    current_platform,
    event_from_cloud_event,
    http_function,
    request_from_flask,
    response_to_flask,
)

__all__ = [
    "MAX_REQUEST_BYTES", "MAX_RESPONSE_BYTES", "PUBSUB_PUBLISHED", "SCHEDULE_ATTRIBUTE", "SCHEDULE_PATH",
    "STORAGE_FINALIZED", "cloud_event_function", "current_platform", "event_from_cloud_event", "http_function",
    "request_from_flask", "response_to_flask",
]
