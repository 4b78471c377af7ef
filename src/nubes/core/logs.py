"""Structured logging: one JSON object per line on standard error.

nubes logs through the ``nubes`` logger. Unless the application has configured that logger
itself, a handler is attached that writes JSON lines to whatever ``sys.stderr`` is at the time
(so test capture and redirection work). ``NUBES_LOG_LEVEL`` sets the level (default INFO);
``NUBES_LOG_LEVEL=off`` silences it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from typing import Any

LOGGER_NAME = "nubes"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, msg, the record's ``nubes`` fields, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "nubes", None) or {})
        if record.exc_info and record.exc_info[0] is not None:
            etype, value, tb = record.exc_info
            entry["error"] = {
                "type": etype.__name__,
                "message": str(value),
                "traceback": "".join(traceback.format_exception(etype, value, tb)),
            }
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler bound to the *current* sys.stderr at every emit."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def logger() -> logging.Logger:
    """The ``nubes`` logger, given a JSON stderr handler the first time if it has none."""
    log = logging.getLogger(LOGGER_NAME)
    if not log.handlers and not getattr(log, "_nubes_configured", False):
        level = os.environ.get("NUBES_LOG_LEVEL", "INFO").upper()
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.CRITICAL + 1 if level == "OFF" else getattr(logging, level, logging.INFO))
        log._nubes_configured = True  # type: ignore[attr-defined]
    return log


def _direct(log: logging.Logger) -> bool:
    """True when the only place records go is nubes' own stderr handler (so formatting can be skipped)."""
    return not log.propagate and len(log.handlers) == 1 and type(log.handlers[0]) is _StderrHandler and not log.filters


_LINE = json.JSONEncoder(default=str, ensure_ascii=False)
_SECOND: list[Any] = [None, ""]  # the last whole second formatted, reused within that second


def _now_iso() -> str:
    now = time.time()
    whole = int(now)
    if _SECOND[0] != whole:
        _SECOND[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _SECOND[0] = whole
    return f"{_SECOND[1]}.{int((now - whole) * 1000):03d}+00:00"


class BoundLog:
    """``ctx.log``: log lines carrying the invocation's fields; keyword arguments become fields.

    ``ctx.log.info("loaded", rows=120)`` writes ``{"msg": "loaded", "rows": 120, "request_id": ...}``.
    """

    __slots__ = ("_log", "_fields")

    def __init__(self, log: logging.Logger, **fields: Any) -> None:
        self._log = log
        self._fields = fields

    def bind(self, **fields: Any) -> BoundLog:
        return BoundLog(self._log, **{**self._fields, **fields})

    def _emit(self, level: int, msg: str, exc_info: Any = None, **fields: Any) -> None:
        log = self._log
        if not log.isEnabledFor(level):
            return
        if not exc_info and _direct(log):
            # The common case (our own stderr handler only): one json.dumps and one write, no LogRecord.
            entry = {"ts": _now_iso(), "level": logging.getLevelName(level).lower(), "logger": log.name, "msg": msg}
            entry.update(self._fields)
            entry.update(fields)
            sys.stderr.write(_LINE.encode(entry) + "\n")
            return
        log.log(level, msg, exc_info=exc_info, extra={"nubes": {**self._fields, **fields}})

    def debug(self, msg: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, msg, **fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._emit(logging.INFO, msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._emit(logging.WARNING, msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._emit(logging.ERROR, msg, **fields)

    def exception(self, msg: str, **fields: Any) -> None:
        self._emit(logging.ERROR, msg, exc_info=True, **fields)
