"""Webhooks: signed POSTs on each terminal status, retried with backoff, delivered concurrently.

Receivers verify ``X-Iamsign-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
with their organisation's webhook secret (``iamsign keys create`` prints it; ``GET /v1/webhook-secret``
returns it), and should refuse a ``t`` more than 5 minutes old. After ``POST /v1/webhook-secret/rotate``
the header carries one ``v1=`` per secret during the overlap (new first, then the previous one), so a
receiver accepts the webhook if any ``v1`` matches the secret it holds.

The :class:`WebhookDispatcher` keeps at most ``per_organisation`` deliveries of one organisation in flight
and never waits for one organisation's receivers before sending another's; each target is checked by
:mod:`api.worker.egress` after DNS resolution, and the connection goes to the checked address.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence

import httpx
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.store.models import Organisation, WebhookDelivery, utcnow
from api.telemetry.metrics import WEBHOOK_DELIVERIES
from api.worker.egress import EgressRefused, networks, pin
from signing.tls import shared_tls_context

__all__ = [
    "BACKOFF_SECONDS",
    "SIGNATURE_HEADER",
    "WebhookDispatcher",
    "enqueue_webhook",
    "organisation_webhook_secrets",
    "rotate_webhook_secret",
    "sign_payload",
    "verify_payload",
    "webhook_secret_for",
]

log = logging.getLogger("iamsign.webhooks")

SIGNATURE_HEADER = "X-Iamsign-Signature"
#: Delay before attempt n+1; after the last one the delivery is given up.
BACKOFF_SECONDS = (5, 30, 120, 600, 1800, 3600)


def webhook_secret_for(server_secret: bytes, organisation_id: str, generation: int = 0) -> bytes:
    """Each organisation's own webhook key, derived from the server secret (which never leaves the server);
    every rotation (``generation``) derives a new one."""
    label = f"webhook:{organisation_id}" + (f":{generation}" if generation else "")
    return hmac.new(server_secret, label.encode(), hashlib.sha256).hexdigest().encode()


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.replace(tzinfo=dt.UTC) if moment is not None and moment.tzinfo is None else moment


def organisation_webhook_secrets(
    server_secret: bytes, org: Organisation, now: dt.datetime | None = None
) -> list[bytes]:
    """The secrets webhooks are signed with now: the current one, and the previous one during an overlap."""
    found = [webhook_secret_for(server_secret, org.id, org.webhook_secret_generation)]
    until = _aware(org.webhook_previous_valid_until)
    if org.webhook_secret_generation and until is not None and until > (now or utcnow()):
        found.append(webhook_secret_for(server_secret, org.id, org.webhook_secret_generation - 1))
    return found


def rotate_webhook_secret(session: Session, org: Organisation, overlap: dt.timedelta) -> Organisation:
    """Start using a new webhook secret; the previous one still signs for ``overlap`` (then stops)."""
    session.exec(
        update(Organisation)
        .where(col(Organisation.id) == org.id)
        .values(
            webhook_secret_generation=col(Organisation.webhook_secret_generation) + 1,
            webhook_previous_valid_until=utcnow() + overlap,
        )
    )
    session.commit()
    session.refresh(org)
    return org


def sign_payload(secret: bytes | Sequence[bytes], body: bytes, timestamp: int | None = None) -> str:
    """``t=<t>,v1=<mac>`` with one ``v1`` per secret (several during a rotation's overlap)."""
    t = int(time.time()) if timestamp is None else timestamp
    keys = [secret] if isinstance(secret, bytes) else list(secret)
    macs = [hmac.new(k, f"{t}.".encode() + body, hashlib.sha256).hexdigest() for k in keys]
    return ",".join([f"t={t}", *(f"v1={m}" for m in macs)])


def verify_payload(
    secret: bytes, body: bytes, header: str, tolerance_s: int = 300, now: int | None = None
) -> bool:
    """What a receiver does: check the age of the timestamp and that one ``v1`` is the HMAC under ``secret``."""
    try:
        pairs = [p.split("=", 1) for p in header.split(",")]
        t = int(next(v for k, v in pairs if k == "t"))
    except (StopIteration, ValueError):
        return False
    now = int(time.time()) if now is None else now
    if abs(now - t) > tolerance_s:
        return False
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in pairs if k == "v1")


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


class WebhookDispatcher:
    """Delivers due webhooks: claimed with a lease (replicas never send the same attempt twice), sent
    concurrently, at most ``per_organisation`` in flight for one organisation and ``concurrency`` in all.

    A claim round never waits for the deliveries it starts, so a slow receiver holds back only its own
    organisation's webhooks (up to its bound), never another's.
    """

    def __init__(
        self,
        engine: Engine,
        server_secret: bytes,
        *,
        allowed_networks: Iterable[str] = (),
        timeout_s: float = 10.0,
        concurrency: int = 32,
        per_organisation: int = 4,
        interval_s: float = 5.0,
    ) -> None:
        self.engine = engine
        self.server_secret = server_secret
        self.allowed = networks(allowed_networks)
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.per_organisation = per_organisation
        self.interval_s = interval_s
        self._in_flight: Counter[str] = Counter()
        self._tasks: set[asyncio.Task] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ one round

    async def dispatch_due(self, client: httpx.AsyncClient) -> int:
        """Claim what is due within the bounds and start sending it; return how many were started."""
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        now = utcnow()
        due = (
            col(WebhookDelivery.delivered_at).is_(None),
            col(WebhookDelivery.given_up_at).is_(None),
            col(WebhookDelivery.next_attempt_at) <= now,
        )
        started = 0
        with Session(self.engine, expire_on_commit=False) as session:
            orgs = session.exec(select(WebhookDelivery.organisation_id).where(*due).distinct()).all()
            for org_id in orgs:
                room = min(self.per_organisation - self._in_flight[org_id], free - started)
                if room <= 0:
                    continue
                rows = session.exec(
                    select(WebhookDelivery)
                    .where(WebhookDelivery.organisation_id == org_id, *due)
                    .order_by(col(WebhookDelivery.next_attempt_at))
                    .limit(room)
                ).all()
                org = session.get(Organisation, org_id)
                secrets = organisation_webhook_secrets(self.server_secret, org) if org else []
                for d in rows:
                    if not self._lease(session, d):
                        continue
                    self._in_flight[org_id] += 1
                    task = asyncio.create_task(self._deliver(client, d, secrets))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    started += 1
        return started

    def _lease(self, session: Session, d: WebhookDelivery) -> bool:
        lease = session.exec(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == d.id,
                col(WebhookDelivery.next_attempt_at) == d.next_attempt_at,
                col(WebhookDelivery.delivered_at).is_(None),
            )
            .values(next_attempt_at=utcnow() + dt.timedelta(seconds=self.timeout_s + 60))
        )
        session.commit()
        return lease.rowcount == 1

    async def _deliver(self, client: httpx.AsyncClient, d: WebhookDelivery, secrets: list[bytes]) -> None:
        try:
            ok, error, final = await self._send(client, d, secrets)
        except Exception as exc:
            log.exception("webhook %s failed unexpectedly", d.id)
            ok, error, final = False, f"{type(exc).__name__}: {exc}", False
        finally:
            self._in_flight[d.organisation_id] -= 1
        try:
            self._record(d.id, ok, error, final)
        except Exception:
            log.exception("could not record webhook %s", d.id)

    async def _send(
        self, client: httpx.AsyncClient, d: WebhookDelivery, secrets: list[bytes]
    ) -> tuple[bool, str | None, bool]:
        try:
            target = await pin(d.url, self.allowed)
        except EgressRefused as exc:
            return False, str(exc), exc.final
        body = d.body.encode()
        headers = {
            **target.headers,
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_payload(secrets, body),
            "X-Iamsign-Event": d.event,
            "X-Iamsign-Delivery": d.id,
        }
        try:
            r = await client.post(
                target.url,
                content=body,
                headers=headers,
                timeout=self.timeout_s,
                extensions=target.extensions,
            )
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}", False
        ok = 200 <= r.status_code < 300
        return ok, None if ok else f"HTTP {r.status_code}", False

    def _record(self, delivery_id: str, ok: bool, error: str | None, final: bool) -> None:
        with Session(self.engine) as session:
            d = session.get(WebhookDelivery, delivery_id)
            if d is None:
                return
            d.attempts += 1
            if ok:
                d.delivered_at = utcnow()
            else:
                d.last_error = (error or "")[:500]
                if final or d.attempts > len(BACKOFF_SECONDS):
                    d.given_up_at = utcnow()
                else:
                    d.next_attempt_at = utcnow() + dt.timedelta(seconds=BACKOFF_SECONDS[d.attempts - 1])
            WEBHOOK_DELIVERIES.labels("delivered" if ok else "gave_up" if d.given_up_at else "retry").inc()
            session.add(d)
            session.commit()

    async def drain(self) -> None:
        """Wait for every delivery in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def run_once(self) -> int:
        """One claim round, waiting for what it started (tests, scripts)."""
        async with httpx.AsyncClient(follow_redirects=False, verify=shared_tls_context()) as client:
            started = await self.dispatch_due(client)
            await self.drain()
        return started

    # ------------------------------------------------------------------ in a thread of its own

    async def _run(self) -> None:
        async with httpx.AsyncClient(follow_redirects=False, verify=shared_tls_context()) as client:
            while not self._stop.is_set():
                try:
                    await self.dispatch_due(client)
                except Exception:
                    log.exception("could not claim webhooks")
                await asyncio.sleep(self.interval_s)
            await asyncio.wait_for(self.drain(), timeout=self.timeout_s + 5)

    def start(self) -> None:
        """Deliver in a background thread until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._run(),), name="iamsign-webhooks", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 10)
            self._thread = None
