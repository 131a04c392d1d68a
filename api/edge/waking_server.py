"""uvicorn's server, waking the held status reads when it is told to exit."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

__all__ = ["WakingServer"]


class WakingServer(uvicorn.Server):
    """On SIGTERM/SIGINT uvicorn waits for the open requests before the app's shutdown runs, so a status
    read held for a minute (``?wait=``) would hold the exit as long: ``on_exit`` wakes them first."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # a signal handler: waking takes locks the interrupted code may hold, so it runs in a thread
        threading.Thread(target=self._on_exit, name="iamsign-wake-on-exit", daemon=True).start()
        super().handle_exit(sig, frame)
