"""An outsider's attacks on the service: forged iAM Smart messages, other organisations' ids, hostile files."""

from __future__ import annotations

import json
import time

from signing.model import PreparedSignature

from .test_signing_service import SIGNER, _upload, _wait_status


def _batch(service, c, tmp_path, n: int = 2) -> tuple[dict, str]:
    from api.store.models import Batch

    docs = [_upload(c, tmp_path, f"att{i}.pdf") for i in range(n)]
    body = {"document_ids": [d["id"] for d in docs], "signer": {"hkid": SIGNER}, "level": "B-B"}
    r = c.post("/v1/batches", json=body)
    assert r.status_code == 201, r.text
    batch = r.json()
    with service.app.state.flow.session() as s:
        return batch, s.get(Batch, batch["id"]).business_id


def _wait_batch(c, batch_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (done := c.get(f"/v1/batches/{batch_id}").json())["status"] in ("pending", "signing"):
        assert time.monotonic() < deadline, done
        time.sleep(0.2)
    return done


def test_a_forged_empty_bulk_success_does_not_decline_the_batch(service, tmp_path):
    """A 'success' page with no signature at all (anyone can send one) must not end the batch."""
    with service.client() as c:
        batch, business_id = _batch(service, c, tmp_path)
        meta = {
            "code": "D00000",
            "content": {"businessID": business_id, "totalCallbacks": 1, "callbackSeq": 1},
        }
        r = c.post(
            "/v1/iamsmart/bulk/callback",
            files={"sigMetada": ("sigMetada", json.dumps(meta).encode(), "application/json")},
        )
        assert r.status_code in (200, 400), r.text
        time.sleep(1.0)
        now = c.get(f"/v1/batches/{batch['id']}").json()
        assert now["status"] == "pending", now
        r = c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": batch["sign_code"]})
        assert r.status_code == 200, r.text
        assert _wait_batch(c, batch["id"])["status"] == "completed"


def _approve(c, sign_code: str) -> None:
    r = c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": sign_code})
    assert r.status_code == 200, r.text


def test_every_id_of_another_organisation_is_404(service, tmp_path):
    with service.client() as a, service.client(service.other_key) as b:
        doc = _upload(a, tmp_path)
        req = a.post(
            "/v1/signing-requests",
            json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"},
        ).json()
        _approve(a, req["sign_code"])
        done = _wait_status(a, req["id"])
        assert done["status"] == "completed", done
        batch, _ = _batch(service, a, tmp_path)
        env = a.post(
            "/v1/envelopes", json={"document_id": doc["id"], "signers": [{"hkid": SIGNER}], "level": "B-B"}
        ).json()
        enrol = a.post("/v1/signers", json={"signer": {"hkid": SIGNER}}).json()
        signed = done["signed_document_id"]
        probes = [
            ("GET", f"/v1/documents/{doc['id']}"),
            ("GET", f"/v1/documents/{doc['id']}/content"),
            ("GET", f"/v1/documents/{signed}/content"),
            ("DELETE", f"/v1/documents/{signed}"),
            ("GET", f"/v1/signing-requests/{req['id']}"),
            ("GET", f"/v1/signing-requests/{req['id']}/audit"),
            ("GET", f"/v1/signing-requests/{req['id']}/signed-document"),
            ("POST", f"/v1/signing-requests/{req['id']}/cancel"),
            ("GET", f"/v1/batches/{batch['id']}"),
            ("GET", f"/v1/batches/{batch['id']}/signed.zip"),
            ("POST", f"/v1/batches/{batch['id']}/cancel"),
            ("GET", f"/v1/envelopes/{env['id']}"),
            ("GET", f"/v1/envelopes/{env['id']}/audit"),
            ("POST", f"/v1/envelopes/{env['id']}/cancel"),
            ("GET", f"/v1/signers/{enrol['id']}"),
            ("DELETE", f"/v1/signers/{enrol['id']}"),
        ]
        for method, path in probes:
            r = b.request(method, path)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert doc["id"] not in r.text or path.startswith("/v1/documents")
        # nor can B build on A's document
        for path, body in (
            ("/v1/signing-requests", {"document_id": doc["id"], "signer": {"hkid": SIGNER}}),
            ("/v1/batches", {"document_ids": [doc["id"]], "signer": {"hkid": SIGNER}}),
            ("/v1/envelopes", {"document_id": doc["id"], "signers": [{"hkid": SIGNER}]}),
        ):
            r = b.post(path, json=body)
            assert r.status_code == 404, (path, r.text)
        assert b.get("/v1/signing-requests").json()["items"] == [] or all(
            i["id"] != req["id"] for i in b.get("/v1/signing-requests").json()["items"]
        )
        assert (
            a.get("/v1/webhook-secret").json()["webhook_secret"]
            != b.get("/v1/webhook-secret").json()["webhook_secret"]
        )
        # A's objects are untouched
        assert a.get(f"/v1/batches/{batch['id']}").json()["status"] == "pending"
        assert a.get(f"/v1/envelopes/{env['id']}").json()["status"] == "pending"
        assert a.get(f"/v1/documents/{signed}").status_code == 200


def test_another_organisations_signature_does_not_shape_a_hash_request(service, tmp_path):
    """The certificate a signer signed with at organisation A is A's knowledge, not B's."""
    from .test_signing_service_account import _request_row

    with service.client() as a, service.client(service.other_key) as b:
        doc = _upload(a, tmp_path)
        body = {"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B", "mode": "hash"}
        req = a.post("/v1/signing-requests", json=body).json()
        _approve(a, req["sign_code"])
        assert _wait_status(a, req["id"])["status"] == "completed"
        other_doc = _upload(b, tmp_path, "other.pdf")
        r = b.post("/v1/signing-requests", json={**body, "document_id": other_doc["id"]})
        assert r.status_code == 201, r.text
        record = PreparedSignature.loads(_request_row(service, r.json()["id"]).record_json)
        assert record.signer_certificate_der is None
        # A's own next request still knows it
        again = a.post("/v1/signing-requests", json=body).json()
        assert PreparedSignature.loads(_request_row(service, again["id"]).record_json).signer_certificate_der


def test_webhook_urls_into_the_service_network_are_refused_in_every_spelling(service, tmp_path):
    """Decimal, octal, short and IPv6 spellings of loopback and metadata addresses, 6to4 included."""
    # (the test service allows 127.0.0.0/8 for its own receivers: metadata and private addresses here)
    hostile = [
        "http://2852039166/latest/meta-data/",  # 169.254.169.254 in decimal
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://0251.0376.0251.0376/",
        "http://169.254.43518/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[fd00:ec2::254]/",
        "http://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254
        "http://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
        "http://0/hook",
    ]
    with service.client() as c:
        doc = _upload(c, tmp_path)
        for url in hostile:
            body = {"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B", "webhook_url": url}
            r = c.post("/v1/signing-requests", json=body)
            assert r.status_code == 422, (url, r.text)
            assert r.json()["error"]["code"] == "webhook_url_refused", (url, r.text)


def _request_from(peer: str, forwarded: str | None = None):
    from starlette.requests import Request

    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 4711)})


def test_fresh_ipv6_addresses_or_forged_forwarded_for_do_not_escape_the_rate_limit():
    from api.edge.limits import Limits, MemoryLimiter, TrustedProxies
    from api.errors import ApiError

    limits = Limits(MemoryLimiter(), TrustedProxies(["10.0.0.0/8"]), failed_auth_per_minute=3)
    # one subscriber's /64 is one client, however many addresses it makes up
    same = {limits.client(_request_from(f"2001:db8:1:2::{i:x}")) for i in range(1, 50)}
    assert len(same) == 1
    assert limits.client(_request_from("2001:db8:1:3::1")) not in same
    assert limits.client(_request_from("::ffff:198.51.100.7")) == limits.client(_request_from("198.51.100.7"))
    # X-Forwarded-For only from a trusted proxy, and then only its own (rightmost) hop
    assert limits.client(_request_from("198.51.100.7", "203.0.113.1")) == "198.51.100.7"
    assert limits.client(_request_from("10.1.1.1", "203.0.113.1, 198.51.100.7")) == "198.51.100.7"
    seen = set()
    for i in range(10):
        req = _request_from("10.1.1.1", f"2001:db8:9:9::{i + 1:x}")
        seen.add(limits.client(req))
        try:
            limits.enforce(limits.failed_auth, req)
        except ApiError as exc:
            assert exc.status == 429 and i == 3
            break
    else:
        raise AssertionError(f"never limited: {seen}")


def test_a_flood_of_forged_results_does_not_make_the_service_flood_iamsmart_with_acks(service, tmp_path):
    """Each refused result of the account flow is acked SR002; forged ones may not make that unbounded."""
    from api.flows.signing import _MAX_NOTES

    from .test_signing_service_account import _callback_body, _create, _login, _request_row

    flow = service.app.state.flow
    acks: list[str] = []
    real_ack = flow.client.ack_result

    async def counting_ack(business_id, result):
        acks.append(business_id)
        return await real_ack(business_id, result)

    with service.client() as c:
        req = _create(c, tmp_path, _login(c))
        row = _request_row(service, req["id"])
        flow.client.ack_result = counting_ack
        try:
            forged = _callback_body(service, row.business_id, {"pdfSignature": "MAA=", "docDigest": "AAAA"})
            for _ in range(_MAX_NOTES + 10):
                r = c.post("/v1/iamsmart/callback", content=forged)
                assert r.status_code == 200 and r.json()["outcome"] == "refused", r.text
            time.sleep(0.5)
        finally:
            flow.client.ack_result = real_ack
        assert len([a for a in acks if a == row.business_id]) <= _MAX_NOTES
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"


def test_a_signer_session_names_the_signer_of_a_request_and_an_envelope(service, tmp_path):
    """The opaque session from the iAM Smart login is accepted wherever a signer is named."""
    from .test_security_flow import _login_until_callback

    with service.client() as c:
        sid = c.get(_login_until_callback(c)).json()["session_id"]
        doc = _upload(c, tmp_path)
        r = c.post("/v1/signing-requests", json={"document_id": doc["id"], "signer": {"session_id": sid}})
        assert r.status_code == 201 and r.json()["flow"] == "account", r.text
        c.post(f"/v1/signing-requests/{r.json()['id']}/cancel")
        r = c.post(
            "/v1/envelopes", json={"document_id": doc["id"], "signers": [{"session_id": sid}], "level": "B-B"}
        )
        assert r.status_code == 201, r.text
        env = r.json()
        _approve(c, env["steps"][0]["sign_code"])
        deadline = time.monotonic() + 60
        while (done := c.get(f"/v1/envelopes/{env['id']}").json())["status"] == "pending":
            assert time.monotonic() < deadline, done
            time.sleep(0.2)
        assert done["status"] == "completed", done


def test_a_signer_session_serves_only_the_organisation_that_used_it_first(service, tmp_path):
    from .test_security_flow import _login_until_callback

    with service.client() as a, service.client(service.other_key) as b:
        sid = a.get(_login_until_callback(a)).json()["session_id"]
        doc_a, doc_b = _upload(a, tmp_path), _upload(b, tmp_path, "b.pdf")
        for who, doc in ((a, doc_a), (b, doc_b), (a, doc_a)):
            r = who.post(
                "/v1/signing-requests",
                json={"document_id": doc["id"], "level": "B-B", "signer": {"session_id": sid}},
            )
            if who is b:
                assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_signer_session", r.text
                for path, body in (
                    ("/v1/batches", {"document_ids": [doc["id"]], "signer": {"session_id": sid}}),
                    ("/v1/envelopes", {"document_id": doc["id"], "signers": [{"session_id": sid}]}),
                    ("/v1/signers", {"signer": {"session_id": sid}}),
                ):
                    r = b.post(path, json=body)
                    assert r.status_code == 422, (path, r.text)
            else:
                assert r.status_code == 201, r.text
                a.post(f"/v1/signing-requests/{r.json()['id']}/cancel")


def test_a_forged_bulk_token_does_not_replace_the_one_iam_smart_sent(service, tmp_path):
    """The BSQC token callback can be forged (our KEK is public): only the first token is kept, so a forged
    one cannot cut the batch off from enquireStatus and cancel."""
    from api.store.models import Batch

    with service.client() as c:
        batch, business_id = _batch(service, c, tmp_path)
        flow = service.app.state.batch_flow
        deadline = time.monotonic() + 30
        while True:  # the sandbox sends the real token just after the bulk request
            with flow.session() as s:
                real = s.get(Batch, batch["id"]).bsqc_token
            if real or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert real, "the sandbox sent no BSQC token"
        assert flow.take_token(business_id, "forged-token") == "ignored"
        with flow.session() as s:
            assert s.get(Batch, batch["id"]).bsqc_token == real
        r = c.post(f"/v1/batches/{batch['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text


def test_text_holding_a_nul_byte_is_a_clear_error_wherever_a_client_puts_it(service, tmp_path):
    """PostgreSQL text cannot hold NUL (the query fails): an id, a query parameter or a JSON string holding
    one is refused as the client's error (400 invalid_text) on both databases, never a 500; an upload's
    file name is kept without it."""
    with service.client() as c:
        doc = _upload(c, tmp_path, "nul.pdf")
        for path in (
            "/v1/documents/doc_a%00b",
            "/v1/signing-requests/sr_a%00b",
            "/v1/batches/bt_a%00b",
            "/v1/envelopes/ev_a%00b",
            "/v1/signers/se_a%00b",
            "/sign/sr_a%00b",
            "/sign/sr_a%00b/status",
            f"/v1/signing-requests?document_id={doc['id']}%00",
        ):
            r = c.get(path)
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_text"), (path, r.text)
        for path, body in (
            ("/v1/signing-requests", {"document_id": doc["id"] + "\x00", "signer": {"hkid": SIGNER}}),
            (
                "/v1/signing-requests",
                {"document_id": doc["id"], "signer": {"hkid": SIGNER}, "reason": "a\x00"},
            ),
            ("/v1/batches", {"document_ids": [doc["id"], "doc_\x00"], "signer": {"hkid": SIGNER}}),
            ("/v1/signers", {"signer": {"hkid": SIGNER}, "a\x00": 1}),
        ):
            r = c.post(path, json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_text"), (path, r.text)
        pdf = (tmp_path / "nul.pdf").read_bytes()
        body = (  # by hand: httpx would percent-encode the control characters of the file name
            b'--nul\r\nContent-Disposition: form-data; name="file"; filename="a\x00b\x07.pdf"\r\n'
            b"Content-Type: application/pdf\r\n\r\n" + pdf + b"\r\n--nul--\r\n"
        )
        r = c.post(
            "/v1/documents", content=body, headers={"Content-Type": "multipart/form-data; boundary=nul"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["filename"] == "ab.pdf"
        assert c.get(f"/v1/documents/{doc['id']}").status_code == 200  # nothing was lost
