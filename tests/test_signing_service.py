"""The signing service end to end over HTTP: create_app with the sandbox, on a loopback port."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization

from fixtures.generate import simple_pdf

SIGNER = "A123456(3)"  # the sandbox's iAM Smart+ user CHAN Tai Man
PLAIN_USER = "B234567(1)"  # an iAM Smart user who cannot sign
SUSPENDED = "C345678(A)"
DEREGISTERED = "D456789(8)"


def _upload(c, tmp_path, name="letter.pdf") -> dict:
    pdf = simple_pdf(tmp_path / name, pages=2)
    r = c.post("/v1/documents", files={"file": (name, pdf.read_bytes(), "application/pdf")})
    assert r.status_code == 201, r.text
    return r.json()


def _wait_status(c, req_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = c.get(f"/v1/signing-requests/{req_id}").json()
        if body["status"] != "pending":
            return body
        time.sleep(0.1)
    raise AssertionError(f"still pending after {timeout}s: {body}")


def _validate(service, pdf_bytes: bytes, tmp_path):
    import asyncio
    import io

    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import DocumentSecurityStore, async_validate_pdf_signature

    root = asn1_x509.Certificate.load(
        service.app.state.sandbox_pki.root.public_bytes(serialization.Encoding.DER)
    )
    path = tmp_path / "signed.pdf"
    path.write_bytes(pdf_bytes)

    async def run():
        reader = PdfFileReader(io.BytesIO(path.read_bytes()))
        dss = DocumentSecurityStore.read_dss(reader)
        vc = dss.as_validation_context(
            {"trust_roots": [root], "allow_fetching": False, "revocation_mode": "require"}
        )
        sigs = [s for s in reader.embedded_signatures if s.sig_object_type == "/Sig"]
        status = await async_validate_pdf_signature(sigs[0], vc)
        await vc.aclose()
        n_doc_ts = sum(1 for s in reader.embedded_signatures if s.sig_object_type == "/DocTimeStamp")
        return status, n_doc_ts

    return asyncio.run(run())


@pytest.mark.parametrize("mode", ["pdf", "hash"])
def test_whole_flow_upload_request_approve_completed_verifies(service, tmp_path, mode):
    with service.client() as c:
        doc = _upload(c, tmp_path)
        r = c.post(
            "/v1/signing-requests",
            json={
                "document_id": doc["id"],
                "signer": {"hkid": SIGNER},
                "mode": mode,
                "level": "B-LTA",
                "reason": "Approval",
            },
        )
        assert r.status_code == 201, r.text
        req = r.json()
        assert req["status"] == "pending" and len(req["sign_code"]) == 4
        assert req["signer_url"].endswith(f"/sign/{req['id']}")
        page = c.get(f"/sign/{req['id']}")
        assert page.status_code == 200 and req["sign_code"] in page.text and "智方便" in page.text

        r = c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
        assert r.status_code == 200, r.text
        done = _wait_status(c, req["id"])
        assert done["status"] == "completed", done
        assert done["error"] is None and done["signed_document_id"]

        signed = c.get(f"/v1/signing-requests/{req['id']}/signed-document")
        assert signed.status_code == 200 and signed.headers["content-type"] == "application/pdf"
        meta = c.get(f"/v1/documents/{done['signed_document_id']}").json()
        assert meta["signature_count"] == 2  # the signature and the B-LTA document timestamp
        status, n_doc_ts = _validate(service, signed.content, tmp_path)
        assert status.bottom_line, status.summary()
        assert n_doc_ts == 1

        audit = c.get(f"/v1/signing-requests/{req['id']}/audit").json()
        assert audit["chain_intact"] is True
        events = [e["event"] for e in audit["entries"]]
        assert events == ["created", "sent", "result_received", "completed"]
        assert audit["entries"][-1]["document_sha256_before"] == doc["sha256"]
        assert audit["entries"][-1]["document_sha256_after"] == meta["sha256"]
        # no HKID anywhere in what the service returns
        assert "A123456" not in r.text + str(audit) + str(done)


def _start(c, tmp_path, hkid=SIGNER, **extra) -> dict:
    doc = _upload(c, tmp_path)
    r = c.post(
        "/v1/signing-requests",
        json={"document_id": doc["id"], "signer": {"hkid": hkid}, "level": "B-T", **extra},
    )
    assert r.status_code == 201, r.text
    return r.json()


def _hints(c, req_id: str, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = c.get(f"/v1/signing-requests/{req_id}/audit").json()["entries"]
        if hints := [e for e in entries if e["event"] == "hint"]:
            return hints
        time.sleep(0.1)
    raise AssertionError(f"no hint for {req_id}")


def test_reject_on_the_phone_is_only_a_hint(service, tmp_path):
    # the anonymous flow brings a rejection by browser redirect, which anyone could send: it is recorded,
    # and the request stays pending until expiry (tests/test_security_flow.py follows it there)
    with service.client() as c:
        req = _start(c, tmp_path)
        assert (
            c.post(
                "/sandbox/v1/phone/reject", json={"hkid": SIGNER, "sign_code": req["sign_code"]}
            ).status_code
            == 200
        )
        assert _hints(c, req["id"])[0]["iamsmart_code"] == "D70001"
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"
        assert c.get(f"/v1/signing-requests/{req['id']}/signed-document").status_code == 409


@pytest.mark.parametrize("hkid, code", [(PLAIN_USER, "D70004"), (SUSPENDED, "D70004"), (DEREGISTERED, None)])
def test_users_who_cannot_sign_never_complete(service, tmp_path, hkid, code):
    with service.client() as c:
        req = _start(c, tmp_path, hkid=hkid)
        if req["status"] == "pending":  # the refusal comes by the browser's redirect: only a hint
            c.post("/sandbox/v1/phone/approve", json={"hkid": hkid, "sign_code": req["sign_code"]})
            hint = _hints(c, req["id"])[0]
            assert hint["iamsmart_code"].startswith("D")
            if code:
                assert hint["iamsmart_code"] == code
            assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"
        else:  # iAM Smart refused our own call: that ends it
            assert req["status"] == "failed" and req["error"]["code"].startswith("D"), req


@pytest.mark.parametrize("hkid", ["A123456(4)", "A12345(6)", "not an id", "Z683365"])
def test_bad_hkid_is_422(service, tmp_path, hkid):
    with service.client() as c:
        doc = _upload(c, tmp_path)
        r = c.post("/v1/signing-requests", json={"document_id": doc["id"], "signer": {"hkid": hkid}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_hkid"
        assert hkid not in r.text


def test_other_organisation_sees_404(service, tmp_path):
    with service.client() as c:
        req = _start(c, tmp_path)
    with service.client(service.other_key) as other:
        for path in ("", "/audit", "/signed-document"):
            assert other.get(f"/v1/signing-requests/{req['id']}{path}").status_code == 404
        assert other.post(f"/v1/signing-requests/{req['id']}/cancel").status_code == 404
        r = other.post(
            "/v1/signing-requests", json={"document_id": req["document_id"], "signer": {"hkid": SIGNER}}
        )
        assert r.status_code == 404


def test_cancel_then_a_late_approval_changes_nothing(service, tmp_path):
    with service.client() as c:
        req = _start(c, tmp_path)
        r = c.post(f"/v1/signing-requests/{req['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert c.post(f"/v1/signing-requests/{req['id']}/cancel").status_code == 409
        c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
        time.sleep(1)
        after = c.get(f"/v1/signing-requests/{req['id']}").json()
        assert after["status"] == "cancelled" and after["signed_document_id"] is None


def test_bad_requests_get_json_errors_not_500s(service, tmp_path):
    with service.client() as c:
        doc = _upload(c, tmp_path)
        cases = [
            (
                {"content": b"{not json", "headers": {"content-type": "application/json"}},
                422,
                "invalid_request",
            ),
            ({"json": {"signer": {"hkid": SIGNER}}}, 422, "invalid_request"),
            ({"json": {"document_id": "doc_missing", "signer": {"hkid": SIGNER}}}, 404, "not_found"),
            ({"json": {"document_id": doc["id"], "signer": {}}}, 422, "invalid_signer"),
            (
                {"json": {"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-X"}},
                422,
                "invalid_request",
            ),
            (
                {
                    "json": {
                        "document_id": doc["id"],
                        "signer": {"hkid": SIGNER},
                        "appearance": {"page": 7, "lines": ["陳大文"]},
                    }
                },
                422,
                "field_error",
            ),
            (
                {"json": {"document_id": doc["id"], "signer": {"hkid": SIGNER}, "webhook_url": "not a url"}},
                422,
                "invalid_request",
            ),
        ]
        for kwargs, status, code in cases:
            r = c.post("/v1/signing-requests", **kwargs)
            assert r.status_code == status, (kwargs, r.text)
            assert r.json()["error"]["code"] == code, (kwargs, r.text)
            assert "Traceback" not in r.text
        assert c.get("/v1/signing-requests/sr_nope").status_code == 404
        assert c.get("/v1/nowhere").json()["error"]["code"] == "not_found"


def test_visible_stamp_with_chinese_name_through_the_service(service, tmp_path):
    with service.client() as c:
        doc = _upload(c, tmp_path)
        r = c.post(
            "/v1/signing-requests",
            json={
                "document_id": doc["id"],
                "signer": {"hkid": SIGNER},
                "level": "B-T",
                "appearance": {
                    "page": 1,
                    "box": [300, 40, 560, 110],
                    "lines": ["簽署人：陳大文", "CHAN Tai Man"],
                },
            },
        )
        req = r.json()
        c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
        assert _wait_status(c, req["id"])["status"] == "completed"
        pdf = c.get(f"/v1/signing-requests/{req['id']}/signed-document").content
    import io

    from pyhanko.pdf_utils.reader import PdfFileReader

    from .test_pades_signing import _fonts_in

    emb = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
    assert [float(v) for v in emb.sig_field["/Rect"]] == [300, 40, 560, 110]
    fonts = _fonts_in(emb.sig_field["/AP"]["/N"])
    assert any("NotoSansCJK" in str(f["/BaseFont"]) for f in fonts)


def test_idempotency_key_returns_the_first_request(service, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    with service.client() as c:
        doc = _upload(c, tmp_path)
        body = {"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"}
        first = c.post("/v1/signing-requests", json=body, headers={"Idempotency-Key": "letter-42"}).json()
        again = c.post("/v1/signing-requests", json=body, headers={"Idempotency-Key": "letter-42"}).json()
        assert again.get("id") == first["id"] and again["sign_code"] == first["sign_code"], (first, again)

        def post(_):
            with httpx.Client(
                base_url=service.url,
                headers={"Authorization": f"Bearer {service.key}", "Idempotency-Key": "letter-43"},
                timeout=60,
            ) as h:
                return h.post("/v1/signing-requests", json=body).json()["id"]

        with ThreadPoolExecutor(4) as pool:
            ids = set(pool.map(post, range(4)))
        assert len(ids) == 1
        listed = c.get("/v1/signing-requests", params={"document_id": doc["id"]}).json()["items"]
        assert sorted(r["id"] for r in listed) == sorted([first["id"], *ids])
    with service.client(service.other_key) as other:  # keys are per organisation
        other_doc = _upload(other, tmp_path, "other.pdf")
        r = other.post(
            "/v1/signing-requests",
            json={**body, "document_id": other_doc["id"]},
            headers={"Idempotency-Key": "letter-42"},
        ).json()
        assert r["id"] != first["id"]
