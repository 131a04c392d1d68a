"""Crash points for the crash-safety tests: ``IAMSIGN_CRASH_AT=<name>`` makes this process SIGKILL itself
when it reaches the point of that name. Unset (always, outside those tests) it does nothing."""

from __future__ import annotations

import os
import signal

__all__ = ["crashpoint"]


def crashpoint(name: str) -> None:
    """Die here, abruptly, if the crash tests asked for this point."""
    if os.environ.get("IAMSIGN_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
