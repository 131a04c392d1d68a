"""Hole 6: webhooks are delivered concurrently with a bound per organisation (a slow receiver delays only
its own organisation), never to internal addresses (checked when given and after DNS at delivery), and an
organisation can rotate its secret with an overlap during which both signatures are sent."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections import Counter

import pytest
from fastapi import FastAPI, Request
from sqlmodel import Session, select

from api.store.db import make_engine, migrate
from api.store.models import Organisation, WebhookDelivery
from api.worker.egress import EgressRefused, check_url, networks, refusal
from api.worker.webhooks import SIGNATURE_HEADER, WebhookDispatcher, enqueue_webhook, verify_payload

from .service_fixtures import running_service
from .support import LoopbackServer
from .test_signing_service import SIGNER, _upload


class Receivers:
    """``/fast`` answers at once; ``/slow`` holds every request until ``release`` is set."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.headers: list[tuple[bytes, str]] = []
        self.slow_now = 0
        self.slow_max = 0
        self.release = threading.Event()
        app = FastAPI()

        @app.post("/fast")
        async def fast(request: Request):
            self.hits["fast"] += 1
            self.headers.append((await request.body(), request.headers[SIGNATURE_HEADER]))
            return {"ok": True}

        @app.post("/slow")
        async def slow(request: Request):
            self.hits["slow"] += 1
            self.slow_now += 1
            self.slow_max = max(self.slow_max, self.slow_now)
            deadline = time.monotonic() + 60
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self.slow_now -= 1
            return {"ok": True}

        self.server = LoopbackServer().start(app)
        self.url = self.server.url


@pytest.fixture(scope="module")
def receivers():
    r = Receivers()
    yield r
    r.release.set()
    r.server.stop()


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with running_service(
        tmp_path_factory.mktemp("webhooks"), "sqlite", webhook_per_organisation=2, webhook_timeout_s=30
    ) as s:
        yield s


def _org_id(engine, name: str) -> str:
    with Session(engine) as s:
        return s.exec(select(Organisation).where(Organisation.name == name)).one().id


def _enqueue(engine, org_id: str, url: str, n: int = 1) -> list[str]:
    with Session(engine) as s:
        ids = [
            enqueue_webhook(s, org_id, f"sr_{i}", url, "signing_request.completed", {"n": i}).id
            for i in range(n)
        ]
        s.commit()
    return ids


def _wait(predicate, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _delivered(engine, ids: list[str]) -> int:
    with Session(engine) as s:
        rows = s.exec(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))).all()
        return sum(r.delivered_at is not None for r in rows)


def test_a_slow_organisation_does_not_delay_another(svc, receivers):
    engine = svc.app.state.engine
    receivers.release.clear()
    slow = _enqueue(engine, _org_id(engine, "School A"), f"{receivers.url}/slow", 4)
    fast_before = receivers.hits["fast"]
    fast = _enqueue(engine, _org_id(engine, "Bank B"), f"{receivers.url}/fast")
    # Bank B's webhook arrives while all of School A's receivers are still hanging
    assert _wait(lambda: receivers.hits["fast"] > fast_before), "a slow organisation held back another"
    assert _wait(lambda: _delivered(engine, fast) == 1)
    assert _wait(lambda: receivers.slow_now == 2)
    assert not receivers.release.is_set() and _delivered(engine, slow) == 0
    time.sleep(1.0)  # more claim rounds pass: School A stays at its bound of 2 in flight
    assert receivers.slow_now == 2 and receivers.hits["slow"] == 2
    receivers.release.set()
    assert _wait(lambda: _delivered(engine, slow) == 4)
    assert receivers.slow_max == 2


def test_internal_addresses_are_refused_when_given(svc, tmp_path):
    with svc.client() as c:
        doc = _upload(c, tmp_path)
        for url in (
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.7/hook",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:192.168.1.1]/hook",
            "http://100.100.100.200/",
        ):
            r = c.post(
                "/v1/signing-requests",
                json={
                    "document_id": doc["id"],
                    "signer": {"hkid": SIGNER},
                    "level": "B-B",
                    "webhook_url": url,
                },
            )
            assert r.status_code == 422, (url, r.text)
            assert r.json()["error"]["code"] == "webhook_url_refused"
            b = c.post(
                "/v1/batches",
                json={"document_ids": [doc["id"]], "signer": {"hkid": SIGNER}, "webhook_url": url},
            )
            assert b.status_code == 422 and b.json()["error"]["code"] == "webhook_url_refused", (url, b.text)
        assert c.get("/v1/signing-requests").json()["items"] == []


def test_egress_rules():
    metadata = ipaddress.ip_address("169.254.169.254")
    assert "link-local" in refusal(metadata)
    assert refusal(ipaddress.ip_address("127.0.0.1")) and refusal(ipaddress.ip_address("::1"))
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert refusal(ipaddress.ip_address("172.16.5.4")) and refusal(ipaddress.ip_address("0.0.0.0"))
    assert refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert refusal(ipaddress.ip_address("127.0.0.1"), networks(["127.0.0.0/8"])) is None
    assert refusal(metadata, networks(["127.0.0.0/8"]))  # the allow-list opens only what it names
    with pytest.raises(EgressRefused):
        asyncio.run(check_url("http://localhost:8000/hook"))  # a name is checked by what it resolves to
    with pytest.raises(EgressRefused):
        asyncio.run(check_url("ftp://example.org/"))
    asyncio.run(check_url("http://127.0.0.1:9/hook", networks(["127.0.0.0/8"])))


def test_a_delivery_is_checked_again_after_dns(tmp_path, receivers):
    """A URL accepted earlier whose name now resolves to loopback is never connected to."""
    engine = make_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    migrate(engine)
    with Session(engine) as s:
        org = Organisation(name="Rebinding Ltd")
        s.add(org)
        s.commit()
        org_id = org.id
    port = receivers.url.rsplit(":", 1)[1]
    before = receivers.hits["fast"]
    [refused] = _enqueue(engine, org_id, f"http://localhost:{port}/fast")
    asyncio.run(WebhookDispatcher(engine, b"k" * 32).run_once())
    with Session(engine) as s:
        row = s.get(WebhookDelivery, refused)
        assert row.delivered_at is None and row.given_up_at is not None
        assert "loopback" in row.last_error
    assert receivers.hits["fast"] == before  # nothing was sent
    [allowed] = _enqueue(engine, org_id, f"http://localhost:{port}/fast")
    asyncio.run(WebhookDispatcher(engine, b"k" * 32, allowed_networks=["127.0.0.0/8", "::1/128"]).run_once())
    assert _delivered(engine, [allowed]) == 1 and receivers.hits["fast"] == before + 1
    engine.dispose()


def test_rotating_the_webhook_secret_signs_with_both_during_the_overlap(svc, receivers):
    engine = svc.app.state.engine
    org_id = _org_id(engine, "School A")
    with svc.client() as c:
        old = c.get("/v1/webhook-secret").json()
        assert old["previous_webhook_secret"] is None
        rotated = c.post("/v1/webhook-secret/rotate", json={"overlap_seconds": 3600})
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()
        assert new["webhook_secret"] != old["webhook_secret"]
        assert new["previous_webhook_secret"] == old["webhook_secret"] and new["previous_valid_until"]
        assert c.get("/v1/webhook-secret").json() == new
        with svc.client(svc.other_key) as other:  # another organisation's secret is untouched
            assert other.get("/v1/webhook-secret").json()["previous_webhook_secret"] is None

        n = len(receivers.headers)
        ids = _enqueue(engine, org_id, f"{receivers.url}/fast")
        assert _wait(lambda: _delivered(engine, ids) == 1 and len(receivers.headers) > n)
        body, header = receivers.headers[-1]
        assert header.count("v1=") == 2
        assert verify_payload(old["webhook_secret"].encode(), body, header)
        assert verify_payload(new["webhook_secret"].encode(), body, header)

        latest = c.post("/v1/webhook-secret/rotate", json={"overlap_seconds": 0}).json()
        assert latest["previous_webhook_secret"] is None
        n = len(receivers.headers)
        ids = _enqueue(engine, org_id, f"{receivers.url}/fast")
        assert _wait(lambda: _delivered(engine, ids) == 1 and len(receivers.headers) > n)
        body, header = receivers.headers[-1]
        assert header.count("v1=") == 1
        assert verify_payload(latest["webhook_secret"].encode(), body, header)
        assert not verify_payload(new["webhook_secret"].encode(), body, header)
        assert c.post("/v1/webhook-secret/rotate", json={"overlap_seconds": -1}).status_code == 422
