"""Loose input is refused: unknown fields, ambiguous signers, unsupported batch fields, reused idempotency
keys, duplicate JSON keys, deep or huge JSON; and concurrent retries all get the full first answer."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .test_batches_api import _docs
from .test_signing_service import SIGNER, _upload


def _code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


@pytest.mark.parametrize(
    "extra",
    [
        {"levle": "B-B"},
        {"signer": {"hkid": SIGNER, "hkdi": "x"}},
        {"appearance": {"page": 1, "colour": "red"}},
    ],
)
def test_unknown_fields_of_a_signing_request_are_422(service, tmp_path, extra):
    with service.client() as c:
        doc = _upload(c, tmp_path)
        body = {"document_id": doc["id"], "signer": {"hkid": SIGNER}, **extra}
        r = c.post("/v1/signing-requests", json=body)
        assert r.status_code == 422, r.text
        assert _code(r) == "invalid_request"
        assert not c.get("/v1/signing-requests", params={"document_id": doc["id"]}).json()["items"]


def test_a_signer_with_both_hkid_and_a_session_is_422(service, tmp_path):
    with service.client() as c:
        doc = _upload(c, tmp_path)
        signer = {"hkid": SIGNER, "session_id": "ss_someone"}
        r = c.post("/v1/signing-requests", json={"document_id": doc["id"], "signer": signer})
        assert r.status_code == 422, r.text
        assert _code(r) == "invalid_signer"
        r = c.post("/v1/batches", json={"document_ids": [doc["id"]], "signer": signer})
        assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    "extra", [{"appearance": {"page": 1}}, {"document_id": "x"}]
)  # "mode" is one (enrolment)
def test_a_field_a_batch_does_not_support_is_422(service, tmp_path, extra):
    with service.client() as c:
        docs = _docs(c, tmp_path, 1)
        r = c.post("/v1/batches", json={"document_ids": [docs[0]["id"]], "signer": {"hkid": SIGNER}, **extra})
        assert r.status_code == 422, r.text
        assert _code(r) == "invalid_request" and next(iter(extra)) in r.json()["error"]["message"]


def test_the_zip_of_an_unfinished_batch_is_409(service, tmp_path):
    with service.client() as c:
        docs = _docs(c, tmp_path, 2)
        r = c.post("/v1/batches", json={"document_ids": [d["id"] for d in docs], "signer": {"hkid": SIGNER}})
        assert r.status_code == 201, r.text
        batch = r.json()
        r = c.get(f"/v1/batches/{batch['id']}/signed.zip")
        assert r.status_code == 409, r.text
        assert _code(r) == "not_completed"
        c.post(f"/v1/batches/{batch['id']}/cancel")
        r = c.get(f"/v1/batches/{batch['id']}/signed.zip")
        assert r.status_code == 409 and "cancelled" in r.json()["error"]["message"]


def test_an_idempotency_key_reused_with_another_body_is_422(service, tmp_path):
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    with service.client() as c:
        doc = _upload(c, tmp_path)
        body = {"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"}
        first = c.post("/v1/signing-requests", json=body, headers=key)
        assert first.status_code == 201, first.text
        # the same body in another order and spacing is the same request
        same = c.post(
            "/v1/signing-requests",
            content=json.dumps(dict(reversed(body.items())), indent=2),
            headers={**key, "content-type": "application/json"},
        )
        assert same.json()["id"] == first.json()["id"]
        r = c.post("/v1/signing-requests", json={**body, "level": "B-LTA"}, headers=key)
        assert r.status_code == 422, r.text
        assert _code(r) == "idempotency_key_reused"

        docs = _docs(c, tmp_path, 2)
        batch_body = {"document_ids": [d["id"] for d in docs], "signer": {"hkid": SIGNER}}
        key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
        assert c.post("/v1/batches", json=batch_body, headers=key).status_code == 201
        r = c.post("/v1/batches", json={**batch_body, "reason": "other"}, headers=key)
        assert r.status_code == 422 and _code(r) == "idempotency_key_reused"


@pytest.fixture
def slow_iamsmart(service, monkeypatch):
    """iAM Smart takes a second to answer the first request, so the retries arrive while it is being sent."""
    client = service.app.state.flow.client
    for name in ("anonymous_sign_pdf", "bulk_initiate"):
        real = getattr(client, name)

        async def slow(*args, _real=real, **kw):
            await asyncio.sleep(1.0)
            return await _real(*args, **kw)

        monkeypatch.setattr(client, name, slow)


def _concurrently(service, path: str, body: dict, n: int = 5) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {service.key}", "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    start = threading.Barrier(n)

    def post(_):
        with httpx.Client(base_url=service.url, headers=headers, timeout=90) as h:
            start.wait()
            return h.post(path, json=body)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(post, range(n)))


def test_concurrent_retries_of_a_signing_request_all_get_the_sign_code(service, tmp_path, slow_iamsmart):
    with service.client() as c:
        doc = _upload(c, tmp_path)
    answers = _concurrently(
        service,
        "/v1/signing-requests",
        {"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"},
    )
    assert [r.status_code for r in answers] == [201] * 5, [r.text for r in answers]
    bodies = [r.json() for r in answers]
    assert len({b["id"] for b in bodies}) == 1
    assert all(b["sign_code"] and b["sign_code"] == bodies[0]["sign_code"] for b in bodies), bodies


def test_concurrent_retries_of_a_batch_all_get_the_sign_code(service, tmp_path, slow_iamsmart):
    with service.client() as c:
        docs = _docs(c, tmp_path, 3)
    answers = _concurrently(
        service, "/v1/batches", {"document_ids": [d["id"] for d in docs], "signer": {"hkid": SIGNER}}
    )
    assert [r.status_code for r in answers] == [201] * 5, [r.text for r in answers]
    bodies = [r.json() for r in answers]
    assert len({b["id"] for b in bodies}) == 1
    assert all(b["sign_code"] and b["sign_code"] == bodies[0]["sign_code"] for b in bodies), bodies


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ('{"document_id": "a", "document_id": "b", "signer": {"hkid": "x"}}', 422, "duplicate_key"),
        ('{"document_id": "a", "signer": {"hkid": "x", "hkid": "y"}}', 422, "duplicate_key"),
        ('{"document_id": "a", "signer": ' + "[" * 40 + "]" * 40 + "}", 422, "too_deep"),
        ("[" * 100_000 + "]" * 100_000, 422, "too_deep"),
        ('{"document_id": "' + "a" * (2 * 1024 * 1024) + '"}', 413, "body_too_large"),
    ],
    ids=["duplicate", "nested-duplicate", "deep", "very-deep", "huge"],
)
def test_duplicate_keys_deep_or_huge_json_are_refused(service, raw, status, code):
    with service.client() as c:
        for path in ("/v1/signing-requests", "/v1/batches"):
            for content_type in ("application/json", "application/merge-patch+json", None):
                headers = {"content-type": content_type} if content_type else {}
                r = c.post(path, content=raw, headers=headers)
                assert r.status_code == status, (content_type, r.text)
                assert _code(r) == code


def test_sandbox_hooks_refuse_unknown_fields(service):
    r = httpx.post(f"{service.url}/sandbox/v1/clock/advance", json={"ms": 0, "mss": 5})
    assert r.status_code == 422


def test_the_batch_cli_retries_a_lost_post_with_the_same_body(tmp_path):
    """The CLI keeps the document ids it POSTed with its Idempotency-Key: a resumed run sends exactly those,
    so the server answers the batch it made instead of 422 for a different body."""
    from api.cli.batch_state import RunState

    state = RunState(out=tmp_path, server="http://x", source=str(tmp_path))
    state.pending_batch_key, state.pending_batch_documents = "k1", ["doc_b", "doc_a"]
    state.save()
    again = RunState.load(tmp_path)
    assert again is not None
    assert (again.pending_batch_key, again.pending_batch_documents) == ("k1", ["doc_b", "doc_a"])
