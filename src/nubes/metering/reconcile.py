"""Restore ledger records from invocation log lines: ``nubes costs APP --reconcile LOGFILE``.

Every invocation's log line (``"msg": "invocation"``) carries its whole ledger record, ``record_id``
included. On a real cloud a record can miss the ledger (an instance reclaimed while its batch
waited; see the README's bound per flush policy) but never its log line. :func:`reconcile` reads log
lines, finds the records whose ``record_id`` the ledger lacks, and writes them; running it twice,
or on overlapping logs, adds nothing more (readers keep one record per id anyway).

Accepted input: nubes' JSON lines as written to stderr; the same with any prefix before the JSON
object (``aws logs tail``, ``docker logs -t``, a syslog timestamp); CloudWatch Logs exports
(``aws logs filter-log-events`` output: ``{"events": [{"message": ...}]}``); Cloud Logging exports
(``jsonPayload``) and Azure's ``FunctionAppLogs`` rows with the line in ``Message``/``message``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from nubes.metering.ledger import COLUMNS, PREFIX, day_of

if TYPE_CHECKING:
    from nubes.storage.base import ObjectStore

MAX_LINE = 1024 * 1024  # a longer line is not a nubes log line


def _objects(text: str) -> Iterator[Any]:
    """JSON values in ``text``: the whole document if it is one, else one per line (after any prefix)."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            yield json.loads(stripped)
            return
        except json.JSONDecodeError:
            pass
    for line in text.splitlines():
        if len(line) > MAX_LINE:
            continue
        start = line.find("{")
        if start < 0:
            continue
        try:
            yield json.loads(line[start:])
        except json.JSONDecodeError:
            continue


def _entries(value: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Invocation log entries inside ``value`` (unwrapping export formats)."""
    if depth > 4:
        return
    if isinstance(value, list):
        for item in value:
            yield from _entries(item, depth + 1)
        return
    if not isinstance(value, dict):
        return
    if value.get("msg") == "invocation" and "record_id" in value:
        yield value
        return
    for key in ("events", "jsonPayload", "message", "Message", "log", "textPayload"):
        inner = value.get(key)
        if isinstance(inner, str) and "{" in inner:
            for obj in _objects(inner):
                yield from _entries(obj, depth + 1)
        elif inner is not None:
            yield from _entries(inner, depth + 1)


def records_in(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Ledger records found in log text (one per ``record_id``)."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in lines:
        for obj in _objects(chunk):
            for entry in _entries(obj):
                record = {k: entry.get(k) for k in COLUMNS}
                if record["record_id"] and record["request_id"] and isinstance(record.get("cost_usd"), (int, float)):
                    found.setdefault(str(record["record_id"]), record)
    return list(found.values())


def reconcile(store: ObjectStore, text: str, *, dry_run: bool = False) -> dict[str, Any]:
    """Write the records of log ``text`` that the ledger in ``store`` lacks; returns the counts."""
    from nubes.metering.rollup import ledger_view

    found = records_in([text])
    if not found:
        return {"found": 0, "present": 0, "restored": 0, "days": []}
    days = sorted({str(r.get("day") or str(r.get("start_time") or "")[:10]) for r in found})
    with ledger_view(store, days[0], days[-1], compact=False) as con:
        present = {row[0] for row in con.execute("SELECT record_id FROM ledger").fetchall()}
    missing = [r for r in found if r["record_id"] not in present]
    if missing and not dry_run:
        from nubes.storage.journal import Journal

        journal = Journal(store, PREFIX, name="ledger-reconcile", mode="manual", spool=None)  # its own, unspooled
        for record in missing:
            journal.append(f"day={day_of(record)}", record)
        if not journal.close(timeout=30.0):
            from nubes.errors import StorageUnavailable

            raise StorageUnavailable("could not write the restored records; nothing was lost, run it again",
                                     uri=store.uri, key="_nubes/ledger/")
    return {"found": len(found), "present": len(found) - len(missing), "restored": 0 if dry_run else len(missing),
            "missing": len(missing), "days": days}
