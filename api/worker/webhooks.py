"""Webhooks: signed POSTs on each terminal status, retried with backoff.

Receivers verify ``X-Iamsign-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
with their organisation's webhook secret (``iamsign keys create`` prints it; ``GET /v1/webhook-secret``
returns it), and should refuse a ``t`` more than 5 minutes old.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time

import httpx
from sqlalchemy import update
from sqlmodel import Session, col, select

from api.store.models import WebhookDelivery, utcnow

__all__ = [
    "BACKOFF_SECONDS",
    "deliver_due",
    "enqueue_webhook",
    "sign_payload",
    "verify_payload",
    "webhook_secret_for",
]

SIGNATURE_HEADER = "X-Iamsign-Signature"
#: Delay before attempt n+1; after the last one the delivery is given up.
BACKOFF_SECONDS = (5, 30, 120, 600, 1800, 3600)


def webhook_secret_for(server_secret: bytes, organisation_id: str) -> bytes:
    """Each organisation's own webhook key, derived from the server secret (which never leaves the server)."""
    return hmac.new(server_secret, f"webhook:{organisation_id}".encode(), hashlib.sha256).hexdigest().encode()


def sign_payload(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_payload(
    secret: bytes, body: bytes, header: str, tolerance_s: int = 300, now: int | None = None
) -> bool:
    """What a receiver does: check the HMAC and the age of the timestamp."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    now = int(time.time()) if now is None else now
    if abs(now - t) > tolerance_s:
        return False
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def enqueue_webhook(
    session: Session, organisation_id: str, request_id: str, url: str, event: str, payload: dict
) -> WebhookDelivery:
    """Record a delivery to make (the caller commits with the transition)."""
    delivery = WebhookDelivery(
        organisation_id=organisation_id,
        request_id=request_id,
        url=url,
        event=event,
        body=json.dumps(payload, sort_keys=True, separators=(",", ":")),
    )
    session.add(delivery)
    return delivery


async def deliver_due(
    session: Session, server_secret: bytes, client: httpx.AsyncClient, limit: int = 50
) -> int:
    """Try every delivery that is due; return how many were delivered.

    Each delivery is first leased with a conditional UPDATE, so replicas sweeping together never send
    the same attempt twice.
    """
    now = utcnow()
    due = session.exec(
        select(WebhookDelivery)
        .where(
            col(WebhookDelivery.delivered_at).is_(None),
            col(WebhookDelivery.given_up_at).is_(None),
            col(WebhookDelivery.next_attempt_at) <= now,
        )
        .order_by(col(WebhookDelivery.next_attempt_at))
        .limit(limit)
    ).all()
    delivered = 0
    for d in due:
        lease = session.exec(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == d.id,
                col(WebhookDelivery.next_attempt_at) == d.next_attempt_at,
                col(WebhookDelivery.delivered_at).is_(None),
            )
            .values(next_attempt_at=utcnow() + dt.timedelta(seconds=60))
        )
        session.commit()
        if lease.rowcount != 1:
            continue
        session.refresh(d)
        body = d.body.encode()
        secret = webhook_secret_for(server_secret, d.organisation_id)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_payload(secret, body),
            "X-Iamsign-Event": d.event,
            "X-Iamsign-Delivery": d.id,
        }
        d.attempts += 1
        try:
            r = await client.post(d.url, content=body, headers=headers, timeout=10)
            ok = 200 <= r.status_code < 300
            error = None if ok else f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
        if ok:
            d.delivered_at = utcnow()
            delivered += 1
        else:
            d.last_error = error
            if d.attempts > len(BACKOFF_SECONDS):
                d.given_up_at = utcnow()
            else:
                d.next_attempt_at = utcnow() + dt.timedelta(seconds=BACKOFF_SECONDS[d.attempts - 1])
        session.add(d)
        session.commit()
    return delivered
