"""nubes' log lines under Lambda's logging controls (``AWS_LAMBDA_LOG_LEVEL``, ``AWS_LAMBDA_LOG_FORMAT``).

Lambda sets both variables from the function's logging configuration; the Python runtime client
configures the root logger from them, which nubes' own logger (not propagating) would bypass.
:func:`configure_logging` (called by :func:`nubes.adapters.aws.handler` when
``AWS_LAMBDA_FUNCTION_NAME`` says this is a Lambda runtime) applies them to nubes' handler:

* level: ``AWS_LAMBDA_LOG_LEVEL`` (TRACE, DEBUG, INFO, WARN, ERROR, FATAL; TRACE is DEBUG here).
  With ``NUBES_LOG_LEVEL`` also set, the stricter of the two wins (Lambda drops the rest anyway).
* ``AWS_LAMBDA_LOG_FORMAT=JSON``: one JSON object per line with Lambda's keys (``timestamp``,
  ``level`` as TRACE..FATAL so Lambda can filter it, ``message``, ``logger``, ``requestId``;
  ``errorType``, ``errorMessage``, ``stackTrace`` for exceptions) followed by nubes' own fields.
* ``AWS_LAMBDA_LOG_FORMAT=Text``: the runtime's text layout
  ``[LEVEL]<TAB>timestamp<TAB>request id<TAB>message`` whose message is nubes' JSON line, so the
  fields stay machine-readable (and ``nubes costs --reconcile`` finds them after the first ``{``).
* unset: unchanged (nubes' JSON lines).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from nubes.core.logs import Dumps, configure, level_from_env

LAMBDA_LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR", "critical": "FATAL"}
"""nubes' level names -> the ones Lambda's log-level filter reads in a JSON line's ``level``."""
_OWN_KEYS = frozenset({"ts", "level", "logger", "msg", "error"})


def lambda_level(value: str | None) -> int | None:
    """An ``AWS_LAMBDA_LOG_LEVEL`` value as a logging level; None if unset or unknown."""
    name = (value or "").strip().upper()
    return {"TRACE": logging.DEBUG, "FATAL": logging.CRITICAL}.get(name) or level_from_env(name)


def json_layout(entry: dict[str, Any], dumps: Dumps) -> str:
    """Lambda's JSON log line for a nubes log entry."""
    out: dict[str, Any] = {
        "timestamp": entry.get("ts"),
        "level": LAMBDA_LEVELS.get(entry.get("level", ""), "INFO"),
        "message": entry.get("msg"),
        "logger": entry.get("logger"),
    }
    rid = entry.get("request_id")
    if rid:
        out["requestId"] = rid
    error = entry.get("error")
    if isinstance(error, Mapping):
        out["errorType"] = error.get("type")
        out["errorMessage"] = error.get("message")
        out["stackTrace"] = str(error.get("traceback") or "").splitlines()
    for key, value in entry.items():
        if key not in _OWN_KEYS and key not in out:
            out[key] = value
    return dumps(out)


def text_layout(entry: dict[str, Any], dumps: Dumps) -> str:
    """The runtime's text log line (``[INFO]\\t2024-01-01T00:00:00.000Z\\tREQUEST_ID\\t...``), nubes' JSON as its message."""
    ts = str(entry.get("ts") or "")
    if ts.endswith("+00:00"):
        ts = ts[:-6] + "Z"
    rid = str(entry.get("request_id") or "")
    return f"[{str(entry.get('level', 'info')).upper()}]\t{ts}\t{rid if rid.isprintable() else dumps(rid)}\t{dumps(entry)}"


def configure_logging(environ: Mapping[str, str] | None = None) -> bool:
    """Apply Lambda's log level and format to nubes' logger when ``environ`` (default: the process
    environment) is a Lambda runtime's; True if anything was applied."""
    env = os.environ if environ is None else environ
    if not env.get("AWS_LAMBDA_FUNCTION_NAME"):
        return False
    fmt = (env.get("AWS_LAMBDA_LOG_FORMAT") or "").strip().upper()
    levels = [lvl for lvl in (lambda_level(env.get("AWS_LAMBDA_LOG_LEVEL")), level_from_env(env.get("NUBES_LOG_LEVEL")))
              if lvl is not None]
    if not fmt and not levels:
        return False
    layout = json_layout if fmt == "JSON" else text_layout if fmt == "TEXT" else None
    return configure(level=max(levels) if levels else None, layout=layout)
