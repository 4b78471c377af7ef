"""Structured logging: one JSON object per line on standard error.

nubes logs through the ``nubes`` logger. Unless the application has configured that logger
itself, a handler is attached that writes JSON lines to whatever ``sys.stderr`` is at the time
(so test capture and redirection work). ``NUBES_LOG_LEVEL`` sets the level (default INFO);
``NUBES_LOG_LEVEL=off`` silences it. A line is never lost to its text: a value the stream cannot
encode (a lone surrogate, a non-UTF-8 stream) makes that line ASCII-escaped JSON instead.

An adapter may change the level and the *layout* of nubes' own handler with :func:`configure`
(the AWS adapter does, to honour Lambda's log level and format controls). A layout turns the
standard entry (``ts``, ``level``, ``logger``, ``msg``, the fields, ``error``) into one line, given
the JSON encoder to use for it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

LOGGER_NAME = "nubes"

Dumps = Callable[[Any], str]
Layout = Callable[[dict[str, Any], Dumps], str]
"""``layout(entry, dumps) -> line`` (no newline); ``dumps`` is the JSON encoder the line must use."""


class JsonFormatter(logging.Formatter):
    """Formats a record as one line in the current layout (default: one JSON object: ts, level,
    logger, msg, the record's ``nubes`` fields, error)."""

    def format(self, record: logging.LogRecord) -> str:
        return _render(_record_entry(record), _LINE.encode)


def _record_entry(record: logging.LogRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
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
    return entry


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """A StreamHandler bound to the *current* sys.stderr at every emit."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write(_record_entry(record))
        except Exception:
            self.handleError(record)


def logger() -> logging.Logger:
    """The ``nubes`` logger, given a JSON stderr handler the first time if it has none."""
    log = logging.getLogger(LOGGER_NAME)
    if not log.handlers and not getattr(log, "_nubes_configured", False):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(level_from_env(os.environ.get("NUBES_LOG_LEVEL")) or logging.INFO)
        log._nubes_configured = True  # type: ignore[attr-defined]
    return log


def configure(*, level: int | None = None, layout: Layout | None = None) -> bool:
    """Set the level and line layout of nubes' own stderr handler (``layout=None``: JSON lines).

    Returns False, changing nothing, when the application configured the ``nubes`` logger itself.
    """
    log = logger()
    if not getattr(log, "_nubes_configured", False) or not any(type(h) is _StderrHandler for h in log.handlers):
        return False
    if level is not None:
        log.setLevel(level)
    _STYLE[0] = layout
    return True


def level_from_env(value: str | None) -> int | None:
    """A ``NUBES_LOG_LEVEL``-style value as a logging level (``off`` silences); None if unset or unknown."""
    if not value:
        return None
    name = value.strip().upper()
    if name == "OFF":
        return logging.CRITICAL + 1
    found = logging.getLevelName(name)
    return found if isinstance(found, int) else None


def _direct(log: logging.Logger) -> bool:
    """True when the only place records go is nubes' own stderr handler (so formatting can be skipped)."""
    return not log.propagate and len(log.handlers) == 1 and type(log.handlers[0]) is _StderrHandler and not log.filters


_LINE = json.JSONEncoder(default=str, ensure_ascii=False)
_ASCII = json.JSONEncoder(default=str, ensure_ascii=True)
_STYLE: list[Layout | None] = [None]  # the layout of nubes' own handler; None: one JSON object per line


def _render(entry: dict[str, Any], dumps: Dumps) -> str:
    layout = _STYLE[0]
    return dumps(entry) if layout is None else layout(entry, dumps)


def _write(entry: dict[str, Any]) -> None:
    """Write ``entry`` as one line to the current stderr: ASCII-escaped JSON when the stream is not
    UTF-8 or cannot take a value (a lone surrogate) as is, so a line always stays valid JSON."""
    stream = sys.stderr
    if _STREAM[0] is not stream:
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "").replace("_", "")
        _STREAM[:] = [stream, _LINE.encode if encoding == "utf8" else _ASCII.encode]
    layout, dumps = _STYLE[0], _STREAM[1]
    try:
        stream.write((dumps(entry) if layout is None else layout(entry, dumps)) + "\n")
    except UnicodeEncodeError:
        stream.write(_render(entry, _ASCII.encode) + "\n")


_STREAM: list[Any] = [None, _LINE.encode]  # the last stream written to, and the encoder its lines use


_SECOND: list[Any] = [None, ""]  # the last whole second formatted, reused within that second


def _now_iso() -> str:
    now = time.time()
    whole = int(now)
    if _SECOND[0] != whole:
        _SECOND[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _SECOND[0] = whole
    return f"{_SECOND[1]}.{int((now - whole) * 1000):03d}+00:00"


def excerpt(value: Any, limit: int = 2000) -> str:
    """``value`` as JSON for a log line (what JSON cannot hold as its ``repr``), cut at ``limit``
    characters with ``...``; never raises (a value nested too deep for JSON is its ``repr``)."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except Exception:  # not JSON (NaN is, as NaN), nested too deep, or a repr inside that fails
        try:
            text = repr(value)
        except Exception:  # a repr that fails (or recurses too deep) says nothing useful
            text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


class BoundLog:
    """``ctx.log``: log lines carrying the invocation's fields; keyword arguments become fields.

    ``ctx.log.info("loaded", rows=120)`` writes ``{"msg": "loaded", "rows": 120, "request_id": ...}``.
    """

    __slots__ = ("_fields", "_log")

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
            _write(entry)
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
