"""Hole 8: deleting the newest audit entries leaves a valid shorter chain; the head hash and entry count
recorded with the request show it on every read."""

from __future__ import annotations

from sqlalchemy import delete, func
from sqlmodel import select

from api.store.models import AuditEntry, SigningRequest

from .test_signing_service import SIGNER, _upload, _wait_status


def _new_request(c, tmp_path) -> str:
    """A pending B-B request (created and sent) for the sandbox signer; its id."""
    doc = _upload(c, tmp_path)
    r = c.post(
        "/v1/signing-requests", json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _audit(c, req_id: str) -> dict:
    r = c.get(f"/v1/signing-requests/{req_id}/audit")
    assert r.status_code == 200, r.text
    return r.json()


def test_deleting_the_last_audit_entry_breaks_the_trail(service, tmp_path):
    with service.client() as c:
        doc = _upload(c, tmp_path)
        req = c.post(
            "/v1/signing-requests",
            json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"},
        ).json()
        c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
        assert _wait_status(c, req["id"])["status"] == "completed"
        whole = _audit(c, req["id"])
        assert whole["chain_intact"] is True and whole["first_broken_seq"] is None
        last = whole["entries"][-1]
        with service.app.state.flow.session() as s:
            row = s.get(SigningRequest, req["id"])
            assert (row.audit_count, row.audit_head_hash) == (last["seq"], last["entry_hash"])
            s.exec(
                delete(AuditEntry).where(AuditEntry.request_id == req["id"], AuditEntry.seq == last["seq"])
            )
            s.commit()
            left = s.exec(select(func.count()).where(AuditEntry.request_id == req["id"])).one()
        assert left == last["seq"] - 1
        truncated = _audit(c, req["id"])
        assert truncated["chain_intact"] is False
        assert truncated["first_broken_seq"] == last["seq"]
        assert len(truncated["entries"]) == last["seq"] - 1


def test_a_cancelled_request_keeps_an_intact_trail(service, tmp_path):
    with service.client() as c:
        doc = _upload(c, tmp_path)
        req = c.post(
            "/v1/signing-requests",
            json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"},
        ).json()
        assert c.post(f"/v1/signing-requests/{req['id']}/cancel").status_code == 200
        audit = _audit(c, req["id"])
        seqs = [e["seq"] for e in audit["entries"]]
        assert audit["chain_intact"] is True and seqs == list(range(1, len(seqs) + 1))


def test_an_entry_that_follows_a_stale_head_is_refused_not_forked(service, tmp_path):
    """Entries after a claim follow the head the claim's UPDATE returned instead of reading the last
    entry. A head that is out of date (another transaction appended since) must make the append fail on
    the (request_id, seq) key, never chain a second entry onto an earlier one."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    from api.flows.audit import NEW_TRAIL, AuditHead, append_audit

    with service.client() as c:
        req = {"id": _new_request(c, tmp_path)}
        before = _audit(c, req["id"])
        assert before["chain_intact"] is True and len(before["entries"]) >= 2  # created, sent
        first = before["entries"][0]
        for stale in (NEW_TRAIL, AuditHead(first["seq"], first["entry_hash"])):
            with service.app.state.flow.session() as s, pytest.raises(IntegrityError):
                append_audit(s, req["id"], after=stale, actor="test", event="note", status="pending")
                s.commit()
        after = _audit(c, req["id"])
        assert after["entries"] == before["entries"] and after["chain_intact"] is True
        with service.app.state.flow.session() as s:  # the current head: appended and intact
            row = s.get(SigningRequest, req["id"])
            append_audit(
                s,
                req["id"],
                after=AuditHead(row.audit_count, row.audit_head_hash),
                actor="test",
                event="note",
                status="pending",
            )
            s.commit()
        grown = _audit(c, req["id"])
        assert len(grown["entries"]) == len(before["entries"]) + 1 and grown["chain_intact"] is True
