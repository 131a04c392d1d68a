"""The audit trail: append-only and hash-chained per signing request.

Each entry's hash covers its fields and the previous entry's hash, so editing, removing or reordering any
entry breaks every hash after it. ``(request_id, seq)`` is unique, so two processes cannot both append
the same step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select

from api.store.models import AuditEntry, SigningRequest, utcnow

__all__ = [
    "GENESIS",
    "NEW_TRAIL",
    "AuditHead",
    "append_audit",
    "check_trail",
    "read_trail",
    "verify_chain",
]

GENESIS = "0" * 64


def _entry_hash(entry: AuditEntry) -> str:
    fields = {
        "request_id": entry.request_id,
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "event": entry.event,
        "status": entry.status,
        "document_sha256_before": entry.document_sha256_before,
        "document_sha256_after": entry.document_sha256_after,
        "iamsmart_code": entry.iamsmart_code,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class AuditHead:
    """Where a request's trail ends, as its row records it: how many entries, and the last one's hash."""

    count: int
    hash: str | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditHead:
        """The head once ``entry`` is appended."""
        return cls(entry.seq, entry.entry_hash)


NEW_TRAIL = AuditHead(0, None)
"""The head of a request inserted in this transaction: no entry yet."""


def append_audit(
    session: Session,
    request_id: str,
    *,
    actor: str,
    event: str,
    status: str,
    sha_before: str | None = None,
    sha_after: str | None = None,
    iamsmart_code: str | None = None,
    detail: str | None = None,
    after: AuditHead | None = None,
    new_request: SigningRequest | None = None,
) -> AuditEntry:
    """Add the next entry (the caller commits, in the same transaction as the transition it records).

    ``after`` is the trail's head as this transaction read it from the request's row while holding it (a
    claim's ``UPDATE ... RETURNING``, or :data:`NEW_TRAIL` for a request inserted here): it spares the
    read of the last entry. Without it the last entry is read; either way ``(request_id, seq)`` is unique,
    so two transactions cannot both append the same step. ``new_request``: the first entry of a request
    added to the session and not yet flushed; its row is inserted carrying the head (no UPDATE).
    """
    if new_request is not None:
        after = NEW_TRAIL
    if after is not None and (after.count == 0 or after.hash is not None):
        seq, prev_hash = after.count + 1, after.hash or GENESIS
    else:
        last = session.exec(
            select(AuditEntry)
            .where(AuditEntry.request_id == request_id)
            .order_by(col(AuditEntry.seq).desc())
            .limit(1)
        ).first()
        seq, prev_hash = ((last.seq + 1), last.entry_hash) if last else (1, GENESIS)
    entry = AuditEntry(
        request_id=request_id,
        seq=seq,
        at=utcnow().replace(microsecond=(utcnow().microsecond // 1000) * 1000),
        actor=actor,
        event=event,
        status=status,
        document_sha256_before=sha_before,
        document_sha256_after=sha_after,
        iamsmart_code=iamsmart_code,
        detail=detail[:2000] if detail else None,
        prev_hash=prev_hash,
        entry_hash="",
    )
    entry.entry_hash = _entry_hash(entry)
    if new_request is not None:  # its row first (the entry's foreign key), already carrying the head
        new_request.audit_head_hash, new_request.audit_count = entry.entry_hash, entry.seq
        session.flush()
        session.add(entry)
        return entry
    session.add(entry)
    session.exec(
        update(SigningRequest)
        .where(col(SigningRequest.id) == request_id)
        .values(audit_head_hash=entry.entry_hash, audit_count=entry.seq)
    )
    return entry


def verify_chain(entries: list[AuditEntry]) -> int | None:
    """``None`` when the chain is intact, else the ``seq`` of the first entry that does not check out."""
    prev = GENESIS
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.seq != expected_seq or entry.prev_hash != prev or _entry_hash(entry) != entry.entry_hash:
            return entry.seq
        prev = entry.entry_hash
    return None


def read_trail(session: Session, request_id: str) -> tuple[AuditHead, list[AuditEntry]] | None:
    """The head the request's row records and its entries in order, read by ONE statement, so that both
    come from the same moment: read one after the other, an entry committed in between looked like an
    entry added past the recorded head (a broken trail where nothing was touched). ``None`` when there is
    no such request."""
    rows = session.exec(
        select(SigningRequest.audit_count, SigningRequest.audit_head_hash, AuditEntry)
        .select_from(SigningRequest)
        .outerjoin(AuditEntry, col(AuditEntry.request_id) == col(SigningRequest.id))
        .where(col(SigningRequest.id) == request_id)
        .order_by(col(AuditEntry.seq))
    ).all()
    if not rows:
        return None
    head = AuditHead(rows[0][0], rows[0][1])
    return head, [entry for _count, _hash, entry in rows if entry is not None]


def check_trail(recorded: AuditHead, entries: list[AuditEntry]) -> int | None:
    """``None`` when ``entries`` are the request's whole intact trail, else the first ``seq`` that is wrong
    or missing (the chain itself, or its length and head against what the request recorded). Read both
    with :func:`read_trail`."""
    broken = verify_chain(entries)
    if broken is not None:
        return broken
    if len(entries) != recorded.count:  # entries removed from the end (or added past the recorded head)
        return min(len(entries), recorded.count) + 1
    if (entries[-1].entry_hash if entries else None) != recorded.hash:
        return len(entries)
    return None
