"""What a Lambda context object tells nubes: request id, deadline and :class:`~nubes.Platform`.

The Lambda runtime passes a context with ``aws_request_id``, ``function_name``,
``memory_limit_in_mb`` (a string), ``invoked_function_arn`` and ``get_remaining_time_in_millis()``.
:func:`invocation` turns it into the three keyword arguments :meth:`nubes.App.handle` and
:meth:`nubes.App.handle_event` take. ``cold_start`` is True for the first invocation in the
process only. ``context`` may be None (a direct call in a test): then there is no deadline and
the request id is left to the app.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, NamedTuple

from nubes.core.events import Platform, machine_architecture

_state_lock = threading.Lock()
_cold = True
_platforms: dict[tuple[Any, ...], Platform] = {}


class Invocation(NamedTuple):
    """The per-call facts an adapter hands to the app."""

    request_id: str | None
    deadline: float | None
    platform: Platform


def _take_cold_start() -> bool:
    global _cold
    if not _cold:  # fast path: every warm call
        return False
    with _state_lock:
        was, _cold = _cold, False
    return was


def reset_cold_start() -> None:
    """Make the next invocation count as a cold start again and re-read the environment (for tests)."""
    global _cold
    with _state_lock:
        _cold = True
        _platforms.clear()


def architecture() -> str | None:
    """``x86_64`` or ``arm64``: ``NUBES_ARCHITECTURE`` if set, else the machine's when running on Lambda.

    Lambda sets no architecture variable, so the machine type is used only when
    ``AWS_LAMBDA_FUNCTION_NAME`` says this process is a Lambda runtime; otherwise None.
    """
    explicit = os.environ.get("NUBES_ARCHITECTURE")
    if explicit:
        return explicit
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return machine_architecture()
    return None


def _region(arn: str | None) -> str | None:
    # arn:aws:lambda:eu-west-1:123456789012:function:name[:alias]
    if arn and arn.count(":") >= 4:
        region = arn.split(":", 4)[3]
        if region:
            return region
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _platform_for(context: Any, cold: bool) -> Platform:
    name = getattr(context, "function_name", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    memory = getattr(context, "memory_limit_in_mb", None) or os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    arn = getattr(context, "invoked_function_arn", None)
    emulated = bool(getattr(context, "emulated", False))
    key = (name, memory, arn, emulated, cold)
    found = _platforms.get(key)
    if found is None:
        found = Platform(
            provider="aws",
            function_name=name,
            memory_mb=int(memory) if memory else None,
            region=_region(arn),
            # Lambda always runs on an architecture: under the emulator (its LambdaContext), the machine's
            architecture=architecture() or (machine_architecture() if emulated else None),
            cold_start=cold,
            emulated=emulated,
        )
        if len(_platforms) < 64:  # one entry per function/alias in practice
            _platforms[key] = found
    return found


def invocation(context: Any) -> Invocation:
    """Request id, monotonic deadline and platform for one invocation with this Lambda ``context``.

    The deadline is ``time.monotonic() + get_remaining_time_in_millis() / 1000``, read on entry.
    """
    cold = _take_cold_start()
    if context is None:
        return Invocation(None, None, _platform_for(None, cold))
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    deadline = time.monotonic() + remaining() / 1000 if remaining is not None else None
    return Invocation(getattr(context, "aws_request_id", None), deadline, _platform_for(context, cold))
