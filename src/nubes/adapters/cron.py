"""An app's schedule (six-field NCRONTAB ``sec min hour day month weekday``) parsed once for every cloud.

Parsing and validation are croniter's; :func:`parse` expands each field into the set of values it
allows, and :func:`compress` writes a set back as ``*``, ``a-b``, ``a,b`` or a step, so each cloud's
deployer renders the fields in its own dialect (EventBridge's six fields with ``?``, Cloud Scheduler's
five) from values rather than from text. Neither cloud has seconds: a schedule must fire at second 0.
Imports croniter only when called.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from nubes.errors import ConfigError

RANGES = {"minute": (0, 59), "hour": (0, 23), "day": (1, 31), "month": (1, 12), "weekday": (0, 6)}


@dataclass(frozen=True)
class Cron:
    """A parsed schedule: ``None`` for a field means every value (``*``); weekday 0 is Sunday."""

    text: str
    minute: frozenset[int] | None
    hour: frozenset[int] | None
    day: frozenset[int] | None
    month: frozenset[int] | None
    weekday: frozenset[int] | None

    def field(self, name: str) -> frozenset[int] | None:
        value: frozenset[int] | None = getattr(self, name)
        return value


def parse(text: str, where: str) -> Cron:
    """Parse ``text``; raise :class:`ConfigError` naming ``where`` and the fix when no cloud can run it."""
    from croniter import croniter

    fields = text.split()
    example = "e.g. '0 30 2 * * *' (02:30 every day)"
    if len(fields) != 6:
        raise ConfigError(f"{where}: cron {text!r} has {len(fields)} fields; use six (sec min hour day month weekday), {example}")
    try:
        expanded, nth = croniter.expand(text, second_at_beginning=True)
    except Exception as exc:  # croniter's errors (CroniterBadCronError ...) share no public base but ValueError/KeyError
        raise ConfigError(f"{where}: cron {text!r} is not valid: {exc}; {example}") from None
    minute, hour, day, month, weekday, second = expanded
    if nth or any(not isinstance(v, int) and v != "*" for part in expanded for v in part):
        raise ConfigError(f"{where}: cron {text!r} uses L or # (last / nth weekday), which the clouds' schedulers do not "
                          "share; list the days instead")
    if second != [0]:
        raise ConfigError(f"{where}: cron {text!r} fires at second {fields[0]!r}; cloud schedulers have minute "
                          "precision: make the first field 0")

    def values(part: list[int | str], name: str) -> frozenset[int] | None:
        if part == ["*"]:
            return None
        low, high = RANGES[name]
        got = frozenset(int(v) % 7 if name == "weekday" else int(v) for v in part)
        return None if got == frozenset(range(low, high + 1)) else got

    return Cron(text, values(minute, "minute"), values(hour, "hour"), values(day, "day"), values(month, "month"),
                values(weekday, "weekday"))


def compress(values: frozenset[int] | None, name: str, *, step_form: str = "start/step") -> str:
    """``*``, ``a-b``, ``a/s`` (or ``*/s`` / ``a-b/s`` with ``step_form="range/step"``) or a comma list."""
    if values is None:
        return "*"
    low, high = RANGES[name]
    ordered = sorted(values)
    if len(ordered) >= 3:
        step = ordered[1] - ordered[0]
        regular = all(b - a == step for a, b in itertools.pairwise(ordered))
        if regular and step > 1 and ordered[-1] + step > high:
            start = ordered[0]
            if step_form == "start/step":
                return f"{start}/{step}"
            return f"*/{step}" if start == low else f"{start}-{high}/{step}"
    runs: list[str] = []
    first = prev = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        runs.append(str(first) if first == prev else f"{first}-{prev}")
        if value is not None:
            first = prev = value
    return ",".join(runs)


__all__ = ["Cron", "compress", "parse"]
