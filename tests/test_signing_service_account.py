"""Account signing (a signer logged in with iAM Smart): callbacks, forgeries, duplicates, expiry, webhooks."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request

from signing.iamsmart import protocol
from signing.iamsmart.codes import ReturnCode
from signing.model import PreparedSignature
from signing.sandbox.pki import SandboxPki
from signing.sandbox.remote_signer import SimulatedSigner

from .support import LoopbackServer
from .test_signing_service import SIGNER, _upload, _wait_status


def _login(c: httpx.Client, hkid: str = SIGNER) -> dict:
    r = c.get("/v1/auth/iamsmart/login", follow_redirects=False)
    assert r.status_code == 302
    qr = c.get(r.headers["location"], headers={"accept": "application/json"})
    assert qr.status_code == 200, qr.text
    approve = c.post(
        qr.json()["approve"]
        if qr.json()["approve"].startswith("http")
        else "/sandbox" + qr.json()["approve"].removeprefix("/sandbox"),
        json={"hkid": hkid},
    )
    assert approve.status_code == 200, approve.text
    back = c.get(approve.json()["redirect_url"])
    assert back.status_code == 200, back.text
    session = back.json()
    assert session["session_id"].startswith("ss_") and session["can_sign"] is True
    assert "access_token" not in session and "open_id" not in session  # the token stays in the service
    return session


def _create(c, tmp_path, token, **extra) -> dict:
    doc = _upload(c, tmp_path)
    r = c.post(
        "/v1/signing-requests",
        json={
            "document_id": doc["id"],
            "level": "B-B",
            "signer": {"session_id": token["session_id"]},
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def _callback_body(service, business_id: str, content: dict, *, kek_public=None, code="D00000") -> bytes:
    """A callback as iAM Smart would send it, encrypted to ``kek_public`` (default: our real KEK)."""
    cek = protocol.new_cek()
    if kek_public is None:
        kek_public = service.app.state.iamsmart_setup.client_config.kek_private_keys[0].public_key()
    env = protocol.callback_envelope(
        ReturnCode(code),
        protocol.encrypt_content(cek, {"businessID": business_id, **content}),
        protocol.wrap_cek(kek_public, cek),
    )
    return json.dumps(env).encode()


def _request_row(service, req_id):
    from api.store.models import SigningRequest

    with service.app.state.flow.session() as s:
        return s.get(SigningRequest, req_id)


def _valid_pdf_signature(service, req_id: str, signer: SimulatedSigner) -> str:
    row = _request_row(service, req_id)
    record = PreparedSignature.loads(row.record_json)
    cms_der = asyncio.run(signer.sign_pdf_digest(record.document_digest, dt.datetime.now(dt.UTC)))
    return base64.b64encode(cms_der).decode()


def _echo(service, req_id: str) -> str:
    """The docDigest a genuine result echoes for this request."""
    record = PreparedSignature.loads(_request_row(service, req_id).record_json)
    return base64.b64encode(record.document_digest).decode()


def _sandbox_signer(service, hkid=SIGNER) -> SimulatedSigner:
    users = service.app.state.sandbox.users
    return users.signer(users.by_hkid(hkid))


def test_account_flow_completes_by_callback(service, tmp_path):
    with service.client() as c:
        token = _login(c)
        req = _create(c, tmp_path, token, mode="hash")
        assert req["flow"] == "account" and req["status"] == "pending"
        r = c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
        assert r.status_code == 200, r.text
        done = _wait_status(c, req["id"])
        assert done["status"] == "completed", done
        # a second hash-mode request from the same signer knows the certificate: PAdES baseline
        again = _create(c, tmp_path, token, mode="hash")
        record = PreparedSignature.loads(_request_row(service, again["id"]).record_json)
        assert record.subfilter == "/ETSI.CAdES.detached"
        c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": again["sign_code"]})
        assert _wait_status(c, again["id"])["status"] == "completed"


def test_forged_callbacks_are_refused_and_change_nothing(service, tmp_path):
    with service.client() as c:
        token = _login(c)
        req = _create(c, tmp_path, token)
        row = _request_row(service, req["id"])
        before = c.get(f"/v1/signing-requests/{req['id']}/audit").json()

        # 1. content not encrypted for us
        stranger_kek = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        r = c.post(
            "/v1/iamsmart/callback",
            content=_callback_body(
                service, row.business_id, {"pdfSignature": "AAAA"}, kek_public=stranger_kek
            ),
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "undecryptable"
        # 2. garbage
        assert c.post("/v1/iamsmart/callback", content=b"{not json").status_code == 400
        # 3. unknown businessID
        r = c.post(
            "/v1/iamsmart/callback", content=_callback_body(service, "nope-" + row.business_id[:20], {})
        )
        assert r.status_code == 404
        # 4. a valid-looking CMS over the right digest, by a certificate from another CA
        other = SandboxPki.open_or_create(tmp_path / "mallory-pki", "http://127.0.0.1:9/pki")
        issued = other.issue_signer("CHAN Tai Man 陳大文")
        mallory = SimulatedSigner(issued.certificate, issued.private_key, [other.issuing_ca])
        r = c.post(
            "/v1/iamsmart/callback",
            content=_callback_body(
                service,
                row.business_id,
                {
                    "pdfSignature": _valid_pdf_signature(service, req["id"], mallory),
                    "docDigest": _echo(service, req["id"]),
                },
            ),
        )
        assert r.status_code == 200 and r.json()["outcome"] == "refused"
        # 5. the right signer's CMS over another document
        bad = asyncio.run(_sandbox_signer(service).sign_pdf_digest(bytes(32), dt.datetime.now(dt.UTC)))
        r = c.post(
            "/v1/iamsmart/callback",
            content=_callback_body(
                service,
                row.business_id,
                {"pdfSignature": base64.b64encode(bad).decode(), "docDigest": _echo(service, req["id"])},
            ),
        )
        assert r.json()["outcome"] == "refused"

        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"
        after = c.get(f"/v1/signing-requests/{req['id']}/audit").json()
        # each refusal is recorded (the request stays pending); nothing else changed
        refused = [e for e in after["entries"] if e["event"] == "result_refused"]
        assert len(refused) == 2 and all(e["status"] == "pending" for e in refused)
        assert [e for e in after["entries"] if e["event"] != "result_refused"] == before["entries"]
        # and the genuine approval still completes it
        c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
        assert _wait_status(c, req["id"])["status"] == "completed"


def test_duplicate_and_concurrent_callbacks_make_one_revision(service, tmp_path):
    with service.client() as c:
        token = _login(c)
        req = _create(c, tmp_path, token)
        row = _request_row(service, req["id"])
        body = _callback_body(
            service,
            row.business_id,
            {
                "pdfSignature": _valid_pdf_signature(service, req["id"], _sandbox_signer(service)),
                "docDigest": _echo(service, req["id"]),
            },
        )

        def post(_):
            with httpx.Client(base_url=service.url, timeout=30) as h:
                return h.post("/v1/iamsmart/callback", content=body).json()["outcome"]

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(post, range(4)))
        assert outcomes.count("accepted") == 1, outcomes
        done = _wait_status(c, req["id"])
        assert done["status"] == "completed"
        assert post(0) == "duplicate"
        audit = c.get(f"/v1/signing-requests/{req['id']}/audit").json()
        assert [e["event"] for e in audit["entries"]].count("completed") == 1
        from api.store.models import Document

        with service.app.state.flow.session() as s:
            from sqlmodel import select

            signed = s.exec(select(Document).where(Document.id == done["signed_document_id"])).all()
        assert len(signed) == 1


def test_no_approval_expires_when_the_sandbox_clock_moves(service, tmp_path):
    ctx = service.app.state.context
    with service.client() as c:
        token = _login(c)
        req = _create(c, tmp_path, token)
        r = c.post("/sandbox/v1/clock/advance", json={"ms": 19 * 60 * 1000})
        assert r.status_code == 200, r.text
        # iAM Smart's D70003 callback is unauthenticated: a hint; the service's own deadline ends it
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            entries = c.get(f"/v1/signing-requests/{req['id']}/audit").json()["entries"]
            if any(e["event"] == "hint" and e["iamsmart_code"] == "D70003" for e in entries):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no D70003 hint: {entries}")
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"
        real_clock = ctx.clock
        ctx.clock = lambda: real_clock() + dt.timedelta(minutes=19)
        try:
            done = _wait_status(c, req["id"], timeout=30)
        finally:
            ctx.clock = real_clock
        assert done["status"] == "expired" and done["error"]["code"] == "D70003"
        # a late approval cannot complete it
        c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
        time.sleep(0.5)
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "expired"


def test_the_sweeper_expires_requests_by_the_service_clock(service, tmp_path):
    ctx = service.app.state.context
    with service.client() as c:
        req = _upload(c, tmp_path)
        r = c.post(
            "/v1/signing-requests",
            json={"document_id": req["id"], "signer": {"hkid": SIGNER}, "level": "B-B"},
        )
        created = r.json()
        real_clock = ctx.clock
        ctx.clock = lambda: real_clock() + dt.timedelta(minutes=19)
        try:
            done = _wait_status(c, created["id"], timeout=20)
        finally:
            ctx.clock = real_clock
        assert done["status"] == "expired"
        audit = c.get(f"/v1/signing-requests/{created['id']}/audit").json()
        assert audit["entries"][-1]["actor"] == "sweeper"


def test_webhook_is_signed_and_retried(service, tmp_path):
    from api.worker.webhooks import SIGNATURE_HEADER, verify_payload, webhook_secret_for

    received: list[tuple[bytes, str]] = []
    attempts = {"n": 0}
    hook = FastAPI()

    @hook.post("/hook")
    async def receive(request: Request):
        attempts["n"] += 1
        if attempts["n"] == 1:
            from fastapi.responses import JSONResponse

            return JSONResponse({"busy": True}, status_code=503)
        received.append((await request.body(), request.headers[SIGNATURE_HEADER]))
        return {"ok": True}

    from api.worker import webhooks

    saved = webhooks.BACKOFF_SECONDS
    webhooks.BACKOFF_SECONDS = (0.2,) * 6
    server = LoopbackServer().start(hook)
    try:
        with service.client() as c:
            doc = _upload(c, tmp_path)
            req = c.post(
                "/v1/signing-requests",
                json={
                    "document_id": doc["id"],
                    "signer": {"hkid": SIGNER},
                    "level": "B-B",
                    "webhook_url": f"{server.url}/hook",
                },
            ).json()
            assert c.post(f"/v1/signing-requests/{req['id']}/cancel").json()["status"] == "cancelled"
            deadline = time.monotonic() + 20
            while not received and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        webhooks.BACKOFF_SECONDS = saved
        server.stop()
    assert attempts["n"] >= 2
    body, header = received[0]
    with service.client() as c:
        secret = c.get("/v1/webhook-secret").json()["webhook_secret"].encode()
    assert secret == webhook_secret_for(
        service.app.state.server_secret, _request_row(service, req["id"]).organisation_id
    )
    assert verify_payload(secret, body, header)
    assert not verify_payload(secret, body + b" ", header)
    with service.client(service.other_key) as other:  # another organisation's secret does not verify it
        assert not verify_payload(
            other.get("/v1/webhook-secret").json()["webhook_secret"].encode(), body, header
        )
    payload = json.loads(body)
    assert payload["status"] == "cancelled" and payload["signing_request_id"] == req["id"]


def test_audit_tampering_is_detected(service, tmp_path):
    from sqlalchemy import update

    from api.store.models import AuditEntry

    with service.client() as c:
        doc = _upload(c, tmp_path)
        req = c.post(
            "/v1/signing-requests",
            json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"},
        ).json()
        c.post(f"/v1/signing-requests/{req['id']}/cancel")
        assert c.get(f"/v1/signing-requests/{req['id']}/audit").json()["chain_intact"] is True
        with service.app.state.flow.session() as s:
            s.exec(
                update(AuditEntry)
                .where(AuditEntry.request_id == req["id"], AuditEntry.seq == 2)
                .values(actor="someone-else")
            )
            s.commit()
        audit = c.get(f"/v1/signing-requests/{req['id']}/audit").json()
        assert audit["chain_intact"] is False and audit["first_broken_seq"] == 2


def test_a_genuine_answer_is_taken_when_the_sending_was_never_recorded(service, tmp_path, monkeypatch):
    """iAM Smart answers, but create never recorded that it sent the request (its database write was slow,
    or its process died after iAM Smart took it): after the short wait the verified answer still counts,
    instead of being called a duplicate and the signature lost."""
    from sqlalchemy import update

    from api.flows import signing
    from api.store.models import SigningRequest

    monkeypatch.setattr(signing, "_SENT_WAIT_S", 0.2)
    with service.client() as c:
        token = _login(c)
        req = _create(c, tmp_path, token)
        with service.app.state.flow.session() as s:  # as if create had stopped before recording "sent"
            s.exec(update(SigningRequest).where(SigningRequest.id == req["id"]).values(phase="prepared"))
            s.commit()
        row = _request_row(service, req["id"])
        body = _callback_body(
            service,
            row.business_id,
            {
                "pdfSignature": _valid_pdf_signature(service, req["id"], _sandbox_signer(service)),
                "docDigest": _echo(service, req["id"]),
            },
        )
        r = c.post("/v1/iamsmart/callback", content=body)
        assert (r.status_code, r.json()["outcome"]) == (200, "accepted"), r.text
        assert _wait_status(c, req["id"])["status"] == "completed"
        events = [e["event"] for e in c.get(f"/v1/signing-requests/{req['id']}/audit").json()["entries"]]
        last_sent = max(i for i, event in enumerate(events) if event == "sent")
        assert last_sent == events.index("result_received") - 1, events  # the answer recorded the sending


class _HeldCreate:
    """A create held between iAM Smart taking the request and create recording that it did (``release``)."""

    def __init__(self, service, monkeypatch) -> None:
        import threading

        self.flow = service.app.state.flow
        self.sent_to_iamsmart, self.release = threading.Event(), threading.Event()
        self.req_id: str | None = None
        self.sign_code: str | None = None
        real_initiate = self.flow._initiate

        async def held(req, *args, **kwargs):
            initiated = await real_initiate(req, *args, **kwargs)
            self.req_id, self.sign_code = req.id, initiated.sign_code
            self.sent_to_iamsmart.set()
            await asyncio.to_thread(self.release.wait, 30)
            return initiated

        monkeypatch.setattr(self.flow, "_initiate", held)

    def phase(self) -> str:
        return _request_row_by_flow(self.flow, self.req_id).phase

    def wait_for_phase(self, phase: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.phase() != phase:
            assert time.monotonic() < deadline, f"{self.req_id} never reached {phase}"
            time.sleep(0.02)


def _request_row_by_flow(flow, req_id):
    from api.store.models import SigningRequest

    with flow.session() as s:
        return s.get(SigningRequest, req_id)


def _genuine_callback(service, req_id: str) -> bytes:
    return _callback_body(
        service,
        _request_row(service, req_id).business_id,
        {
            "pdfSignature": _valid_pdf_signature(service, req_id, _sandbox_signer(service)),
            "docDigest": _echo(service, req_id),
        },
    )


def _answer_while_create_is_held(service, c, tmp_path, held, pool):
    """Log in, start a create (``held`` stops it before it records the sending), wait until iAM Smart
    has the request and deliver its genuine answer, which is accepted; returns the pending create."""
    token = _login(c)
    creating = pool.submit(_create, c, tmp_path, token, mode="pdf")
    assert held.sent_to_iamsmart.wait(30)
    r = c.post("/v1/iamsmart/callback", content=_genuine_callback(service, held.req_id))
    assert (r.status_code, r.json()["outcome"]) == (200, "accepted"), r.text
    return creating


def test_an_answer_that_finds_the_sending_recorded_meanwhile_does_not_record_it_again(
    service, tmp_path, monkeypatch
):
    """The answer read the request while ``prepared``; create recorded the sending while the answer was
    being checked. The trail has that sending once (create's), not a second one claiming the answer came
    first."""
    from api.flows import signing

    monkeypatch.setattr(signing, "_SENT_WAIT_S", 0.2)
    held = _HeldCreate(service, monkeypatch)
    real_verify = held.flow._verify_result

    def verify_while_create_records_the_sending(req, result):
        checked = real_verify(req, result)
        held.release.set()
        held.wait_for_phase("sent")
        return checked

    monkeypatch.setattr(held.flow, "_verify_result", verify_while_create_records_the_sending)
    with service.client() as c, ThreadPoolExecutor(1) as pool:
        creating = _answer_while_create_is_held(service, c, tmp_path, held, pool)
        req = creating.result(30)
        assert _wait_status(c, req["id"])["status"] == "completed"
        audit = c.get(f"/v1/signing-requests/{req['id']}/audit").json()
    events = [e["event"] for e in audit["entries"]]
    assert events.count("sent") == 1, events
    sent = next(e for e in audit["entries"] if e["event"] == "sent")
    assert "answer came first" not in (sent["detail"] or ""), sent  # create recorded it, not the answer
    assert audit["chain_intact"] is True


def test_create_keeps_the_sign_code_when_the_answer_came_first(service, tmp_path, monkeypatch):
    """iAM Smart's answer took the request from ``prepared`` before create recorded the sending: create
    still stores and answers the sign code iAM Smart gave it, and the trail has one sending."""
    from api.flows import signing

    monkeypatch.setattr(signing, "_SENT_WAIT_S", 0.2)
    held = _HeldCreate(service, monkeypatch)
    with service.client() as c, ThreadPoolExecutor(1) as pool:
        creating = _answer_while_create_is_held(service, c, tmp_path, held, pool)
        held.release.set()
        req = creating.result(30)
        assert held.sign_code and req["sign_code"] == held.sign_code, req
        assert _request_row(service, req["id"]).sign_code == held.sign_code
        assert _wait_status(c, req["id"])["status"] == "completed"
        audit = c.get(f"/v1/signing-requests/{req['id']}/audit").json()
    events = [e["event"] for e in audit["entries"]]
    assert events.count("sent") == 1 and events.index("sent") == events.index("result_received") - 1, events
    assert audit["chain_intact"] is True


def test_an_answer_naming_its_request_by_anything_but_plain_text_is_unknown(service):
    """Anyone can encrypt a callback to our KEK or open the redirect: a businessID or state that is not
    text we could have issued (a list, an object, a NUL byte PostgreSQL cannot compare) names no request,
    a 404 like any unknown one, never a 500."""
    with service.client() as c:
        for named in ([1], {"a": 1}, "a\x00b", 12345):
            for path in ("/v1/iamsmart/callback", "/v1/iamsmart/bulk/token"):
                r = c.post(path, content=_callback_body(service, named, {}))  # type: ignore[arg-type]
                assert r.status_code == 404, (path, named, r.text)
        for query in ("businessID=a%00b", "state=a%00b&code=x"):  # a NUL in a URL: the edge's rule
            r = c.get(f"/v1/iamsmart/redirect?{query}")
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_text"), (query, r.text)
        for query in ("businessID=%5B1%5D", "state=12345&code=x"):  # text, but none we issued
            r = c.get(f"/v1/iamsmart/redirect?{query}")
            assert r.status_code == 404, (query, r.text)
