"""Interleavings of the audit trail on SQLite and PostgreSQL (READ COMMITTED), from an outside review: a
claim's head (UPDATE ... RETURNING) against an append that reads the last entry, and reading the trail
while entries are appended."""

from __future__ import annotations

import threading
import time

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from api.flows.audit import append_audit
from api.store.models import SigningRequest

from .test_audit_truncation import _audit, _new_request


def _envelope_style_append(flow, req_id: str, done: list) -> None:
    """EnvelopeFlow._audit: lock the row (FOR UPDATE; a no-op on SQLite), append reading the last entry,
    retry on the (request_id, seq) key."""
    for _ in range(5):
        with flow.session() as s:
            try:
                s.exec(select(SigningRequest.id).where(SigningRequest.id == req_id).with_for_update()).first()
                append_audit(s, req_id, actor="envelope", event="note", status="pending", detail="concurrent")
                s.commit()
                done.append("ok")
                return
            except IntegrityError:
                s.rollback()
                done.append("retry")
    done.append("gave up")


def test_claim_head_with_a_concurrent_reading_append(service, tmp_path):
    """A claim holds the row and its head; another transaction appends by reading the last entry.
    Both entries land, one after the other, and the trail is intact (no fork, no duplicate seq)."""
    flow = service.app.state.flow
    with service.client() as c:
        req_id = _new_request(c, tmp_path)
        before = _audit(c, req_id)["entries"]
        with flow.session() as a:
            head = flow._claim(
                a,
                req_id,
                ("prepared", "sent"),
                phase="done",
                status="cancelled",
                error_code="cancelled",
                error_message="test",
            )
            assert head is not None and head.count == len(before)
            done: list = []
            t = threading.Thread(target=_envelope_style_append, args=(flow, req_id, done))
            t.start()
            time.sleep(0.5)  # the other transaction is now waiting on the row (PG) or the write lock
            append_audit(a, req_id, after=head, actor="test", event="cancelled", status="cancelled")
            a.commit()
        t.join(40)
        assert done and done[-1] == "ok", done
        after = _audit(c, req_id)
        seqs = [e["seq"] for e in after["entries"]]
        assert after["chain_intact"] is True and seqs == list(range(1, len(before) + 3))
        assert [e["event"] for e in after["entries"][-2:]] == ["cancelled", "note"]


def test_audit_polled_while_entries_are_appended(service, tmp_path):
    """One thread appends entries while the client polls the trail: no read may call the untampered trail
    broken. The row's recorded head and the entries were read by two statements, and an entry committed
    between them read as one added past the head (1 in 150 reads on SQLite, 15 on PostgreSQL); they are
    one statement now (``read_trail``)."""
    flow = service.app.state.flow
    with service.client() as c:
        req_id = _new_request(c, tmp_path)
        stop = threading.Event()

        def writer():
            while not stop.is_set():
                _envelope_style_append(flow, req_id, [])
                time.sleep(0.005)

        t = threading.Thread(target=writer)
        t.start()
        try:
            reads = [_audit(c, req_id) for _ in range(150)]
        finally:
            stop.set()
            t.join(40)
        broken = [(r["first_broken_seq"], len(r["entries"])) for r in reads if not r["chain_intact"]]
        final = _audit(c, req_id)
    assert final["chain_intact"] is True
    assert not broken
