"""Heartbeats on claimed work: while a process works on a claimed row it keeps ``updated_at`` fresh, so
the sweep (which hands on work not advanced for ``IAMSIGN_STALE_AFTER_S``) leaves it alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from sqlalchemy import Update
from sqlmodel import Session

__all__ = ["heartbeat"]


@contextlib.asynccontextmanager
async def heartbeat(
    session: Callable[[], Session], touch: Callable[[], Update], stale_after_s: float
) -> AsyncIterator[None]:
    """Run ``touch()`` (an UPDATE statement factory) every quarter of ``stale_after_s`` until the block ends."""
    interval = max(0.5, stale_after_s / 4)

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            with session() as s:
                s.exec(touch())
                s.commit()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
