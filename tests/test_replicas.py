"""Two ``iamsign serve`` replicas over one PostgreSQL, one storage folder and one Redis queue."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from fastapi import FastAPI, Request

from fixtures.generate import simple_pdf

from .databases import database_url
from .support import LoopbackServer
from .topology import start_topology

SIGNER = "A123456(3)"


@pytest.fixture
def topology(tmp_path):
    with database_url("postgresql", tmp_path) as url:
        top = start_topology(tmp_path, url, replicas=2, queue_url="redis://127.0.0.1:6379/0")
        try:
            yield top
        finally:
            top.stop()


@pytest.fixture
def webhook_receiver():
    hits: Counter = Counter()
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request):
        hits[(await request.json())["signing_request_id"]] += 1
        return {"ok": True}

    server = LoopbackServer().start(app)
    server.hits = hits
    yield server
    server.stop()


def login(top) -> dict:
    with top.client() as c:
        r = c.get("/v1/auth/iamsmart/login", follow_redirects=False)
        assert r.status_code == 302, r.text
        qr = c.get(r.headers["location"], headers={"accept": "application/json"}).json()
        approve = c.post(f"{top.sandbox.url}{qr['approve']}", json={"hkid": SIGNER}).json()
        return c.get(approve["redirect_url"]).json()


def wait_done(client, req_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/signing-requests/{req_id}").json()
        if body["status"] != "pending":
            return body
        time.sleep(0.1)
    raise AssertionError(f"still pending: {body}")


def _request(top, client, tmp_path, token, webhook_url, name) -> dict:
    pdf = simple_pdf(tmp_path / f"{name}.pdf")
    doc = client.post("/v1/documents", files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")}).json()
    r = client.post(
        "/v1/signing-requests",
        json={
            "document_id": doc["id"],
            "signer": {"session_id": token["session_id"]},
            "level": "B-LTA",
            "webhook_url": webhook_url,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def _approve(top, req) -> None:
    """Approve on the phone; when another waiting request shows the same 4-digit code (409), approve
    each one showing it by its businessID: every request these tests make is meant to be approved."""
    with top.client(top.sandbox.url) as s:
        r = s.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
        if r.status_code == 409:
            waiting = s.post("/sandbox/v1/phone/pending", json={"hkid": SIGNER}).json()
            for other in (w for w in waiting if w["sign_code"] == req["sign_code"]):
                r = s.post(f"/sandbox/v1/requests/{other['business_id']}/approve")
        assert r.status_code == 200, r.text


def test_callback_on_another_replica_and_on_both_at_once(topology, webhook_receiver, tmp_path):
    top = topology
    a, b = top.replicas
    token = login(top)
    hook = f"{webhook_receiver.url}/hook"

    # 1. created on replica A, iAM Smart's callback reaches replica B only
    top.proxy_state["callback_targets"] = [b.url]
    with top.client(a.url) as on_a, top.client(b.url) as on_b:
        first = _request(top, on_a, tmp_path, token, hook, "first")
        _approve(top, first)
        done = wait_done(on_b, first["id"])
        assert done["status"] == "completed", done
        assert on_a.get(f"/v1/signing-requests/{first['id']}").json()["status"] == "completed"

    # 2. the same callback delivered to both replicas at the same moment
    top.proxy_state["callback_targets"] = [a.url, b.url]
    top.proxy_state["callback_outcomes"] = []
    with top.client(b.url) as on_b:
        second = _request(top, on_b, tmp_path, token, hook, "second")
        _approve(top, second)
        done2 = wait_done(on_b, second["id"])
        assert done2["status"] == "completed", done2
        outcomes = top.proxy_state["callback_outcomes"]
        assert sorted(outcomes) == ["accepted", "duplicate"], outcomes
        audit = on_b.get(f"/v1/signing-requests/{second['id']}/audit").json()
        assert audit["chain_intact"]
        assert [e["event"] for e in audit["entries"]].count("completed") == 1
        assert [e["event"] for e in audit["entries"]].count("result_received") == 1
        # exactly one signed revision of that document
        mine = on_b.get("/v1/signing-requests", params={"document_id": second["document_id"]}).json()["items"]
        assert len(mine) == 1 and mine[0]["signed_document_id"] == done2["signed_document_id"]

    # every terminal status was announced exactly once, though both replicas sweep webhooks
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(webhook_receiver.hits) < 2:
        time.sleep(0.1)
    time.sleep(2)  # let any duplicate show itself
    assert webhook_receiver.hits == Counter({first["id"]: 1, second["id"]: 1})


def test_separate_worker_processes_share_the_work(tmp_path, webhook_receiver):
    """Replicas without in-process workers; two ``iamsign worker`` processes on the Redis queue do the jobs."""
    from .processes import ServiceProcess

    with database_url("postgresql", tmp_path) as url:
        top = start_topology(
            tmp_path,
            url,
            replicas=1,
            queue_url="redis://127.0.0.1:6379/0",
            extra_env={"IAMSIGN_EMBEDDED_WORKER": "false"},
        )
        workers = [
            ServiceProcess(
                f"worker-{i}", ["worker", "--data-dir", str(top.data), "--workers", "2"], top.env, tmp_path
            ).start(wait=False)
            for i in range(2)
        ]
        try:
            token = login(top)
            hook = f"{webhook_receiver.url}/hook"
            with top.client(top.replicas[0].url) as c:
                reqs = [_request(top, c, tmp_path, token, hook, f"w{i}") for i in range(6)]
                for req in reqs:
                    _approve(top, req)
                for req in reqs:
                    done = wait_done(c, req["id"])
                    assert done["status"] == "completed", done
                    events = [
                        e["event"] for e in c.get(f"/v1/signing-requests/{req['id']}/audit").json()["entries"]
                    ]
                    assert events.count("completed") == 1
            time.sleep(2)
            assert webhook_receiver.hits == Counter({r["id"]: 1 for r in reqs})
            logs = [w.log() for w in workers]
            assert all("iamsign worker" in log for log in logs), logs
        finally:
            for w in workers:
                w.stop()
            top.stop()
