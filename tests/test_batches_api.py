"""``/v1/batches``: one approval for many documents through the sandbox's bulk signing."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from fixtures.generate import simple_pdf

from .test_signing_service import PLAIN_USER, SIGNER, _validate

N = 6


def _docs(c, tmp_path, n=N) -> list[dict]:
    out = []
    for i in range(n):
        pdf = simple_pdf(tmp_path / f"letter-{i}.pdf", text=f"letter {i}")
        r = c.post("/v1/documents", files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")})
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


def _wait(c, batch_id, timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        b = c.get(f"/v1/batches/{batch_id}").json()
        if b["status"] not in ("pending", "signing"):
            return b
        time.sleep(0.1)
    raise AssertionError(f"batch still open: {b}")


def test_one_approval_signs_every_document(service, tmp_path):
    with service.client() as c:
        docs = _docs(c, tmp_path)
        r = c.post(
            "/v1/batches",
            json={
                "document_ids": [d["id"] for d in docs],
                "signer": {"hkid": SIGNER},
                "level": "B-LTA",
                "reason": "Letters",
            },
        )
        assert r.status_code == 201, r.text
        batch = r.json()
        assert batch["status"] == "pending" and len(batch["sign_code"]) == 4
        assert [d["document_id"] for d in batch["documents"]] == [d["id"] for d in docs]
        assert batch["counts"] == {"total": N, "completed": 0, "failed": 0, "pending": N}
        page = c.get(f"/sign/{batch['id']}")
        assert page.status_code == 200 and batch["sign_code"] in page.text

        r = c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": batch["sign_code"]})
        assert r.status_code == 200, r.text
        done = _wait(c, batch["id"])
        assert done["status"] == "completed", done
        assert done["counts"]["completed"] == N
        for item in done["documents"]:
            pdf = c.get(f"/v1/batches/{batch['id']}/documents/{item['document_id']}/signed-document")
            assert pdf.status_code == 200
            status, n_doc_ts = _validate(service, pdf.content, tmp_path)
            assert status.bottom_line, status.summary()
            assert n_doc_ts == 1
        z = c.get(f"/v1/batches/{batch['id']}/signed.zip")
        assert z.headers["content-type"] == "application/zip"
        names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
        assert sorted(names) == sorted(f"letter-{i}.signed.pdf" for i in range(N))
        # a duplicate of every callback page changes nothing (the sandbox's deliveries were recorded)
        assert len({d["signed_document_id"] for d in done["documents"]}) == N


def test_declined_documents_give_a_partial_batch(service, tmp_path):
    with service.client() as c:
        docs = _docs(c, tmp_path, 4)
        batch = c.post(
            "/v1/batches",
            json={"document_ids": [d["id"] for d in docs], "signer": {"hkid": SIGNER}, "level": "B-B"},
        ).json()
        from sqlmodel import select

        from api.store.models import Batch, BatchItem

        with service.app.state.flow.session() as s:
            business_id = s.get(Batch, batch["id"]).business_id
            items = s.exec(
                select(BatchItem).where(BatchItem.batch_id == batch["id"]).order_by(BatchItem.position)
            ).all()
        r = c.post(f"/sandbox/v1/requests/{business_id}/decline", json={"ids": [items[1].id]})
        assert r.status_code == 200, r.text
        c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": batch["sign_code"]})
        done = _wait(c, batch["id"])
        assert done["status"] == "partially_completed", done
        statuses = [d["status"] for d in done["documents"]]
        assert statuses == ["completed", "declined", "completed", "completed"]
        assert (
            c.get(f"/v1/batches/{batch['id']}/documents/{docs[1]['id']}/signed-document").status_code == 409
        )


@pytest.mark.parametrize("action, status", [("reject", "rejected")])
def test_rejected_batch(service, tmp_path, action, status):
    with service.client() as c:
        docs = _docs(c, tmp_path, 2)
        batch = c.post(
            "/v1/batches",
            json={"document_ids": [d["id"] for d in docs], "signer": {"hkid": SIGNER}, "level": "B-B"},
        ).json()
        c.post(f"/sandbox/v1/phone/{action}", json={"hkid": SIGNER, "sign_code": batch["sign_code"]})
        done = _wait(c, batch["id"])
        assert done["status"] == status and done["error"]["code"].startswith("D71")
        assert {d["status"] for d in done["documents"]} == {status}


def test_cancel_and_bad_requests(service, tmp_path):
    with service.client() as c:
        docs = _docs(c, tmp_path, 2)
        ids = [d["id"] for d in docs]
        batch = c.post(
            "/v1/batches", json={"document_ids": ids, "signer": {"hkid": SIGNER}, "level": "B-B"}
        ).json()
        r = c.post(f"/v1/batches/{batch['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert c.post(f"/v1/batches/{batch['id']}/cancel").status_code == 409
        for body, status, code in [
            ({"document_ids": [], "signer": {"hkid": SIGNER}}, 422, "invalid_request"),
            ({"document_ids": ids + ids[:1], "signer": {"hkid": SIGNER}}, 422, "duplicate_documents"),
            ({"document_ids": ["doc_nope"], "signer": {"hkid": SIGNER}}, 404, "not_found"),
            ({"document_ids": ids, "signer": {"hkid": "A123456(4)"}}, 422, "invalid_hkid"),
        ]:
            r = c.post("/v1/batches", json=body)
            assert r.status_code == status and r.json()["error"]["code"] == code, r.text
        plain = c.post("/v1/batches", json={"document_ids": ids, "signer": {"hkid": PLAIN_USER}}).json()
        if plain["status"] == "pending":
            c.post("/sandbox/v1/phone/approve", json={"hkid": PLAIN_USER, "sign_code": plain["sign_code"]})
            plain = _wait(c, plain["id"])
        assert plain["status"] == "failed" and plain["error"]["code"] == "D71004", plain
    with service.client(service.other_key) as other:
        assert other.get(f"/v1/batches/{batch['id']}").status_code == 404


def test_idempotency_key_returns_the_first_batch(service, tmp_path):
    with service.client() as c:
        docs = _docs(c, tmp_path, 2)
        body = {"document_ids": [d["id"] for d in docs], "signer": {"hkid": SIGNER}, "level": "B-B"}
        first = c.post("/v1/batches", json=body, headers={"Idempotency-Key": "run-1"}).json()
        again = c.post("/v1/batches", json=body, headers={"Idempotency-Key": "run-1"}).json()
        assert again["id"] == first["id"] and again["sign_code"] == first["sign_code"]
