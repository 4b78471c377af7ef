"""Azure Functions (Python v2 model): everything nubes knows about Azure.

``function_app(app)`` is the indexed ``FunctionApp`` (:mod:`.functions`), ``write_project`` writes
``function_app.py`` and ``host.json``; :mod:`.builders` renders the objects the emulator and tests pass.
"""

from nubes.adapters.azure.functions import (
    DEFAULT_TIMEOUT_S,
    HTTP_FUNCTION,
    HTTP_TIMEOUT_S,
    function_app,
    host_json,
    message_event,
    object_created_event,
    scheduled_event,
    to_func_response,
    to_nubes_request,
    write_project,
)

__all__ = [
    "DEFAULT_TIMEOUT_S", "HTTP_FUNCTION", "HTTP_TIMEOUT_S", "function_app", "host_json", "message_event",
    "object_created_event", "scheduled_event", "to_func_response", "to_nubes_request", "write_project",
]
