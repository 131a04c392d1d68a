"""Wake the status reads that wait for a signing request to leave ``pending`` (``GET ...?wait=``).

A flow tells :meth:`StatusChanges.notify` once a request's end is committed, from whichever thread (the web
server's event loop, a queue worker's). A waiting read registers before it reads, so an end committed
between its read and its wait still wakes it. Ends committed by another process (a separate worker, another
replica) are not seen here: waiting reads look again every :data:`RECHECK_S` as well.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["RECHECK_S", "StatusChanges", "changed_or_timeout"]

RECHECK_S = 0.25
"""How often a waiting read looks at the database anyway (for ends another process committed)."""


class StatusChanges:
    """Who in this process waits for which request; ``notify`` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    @contextmanager
    def watch(self, request_id: str) -> Iterator[asyncio.Event]:
        """An event set (in the caller's event loop) each time ``request_id`` is notified while inside."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiting.setdefault(request_id, set()).add(entry)
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
        for loop, event in waiting:
            with suppress(RuntimeError):  # that loop has closed meanwhile: nobody left to wake
                loop.call_soon_threadsafe(event.set)

    @property
    def watched(self) -> int:
        """How many reads wait right now (tests, metrics)."""
        with self._lock:
            return sum(len(w) for w in self._waiting.values())


async def changed_or_timeout(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds pass; clear it for the next wait."""
    with suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    event.clear()
