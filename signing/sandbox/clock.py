"""A clock the sandbox runs on and tests can move forward (18 minutes in a millisecond)."""

from __future__ import annotations

import datetime as dt
import threading
import time

__all__ = ["MovableClock"]


class MovableClock:
    """Wall-clock time plus an offset that only grows. Thread-safe."""

    def __init__(self, offset_ms: int = 0) -> None:
        self._offset_ms = offset_ms
        self._lock = threading.Lock()

    @property
    def offset_ms(self) -> int:
        return self._offset_ms

    def now_ms(self) -> int:
        """Milliseconds since the epoch, as the sandbox sees it."""
        return int(time.time() * 1000) + self._offset_ms

    def now(self) -> dt.datetime:
        """The same moment as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.now_ms() / 1000, dt.UTC)

    def advance(self, ms: int) -> int:
        """Move the clock forward by ``ms`` (>= 0) and return the new time."""
        if ms < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset_ms += ms
        return self.now_ms()
