"""The real client against the sandbox served by uvicorn on loopback: every flow and every listed code.

Callbacks and browser redirects land on a small receiving app on another loopback server.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from signing.iamsmart.client import Cek, IamSmartClient, SigningResult
from signing.iamsmart.codes import ReturnCode
from signing.iamsmart.config import ClientConfig
from signing.iamsmart.errors import FieldRuleError, IamSmartApiError
from signing.iamsmart.protocol import hkic_hash, sign_code_account, sign_code_anonymous
from signing.sandbox.options import SandboxOptions, SecretKeyPlaintext
from signing.sandbox.pki import SANDBOX_POLICY_OID

from .sandbox_fixtures import (  # noqa: F401 - fixtures
    HKID_DEREGISTERED,
    HKID_OTHER,
    HKID_PLAIN,
    HKID_SIGNER,
    HKID_SUSPENDED,
    TEST_OPTIONS,
    Sandbox,
    bid,
    sandbox_fixture,
    start_sandbox,
)

pytestmark = pytest.mark.timeout(60)

MIN = 60_000


async def hash_request(sb: Sandbox, c: IamSmartClient, tok, data: bytes = b"to be signed", **kw):
    b = kw.pop("business_id") if "business_id" in kw else bid()
    kw.setdefault("redirect_uri", sb.receiver.callback_uri(b))
    kw.setdefault("state", "st-1")
    kw.setdefault("service_name", "Sandbox tests")
    kw.setdefault("document_name", "letter.pdf")
    init = await c.account_sign_hash(business_id=b, token=tok, hash_code=data, **kw)
    return b, init


async def pdf_request(sb: Sandbox, c: IamSmartClient, tok, digest: bytes | None = None, **kw):
    b = kw.pop("business_id") if "business_id" in kw else bid()
    kw.setdefault("redirect_uri", sb.receiver.callback_uri(b))
    kw.setdefault("state", "st-2")
    kw.setdefault("service_name", "Sandbox tests")
    kw.setdefault("document_name", "letter.pdf")
    init = await c.account_sign_pdf(
        business_id=b, token=tok, doc_digest=digest or hashlib.sha256(b"pdf").digest(), **kw
    )
    return b, init


async def approve(sb: Sandbox, hkid: str, sign_code: str) -> dict:
    r = await sb.hook("POST", "/phone/approve", json={"hkid": hkid, "sign_code": sign_code})
    assert r.status_code == 200, r.text
    return r.json()


async def callback_of(sb: Sandbox, c: IamSmartClient, b: str, count: int = 1):
    return c.decrypt_callback(await sb.receiver.wait_post(b, count))


def api_code(exc_info) -> str:
    return str(exc_info.value.code)


# ============================================================================ account flows


async def test_account_hash_signing_end_to_end(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await sandbox.login(c)
        assert tok.user_type == "sign" and tok.can_sign and tok.token_type == "Bearer"
        assert "eidapi_sign" in tok.scope.split() and len(tok.open_id) <= 64
        data = b"DER of the signed attributes"
        b, init = await hash_request(sandbox, c, tok, data)
        assert init.sign_code == sign_code_account(base64.b64encode(data).decode(), tok.open_id)
        assert init.auth_by_qr is True and init.ticket_id
        pending = (await sandbox.hook("POST", "/phone/pending", json={"hkid": HKID_SIGNER})).json()
        assert [p["sign_code"] for p in pending if p["business_id"] == b] == [init.sign_code]
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        cb = await callback_of(sandbox, c, b)
        assert cb.ok and cb.code is ReturnCode.SUCCESS and cb.tx_id.startswith("<T=")
        assert cb.content["businessID"] == b and cb.content["state"] == "st-1"
        result = cb.hash_signature()
        assert result.hash_code == base64.b64encode(data).decode() and result.timestamp
        cert = x509.load_der_x509_certificate(result.cert_der)
        cert.public_key().verify(result.signature, data, padding.PKCS1v15(), hashes.SHA256())
        # the certificate: the user's names, the sandbox policy, the sandbox CA, never the HKID
        subject = cert.subject.rfc4514_string()
        assert "CHAN Tai Man" in subject and "陳大文" in subject and "A123456" not in subject
        serial = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value
        assert (
            serial == urllib.parse.unquote(tok.open_id) and "A123456" not in serial
        )  # the per-service identifier
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        assert [p.policy_identifier.dotted_string for p in policies] == [SANDBOX_POLICY_OID]
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.digital_signature and ku.content_commitment and cert.public_key().key_size == 2048
        assert cert.issuer == sandbox.engine.pki.issuing_ca.subject
        assert (await sandbox.status(b))["status"] == "CALLBACK_SENT"
        await c.ack_result(b, SigningResult.ACCEPTED)
        st = await sandbox.status(b)
        assert st["status"] == "ACKED" and st["ack"] == "SR001"
        with pytest.raises(IamSmartApiError) as exc:
            await c.ack_result(b, SigningResult.ACCEPTED)
        assert api_code(exc) == "D70006"


async def test_account_hash_none_with_rsa(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await sandbox.login(c)
        digest = hashlib.sha256(b"signed attributes").digest()
        b, init = await hash_request(sandbox, c, tok, digest, sig_algo="NONEwithRSA")
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        result = (await callback_of(sandbox, c, b)).hash_signature()
        x509.load_der_x509_certificate(result.cert_der).public_key().verify(
            result.signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256())
        )
        with pytest.raises(IamSmartApiError) as exc:  # NONEwithRSA needs exactly 32 bytes
            await hash_request(sandbox, c, tok, b"short", sig_algo="NONEwithRSA")
        assert api_code(exc) == "D20003"
        with pytest.raises(IamSmartApiError) as exc:  # the sandbox has no SM2 keys
            await hash_request(sandbox, c, tok, digest, sig_algo="SM3withSM2")
        assert api_code(exc) == "D20003"
        await c.ack_result(b, "SR001")


async def test_account_pdf_signing_returns_detached_cms(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await sandbox.login(c, source="App_Scheme")
        digest = hashlib.sha256(b"byte range").digest()
        b, init = await pdf_request(sandbox, c, tok, digest, source="App_Scheme")
        assert init.auth_by_qr is False
        assert init.sign_code == sign_code_account(base64.b64encode(digest).decode(), tok.open_id)
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        cb = await callback_of(sandbox, c, b)
        pdf = cb.pdf_signature()
        assert pdf.doc_digest == base64.b64encode(digest).decode() and cb.content["state"] == "st-2"
        ci = asn1_cms.ContentInfo.load(pdf.cms_der)
        sd = ci["content"]
        assert (
            ci["content_type"].native == "signed_data" and sd["encap_content_info"]["content"].native is None
        )
        attrs = {a["type"].native: a["values"][0].native for a in sd["signer_infos"][0]["signed_attrs"]}
        assert attrs["message_digest"] == digest
        assert {"content_type", "signing_time", "signing_certificate_v2"} <= set(attrs)
        assert len(sd["certificates"]) == 2  # leaf + issuing CA
        await c.ack_result(b, SigningResult.ACCEPTED)


# ============================================================================ anonymous flows


async def test_anonymous_hash_signing_driven_by_the_sandbox(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        b = bid("anon")
        data = b"anonymous hash"
        init = await c.anonymous_sign_hash(
            business_id=b,
            hash_code=data,
            hkic_hash=hkic_hash(HKID_SIGNER),
            redirect_uri=sandbox.receiver.return_uri(b),
            service_name="Sandbox tests",
            document_name="form.pdf",
            state="anon-1",
        )
        assert init.sign_code == sign_code_anonymous(data, hkic_hash(HKID_SIGNER), "test-service")
        assert init.auth_by_qr is None and init.ticket_id
        st = await sandbox.status(b)
        assert st["expires_ms"] - st["created_ms"] == 12 * MIN
        # the browser would open getQR with the ticket; the page shows the request and its code
        async with httpx.AsyncClient() as http:
            page = await http.get(
                c.qr_url(sandbox.receiver.return_uri(b), ("eidapi_sign",), ticket_id=init.ticket_id)
            )
        assert page.status_code == 200 and init.sign_code in page.text and "form.pdf" in page.text
        # the phone approves; no browser is involved, so the sandbox follows the redirect itself
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        query = await sandbox.receiver.wait_get(b)
        assert query["businessID"] == b and query["state"] == "anon-1" and "code" in query
        tok = await c.get_token(query["code"])
        result = await c.anonymous_hash_result(tok)
        x509.load_der_x509_certificate(result.cert_der).public_key().verify(
            result.signature, data, padding.PKCS1v15(), hashes.SHA256()
        )
        with pytest.raises(IamSmartApiError) as exc:  # held until fetched, then gone
            await c.anonymous_hash_result(tok)
        assert api_code(exc) == "D20027"
        await c.ack_result(b, SigningResult.ACCEPTED)
        assert (await sandbox.status(b))["ack"] == "SR001"


async def test_anonymous_pdf_signing_through_the_qr_page(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        b = bid("anonpdf")
        digest = hashlib.sha256(b"anonymous pdf").digest()
        init = await c.anonymous_sign_pdf(
            business_id=b,
            doc_digest=digest,
            hkic_hash=hkic_hash(HKID_SIGNER),
            redirect_uri=sandbox.receiver.return_uri(b),
            service_name="Sandbox tests",
            document_name="x.pdf",
        )
        assert init.auth_by_qr is True
        assert init.sign_code == sign_code_anonymous(digest, hkic_hash(HKID_SIGNER), "test-service")
        async with httpx.AsyncClient() as http:
            page = await http.get(
                c.qr_url(sandbox.receiver.return_uri(b), ("eidapi_sign",), ticket_id=init.ticket_id)
            )
            sid = page.headers["x-sandbox-qr-session"]
            r = await http.post(
                f"{sandbox.hooks}/qr/{sid}/approve", data={"hkid": HKID_SIGNER}, follow_redirects=False
            )
        assert r.status_code == 303
        query = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}
        assert query["businessID"] == b
        tok = await c.get_token(query["code"])
        with pytest.raises(IamSmartApiError) as exc:  # wrong kind of result for this token
            await c.anonymous_hash_result(tok)
        assert api_code(exc) == "D20027"
        pdf = await c.anonymous_pdf_result(tok)
        assert pdf.doc_digest == base64.b64encode(digest).decode()
        assert asn1_cms.ContentInfo.load(pdf.cms_der)["content_type"].native == "signed_data"


async def test_anonymous_errors_come_back_by_redirect(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:

        async def start(hkid: str) -> tuple[str, object]:
            b = bid("anonerr")
            init = await c.anonymous_sign_hash(
                business_id=b,
                hash_code=b"x",
                hkic_hash=hkic_hash(hkid),
                redirect_uri=sandbox.receiver.return_uri(b),
                service_name="s",
                document_name="d",
                state="e1",
            )
            return b, init

        b, init = await start(HKID_SIGNER)  # another user approves: D70005
        r = await sandbox.hook("POST", f"/requests/{b}/approve", json={"hkid": HKID_OTHER})
        assert r.status_code == 200 and r.json()["outcome"] == "D70005"
        q = await sandbox.receiver.wait_get(b)
        assert q == {"error_code": "D70005", "state": "e1", "businessID": b}
        await c.ack_result(b, SigningResult.NOT_RECEIVED)

        b, init = await start(HKID_SIGNER)  # rejected on the phone: D70001
        r = await sandbox.hook(
            "POST", "/phone/reject", json={"hkid": HKID_SIGNER, "sign_code": init.sign_code}
        )
        assert r.status_code == 200
        assert (await sandbox.receiver.wait_get(b))["error_code"] == "D70001"

        b, init = await start(HKID_OTHER)  # cancelled: D70000
        assert (await sandbox.hook("POST", f"/requests/{b}/cancel")).status_code == 200
        assert (await sandbox.receiver.wait_get(b))["error_code"] == "D70000"


# ============================================================================ outcomes by callback


async def test_reject_cancel_and_mismatch_callbacks(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await sandbox.login(c)
        b, init = await hash_request(sandbox, c, tok)
        await sandbox.hook("POST", "/phone/reject", json={"hkid": HKID_SIGNER, "sign_code": init.sign_code})
        cb = await callback_of(sandbox, c, b)
        assert cb.code == "D70001" and cb.content["businessID"] == b and "signature" not in cb.content
        with pytest.raises(IamSmartApiError) as exc:  # no signature was delivered
            await c.ack_result(b, SigningResult.ACCEPTED)
        assert api_code(exc) == "D70006"
        await c.ack_result(b, SigningResult.NOT_RECEIVED)

        b, init = await pdf_request(sandbox, c, tok)
        assert (await sandbox.hook("POST", f"/requests/{b}/cancel")).status_code == 200
        cb = await callback_of(sandbox, c, b)
        assert cb.code == "D70000" and cb.content["docDigest"]

        # HKICHash of someone else: D70005 at once, no user step
        b, init = await hash_request(sandbox, c, tok, hkic_hash=hkic_hash(HKID_OTHER))
        cb = await callback_of(sandbox, c, b)
        assert cb.code == "D70005"
        r = await sandbox.hook(
            "POST", "/phone/approve", json={"hkid": HKID_SIGNER, "sign_code": init.sign_code}
        )
        assert r.status_code == 404

        # the matching HKICHash is accepted
        b, init = await hash_request(sandbox, c, tok, hkic_hash=hkic_hash("A123456"))
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        assert (await callback_of(sandbox, c, b)).ok


async def test_a_sign_code_two_waiting_requests_share_approves_neither(sandbox: Sandbox) -> None:
    """Sign codes are 4 digits, so two requests of one signer can show the same one: the scripted phone
    must not guess which the caller meant (it approved the older one, completing a request nobody
    approved); it names the ambiguity, and each request can still be approved by its businessID."""
    async with sandbox.client() as c:
        tok = await sandbox.login(c)
        first, init = await hash_request(sandbox, c, tok, b"the same bytes")
        second, again = await hash_request(sandbox, c, tok, b"the same bytes")
        assert init.sign_code == again.sign_code
        for verb in ("approve", "reject"):
            r = await sandbox.hook(
                "POST", f"/phone/{verb}", json={"hkid": HKID_SIGNER, "sign_code": init.sign_code}
            )
            assert r.status_code == 409 and r.json()["error"]["code"] == "ambiguous_sign_code", r.text
        pending = (await sandbox.hook("POST", "/phone/pending", json={"hkid": HKID_SIGNER})).json()
        assert {first, second} <= {p["business_id"] for p in pending}
        assert (await sandbox.hook("POST", f"/requests/{second}/approve")).status_code == 200
        assert (await callback_of(sandbox, c, second)).ok
        await approve(sandbox, HKID_SIGNER, init.sign_code)  # one left with that code: no ambiguity
        assert (await callback_of(sandbox, c, first)).ok


async def test_account_ticket_on_the_qr_page_and_failure_hook(sandbox: Sandbox) -> None:
    async with sandbox.client() as c, httpx.AsyncClient() as http:
        tok = await sandbox.login(c)
        b, init = await pdf_request(sandbox, c, tok)
        url = c.qr_url(sandbox.receiver.return_uri(b), ("eidapi_sign",), ticket_id=init.ticket_id)
        sid = (await http.get(url)).headers["x-sandbox-qr-session"]
        r = await http.post(f"{sandbox.hooks}/qr/{sid}/approve", json={"hkid": HKID_OTHER})
        assert r.status_code == 409 and r.json()["error"]["code"] == "wrong_user"
        sid = (await http.get(url)).headers["x-sandbox-qr-session"]
        r = await http.post(f"{sandbox.hooks}/qr/{sid}/approve", json={"hkid": HKID_SIGNER})
        assert r.status_code == 200
        assert (await callback_of(sandbox, c, b)).pdf_signature().cms_der
        r = await http.get(url, headers={"accept": "application/json"})  # the ticket is used up
        assert r.status_code == 400 and r.json()["code"] == "D70003"
        b, _ = await hash_request(sandbox, c, tok)
        assert (await sandbox.hook("POST", f"/requests/{b}/fail")).json()["outcome"] == "D70002"
        assert (await callback_of(sandbox, c, b)).code == "D70002"
        assert (await sandbox.hook("POST", f"/requests/{b}/approve")).status_code == 409


async def test_user_state_rules(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        plain = await sandbox.login(c, HKID_PLAIN)
        assert plain.user_type == "default" and not plain.can_sign
        with pytest.raises(IamSmartApiError) as exc:
            await hash_request(sandbox, c, plain)
        assert api_code(exc) == "D70004"

        suspended = await sandbox.login(c, HKID_SUSPENDED)  # login works, signing does not
        with pytest.raises(IamSmartApiError) as exc:
            await pdf_request(sandbox, c, suspended)
        assert api_code(exc) == "D70004"

        # suspended while a request waits: the callback says D70004
        tok = await sandbox.login(c, HKID_OTHER)
        b, init = await hash_request(sandbox, c, tok)
        assert (
            await sandbox.hook("POST", "/users/update", json={"hkid": HKID_OTHER, "status": "suspended"})
        ).status_code == 200
        try:
            await approve(sandbox, HKID_OTHER, init.sign_code)
            assert (await callback_of(sandbox, c, b)).code == "D70004"
        finally:
            await sandbox.hook("POST", "/users/update", json={"hkid": HKID_OTHER, "status": "active"})


async def test_deregistration_and_reregistration(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        # a de-registered account cannot log in
        url = c.qr_url(sandbox.receiver.return_uri("dereg"), state="d1")
        async with httpx.AsyncClient() as http:
            sid = (await http.get(url)).headers["x-sandbox-qr-session"]
            r = await http.post(f"{sandbox.hooks}/qr/{sid}/approve", json={"hkid": HKID_DEREGISTERED})
        assert "error_code=D40002" in r.json()["redirect_url"]

        old = await sandbox.login(c, HKID_OTHER)
        await sandbox.hook("POST", "/users/update", json={"hkid": HKID_OTHER, "status": "deregistered"})
        try:
            with pytest.raises(IamSmartApiError) as exc:
                await hash_request(sandbox, c, old)
            assert api_code(exc) == "D20009"
        finally:
            await sandbox.hook("POST", "/users/update", json={"hkid": HKID_OTHER, "status": "active"})
        with pytest.raises(IamSmartApiError) as exc:  # still invalid after re-registration
            await hash_request(sandbox, c, old)
        assert api_code(exc) == "D20009"
        new = await sandbox.login(c, HKID_OTHER)
        assert new.open_id == old.open_id and new.last_modified_date > old.last_modified_date
        b, init = await hash_request(sandbox, c, new)
        assert init.sign_code
        await sandbox.hook("POST", f"/requests/{b}/cancel")


async def test_auto_approve_and_auto_reject(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await sandbox.login(c, HKID_OTHER)
        r = await sandbox.hook(
            "POST", "/users/update", json={"hkid": HKID_OTHER, "auto_action": "approve", "auto_delay_ms": 30}
        )
        assert r.json()["auto_action"] == "approve"
        try:
            b, _ = await pdf_request(sandbox, c, tok)
            assert (await callback_of(sandbox, c, b)).ok
            await sandbox.hook(
                "POST",
                "/users/update",
                json={"hkid": HKID_OTHER, "auto_action": "reject", "auto_delay_ms": 0},
            )
            b, _ = await hash_request(sandbox, c, tok)
            assert (await callback_of(sandbox, c, b)).code == "D70001"
        finally:
            await sandbox.hook("POST", "/users/update", json={"hkid": HKID_OTHER, "auto_action": "none"})


async def test_callback_retries_then_failure(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await sandbox.login(c)
        b, init = await hash_request(sandbox, c, tok)
        sandbox.receiver.fail_next[b] = 1  # the first POST gets HTTP 500, the retry succeeds
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        assert (await callback_of(sandbox, c, b, count=2)).ok
        st = await sandbox.wait_status(b, {"CALLBACK_SENT"})
        assert st["callback_attempts"] == 2

        b, init = await hash_request(sandbox, c, tok)
        sandbox.receiver.fail_next[b] = 3  # 1 + callback_retries (2) attempts, all refused
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        st = await sandbox.wait_status(b, {"CALLBACK_FAILED"})
        assert st["callback_attempts"] == 3
        with pytest.raises(IamSmartApiError) as exc:
            await c.ack_result(b, SigningResult.ACCEPTED)
        assert api_code(exc) == "D70006"
        await c.ack_result(b, SigningResult.NOT_RECEIVED)


# ============================================================================ request errors


async def test_request_signing_errors(sandbox: Sandbox) -> None:
    bad = ClientConfig(
        sandbox.config.base_url, "test-service", "wrong secret", sandbox.config.kek_private_keys
    )
    async with IamSmartClient(bad) as c:
        with pytest.raises(IamSmartApiError) as exc:
            await c.get_key()
        assert api_code(exc) == "D20006"
    unknown = ClientConfig(sandbox.config.base_url, "nobody", "x", sandbox.config.kek_private_keys)
    async with IamSmartClient(unknown) as c:
        with pytest.raises(IamSmartApiError) as exc:
            await c.get_key()
        assert api_code(exc) == "D20006"
    async with sandbox.client(nonce_factory=lambda: "the-same-nonce-every-time") as c:
        await c.get_key()
        with pytest.raises(IamSmartApiError) as exc:
            await c.get_key()
        assert api_code(exc) == "D20004"
    async with sandbox.client(clock_ms=lambda: 1557048906183) as c:  # 2019: outside the window
        with pytest.raises(IamSmartApiError) as exc:
            await c.get_key()
        assert api_code(exc) == "D20003"


async def test_token_and_field_errors(sandbox: Sandbox) -> None:
    loose = ClientConfig(**{**sandbox.config.__dict__, "check_fields": False})
    async with IamSmartClient(loose) as c:
        tok = await sandbox.login(c)
        fake = type(tok)(**{**tok.__dict__, "access_token": "not-a-token"})
        with pytest.raises(IamSmartApiError) as exc:
            await hash_request(sandbox, c, fake)
        assert api_code(exc) == "D20009"
        other = type(tok)(**{**tok.__dict__, "open_id": "someone-else"})
        with pytest.raises(IamSmartApiError) as exc:
            await hash_request(sandbox, c, other)
        assert api_code(exc) == "D20010"
        cases = [
            ({"source": "Nokia_Browser"}, "D20007"),
            ({"redirect_uri": "https://elsewhere.example/cb"}, "D20008"),
            ({"business_id": "x" * 37}, "D20003"),
            ({"department": "部" * 101}, "D20003"),
            ({"state": "x" * 37}, "D20003"),
            ({"document_name": "文" * 256}, "D20003"),
            ({"service_name": "服" * 256}, "D20003"),
            ({"service_name": ""}, "D20002"),
            ({"hash_code": b""}, "D20002"),
            ({"business_id": ""}, "D20002"),
        ]
        for kw, code in cases:
            data = kw.pop("hash_code", b"to be signed")
            with pytest.raises(IamSmartApiError) as exc:
                await hash_request(sandbox, c, tok, data, **kw)
            assert api_code(exc) == code, kw
        with pytest.raises(IamSmartApiError) as exc:  # docDigest must be 32 bytes
            await pdf_request(sandbox, c, tok, digest=b"\x01" * 20)
        assert api_code(exc) == "D20003"
        with pytest.raises(IamSmartApiError) as exc:  # HKICHash is mandatory in anonymous flows
            await c.anonymous_sign_pdf(
                business_id=bid(),
                doc_digest=bytes(32),
                hkic_hash=None,
                redirect_uri=sandbox.receiver.return_uri("x"),
                service_name="s",
                document_name="d",
            )
        assert api_code(exc) == "D20001"
        b, _ = await hash_request(sandbox, c, tok)
        with pytest.raises(IamSmartApiError) as exc:
            await hash_request(sandbox, c, tok, business_id=b)
        assert api_code(exc) == "D20011"
        with pytest.raises(IamSmartApiError) as exc:  # businessID is unique across the kinds too
            await pdf_request(sandbox, c, tok, business_id=b)
        assert api_code(exc) == "D20011"
        await sandbox.hook("POST", f"/requests/{b}/cancel")
    # the strict client refuses locally with the same code
    async with sandbox.client() as c:
        with pytest.raises(FieldRuleError) as exc:
            await hash_request(sandbox, c, tok, business_id="x" * 37)
        assert exc.value.code == "D20003"


async def test_scope_errors(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await sandbox.login(c, scopes=("eidapi_auth",))
        with pytest.raises(IamSmartApiError) as exc:
            await hash_request(sandbox, c, tok)
        assert api_code(exc) == "D20012"
    reg = sandbox.engine.registry
    svc = reg.register(
        "auth-only",
        kek_public_pem=reg.get("test-service").kek_public_pem,
        redirect_uris=[f"{sandbox.receiver.url}/*"],
        scopes=["eidapi_auth"],
    )
    limited = ClientConfig(
        sandbox.config.base_url, "auth-only", svc.client_secret, sandbox.config.kek_private_keys
    )
    async with IamSmartClient(limited) as c, httpx.AsyncClient() as http:
        r = await http.get(
            c.qr_url(sandbox.receiver.return_uri("x"), ("eidapi_auth", "eidapi_sign")),
            headers={"accept": "application/json"},
        )
        assert r.status_code == 400 and r.json()["code"] == "D20012"
        r = await http.get(c.qr_url(sandbox.receiver.return_uri("x"), ("eidapi_auth",)))
        assert r.status_code == 200


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"source": "Nokia"}, "D20007"),
        ({"redirectURI": "https://elsewhere.example/cb"}, "D20008"),
        ({"scope": "eidapi_everything"}, "D20003"),
        ({"scope": None}, "D20001"),
        ({"responseType": "token"}, "D20003"),
        ({"state": "bad state!"}, "D20003"),
        ({"lang": "fr-FR"}, "D20003"),
        ({"ticketID": "nope"}, "D20027"),
        ({"clientID": "nobody"}, "D20026"),
    ],
)
async def test_get_qr_errors(sandbox: Sandbox, change: dict, code: str) -> None:
    params = {
        "clientID": "test-service",
        "responseType": "code",
        "source": "PC_Browser",
        "redirectURI": sandbox.receiver.return_uri("q"),
        "scope": "eidapi_auth",
    }
    params.update(change)
    params = {k: v for k, v in params.items() if v is not None}
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{sandbox.api}/auth/getQR", params=params)
    assert r.status_code == 400 and code in r.text


async def test_auth_code_rules(sandbox: Sandbox) -> None:
    async with sandbox.client() as c, httpx.AsyncClient() as http:
        sid = (await http.get(c.qr_url(sandbox.receiver.return_uri("l")))).headers["x-sandbox-qr-session"]
        url = (await http.post(f"{sandbox.hooks}/qr/{sid}/approve", json={"hkid": HKID_SIGNER})).json()[
            "redirect_url"
        ]
        code = parse_qs(urlsplit(url).query)["code"][0]
        await c.get_token(code)
        with pytest.raises(IamSmartApiError) as exc:  # single use
            await c.get_token(code)
        assert api_code(exc) == "D40004"
        sid = (await http.get(c.qr_url(sandbox.receiver.return_uri("l")))).headers["x-sandbox-qr-session"]
        r = await http.post(f"{sandbox.hooks}/qr/{sid}/reject", json={})
        assert "error_code=D40001" in r.json()["redirect_url"]


async def test_ack_rules(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        with pytest.raises(IamSmartApiError) as exc:
            await c.ack_result("no-such-business", SigningResult.ACCEPTED)
        assert api_code(exc) == "D70006"
        tok = await sandbox.login(c)
        b, _ = await hash_request(sandbox, c, tok)
        with pytest.raises(IamSmartApiError) as exc:  # still pending
            await c.ack_result(b, SigningResult.NOT_RECEIVED)
        assert api_code(exc) == "D70006"
        await sandbox.hook("POST", f"/requests/{b}/cancel")
        await callback_of(sandbox, c, b)
        await sandbox.wait_status(b, {"CALLBACK_SENT"})
        await c.ack_result(b, SigningResult.NOT_RECEIVED)


# ============================================================================ keys


async def test_cek_refresh_after_d3000x(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        await c.get_key()
        assert c.get_key_calls == 1
        c._cek = Cek(
            bytes(32), c._cek.issue_at, c._cek.expires_in, c._cek.pub_key
        )  # a CEK the server never issued
        with pytest.raises(IamSmartApiError) as exc:
            await c.ack_result("unknown-business", SigningResult.NOT_RECEIVED)
        assert api_code(exc) == "D70006"  # the request got through after one refresh
        assert c.get_key_calls == 2
        await c.revoke_key()
        with pytest.raises(IamSmartApiError):
            await c.ack_result("unknown-business", SigningResult.NOT_RECEIVED)
        assert c.get_key_calls == 3


async def test_kek_missing_gives_d30001(sandbox: Sandbox) -> None:
    svc = sandbox.engine.registry.register("no-kek", kek_public_pem=None, redirect_uris=[])
    cfg = ClientConfig(sandbox.config.base_url, "no-kek", svc.client_secret, sandbox.config.kek_private_keys)
    async with IamSmartClient(cfg) as c:
        with pytest.raises(IamSmartApiError) as exc:
            await c.get_key()
        assert api_code(exc) == "D30001"


# ============================================================================ the clock


@pytest.fixture
def fresh_sandbox(tmp_path):
    yield from start_sandbox(tmp_path / "data")


async def test_timeouts_on_the_movable_clock(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    async with sb.client() as c:
        tok = await sb.login(c)
        b, init = await hash_request(sb, c, tok)
        st = await sb.status(b)
        assert st["expires_ms"] - st["created_ms"] == 18 * MIN
        a = bid("anon-t")
        await c.anonymous_sign_pdf(
            business_id=a,
            doc_digest=bytes(32),
            hkic_hash=hkic_hash(HKID_SIGNER),
            redirect_uri=sb.receiver.return_uri(a),
            service_name="s",
            document_name="d",
        )
        await sb.hook("POST", "/clock/advance", json={"ms": 11 * MIN})
        assert (await sb.status(b))["status"] == "PENDING" and (await sb.status(a))["status"] == "PENDING"
        await sb.hook("POST", "/clock/advance", json={"ms": MIN + 1})  # anonymous ticket: 12 minutes
        assert (await sb.receiver.wait_get(a))["error_code"] == "D70003"
        assert (await sb.status(b))["status"] == "PENDING"
        await sb.hook("POST", "/clock/advance", json={"ms": 6 * MIN})  # 18 minutes: D70003 by callback
        cb = await callback_of(sb, c, b)
        assert cb.code == "D70003" and cb.content["businessID"] == b
        await sb.wait_status(b, {"CALLBACK_SENT"})
        r = await sb.hook("POST", "/phone/approve", json={"hkid": HKID_SIGNER, "sign_code": init.sign_code})
        assert r.status_code == 404
        await c.ack_result(b, SigningResult.NOT_RECEIVED)
        # the ack window is 18 minutes after the callback
        b2, _ = await hash_request(sb, c, tok)
        await sb.hook("POST", f"/requests/{b2}/reject")
        await sb.wait_status(b2, {"CALLBACK_SENT"})
        await sb.hook("POST", "/clock/advance", json={"ms": 18 * MIN + 1})
        with pytest.raises(IamSmartApiError) as exc:
            await c.ack_result(b2, SigningResult.NOT_RECEIVED)
        assert api_code(exc) == "D70006"
        # auth codes live 60 s in sandbox mode
        async with httpx.AsyncClient() as http:
            sid = (await http.get(c.qr_url(sb.receiver.return_uri("l")))).headers["x-sandbox-qr-session"]
            url = (await http.post(f"{sb.hooks}/qr/{sid}/approve", json={"hkid": HKID_SIGNER})).json()[
                "redirect_url"
            ]
        await sb.hook("POST", "/clock/advance", json={"ms": 61_000})
        with pytest.raises(IamSmartApiError) as exc:
            await c.get_token(parse_qs(urlsplit(url).query)["code"][0])
        assert api_code(exc) == "D40004"
        # tokens expire (4 h) and the CEK (24 h) too; the client refreshes the CEK by itself
        await sb.hook("POST", "/clock/advance", json={"ms": 24 * 60 * MIN})
        calls = c.get_key_calls
        with pytest.raises(IamSmartApiError) as exc:
            await hash_request(sb, c, tok)
        assert api_code(exc) == "D20009" and c.get_key_calls == calls + 1


async def test_anonymous_result_expires_with_the_ticket(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    async with sb.client() as c:
        a = bid("held")
        init = await c.anonymous_sign_hash(
            business_id=a,
            hash_code=b"x",
            hkic_hash=hkic_hash(HKID_SIGNER),
            redirect_uri=sb.receiver.return_uri(a),
            service_name="s",
            document_name="d",
        )
        await approve(sb, HKID_SIGNER, init.sign_code)
        tok = await c.get_token((await sb.receiver.wait_get(a))["code"])
        await sb.hook("POST", "/clock/advance", json={"ms": 12 * MIN})
        with pytest.raises(IamSmartApiError) as exc:
            await c.anonymous_hash_result(tok)
        assert api_code(exc) == "D70003"


# ============================================================================ switches


async def test_corpid_style_secret_key_and_nested_content(tmp_path) -> None:
    options = SandboxOptions(
        **{
            **TEST_OPTIONS.__dict__,
            "secretkey_plaintext": SecretKeyPlaintext.BASE64,
            "nest_callback_content": True,
        }
    )
    for sb in start_sandbox(tmp_path / "data", options):
        async with sb.client() as c:
            tok = await sb.login(c)
            b, init = await hash_request(sb, c, tok, b"x")
            await approve(sb, HKID_SIGNER, init.sign_code)
            body = await sb.receiver.wait_post(b)
            cb = c.decrypt_callback(body)
            assert cb.ok and cb.content["businessID"] == b and cb.hash_signature().signature
