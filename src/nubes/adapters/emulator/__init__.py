"""Provider emulation: run an app through AWS Lambda's, Cloud Functions' or Azure Functions' own
payloads and adapters, with their limits, timeouts, memory and cold starts.

* :class:`Emulator` — ``Emulator(app, "aws", aws_event="http", timeout=..., memory=..., workers=2)``;
  ``.handle(request)`` answers as the provider would, ``.emit(kind, arg)`` fires an event.
* :class:`EmulatorServer` — ``nubes serve APP --emulate PROVIDER``.
* :mod:`.providers` — every figure and answer, with its source.

Names are imported lazily, so a worker process (``nubes.adapters.emulator.workers``) loads only
what it needs.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "ANSWERS": "providers", "FIGURES": "providers", "PROVIDERS": "providers", "Provider": "providers",
    "provider": "providers", "EVENT_KINDS": "runtime", "Emulator": "runtime", "EventResult": "runtime",
    "EmulatorServer": "server",
}

__all__ = ["ANSWERS", "EVENT_KINDS", "FIGURES", "PROVIDERS", "Emulator", "EmulatorServer", "EventResult", "Provider", "provider"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nubes.adapters.emulator' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"nubes.adapters.emulator.{module}"), name)
