"""Documents' end of life: deletion by their organisation (with the signed revisions made from them) and
retention (documents older than ``IAMSIGN_RETENTION_DAYS``).

A deleted document's content leaves the disk (unless another live document has the same bytes: files are
named by their SHA-256) and its row stays, marked deleted and without its file name, because signing
requests and their audit trails refer to it. Each request that used it gets a tombstone entry in its
audit trail. A document in use by a pending request or an unfinished batch is never deleted.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlmodel import Session, col, select

from api.flows.audit import append_audit
from api.flows.previews import remove_previews
from api.store.files import DocumentStore
from api.store.models import Batch, BatchItem, Document, SigningRequest, utcnow

__all__ = ["DELETED_FILENAME", "DocumentInUse", "apply_retention", "delete_document"]

log = logging.getLogger("iamsign.lifecycle")

DELETED_FILENAME = "(deleted)"
_BATCH_OPEN = ("pending", "signing")


class DocumentInUse(Exception):
    """A pending signing request or an unfinished batch still needs the document."""


def _revisions(session: Session, ids: set[str]) -> set[str]:
    """The signed revisions made from ``ids`` (and from those, and so on)."""
    found, frontier = set(ids), set(ids)
    while frontier:
        made = set(
            session.exec(
                select(SigningRequest.signed_document_id).where(
                    col(SigningRequest.document_id).in_(frontier),
                    col(SigningRequest.signed_document_id).is_not(None),
                )
            ).all()
        ) | set(
            session.exec(
                select(BatchItem.signed_document_id).where(
                    col(BatchItem.document_id).in_(frontier), col(BatchItem.signed_document_id).is_not(None)
                )
            ).all()
        )
        frontier = {d for d in made if d} - found
        found |= frontier
    return found


def _in_use(session: Session, ids: set[str]) -> str | None:
    pending = session.exec(
        select(SigningRequest.id).where(
            col(SigningRequest.document_id).in_(ids), SigningRequest.status == "pending"
        )
    ).first()
    if pending:
        return f"signing request {pending} is pending"
    batch = session.exec(
        select(Batch.id)
        .join(BatchItem, col(BatchItem.batch_id) == col(Batch.id))
        .where(col(BatchItem.document_id).in_(ids), col(Batch.status).in_(_BATCH_OPEN))
    ).first()
    if batch:
        return f"batch {batch} is not finished"
    return None


def delete_document(
    session: Session,
    store: DocumentStore,
    doc: Document,
    *,
    actor: str,
    reason: str = "deleted by the organisation",
    with_revisions: bool = True,
    now: dt.datetime | None = None,
) -> list[str]:
    """Delete ``doc`` (and, by default, its signed revisions); return the ids deleted, oldest first.

    Raises :class:`DocumentInUse` while a pending request or an unfinished batch uses any of them.
    """
    ids = _revisions(session, {doc.id}) if with_revisions else {doc.id}
    if why := _in_use(session, ids):
        raise DocumentInUse(f"document {doc.id} is in use: {why}")
    now = now or utcnow()
    rows = session.exec(
        select(Document).where(col(Document.id).in_(ids), col(Document.deleted_at).is_(None))
    ).all()
    rows = sorted(rows, key=lambda d: (d.created_at, d.id))
    if not rows:
        return []
    deleted = [d.id for d in rows]
    shas = {d.sha256 for d in rows}
    for d in rows:
        d.deleted_at, d.filename = now, DELETED_FILENAME
        session.add(d)
    requests = session.exec(
        select(SigningRequest).where(
            col(SigningRequest.document_id).in_(deleted) | col(SigningRequest.signed_document_id).in_(deleted)
        )
    ).all()
    by_id = {d.id: d for d in rows}
    for req in requests:
        gone = [i for i in (req.document_id, req.signed_document_id) if i in by_id]
        append_audit(
            session,
            req.id,
            actor=actor,
            event="document_deleted",
            status=req.status,
            sha_before=by_id[gone[0]].sha256,
            detail=f"{reason}: {', '.join(gone)} (content removed; this entry is its tombstone)",
        )
    session.commit()
    for sha in shas:  # files are shared by identical content: remove only what no live document names
        still = session.exec(
            select(Document.id).where(Document.sha256 == sha, col(Document.deleted_at).is_(None))
        ).first()
        if still is None:
            store.path_for(sha).unlink(missing_ok=True)
            remove_previews(store, sha)
    log.info("deleted documents %s (%s)", deleted, reason)
    return deleted


def apply_retention(
    session: Session, store: DocumentStore, days: int, now: dt.datetime | None = None, limit: int = 200
) -> list[str]:
    """Delete documents created more than ``days`` ago, each on its own age (a younger signed revision
    stays until it is old enough); documents still in use wait for a later sweep."""
    now = now or utcnow()
    old = session.exec(
        select(Document)
        .where(col(Document.deleted_at).is_(None), col(Document.created_at) < now - dt.timedelta(days=days))
        .order_by(col(Document.created_at))
        .limit(limit)
    ).all()
    deleted: list[str] = []
    for doc in old:
        try:
            deleted += delete_document(
                session,
                store,
                doc,
                actor="retention",
                reason=f"older than the {days}-day retention",
                with_revisions=False,
                now=now,
            )
        except DocumentInUse:
            session.rollback()
    return deleted
