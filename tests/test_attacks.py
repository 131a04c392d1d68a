"""An outsider's attacks on the service: forged iAM Smart messages, other organisations' ids, hostile files."""

from __future__ import annotations

import json
import time

from .test_signing_service import SIGNER, _upload


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
