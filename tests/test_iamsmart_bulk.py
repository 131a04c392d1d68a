"""Bulk signing (protocol doc §8, §12.4): the real client against the sandbox under uvicorn on loopback,
result callbacks (multipart) and BSQC-token callbacks landing on a receiving app on another loopback server.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import time

import httpx
import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from signing.iamsmart.bulk import (
    BulkCallback,
    BulkDocument,
    BulkHashSignature,
    BulkPdfSignature,
    BulkStatus,
    multipart_body,
    split_multipart,
)
from signing.iamsmart.client import IamSmartClient, SigningResult, Token
from signing.iamsmart.codes import ReturnCode
from signing.iamsmart.config import ClientConfig
from signing.iamsmart.errors import EnvelopeError, FieldRuleError, IamSmartApiError
from signing.iamsmart.protocol import (
    bulk_digest,
    bulk_sign_code,
    encrypt_content,
    hkic_hash,
    sign_code_account,
    sign_code_anonymous,
    signed_headers,
)
from signing.sandbox.options import SandboxOptions

from .sandbox_fixtures import (  # noqa: F401 - fixtures
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

pytestmark = pytest.mark.timeout(120)

MIN = 60_000
BULK_SCOPES = ("eidapi_auth", "eidapi_bulksign")


# ============================================================================ helpers


def mixed_documents(n: int, prefix: str = "doc") -> list[BulkDocument]:
    """PDF items, SHA256withRSA hash items and NONEwithRSA hash items, in turn."""
    docs = []
    for i in range(n):
        digest = hashlib.sha256(f"{prefix}-{i}".encode()).digest()
        if i % 3 == 0:
            docs.append(BulkDocument.pdf(f"{prefix}-{i}", f"letter-{i}.pdf", digest))
        elif i % 3 == 1:
            docs.append(BulkDocument.hash(f"{prefix}-{i}", f"attrs-{i}", b"DER of signed attributes %d" % i))
        else:
            docs.append(BulkDocument.hash(f"{prefix}-{i}", f"digest-{i}", digest, "NONEwithRSA"))
    return docs


async def login(sb: Sandbox, c: IamSmartClient, hkid: str = HKID_SIGNER) -> Token:
    return await sb.login(c, hkid, scopes=BULK_SCOPES)


async def start(sb: Sandbox, c: IamSmartClient, docs: list[BulkDocument], tok: Token | None = None, **kw):
    b = kw.pop("business_id", None) or bid("bulk")
    kw.setdefault("callback_result_uri", sb.receiver.callback_uri(b))
    if tok is not None:
        kw.setdefault("redirect_uri", sb.receiver.callback_uri(f"{b}-token"))
    kw.setdefault("state", "bs-1")
    kw.setdefault("service_name", "Bulk tests")
    kw.setdefault("request_name", "Letters of today")
    init = await c.bulk_initiate(business_id=b, documents=docs, token=tok, **kw)
    return b, init


async def results(sb: Sandbox, c: IamSmartClient, b: str, count: int = 1) -> list[BulkCallback]:
    out = []
    for i in range(1, count + 1):
        out.append(c.decrypt_bulk_callback(await sb.receiver.wait_multipart(b, i, timeout=30)))
    return out


async def approve(sb: Sandbox, hkid: str, sign_code: str) -> dict:
    r = await sb.hook("POST", "/phone/approve", json={"hkid": hkid, "sign_code": sign_code})
    assert r.status_code == 200, r.text
    return r.json()


async def bsqc_token(sb: Sandbox, c: IamSmartClient, b: str) -> str:
    cb = c.decrypt_callback(await sb.receiver.wait_post(f"{b}-token"))
    assert cb.ok and cb.business_id == b and cb.bsqc_token and len(cb.bsqc_token) <= 32
    return cb.bsqc_token


def check_signatures(
    callbacks: list[BulkCallback], docs: list[BulkDocument], skipped: set[str] = frozenset()
) -> None:
    """Every document not in ``skipped`` is signed exactly once, in request order, and verifies."""
    by_id = {d.id: d for d in docs}
    seen = [s.id for cb in callbacks for s in cb.signatures]
    assert seen == [d.id for d in docs if d.id not in skipped]
    for cb in callbacks:
        key = x509.load_der_x509_certificate(cb.cert_der).public_key()
        for sig in cb.signatures:
            doc = by_id[sig.id]
            if doc.kind == "pdf":
                assert (
                    isinstance(sig, BulkPdfSignature)
                    and sig.doc_digest == base64.b64encode(doc.data).decode()
                )
                verify_cms(sig.cms_der, doc.data, key)
            else:
                assert (
                    isinstance(sig, BulkHashSignature)
                    and sig.hash_code == base64.b64encode(doc.data).decode()
                )
                if doc.sig_algo == "NONEwithRSA":
                    key.verify(sig.signature, doc.data, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
                else:
                    key.verify(sig.signature, doc.data, padding.PKCS1v15(), hashes.SHA256())
                assert sig.timestamp


def verify_cms(cms_der: bytes, digest: bytes, key) -> None:
    sd = asn1_cms.ContentInfo.load(cms_der)["content"]
    si = sd["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0].native for a in si["signed_attrs"]}
    assert attrs["message_digest"] == digest and sd["encap_content_info"]["content"].native is None
    signed = b"\x31" + si["signed_attrs"].dump()[1:]
    key.verify(si["signature"].native, signed, padding.PKCS1v15(), hashes.SHA256())
    assert len(sd["certificates"]) == 2


def api_code(exc_info) -> str:
    return str(exc_info.value.code)


async def raw_initiate(sb: Sandbox, c: IamSmartClient, tok: Token, documents: list) -> dict:
    """A logged-in bulk request with hand-made ``documents`` (bypasses the client's item builder)."""
    b = bid("raw")
    return await c._call(
        "/bdss/initiateRequest",
        {
            "businessID": b,
            "accessToken": tok.access_token,
            "openID": tok.open_id,
            "source": "PC_Browser",
            "redirectURI": sb.receiver.callback_uri(f"{b}-token"),
            "callbackResultURI": sb.receiver.callback_uri(b),
            "serviceName": "s",
            "requestName": "r",
            "documents": documents,
        },
    )


async def wait_status(c: IamSmartClient, b: str, token: str, open_id: str | None, wanted: BulkStatus) -> None:
    for _ in range(500):
        if await c.bulk_status(b, token, open_id) is wanted:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{b} never reached {wanted}")


# ============================================================================ happy paths


async def test_account_bulk_mixed_items_end_to_end(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await login(sandbox, c)
        docs = mixed_documents(7)
        b, init = await start(sandbox, c, docs, tok)
        expected = sign_code_account(
            base64.b64encode(bulk_digest(d.data for d in docs)).decode(), tok.open_id
        )
        assert init.sign_code == expected == bulk_sign_code([d.data for d in docs], open_id=tok.open_id)
        assert init.auth_by_qr is True and init.ticket_id and init.documents == 7
        token = await bsqc_token(sandbox, c, b)
        assert await c.bulk_bsqc_token(tok) == token == await c.bulk_bsqc_token(tok, b)
        assert await c.bulk_status(b, token, tok.open_id) is BulkStatus.PENDING
        pending = (await sandbox.hook("POST", "/phone/pending", json={"hkid": HKID_SIGNER})).json()
        mine = [p for p in pending if p["business_id"] == b]
        assert mine and mine[0]["kind"] == "bulk" and mine[0]["sign_code"] == init.sign_code
        assert mine[0]["documents"] == 7 and mine[0]["document_name"] == "Letters of today"
        page = await sandbox.hook("POST", "/phone", data={"hkid": HKID_SIGNER})
        assert init.sign_code in page.text and "7 documents" in page.text
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        [cb] = await results(sandbox, c, b)
        assert cb.ok and cb.code is ReturnCode.SUCCESS and cb.tx_id.startswith("<T=")
        assert (cb.business_id, cb.state, cb.total_callbacks, cb.callback_seq) == (b, "bs-1", 1, 1)
        assert (cb.total_sign_num, cb.fail_sign_num) == (7, 0)
        check_signatures([cb], docs)
        cert = x509.load_der_x509_certificate(cb.cert_der)
        assert "CHAN Tai Man" in cert.subject.rfc4514_string()
        await wait_status(c, b, token, tok.open_id, BulkStatus.COMPLETED)
        await c.bulk_ack(b, SigningResult.ACCEPTED)
        assert (await sandbox.status(b))["ack"] == "SR001"
        with pytest.raises(IamSmartApiError) as exc:  # once only
            await c.bulk_ack(b, SigningResult.ACCEPTED)
        assert api_code(exc) == "D71006"


async def test_anonymous_bulk_with_and_without_redirect(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        docs = mixed_documents(5, "anon")
        hk = hkic_hash(HKID_SIGNER)
        b, init = await start(
            sandbox, c, docs, hkic_hash=hk, redirect_uri=sandbox.receiver.callback_uri("anon-tok")
        )
        total = bulk_digest(d.data for d in docs)
        assert init.sign_code == sign_code_anonymous(total, hk, "test-service")
        assert init.sign_code == bulk_sign_code(
            [d.data for d in docs], hkic_hash=hk, client_id="test-service"
        )
        token = c.decrypt_callback(await sandbox.receiver.wait_post("anon-tok")).bsqc_token
        assert await c.bulk_status(b, token) is BulkStatus.PENDING  # openID optional for anonymous requests
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        [cb] = await results(sandbox, c, b)
        assert cb.ok and cb.fail_sign_num == 0
        check_signatures([cb], docs)
        # the signer's own login finds the request and its BSQC token
        tok = await login(sandbox, c)
        assert await c.bulk_bsqc_token(tok, b) == token
        await wait_status(c, b, token, tok.open_id, BulkStatus.COMPLETED)
        await c.bulk_ack(b, "SR001")

        # no redirectURI, no source (the CorpID anonymous shape): results only
        b2, init2 = await start(sandbox, c, docs[:2], hkic_hash=hk, source=None)
        assert init2.auth_by_qr is True
        await approve(sandbox, HKID_SIGNER, init2.sign_code)
        [cb2] = await results(sandbox, c, b2)
        check_signatures([cb2], docs[:2])
        assert sandbox.receiver.count_posts(f"{b2}-token") == 0

        # no HKICHash: on nobody's phone; the tester approves as a user by hook
        b3, init3 = await start(sandbox, c, docs[:1])
        assert init3.sign_code == sign_code_anonymous(bulk_digest([docs[0].data]), "", "test-service")
        r = await sandbox.hook("POST", f"/requests/{b3}/approve", json={"hkid": HKID_OTHER})
        assert r.status_code == 200 and r.json()["kind"] == "bulk"
        [cb3] = await results(sandbox, c, b3)
        assert (
            cb3.ok and "HO Wing Sze" in x509.load_der_x509_certificate(cb3.cert_der).subject.rfc4514_string()
        )


async def test_paging_with_max_callback_sigs(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await login(sandbox, c)
        docs = mixed_documents(25, "page")
        b, init = await start(sandbox, c, docs, tok, max_callback_sigs=7)
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        cbs = await results(sandbox, c, b, 4)
        assert [cb.callback_seq for cb in cbs] == [1, 2, 3, 4]
        assert {cb.total_callbacks for cb in cbs} == {(25 - 1) // 7 + 1} == {4}
        assert [len(cb.signatures) for cb in cbs] == [7, 7, 7, 4]
        assert all(cb.total_sign_num == 25 and cb.fail_sign_num == 0 for cb in cbs)
        check_signatures(cbs, docs)
        await asyncio.sleep(0.2)
        assert sandbox.receiver.count_posts(b) == 4
        # per-document acks, page by page
        for cb in cbs:
            await c.bulk_ack(b, per_document={s.id: SigningResult.ACCEPTED for s in cb.signatures})
        st = await sandbox.status(b)
        assert st["ack"] == "per-document" and st["document_acks"] == 25 and st["pages_delivered"] == 4
        with pytest.raises(IamSmartApiError) as exc:
            await c.bulk_ack(b, SigningResult.ACCEPTED)
        assert api_code(exc) == "D71006"


async def test_partial_failure_declined_documents(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await login(sandbox, c)
        docs = mixed_documents(10, "part")
        docs.insert(3, BulkDocument.pdf("short-digest", "bad.pdf", b"\x01" * 20))  # not a SHA-256
        docs.append(BulkDocument.hash("sm2", "sm2.bin", hashlib.sha256(b"x").digest(), "SM3withSM2"))
        b, init = await start(sandbox, c, docs, tok, max_callback_sigs=3)
        r = await sandbox.hook("POST", f"/requests/{b}/decline", json={"ids": ["part-1", "part-6"]})
        assert r.status_code == 200 and r.json()["declined"] == ["part-1", "part-6"]
        r = await sandbox.hook("POST", f"/requests/{b}/decline", json={"ids": ["no-such-doc"]})
        assert r.status_code == 422
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        skipped = {"part-1", "part-6", "short-digest", "sm2"}
        cbs = await results(sandbox, c, b, 3)  # 12 documents, 8 signed, 3 per callback
        assert [len(cb.signatures) for cb in cbs] == [3, 3, 2]
        assert all((cb.total_callbacks, cb.total_sign_num, cb.fail_sign_num) == (3, 12, 4) for cb in cbs)
        check_signatures(cbs, docs, skipped)
        with pytest.raises(IamSmartApiError) as exc:  # nothing was delivered for a declined document
            await c.bulk_ack(b, per_document={"part-1": SigningResult.ACCEPTED})
        assert api_code(exc) == "D71006"
        await c.bulk_ack(b, per_document={i: SigningResult.NOT_RECEIVED for i in skipped})
        await c.bulk_ack(b, per_document={s.id: "SR001" for cb in cbs for s in cb.signatures})
        assert (await sandbox.status(b))["ack"] == "per-document"

        # every document declined: the whole request fails with D71002, sigMetada only
        b2, init2 = await start(sandbox, c, docs[:2], tok)
        await sandbox.hook("POST", f"/requests/{b2}/decline", json={"ids": [docs[0].id, docs[1].id]})
        await approve(sandbox, HKID_SIGNER, init2.sign_code)
        parts = await sandbox.receiver.wait_multipart(b2)
        assert set(parts) == {"sigMetada"}
        cb = c.decrypt_bulk_callback(parts)
        assert cb.code == "D71002" and cb.signatures == () and (cb.total_sign_num, cb.fail_sign_num) == (2, 2)


async def test_auto_approve_signs_bulk_requests(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await login(sandbox, c, HKID_OTHER)
        await sandbox.hook(
            "POST", "/users/update", json={"hkid": HKID_OTHER, "auto_action": "approve", "auto_delay_ms": 20}
        )
        try:
            docs = mixed_documents(4, "auto")
            b, _ = await start(sandbox, c, docs, tok)
            [cb] = await results(sandbox, c, b)
            assert cb.ok
            check_signatures([cb], docs)
            b2, _ = await start(sandbox, c, docs, None, hkic_hash=hkic_hash(HKID_OTHER))  # anonymous too
            assert (await results(sandbox, c, b2))[0].ok
            await sandbox.hook("POST", "/users/update", json={"hkid": HKID_OTHER, "auto_action": "reject"})
            b3, _ = await start(sandbox, c, docs, tok)
            assert (await results(sandbox, c, b3))[0].code == "D71001"
        finally:
            await sandbox.hook(
                "POST", "/users/update", json={"hkid": HKID_OTHER, "auto_action": "none", "auto_delay_ms": 0}
            )


# ============================================================================ codes


async def test_whole_request_failures_d71000_to_d71005(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await login(sandbox, c)
        docs = mixed_documents(3, "fail")

        async def failure(b: str) -> BulkCallback:
            parts = await sandbox.receiver.wait_multipart(b)
            assert set(parts) == {"sigMetada"}  # on failure only sigMetada is sent
            cb = c.decrypt_bulk_callback(parts)
            assert not cb.ok and cb.business_id == b and cb.signatures == () and cb.cert_der is None
            return cb

        b, init = await start(sandbox, c, docs, tok)  # the user cancels: D71000, SS004
        token = await bsqc_token(sandbox, c, b)
        assert (await sandbox.hook("POST", f"/requests/{b}/cancel")).json()["status"] == "SS004"
        assert (await failure(b)).code == "D71000"
        assert await c.bulk_status(b, token, tok.open_id) is BulkStatus.CANCELLED
        await c.bulk_ack(b, SigningResult.NOT_RECEIVED)

        b, init = await start(sandbox, c, docs, tok)  # rejected on the phone: D71001, SS005
        token = await bsqc_token(sandbox, c, b)
        r = await sandbox.hook(
            "POST", "/phone/reject", json={"hkid": HKID_SIGNER, "sign_code": init.sign_code}
        )
        assert r.status_code == 200
        assert (await failure(b)).code == "D71001"
        assert await c.bulk_status(b, token, tok.open_id) is BulkStatus.FAILED
        with pytest.raises(IamSmartApiError) as exc:  # no signature was delivered
            await c.bulk_ack(b, SigningResult.ACCEPTED)
        assert api_code(exc) == "D71006"
        await c.bulk_ack(b, SigningResult.NOT_RECEIVED)

        b, _ = await start(sandbox, c, docs, tok)  # failed: D71002
        assert (await sandbox.hook("POST", f"/requests/{b}/fail")).json()["outcome"] == "D71002"
        assert (await failure(b)).code == "D71002"
        assert (await sandbox.hook("POST", f"/requests/{b}/approve")).status_code == 409

        # plain iAM Smart and suspended users: D71004 from initiateRequest
        for hkid in (HKID_PLAIN, HKID_SUSPENDED):
            other = await login(sandbox, c, hkid)
            with pytest.raises(IamSmartApiError) as exc:
                await start(sandbox, c, docs, other)
            assert api_code(exc) == "D71004"
        # suspended while the request waits: the callback says D71004
        tok5 = await login(sandbox, c, HKID_OTHER)
        b, init = await start(sandbox, c, docs, tok5)
        await sandbox.hook("POST", "/users/update", json={"hkid": HKID_OTHER, "status": "suspended"})
        try:
            await approve(sandbox, HKID_OTHER, init.sign_code)
            assert (await failure(b)).code == "D71004"
        finally:
            await sandbox.hook("POST", "/users/update", json={"hkid": HKID_OTHER, "status": "active"})

        # HKICHash of someone else: D71005 at once, no user step
        b, init = await start(sandbox, c, docs, tok, hkic_hash=hkic_hash(HKID_OTHER))
        assert (await failure(b)).code == "D71005"
        # anonymous, approved by a user whose HKICHash does not match: D71005
        b, init = await start(sandbox, c, docs, hkic_hash=hkic_hash(HKID_SIGNER))
        r = await sandbox.hook("POST", f"/requests/{b}/approve", json={"hkid": HKID_OTHER})
        assert r.status_code == 200 and r.json()["outcome"] == "D71005"
        assert (await failure(b)).code == "D71005"


async def test_status_cancel_and_token_codes(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await login(sandbox, c)
        docs = mixed_documents(2, "st")
        b, init = await start(sandbox, c, docs, tok)
        token = await bsqc_token(sandbox, c, b)
        assert await c.bulk_status(b, token, tok.open_id) is BulkStatus.PENDING
        await c.bulk_cancel(b, token, tok.open_id)  # SS001 -> SS004, and the D71000 callback
        assert await c.bulk_status(b, token, tok.open_id) is BulkStatus.CANCELLED
        assert c.decrypt_bulk_callback(await sandbox.receiver.wait_multipart(b)).code == "D71000"
        with pytest.raises(IamSmartApiError) as exc:  # no longer pending
            await c.bulk_cancel(b, token, tok.open_id)
        assert api_code(exc) == "D71007"

        b, init = await start(sandbox, c, docs, tok)  # SS001 -> SS003
        token = await bsqc_token(sandbox, c, b)
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        with pytest.raises(IamSmartApiError) as exc:  # cancel after approval
            await c.bulk_cancel(b, token, tok.open_id)
        assert api_code(exc) == "D71007"
        await results(sandbox, c, b)
        await wait_status(c, b, token, tok.open_id, BulkStatus.COMPLETED)

        assert await c.bulk_status("no-such-request", token, tok.open_id) is BulkStatus.NO_RECORD
        with pytest.raises(IamSmartApiError) as exc:  # wrong BSQC token
            await c.bulk_status(b, "0" * 32, tok.open_id)
        assert api_code(exc) == "D71008"
        with pytest.raises(IamSmartApiError) as exc:
            await c.bulk_cancel("no-such-request", token, tok.open_id)
        assert api_code(exc) == "D71008"
        with pytest.raises(IamSmartApiError) as exc:  # logged-in requests need the openID
            await c.bulk_status(b, token)
        assert api_code(exc) == "D20001"
        with pytest.raises(IamSmartApiError) as exc:
            await c.bulk_status(b, token, "someone-else")
        assert api_code(exc) == "D20010"
        with pytest.raises(IamSmartApiError) as exc:  # this user has no bulk request
            await c.bulk_bsqc_token(await login(sandbox, c, HKID_PLAIN))
        assert api_code(exc) == "D71008"
        with pytest.raises(IamSmartApiError) as exc:
            await c.bulk_bsqc_token(tok, "no-such-request")
        assert api_code(exc) == "D71008"


async def test_ack_rules(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        with pytest.raises(IamSmartApiError) as exc:
            await c.bulk_ack("no-such-request", SigningResult.ACCEPTED)
        assert api_code(exc) == "D71006"
        tok = await login(sandbox, c)
        docs = mixed_documents(4, "ack")
        b, init = await start(sandbox, c, docs, tok, max_callback_sigs=2)
        with pytest.raises(IamSmartApiError) as exc:  # still pending
            await c.bulk_ack(b, SigningResult.NOT_RECEIVED)
        assert api_code(exc) == "D71006"
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        await results(sandbox, c, b, 2)
        await sandbox.wait_status(b, {"SS003"})
        await c.bulk_ack(b, per_document={"ack-0": "SR001", "ack-1": "SR002"})
        with pytest.raises(IamSmartApiError) as exc:  # each document once
            await c.bulk_ack(b, per_document={"ack-0": "SR001"})
        assert api_code(exc) == "D71006"
        with pytest.raises(IamSmartApiError) as exc:
            await c.bulk_ack(b, per_document={"not-in-request": "SR003"})
        assert api_code(exc) == "D71006"
        await c.bulk_ack(b, SigningResult.ACCEPTED)  # the whole request, for the rest
        assert (await sandbox.status(b))["ack"] == "SR001"
        with pytest.raises(ValueError):
            await c.bulk_ack(b)


# ============================================================================ field errors


async def test_field_errors_give_d200xx(sandbox: Sandbox) -> None:
    loose = ClientConfig(**{**sandbox.config.__dict__, "check_fields": False})
    pdf = hashlib.sha256(b"x").digest()
    too_many = [BulkDocument.pdf(f"d{i}", "x.pdf", pdf) for i in range(1001)]
    duplicate = [BulkDocument.pdf("same", "a.pdf", pdf), BulkDocument.pdf("same", "b.pdf", pdf)]
    long_id = [BulkDocument.pdf("x" * 37, "a.pdf", pdf)]
    long_name = [BulkDocument.pdf("a", "文" * 256, pdf)]
    async with IamSmartClient(loose) as c:
        tok = await login(sandbox, c)
        cases = [
            ({"documents": too_many}, "D20003"),
            ({"documents": duplicate}, "D20003"),
            ({"documents": long_id}, "D20003"),
            ({"documents": long_name}, "D20003"),
            ({"documents": []}, "D20002"),
            ({"max_callback_sigs": 0}, "D20003"),
            ({"max_callback_sigs": 1001}, "D20003"),
            ({"request_name": ""}, "D20002"),
            ({"request_name": "r" * 256}, "D20003"),
            ({"business_id": "b" * 37}, "D20003"),
            ({"callback_result_uri": "https://elsewhere.example/cb"}, "D20008"),
            ({"redirect_uri": "https://elsewhere.example/cb"}, "D20008"),
            ({"source": "Nokia"}, "D20007"),
            ({"documents": [{"id": "a", "documentName": "a"}]}, "D20001"),
            (
                {"documents": [{"id": "a", "documentName": "a", "hashCode": "AA==", "docDigest": "AA=="}]},
                "D20003",
            ),
            ({"documents": [{"id": "a", "documentName": "a", "docDigest": "not base64!"}]}, "D20003"),
            (
                {
                    "documents": [
                        {"id": "a", "documentName": "a", "docDigest": "AA==", "sigAlgo": "NONEwithRSA"}
                    ]
                },
                "D20003",
            ),
            ({"documents": ["not an object"]}, "D20003"),
            (
                {
                    "documents": [
                        {"id": "a", "documentName": "a", "hashCode": "AA==", "sigAlgo": "MD5withRSA"}
                    ]
                },
                "D20003",
            ),
        ]
        for kw, code in cases:
            docs = kw.pop("documents", mixed_documents(2, "fe"))
            with pytest.raises(IamSmartApiError) as exc:
                if docs and not isinstance(docs[0], BulkDocument):  # raw wire items
                    await raw_initiate(sandbox, c, tok, docs)
                else:
                    await start(sandbox, c, docs, tok, **kw)
            assert api_code(exc) == code, (kw, docs[:1])
        # the scope must be eidapi_bulksign; businessIDs are unique across single and bulk requests
        plain_scope = await sandbox.login(c, HKID_SIGNER, scopes=("eidapi_auth", "eidapi_sign"))
        with pytest.raises(IamSmartApiError) as exc:
            await start(sandbox, c, mixed_documents(1), plain_scope)
        assert api_code(exc) == "D20012"
        single = bid("single")
        await c.account_sign_pdf(
            business_id=single,
            token=plain_scope,
            doc_digest=pdf,
            redirect_uri=sandbox.receiver.callback_uri(single),
            service_name="s",
            document_name="d",
        )
        with pytest.raises(IamSmartApiError) as exc:
            await start(sandbox, c, mixed_documents(1), tok, business_id=single)
        assert api_code(exc) == "D20011"
        b, _ = await start(sandbox, c, mixed_documents(1), tok)
        with pytest.raises(IamSmartApiError) as exc:
            await c.account_sign_pdf(
                business_id=b,
                token=plain_scope,
                doc_digest=pdf,
                redirect_uri=sandbox.receiver.callback_uri(b),
                service_name="s",
                document_name="d",
            )
        assert api_code(exc) == "D20011"
        await sandbox.hook("POST", f"/requests/{b}/cancel")
        await sandbox.hook("POST", f"/requests/{single}/cancel")
    # the strict client refuses locally with the code the server would give
    async with sandbox.client() as c:
        for docs in (too_many, duplicate, long_id):
            with pytest.raises(FieldRuleError) as fexc:
                await start(sandbox, c, docs, tok)
            assert fexc.value.code == "D20003"
        with pytest.raises(FieldRuleError) as fexc:
            await c.bulk_ack("b", per_document={})
        assert fexc.value.code == "D20002"


# ============================================================================ robustness


async def test_garbage_never_gives_a_500(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        cek = (await c.get_key()).key
        body, ctype = multipart_body('{"code":"D00000"}', "garbage")
        bodies = [
            (body, ctype),
            (
                b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\xfe\r\n--x--\r\n',
                "multipart/form-data; boundary=x",
            ),
            (b"\x00\x01\x02", "multipart/form-data; boundary=zz"),
            (
                json.dumps({"content": encrypt_content(cek, b'{"documents": "x"}')}).encode(),
                "application/json",
            ),
            (json.dumps({"content": encrypt_content(cek, b"[1,2]")}).encode(), "application/json"),
        ]
        paths = [
            "/bdss/initiateRequest",
            "/bdss/anonymous/initiateRequest",
            "/bdss/getBSQCToken",
            "/bdss/ackResult",
            "/bdss/enquireStatus",
            "/bdss/cancelRequest",
        ]
        async with httpx.AsyncClient() as http:
            for path in paths:
                for raw, content_type in bodies:
                    headers = signed_headers(
                        "test-service", sandbox.config.client_secret, raw, int(time.time() * 1000)
                    )
                    headers["Content-Type"] = content_type
                    r = await http.post(f"{sandbox.api}{path}", content=raw, headers=headers)
                    assert r.status_code == 200, (path, r.text)
                    assert r.json()["code"] in {"D20001", "D20002", "D20003", "D30004"}, (path, r.json())
        # weird but valid-looking payloads: protocol codes too
        for payload in ({"documents": [None]}, {"signingResult": 5}, {"signatures": "x"}):
            for path in paths:
                try:
                    await c._call(path, {"businessID": "g", **payload})
                except IamSmartApiError as exc:
                    assert str(exc.code).startswith("D2"), (path, payload, exc.code)

    # the client never raises anything but EnvelopeError on garbage parts
    async with sandbox.client() as c:
        garbage = [
            {},
            {"sigMetada": b"\xff\xfe"},
            {"sigMetada": "not json"},
            {"sigMetada": "[]"},
            {"sigMetada": '{"code": 5}'},
            {"sigMetada": '{"code":"D00000","content":"AAAADAAA","secretKey":"x"}'},
            {"sigMetada": '{"code":"D00000","content":{"businessID":"b"}}', "sigFile": "AAAADgarbage"},
            {"sigMetada": '{"code":"D00000","content":{"businessID":"b"}}', "sigFile": '"signatures": 5'},
            {
                "sigMetada": '{"code":"D00000","content":{"businessID":"b"}}',
                "sigFile": '"signatures":[{"x":1}]',
            },
            {"sigMetada": '{"code":"D00000","content":{"totalCallbacks":"many"}}'},
            {"sigMetada": '{"code":"D00000","content":{"cert":"%%%"}}'},
            {
                "sigMetada": '{"code":"D00000","content":{}}',
                "sigFile": '"signatures":[{"id":"a","signature":"!"}]',
            },
        ]
        for parts in garbage:
            with pytest.raises(EnvelopeError):
                c.decrypt_bulk_callback(parts)
        for raw, content_type in [
            (b"", "text/plain"),
            (b"abc", "multipart/form-data"),
            (b"--x\r\nno headers", "multipart/form-data; boundary=x"),
            (b"--x\r\n\r\nno name\r\n--x--", "multipart/form-data; boundary=x"),
        ]:
            with pytest.raises(EnvelopeError):
                split_multipart(raw, content_type)


async def test_plain_parts_switch(tmp_path) -> None:
    options = SandboxOptions(**{**TEST_OPTIONS.__dict__, "bulk_plain_parts": True})
    for sb in start_sandbox(tmp_path / "data", options):
        async with sb.client() as c:
            tok = await login(sb, c)
            docs = mixed_documents(5, "plain")
            b, init = await start(sb, c, docs, tok, max_callback_sigs=3)
            await approve(sb, HKID_SIGNER, init.sign_code)
            parts = await sb.receiver.wait_multipart(b)
            assert parts["sigFile"].startswith(b'"signatures":[')  # like the samples: no outer braces
            meta = json.loads(parts["sigMetada"])
            assert meta["content"]["businessID"] == b and "secretKey" not in meta
            cbs = await results(sb, c, b, 2)
            check_signatures(cbs, docs)
            with_braces = {"sigMetada": parts["sigMetada"], "sigFile": b"{" + parts["sigFile"] + b"}"}
            assert c.decrypt_bulk_callback(with_braces).signatures == cbs[0].signatures


async def test_receiving_app_can_parse_with_a_standard_form_parser(sandbox: Sandbox) -> None:
    """The multipart body is ordinary form data: Starlette's parser gives the same two parts."""
    from starlette.requests import Request

    async with sandbox.client() as c:
        tok = await login(sandbox, c)
        docs = mixed_documents(3, "form")
        b, init = await start(sandbox, c, docs, tok)
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        body = await sandbox.receiver.wait_post(b)
        ctype = sandbox.receiver.post_types[b][0]

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        request = Request(
            {"type": "http", "method": "POST", "headers": [(b"content-type", ctype.encode())]}, receive
        )
        form = await request.form()
        upload = form["sigFile"]
        assert upload.filename == "signatures.txt"
        parts = {"sigMetada": form["sigMetada"], "sigFile": await upload.read()}
        check_signatures([c.decrypt_bulk_callback(parts)], docs)


# ============================================================================ the clock


async def test_timeout_after_18_minutes_on_the_movable_clock(tmp_path) -> None:
    for sb in start_sandbox(tmp_path / "data"):
        async with sb.client() as c:
            tok = await login(sb, c)
            b, init = await start(sb, c, mixed_documents(2, "t"), tok)
            token = await bsqc_token(sb, c, b)
            st = await sb.status(b)
            assert st["expires_ms"] - st["created_ms"] == 18 * MIN
            await sb.hook("POST", "/clock/advance", json={"ms": 18 * MIN - 1000})
            assert await c.bulk_status(b, token, tok.open_id) is BulkStatus.PENDING
            await sb.hook("POST", "/clock/advance", json={"ms": 1000})
            parts = await sb.receiver.wait_multipart(b)
            cb = c.decrypt_bulk_callback(parts)
            assert cb.code == "D71003" and set(parts) == {"sigMetada"}
            assert await c.bulk_status(b, token, tok.open_id) is BulkStatus.FAILED
            r = await sb.hook(
                "POST", "/phone/approve", json={"hkid": HKID_SIGNER, "sign_code": init.sign_code}
            )
            assert r.status_code == 404
            await sb.wait_status(b, {"SS005"})
            await c.bulk_ack(b, SigningResult.NOT_RECEIVED)
            # the ack window is 18 minutes after the outcome was delivered
            b2, _ = await start(sb, c, mixed_documents(1, "t2"), tok)
            await sb.hook("POST", f"/requests/{b2}/reject")
            await sb.receiver.wait_multipart(b2)
            await asyncio.sleep(0.1)
            await sb.hook("POST", "/clock/advance", json={"ms": 18 * MIN + 1})
            with pytest.raises(IamSmartApiError) as exc:
                await c.bulk_ack(b2, SigningResult.NOT_RECEIVED)
            assert api_code(exc) == "D71006"


# ============================================================================ speed


async def test_a_thousand_pdf_documents_in_one_approval(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        tok = await login(sandbox, c)
        docs = [
            BulkDocument.pdf(f"p{i:04d}", f"letter-{i}.pdf", hashlib.sha256(b"%d" % i).digest())
            for i in range(1000)
        ]
        b, init = await start(sandbox, c, docs, tok, max_callback_sigs=500)
        t0 = time.perf_counter()
        await approve(sandbox, HKID_SIGNER, init.sign_code)
        # the event loop stays responsive while the batch is signed
        worst = 0.0
        while sandbox.receiver.count_posts(b) < 2 and time.perf_counter() - t0 < 60:
            t = time.perf_counter()
            assert (await sandbox.hook("GET", "/clock")).status_code == 200
            worst = max(worst, time.perf_counter() - t)
            await asyncio.sleep(0.01)
        cbs = await results(sandbox, c, b, 2)
        elapsed = time.perf_counter() - t0
        check_signatures(cbs, docs)
        print(
            f"1000 PDF documents signed and delivered in {elapsed:.2f}s; slowest sandbox answer {worst:.3f}s"
        )
        assert elapsed < 30 and worst < 1.0


# ============================================================================ units


async def test_batch_pdf_signer_matches_the_single_signer(sandbox: Sandbox) -> None:
    users = sandbox.engine.users
    signer = users.signer(users.by_hkid(HKID_SIGNER))
    when = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    batch = await signer.pdf_batch_signer(when)
    for i in range(3):
        digest = hashlib.sha256(b"same %d" % i).digest()
        assert batch.sign(digest) == await signer.sign_pdf_digest(digest, when)


def test_bulk_sign_code_rules() -> None:
    digests = [hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()]
    total = hashlib.sha256(digests[0] + digests[1]).digest()
    assert bulk_digest(digests) == total
    assert bulk_sign_code(digests, open_id="openid") == sign_code_account(
        base64.b64encode(total).decode(), "openid"
    )
    hk = hkic_hash("A123456")
    assert bulk_sign_code(digests, hkic_hash=hk, client_id="cid") == sign_code_anonymous(total, hk, "cid")
    assert bulk_digest(reversed(digests)) != total
    with pytest.raises(ValueError):
        bulk_sign_code(digests)
    code = bulk_sign_code(digests, hkic_hash=None, client_id="cid")
    assert len(code) == 4 and code.isdigit()
