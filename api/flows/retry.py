"""Retries for what a signature's level needs from outside: the TSA, and OCSP/CRL for the validation data.

A TSA or an OCSP responder that is slow or away for a few seconds must not fail a signature the signer has
already approved. Finishing is re-runnable (the core checks the prepared file and never appends twice), so
a finish that failed for one of these reasons is tried again with exponential backoff; only when every
attempt failed does the request (or the batch document) fail, with the core's own clear code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from signing.errors import RevocationInfoError, SigningError, TimestampError

__all__ = ["TRANSIENT_CODES", "retry_transient", "retry_transient_jobs"]

log = logging.getLogger("iamsign.retry")

TRANSIENT_CODES = frozenset({TimestampError.code, RevocationInfoError.code})
"""Error codes of a finish that may succeed a few seconds later."""

T = TypeVar("T")
J = TypeVar("J")


def _delays(attempts: int, first_delay_s: float) -> list[float]:
    return [first_delay_s * 2**n for n in range(max(attempts - 1, 0))]


async def retry_transient(
    run: Callable[[], Awaitable[T]], attempts: int, first_delay_s: float, what: str
) -> T:
    """``await run()``, again after ``first_delay_s``, 2x, 4x... while it fails for a transient reason."""
    for delay in _delays(attempts, first_delay_s):
        try:
            return await run()
        except SigningError as exc:
            if exc.code not in TRANSIENT_CODES:
                raise
            log.warning("%s: %s; trying again in %.1f s", what, exc.code, delay)
        await asyncio.sleep(delay)
    return await run()


async def retry_transient_jobs(
    run: Callable[[list[J]], Awaitable[list[dict]]],
    jobs: list[J],
    attempts: int,
    first_delay_s: float,
    what: str,
) -> list[dict]:
    """For batches: ``run(jobs)`` gives one result per job (``{"error": "code:message"}`` on failure);
    the jobs that failed for a transient reason are run again, the others keep their first result."""
    results = await run(jobs)
    for delay in _delays(attempts, first_delay_s):
        again = [i for i, r in enumerate(results) if r.get("error", "").partition(":")[0] in TRANSIENT_CODES]
        if not again:
            break
        log.warning(
            "%s: %d document(s) waiting for the TSA/OCSP; trying again in %.1f s", what, len(again), delay
        )
        await asyncio.sleep(delay)
        for i, result in zip(again, await run([jobs[i] for i in again]), strict=True):
            results[i] = result
    return results
