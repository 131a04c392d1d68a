"""What a browser, an unauthenticated caller or a changed certificate can and cannot do to a signing request."""

from __future__ import annotations

import time

import pytest

from .test_signing_service import SIGNER, _upload, _wait_status
from .test_signing_service_account import _callback_body, _request_row


def _start(c, tmp_path, hkid=SIGNER, **extra) -> dict:
    doc = _upload(c, tmp_path)
    body = {"document_id": doc["id"], "signer": {"hkid": hkid}, "level": "B-B", **extra}
    r = c.post("/v1/signing-requests", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _entries(c, req_id: str, event: str | None = None) -> list[dict]:
    entries = c.get(f"/v1/signing-requests/{req_id}/audit").json()["entries"]
    return [e for e in entries if event is None or e["event"] == event]


def _wait_entry(c, req_id: str, event: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _entries(c, req_id, event)
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {event} entry for {req_id}: {_entries(c, req_id)}")


def _approve(c, req: dict, hkid: str = SIGNER) -> None:
    r = c.post("/sandbox/v1/phone/approve", json={"hkid": hkid, "sign_code": req["sign_code"]})
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------ hole 1: state and unauthenticated failures


def test_the_signer_page_shows_neither_state_nor_business_id(service, tmp_path):
    with service.client() as c:
        req = _start(c, tmp_path)
        row = _request_row(service, req["id"])
        page = c.get(f"/sign/{req['id']}").text
    assert row.state and row.state != row.business_id and len(row.state) <= 36
    assert row.business_id not in page and row.state not in page and "state=" not in page


@pytest.mark.parametrize("answer", [{"error_code": "D70001"}, {"code": "garbage"}])
def test_a_browser_redirect_cannot_end_a_request(service, tmp_path, answer):
    with service.client() as c:
        req = _start(c, tmp_path)
        row = _request_row(service, req["id"])
        # what anyone holding the signer link could send (old state = businessID), then the real state
        for state in ({}, {"state": row.business_id}, {"state": "x" * 32}, {"state": row.state}):
            r = c.get("/v1/iamsmart/redirect", params={"businessID": row.business_id, **state, **answer})
            assert r.status_code in (200, 404), r.text
            assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"
        hints = _entries(c, req["id"], "hint")
        assert len(hints) == 1 and hints[0]["status"] == "pending"  # only the one bringing the state
        assert hints[0]["iamsmart_code"] == ("D70001" if "error_code" in answer else "D40004")
        assert hints[0]["actor"] == "browser:redirect"
        # the state alone names the request too (should iAM Smart leave businessID out)
        c.get("/v1/iamsmart/redirect", params={"state": row.state, **answer})
        assert len(_entries(c, req["id"], "hint")) == 2
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"
        # the signer's real approval still completes it
        _approve(c, req)
        assert _wait_status(c, req["id"])["status"] == "completed"


def test_a_failure_posted_to_the_callback_is_only_a_hint(service, tmp_path):
    with service.client() as c:
        req = _start(c, tmp_path)
        row = _request_row(service, req["id"])
        body = _callback_body(service, row.business_id, {"state": row.state}, code="D70001")
        r = c.post("/v1/iamsmart/callback", content=body)
        assert r.status_code == 200 and r.json()["outcome"] == "hint", r.text
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"
        assert _entries(c, req["id"], "hint")[0]["iamsmart_code"] == "D70001"
        _approve(c, req)
        assert _wait_status(c, req["id"])["status"] == "completed"


def test_a_failure_posted_to_the_bulk_callback_is_only_a_hint(service, tmp_path):
    from api.store.models import Batch

    with service.client() as c:
        docs = [_upload(c, tmp_path, f"b{i}.pdf") for i in range(2)]
        body = {"document_ids": [d["id"] for d in docs], "signer": {"hkid": SIGNER}, "level": "B-B"}
        batch = c.post("/v1/batches", json=body).json()
        with service.app.state.flow.session() as s:
            business_id = s.get(Batch, batch["id"]).business_id
        forged = _callback_body(service, business_id, {}, code="D71001")
        r = c.post(
            "/v1/iamsmart/bulk/callback", files={"sigMetada": ("sigMetada", forged, "application/json")}
        )
        assert r.status_code == 200 and r.json()["outcome"] == "hint", r.text
        assert c.get(f"/v1/batches/{batch['id']}").json()["status"] == "pending"
        _approve(c, batch)
        deadline = time.monotonic() + 60
        while (done := c.get(f"/v1/batches/{batch['id']}").json())["status"] in ("pending", "signing"):
            assert time.monotonic() < deadline, done
            time.sleep(0.2)
        assert done["status"] == "completed", done


def test_a_real_rejection_by_redirect_waits_for_expiry(service, tmp_path):
    ctx = service.app.state.context
    with service.client() as c:
        req = _start(c, tmp_path)
        r = c.post("/sandbox/v1/phone/reject", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
        assert r.status_code == 200, r.text
        hint = _wait_entry(c, req["id"], "hint")  # the sandbox drives the browser's error redirect
        assert hint["iamsmart_code"] == "D70001"
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"
        real_clock = ctx.clock
        ctx.clock = lambda: real_clock() + __import__("datetime").timedelta(minutes=19)
        try:
            done = _wait_status(c, req["id"], timeout=20)
        finally:
            ctx.clock = real_clock
        assert done["status"] == "expired" and done["error"]["code"] == "D70003"


# ------------------------------------------------------------------ hole 3: what a result must match


def _sandbox_ack(c, business_id: str, wanted: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = c.get(f"/sandbox/v1/requests/{business_id}").json()
        if st.get("ack") == wanted:
            return
        time.sleep(0.1)
    raise AssertionError(f"iAM Smart never got {wanted} for {business_id}: {st}")


def test_anonymous_get_result_sends_only_the_token_and_open_id(service, tmp_path):
    engine = service.app.state.sandbox
    seen: list[set[str]] = []
    paths = ("/anonymous/signing/getResult", "/anonymous/pdfsigning/getResult")
    saved = {p: engine._routes[p] for p in paths}

    def recording(handler):
        async def record(svc, payload):
            seen.append(set(payload))
            return await handler(svc, payload)

        return record

    for p in paths:
        engine._routes[p] = (saved[p][0], recording(saved[p][1]))
    try:
        with service.client() as c:
            for mode in ("pdf", "hash"):
                req = _start(c, tmp_path, mode=mode)
                _approve(c, req)
                assert _wait_status(c, req["id"])["status"] == "completed"
    finally:
        engine._routes.update(saved)
    assert seen == [{"accessToken", "openID"}] * 2


def test_a_result_whose_echo_differs_is_refused(service, tmp_path):
    from .test_signing_service_account import _echo, _sandbox_signer, _valid_pdf_signature

    with service.client() as c:
        req = _start(c, tmp_path)
        row = _request_row(service, req["id"])
        genuine = _valid_pdf_signature(service, req["id"], _sandbox_signer(service))
        for echo in ({"docDigest": "AAAA" + _echo(service, req["id"])[4:]}, {}):
            body = _callback_body(service, row.business_id, {"pdfSignature": genuine, **echo})
            r = c.post("/v1/iamsmart/callback", content=body)
            assert r.status_code == 200 and r.json()["outcome"] == "refused", r.text
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"
        refused = _entries(c, req["id"], "result_refused")
        assert len(refused) == 2 and "docDigest" in refused[0]["detail"]


def test_a_result_that_fails_verification_is_acked_sr002_and_audited(service, tmp_path):
    import dataclasses

    from .test_signing_service_account import _create, _login

    flow = service.app.state.flow
    with service.client() as c:
        token = _login(c)
        req = _create(c, tmp_path, token)
        row = _request_row(service, req["id"])
        saved = flow.setup
        flow.setup = dataclasses.replace(saved, cert_issuers=())  # the genuine answer no longer verifies
        try:
            _approve(c, req)
            refused = _wait_entry(c, req["id"], "result_refused")
            _sandbox_ack(c, row.business_id, "SR002")
        finally:
            flow.setup = saved
        assert "iAM Smart-Cert issuer" in refused["detail"]
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"


def test_a_renewed_certificate_fails_the_hash_request_at_once_and_is_forgotten(service, tmp_path):
    from signing.model import PreparedSignature

    from .test_signing_service_account import _create, _login

    with service.client() as c:
        token = _login(c)
        first = _create(c, tmp_path, token, mode="hash")
        _approve(c, first)
        assert _wait_status(c, first["id"])["status"] == "completed"
        second = _create(c, tmp_path, token, mode="hash")  # built for the certificate the first one carried
        assert PreparedSignature.loads(_request_row(service, second["id"]).record_json).signer_certificate_der
        users = service.app.state.sandbox.users
        client_id = service.app.state.iamsmart_setup.client_config.client_id
        users.renew_certificate(users.by_hkid(SIGNER), client_id)
        _approve(c, second)
        done = _wait_status(c, second["id"], timeout=20)
        assert done["status"] == "failed" and done["error"]["code"] == "signer_certificate_changed", done
        _sandbox_ack(c, _request_row(service, second["id"]).business_id, "SR002")
        assert _entries(c, second["id"], "failed")[0]["detail"] == done["error"]["message"]
        # the stale certificate is forgotten: the next request is built without it and completes
        third = _create(c, tmp_path, token, mode="hash")
        assert (
            PreparedSignature.loads(_request_row(service, third["id"]).record_json).signer_certificate_der
            is None
        )
        _approve(c, third)
        assert _wait_status(c, third["id"])["status"] == "completed"


# ------------------------------------------------------------------ hole 2: revocation before embedding

OTHER = "E567890(4)"  # HO Wing Sze, iAM Smart+: her certificates are revoked below


def test_revocation_is_asked_by_ocsp_then_crl_and_unknown_without_an_answer(test_pki):
    import asyncio

    from fastapi import FastAPI, Response

    from api.sandbox.pki import pki_router
    from signing.revocation import RevocationStatus, check_revocation
    from signing.sandbox.pki import SandboxPki

    from .support import LoopbackServer

    pki, ca = test_pki.pki, test_pki.pki.issuing_ca
    issued = pki.issue_signer("LAM Revoke Me")
    first = asyncio.run(check_revocation(issued.certificate, ca))
    assert first.status is RevocationStatus.GOOD and first.source.startswith("OCSP "), first
    pki.revoke(issued.certificate.serial_number)
    revoked = asyncio.run(check_revocation(issued.certificate, ca))
    assert revoked.status is RevocationStatus.REVOKED and revoked.source.startswith("OCSP ")
    assert revoked.revoked_at is not None
    # another CA's answer about it is no answer
    stranger = SandboxPki.open_or_create(test_pki.pki.directory.parent / "stranger", test_pki.url)
    assert (
        asyncio.run(check_revocation(issued.certificate, stranger.issuing_ca)).status
        is RevocationStatus.UNKNOWN
    )

    # a PKI whose OCSP responder is down: the CRL answers
    server = LoopbackServer()
    down = SandboxPki.open_or_create(test_pki.pki.directory.parent / "ocsp-down", f"{server.url}/pki")
    app = FastAPI()

    @app.post("/pki/ocsp")
    def ocsp_down() -> Response:
        return Response(b"down", status_code=503)

    app.include_router(pki_router(lambda: down), prefix="/pki")
    server.start(app)
    try:
        other = down.issue_signer("CHEUNG Crl Only")
        good = asyncio.run(check_revocation(other.certificate, down.issuing_ca))
        assert good.status is RevocationStatus.GOOD and good.source.startswith("CRL "), good
        down.revoke(other.certificate.serial_number)
        gone = asyncio.run(check_revocation(other.certificate, down.issuing_ca))
        assert gone.status is RevocationStatus.REVOKED and gone.source.startswith("CRL "), gone
    finally:
        server.stop()
    # nothing answers at all
    dead = SandboxPki.open_or_create(test_pki.pki.directory.parent / "dead", "http://127.0.0.1:9/pki")
    lost = dead.issue_signer("WONG Nobody Answers")
    unknown = asyncio.run(check_revocation(lost.certificate, dead.issuing_ca, timeout_s=2))
    assert unknown.status is RevocationStatus.UNKNOWN and "OCSP" in unknown.detail and "CRL" in unknown.detail


@pytest.mark.parametrize("level", ["B-B", "B-LTA"])
def test_a_revoked_certificate_fails_before_embedding_at_every_level(service, tmp_path, level):
    _revoke_other(service)
    with service.client() as c:
        req = _start(c, tmp_path, hkid=OTHER, level=level)
        _approve(c, req, OTHER)
        done = _wait_status(c, req["id"])
        assert done["status"] == "failed" and done["error"]["code"] == "certificate_revoked", done
        assert done["signed_document_id"] is None
        entry = _entries(c, req["id"], "failed")[0]
        assert "revoked" in entry["detail"] and "OCSP" in entry["detail"]


def _revoke_other(service) -> None:
    engine = service.app.state.sandbox
    user = engine.users.by_hkid(OTHER)
    engine.users.certificate(user, service.app.state.iamsmart_setup.client_config.client_id)  # issued now
    for cert in engine.users.certificates(user):
        engine.pki.revoke(cert.serial_number)


def test_a_batch_signed_by_a_revoked_certificate_embeds_nothing(service, tmp_path):
    _revoke_other(service)
    with service.client() as c:
        docs = [_upload(c, tmp_path, f"r{i}.pdf") for i in range(2)]
        body = {"document_ids": [d["id"] for d in docs], "signer": {"hkid": OTHER}, "level": "B-B"}
        batch = c.post("/v1/batches", json=body).json()
        _approve(c, batch, OTHER)
        deadline = time.monotonic() + 60
        while (done := c.get(f"/v1/batches/{batch['id']}").json())["status"] in ("pending", "signing"):
            assert time.monotonic() < deadline, done
            time.sleep(0.2)
    assert done["status"] in ("failed", "partially_completed"), done  # the batch ends; no document signed
    assert [d["error"]["code"] for d in done["documents"]] == ["certificate_revoked"] * 2
    assert all(d["signed_document_id"] is None for d in done["documents"])


def test_a_completed_request_says_where_its_certificate_status_came_from(service, tmp_path):
    with service.client() as c:
        req = _start(c, tmp_path)
        _approve(c, req)
        assert _wait_status(c, req["id"])["status"] == "completed"
        assert "certificate status OCSP" in _entries(c, req["id"], "completed")[0]["detail"]


# ------------------------------------------------------------------ hole 5: login CSRF and the token


def _login_until_callback(c) -> str:
    """Start a login in ``c`` (the signer's browser) and approve it; the callback URL iAM Smart sends back."""
    r = c.get("/v1/auth/iamsmart/login", follow_redirects=False)
    assert r.status_code == 302
    qr = c.get(r.headers["location"], headers={"accept": "application/json"}).json()
    approve = c.post("/sandbox" + qr["approve"].removeprefix("/sandbox"), json={"hkid": SIGNER})
    assert approve.status_code == 200, approve.text
    return approve.json()["redirect_url"]


def test_a_login_callback_only_counts_in_the_browser_that_started_it(service):
    import httpx

    with service.client() as victim, service.client() as attacker:
        url = _login_until_callback(attacker)  # the attacker's own login, sent to the victim to open
        r = victim.get(url)
        assert r.status_code == 400 and r.json()["error"]["code"] == "login_state_mismatch", r.text
        # nor with the state changed, nor with a tampered cookie
        mine = _login_until_callback(victim)
        forged = httpx.URL(mine).copy_set_param("state", "x" * 32)
        assert victim.get(str(forged)).json()["error"]["code"] == "login_state_mismatch"
        cookie = victim.cookies.get("iamsign_login_state")
        assert cookie and cookie.count(".") == 2
        state, expiry, mac = cookie.split(".")
        victim.cookies.set(
            "iamsign_login_state", f"{state}.{int(expiry) + 3600}.{mac}", path="/v1/auth/iamsmart"
        )
        assert victim.get(mine).json()["error"]["code"] == "login_state_mismatch"


def test_the_login_gives_an_opaque_session_and_keeps_the_token(service, tmp_path):
    from sqlmodel import select

    from api.store.models import SignerSession

    with service.client() as c:
        r = c.get(_login_until_callback(c))
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"session_id", "user_type", "can_sign", "expires_at"}
        assert body["session_id"].startswith("ss_") and body["can_sign"] is True
        assert c.get(_login_until_callback(c).replace("code=", "code=x")).status_code == 400  # a bad code
        doc = _upload(c, tmp_path)
        r = c.post(
            "/v1/signing-requests",
            json={"document_id": doc["id"], "level": "B-B", "signer": {"session_id": body["session_id"]}},
        )
        assert r.status_code == 201 and r.json()["flow"] == "account", r.text
        req = r.json()
        _approve(c, req)
        assert _wait_status(c, req["id"])["status"] == "completed"
        for signer, code in (
            ({"session_id": "ss_nope"}, "unknown_signer_session"),
            ({"open_id": "x", "access_token": "y"}, None),
            ({"hkid": SIGNER, "session_id": body["session_id"]}, None),
        ):
            r = c.post("/v1/signing-requests", json={"document_id": doc["id"], "signer": signer})
            assert r.status_code == 422, r.text
            if code:
                assert r.json()["error"]["code"] == code
    # at rest: neither the session id nor iAM Smart's access token in clear
    tokens = [t for t in service.app.state.sandbox.core.tokens]
    with service.app.state.flow.session() as s:
        rows = s.exec(select(SignerSession)).all()
    assert rows
    stored = " ".join(f"{r.id} {r.token_sealed} {r.signer_key}" for r in rows)
    assert body["session_id"] not in stored and not any(t in stored for t in tokens)
