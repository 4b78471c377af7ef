"""Azure Functions (Python v2 model): everything nubes knows about Azure.

``function_app(app)`` is the indexed ``FunctionApp`` (:mod:`.functions`), ``write_project`` writes
``function_app.py`` and ``host.json``; :mod:`.builders` renders the objects the emulator and tests pass.
The names below load :mod:`.functions` (and the ``azure-functions`` SDK) on first use, so the cloud's
figures and prices (:mod:`.cloud`, :mod:`.prices`) can be read without that extra installed.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_TIMEOUT_S", "HTTP_FUNCTION", "HTTP_TIMEOUT_S", "function_app", "host_json", "message_event",
    "object_created_event", "scheduled_event", "to_func_response", "to_nubes_request", "write_project",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nubes.adapters.azure import functions

        return getattr(functions, name)
    raise AttributeError(f"module 'nubes.adapters.azure' has no attribute {name!r}")
