"""The stored side of signer enrolment that other flows need: find a signer's enrolment, mark it stale."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from api.store.models import SignerEnrolment, utcnow

__all__ = ["REENROLMENT_CODE", "enrolment_for", "mark_reenrolment_required"]

REENROLMENT_CODE = "signer_reenrolment_required"
"""The error code that sends a signer back to ``POST /v1/signers``."""


def enrolment_for(session: Session, organisation_id: str, signer_key: str) -> SignerEnrolment | None:
    return session.exec(
        select(SignerEnrolment).where(
            SignerEnrolment.organisation_id == organisation_id, SignerEnrolment.signer_key == signer_key
        )
    ).first()


def mark_reenrolment_required(session: Session, organisation_id: str, signer_key: str, why: str) -> bool:
    """An enrolled certificate that no longer serves (renewed, revoked, expired): the signer must enrol again."""
    r = session.exec(
        update(SignerEnrolment)
        .where(
            col(SignerEnrolment.organisation_id) == organisation_id,
            col(SignerEnrolment.signer_key) == signer_key,
            col(SignerEnrolment.status) == "enrolled",
        )
        .values(
            status="reenrolment_required",
            error_code=REENROLMENT_CODE,
            error_message=why[:2000],
            updated_at=utcnow(),
        )
    )
    return r.rowcount == 1
