"""Wake the status reads that wait for a signing request to leave ``pending`` (``GET ...?wait=``).

A flow tells :meth:`StatusChanges.notify` once a request's end is committed, from whichever thread (the web
server's event loop, a queue worker's). A waiting read registers before it reads, so an end committed
between its read and its wait still wakes it. Ends committed by another process (a separate worker, another
replica) are found by one thread per process that asks the database, every :data:`RECHECK_S`, which of the
watched requests have ended: one query however many reads wait. :meth:`close` (shutdown) wakes them all.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress

__all__ = ["MAX_WATCHED", "RECHECK_S", "StatusChanges", "changed_or_timeout"]

log = logging.getLogger("iamsign.status_changes")

RECHECK_S = 0.25
"""How often the database is asked about the watched requests (for ends another process committed)."""

MAX_WATCHED = 10_000
"""Reads that may wait at once in one process; past this, a read answers at once (the caller polls)."""

EndedAmong = Callable[[list[str]], Iterable[str]]
"""Which of these request ids are no longer pending (a database query)."""


class StatusChanges:
    """Who in this process waits for which request; ``notify`` may be called from any thread."""

    def __init__(self, ended_among: EndedAmong | None = None) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._ended_among = ended_among
        self._rechecker: threading.Thread | None = None
        self._stop = threading.Event()
        self.closing = False
        """Set by :meth:`close`: waiting reads answer at once, new ones do not wait."""

    @property
    def full(self) -> bool:
        """No room for another waiting read (or shutting down)."""
        return self.closing or self.watched >= MAX_WATCHED

    @contextmanager
    def watch(self, request_id: str) -> Iterator[asyncio.Event]:
        """An event set (in the caller's event loop) each time ``request_id`` is notified while inside."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiting.setdefault(request_id, set()).add(entry)
            self._start_rechecking()
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiting = self._waiting.get(request_id)
                if waiting is not None:
                    waiting.discard(entry)
                    if not waiting:
                        del self._waiting[request_id]

    def notify(self, request_id: str) -> None:
        """``request_id`` changed: wake whoever watches it."""
        with self._lock:
            waiting = list(self._waiting.get(request_id, ()))
        _wake(waiting)

    def close(self) -> None:
        """Shutting down: wake every waiting read (each answers what it holds) and stop rechecking."""
        self.closing = True
        self._stop.set()
        with self._lock:
            waiting = [entry for entries in self._waiting.values() for entry in entries]
        _wake(waiting)

    @property
    def watched(self) -> int:
        """How many reads wait right now (tests, metrics)."""
        with self._lock:
            return sum(len(w) for w in self._waiting.values())

    def _start_rechecking(self) -> None:  # under self._lock
        if self._ended_among is None or self._rechecker is not None or self._stop.is_set():
            return
        self._rechecker = threading.Thread(target=self._recheck, name="iamsign-status-recheck", daemon=True)
        self._rechecker.start()

    def _recheck(self) -> None:
        assert self._ended_among is not None
        while not self._stop.wait(RECHECK_S):
            with self._lock:
                ids = list(self._waiting)
            for start in range(0, len(ids), 500):
                try:
                    ended = list(self._ended_among(ids[start : start + 500]))
                except Exception as exc:  # noqa: BLE001 - the database away: the waits run out, or the next try
                    log.warning("could not look for ended requests: %s", exc.__class__.__name__)
                    break
                for request_id in ended:
                    self.notify(request_id)


def _wake(waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
    for loop, event in waiting:
        with suppress(RuntimeError):  # that loop has closed meanwhile: nobody left to wake
            loop.call_soon_threadsafe(event.set)


async def changed_or_timeout(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set (True, cleared again for the next wait) or ``timeout`` seconds pass."""
    with suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    if event.is_set():
        event.clear()
        return True
    return False
