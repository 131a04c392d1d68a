"""``Idempotency-Key``: a retried POST gets the first answer, a different POST under the same key a 422.

The stored ``request_hash`` is a keyed hash (under the server secret) of the request body in canonical
form, so a body holding an HKID leaves no guessable trace. A retry that arrives while the first request is
still being sent to iAM Smart waits (bounded) until it has been, so every retry sees the sign code.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any, Protocol, TypeVar

from sqlmodel import Session

from api.errors import ApiError

__all__ = ["check_same_request", "request_hash", "wait_until_sent"]

SETTLE_TIMEOUT_S = 60.0
_POLL_S = 0.05


class _Sendable(Protocol):
    status: str
    phase: str
    request_hash: str | None


T = TypeVar("T", bound=_Sendable)


def request_hash(secret: bytes, body: Any) -> str:
    """HMAC-SHA256 of ``body`` (a pydantic model or plain JSON data) in canonical JSON."""
    data = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(secret, b"request:" + canonical.encode(), hashlib.sha256).hexdigest()


def check_same_request(earlier: _Sendable, wanted_hash: str | None) -> None:
    """422 ``idempotency_key_reused`` when ``earlier`` was created from a different body."""
    if wanted_hash and earlier.request_hash and not hmac.compare_digest(earlier.request_hash, wanted_hash):
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body; use a new key for a new request",
        )


async def wait_until_sent(session: Session, row: T, timeout: float = SETTLE_TIMEOUT_S) -> T:
    """``row`` once it has left the ``prepared`` phase (sent to iAM Smart, or ended), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while row.status == "pending" and row.phase == "prepared" and time.monotonic() < deadline:
        session.commit()  # end the snapshot: the next read sees the first request's commit
        await asyncio.sleep(_POLL_S)
        session.refresh(row)
    return row
