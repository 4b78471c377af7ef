"""The one daemon thread that writes every background journal of the process when it is due, and
the process-level duties around it: a last forced flush at exit, and a clean slate in a forked child
(which must not write, or delete, its parent's spool segments)."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nubes.storage.journal import Journal


def _log(j: Journal, msg: str, error: str) -> None:
    if j.log is not None:
        j.log.error(msg, journal=j.name, error=error)
    else:
        logging.getLogger("nubes").error(msg, extra={"nubes": {"journal": j.name, "error": error}})


class Flusher:
    """One daemon thread writing every background journal of the process when it is due."""

    def __init__(self) -> None:
        self.journals: weakref.WeakSet[Journal] = weakref.WeakSet()
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    def add(self, journal: Journal) -> None:
        self.journals.add(journal)

    def wake(self) -> None:
        with self.cond:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="nubes-journal-flush", daemon=True)
                self.thread.start()
            self.cond.notify()

    def run(self) -> None:
        while True:
            journals = list(self.journals)
            waits = [1.0]
            for j in journals:
                try:
                    wait = j.wait()
                    if wait is not None and wait <= 0.0 and (j.mode == "background" or j._pending):
                        j.flush()
                        wait = j.wait()
                    if j.spool is not None and j.sync == "interval":
                        j.sync_spool()
                except Exception as exc:
                    _log(j, "journal flusher failed; retrying", f"{type(exc).__name__}: {exc}")
                    wait = 1.0
                if wait is not None and (j.mode == "background" or j._pending):
                    waits.append(max(0.005, wait))
            del journals
            with self.cond:
                self.cond.wait(min(waits))


FLUSHER = Flusher()


@atexit.register
def _close_all_at_exit() -> None:
    for j in list(FLUSHER.journals):  # one forced attempt each: exit is not held up by a broken store
        if j.buffered:
            j.close(timeout=0.0)


def _reset_after_fork() -> None:
    for j in list(FLUSHER.journals):
        j._after_fork()
    FLUSHER.cond = threading.Condition()
    FLUSHER.thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
