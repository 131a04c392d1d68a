"""Database tables (sqlmodel). Public response shapes live with their routes, never these rows."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Batch",
    "BatchCallbackPage",
    "BatchItem",
    "Document",
    "Envelope",
    "EnvelopeStep",
    "Organisation",
    "SignerEnrolment",
    "SignerSession",
    "SigningRequest",
    "WebhookDelivery",
    "new_id",
    "utcnow",
]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Organisation(SQLModel, table=True):
    """An online service using iamsign; API keys and documents belong to exactly one."""

    __tablename__ = "organisations"
    id: str = Field(default_factory=lambda: new_id("org"), primary_key=True, max_length=40)
    name: str = Field(max_length=200, unique=True)
    created_at: dt.datetime = Field(default_factory=utcnow)
    webhook_secret_generation: int = Field(
        default=0, description="bumped by each rotation; the webhook secret is derived from it"
    )
    webhook_previous_valid_until: dt.datetime | None = Field(
        default=None, description="until then webhooks also carry a signature under the previous secret"
    )


class ApiKey(SQLModel, table=True):
    """An API key, stored as SHA-256 of the secret; the secret is shown once at creation."""

    __tablename__ = "api_keys"
    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True, max_length=40)
    organisation_id: str = Field(foreign_key="organisations.id", index=True, max_length=40)
    name: str = Field(max_length=200)
    key_sha256: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=16, description="first characters, to recognise a key in listings")
    created_at: dt.datetime = Field(default_factory=utcnow)
    expires_at: dt.datetime | None = Field(default=None, description="refused from then on; None: no expiry")
    revoked_at: dt.datetime | None = None


class Document(SQLModel, table=True):
    """An uploaded PDF or a signed revision made by the service."""

    __tablename__ = "documents"
    id: str = Field(default_factory=lambda: new_id("doc"), primary_key=True, max_length=40)
    organisation_id: str = Field(foreign_key="organisations.id", index=True, max_length=40)
    sha256: str = Field(index=True, max_length=64)
    size: int
    filename: str = Field(max_length=255)
    pages: int
    signature_count: int
    created_at: dt.datetime = Field(default_factory=utcnow)
    deleted_at: dt.datetime | None = Field(
        default=None,
        description="deleted (by its organisation or retention): content gone, row kept for audit",
    )


class SigningRequest(SQLModel, table=True):
    """One signer asked to sign one document through iAM Smart.

    ``status`` is what clients see; ``phase`` is where the work stands, so that a restarted process
    can resume from what is stored (prepared -> sent -> result_received -> signed).
    """

    __tablename__ = "signing_requests"
    __table_args__ = (
        UniqueConstraint("organisation_id", "idempotency_key", name="uq_sr_idempotency"),
        # the sweep's scans (overdue, stale): their cost follows what they find, not how many wait
        Index("ix_sr_sweep_expiry", "status", "phase", "expires_at"),
        Index("ix_sr_sweep_stale", "status", "phase", "updated_at"),
    )
    id: str = Field(default_factory=lambda: new_id("sr"), primary_key=True, max_length=40)
    organisation_id: str = Field(foreign_key="organisations.id", index=True, max_length=40)
    document_id: str = Field(foreign_key="documents.id", max_length=40)
    business_id: str = Field(unique=True, max_length=36)
    state: str | None = Field(
        default=None,
        unique=True,
        index=True,  # as migration 0006 built it: a unique index
        max_length=36,
        description="random per-request secret sent to iAM Smart as state; never shown on a public page",
    )
    idempotency_key: str | None = Field(
        default=None,
        max_length=100,
        description="the client's Idempotency-Key: a retried POST finds this row",
    )
    request_hash: str | None = Field(
        default=None, max_length=64, description="keyed hash of the body sent with the Idempotency-Key"
    )
    status: str = Field(default="pending", index=True, max_length=16)
    phase: str = Field(default="prepared", max_length=24)
    flow: str = Field(max_length=16, description="anonymous (HKID) or account (logged-in openID)")
    mode: str = Field(max_length=8)
    level: str = Field(max_length=8)
    signer_key: str = Field(index=True, max_length=64, description="HMAC of the HKID or openID, never the ID")
    reason: str | None = Field(default=None, max_length=500)
    location: str | None = Field(default=None, max_length=200)
    appearance_json: str | None = None
    webhook_url: str | None = Field(default=None, max_length=2000)
    record_json: str = Field(description="the PreparedSignature of the signing core")
    prepared_name: str = Field(max_length=200)
    sign_code: str | None = Field(default=None, max_length=8)
    ticket_id: str | None = Field(default=None, max_length=200)
    result_json: str | None = Field(default=None, description="what iAM Smart returned, until embedded")
    signature_json: str | None = Field(
        default=None, description="the achieved signature (profile, level, augmentations) read from the file"
    )
    signed_document_id: str | None = Field(default=None, max_length=40)
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=2000)
    iamsmart_code: str | None = Field(default=None, max_length=16)
    audit_head_hash: str | None = Field(
        default=None, max_length=64, description="entry_hash of the last audit entry (truncation shows)"
    )
    audit_count: int = Field(default=0, description="how many audit entries the request has")
    expires_at: dt.datetime
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    """One append-only, hash-chained entry per transition of a signing request."""

    __tablename__ = "audit_entries"
    __table_args__ = (UniqueConstraint("request_id", "seq", name="uq_audit_request_seq"),)
    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="signing_requests.id", index=True, max_length=40)
    seq: int
    at: dt.datetime
    actor: str = Field(max_length=64)
    event: str = Field(max_length=64)
    status: str = Field(max_length=16)
    document_sha256_before: str | None = Field(default=None, max_length=64)
    document_sha256_after: str | None = Field(default=None, max_length=64)
    iamsmart_code: str | None = Field(default=None, max_length=16)
    detail: str | None = Field(default=None, max_length=2000)
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64)


class WebhookDelivery(SQLModel, table=True):
    """A webhook to deliver (or delivered) for a terminal status; retried with backoff."""

    __tablename__ = "webhook_deliveries"
    id: str = Field(default_factory=lambda: new_id("wh"), primary_key=True, max_length=40)
    organisation_id: str = Field(foreign_key="organisations.id", max_length=40)
    request_id: str = Field(
        index=True, max_length=40, description="the signing request or batch it reports on"
    )
    url: str = Field(max_length=2000)
    event: str = Field(max_length=64)
    body: str
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(default_factory=utcnow, index=True)
    delivered_at: dt.datetime | None = None
    given_up_at: dt.datetime | None = None
    last_error: str | None = Field(default=None, max_length=500)


class Batch(SQLModel, table=True):
    """Many documents, one signer, one approval (iAM Smart bulk signing)."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("organisation_id", "idempotency_key", name="uq_batch_idempotency"),
        Index("ix_batch_sweep_expiry", "status", "phase", "expires_at"),
        Index("ix_batch_sweep_stale", "status", "phase", "updated_at"),
    )
    id: str = Field(default_factory=lambda: new_id("bt"), primary_key=True, max_length=40)
    organisation_id: str = Field(foreign_key="organisations.id", index=True, max_length=40)
    business_id: str = Field(unique=True, max_length=36)
    idempotency_key: str | None = Field(default=None, max_length=100)
    request_hash: str | None = Field(default=None, max_length=64)
    status: str = Field(default="pending", index=True, max_length=24)
    phase: str = Field(default="prepared", max_length=24, description="prepared -> sent -> receiving -> done")
    flow: str = Field(max_length=16)
    mode: str = Field(default="pdf", max_length=8, description="pdf, or hash (an enrolled signer's batch)")
    level: str = Field(max_length=8)
    signer_key: str = Field(index=True, max_length=64, description="HMAC of the HKID or openID, never the ID")
    reason: str | None = Field(default=None, max_length=500)
    location: str | None = Field(default=None, max_length=200)
    webhook_url: str | None = Field(default=None, max_length=2000)
    sign_code: str | None = Field(default=None, max_length=8)
    bsqc_token: str | None = Field(default=None, max_length=64)
    callbacks_expected: int | None = None
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=2000)
    expires_at: dt.datetime
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class BatchItem(SQLModel, table=True):
    """One document of a batch; its own state so that each is embedded exactly once."""

    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("batch_id", "position", name="uq_batch_item_position"),)
    id: str = Field(default_factory=lambda: new_id("bi")[:36], primary_key=True, max_length=36)
    batch_id: str = Field(foreign_key="batches.id", index=True, max_length=40)
    document_id: str = Field(foreign_key="documents.id", max_length=40)
    position: int
    status: str = Field(default="pending", index=True, max_length=16)
    record_json: str | None = None
    prepared_name: str | None = Field(default=None, max_length=200)
    result_json: str | None = None
    signature_json: str | None = Field(default=None, description="the achieved signature, read from the file")
    signed_document_id: str | None = Field(default=None, max_length=40)
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=2000)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class BatchCallbackPage(SQLModel, table=True):
    """One page (``callbackSeq``) of a batch's result callbacks, recorded once however often it arrives."""

    __tablename__ = "batch_callback_pages"
    batch_id: str = Field(foreign_key="batches.id", primary_key=True, max_length=40)
    seq: int = Field(primary_key=True)
    received_at: dt.datetime = Field(default_factory=utcnow)


class SignerEnrolment(SQLModel, table=True):
    """A signer's iAM Smart-Cert, kept after one enrolment signature so hash mode is PAdES from the start.

    One row per organisation and signer (keyed HMAC of the HKID or openID, never the ID). ``status``:
    pending (the enrolment signature is awaited), enrolled, reenrolment_required (renewed, revoked, expired
    or mismatched certificate), failed (the enrolment did not complete; ``error_code`` says why).
    """

    __tablename__ = "signer_enrolments"
    __table_args__ = (UniqueConstraint("organisation_id", "signer_key", name="uq_enrolment_signer"),)
    id: str = Field(default_factory=lambda: new_id("sg"), primary_key=True, max_length=40)
    organisation_id: str = Field(foreign_key="organisations.id", index=True, max_length=40)
    signer_key: str = Field(index=True, max_length=64, description="HMAC of the HKID or openID, never the ID")
    flow: str = Field(max_length=16)
    status: str = Field(default="pending", max_length=24)
    statement: str = Field(max_length=500)
    request_id: str | None = Field(default=None, max_length=40, description="the enrolment signature")
    cert_der_b64: str | None = None
    cert_sha256: str | None = Field(default=None, max_length=64)
    subject: str | None = Field(default=None, max_length=500)
    issuer: str | None = Field(default=None, max_length=500)
    serial: str | None = Field(default=None, max_length=80)
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=2000)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class SignerSession(SQLModel, table=True):
    """A signer logged in with iAM Smart: the integrator holds only ``id``; the token stays here, encrypted."""

    __tablename__ = "signer_sessions"
    id: str = Field(primary_key=True, max_length=64)
    signer_key: str = Field(index=True, max_length=64, description="HMAC of the openID, never the openID")
    token_sealed: str = Field(description="AES-GCM under a key derived from the server secret")
    user_type: str = Field(max_length=16)
    expires_at: dt.datetime = Field(index=True)
    created_at: dt.datetime = Field(default_factory=utcnow)


class Envelope(SQLModel, table=True):
    """One document signed by several signers in order: each step signs the file the previous one produced.

    ``status``: pending (a step is waiting for its signer), completed, rejected, expired, cancelled, failed;
    ``ended_step`` names the step that ended it otherwise than completed.
    """

    __tablename__ = "envelopes"
    id: str = Field(default_factory=lambda: new_id("env"), primary_key=True, max_length=40)
    organisation_id: str = Field(foreign_key="organisations.id", index=True, max_length=40)
    document_id: str = Field(foreign_key="documents.id", max_length=40)
    status: str = Field(default="pending", index=True, max_length=16)
    level: str = Field(max_length=8, description="the level of the final file; earlier steps sign at B-T")
    reason: str | None = Field(default=None, max_length=500)
    location: str | None = Field(default=None, max_length=200)
    webhook_url: str | None = Field(default=None, max_length=2000)
    current_step: int = Field(default=0, description="the position of the step under way (0-based)")
    step_count: int
    ended_step: int | None = None
    signed_document_id: str | None = Field(default=None, max_length=40, description="the final file")
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=2000)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class EnvelopeStep(SQLModel, table=True):
    """One signer of an envelope. The signer is kept sealed (AES-GCM under a key derived from the server
    secret) only until its request starts, never in clear; ``signer_key`` is the usual keyed HMAC.

    ``status``: waiting, pending (its signing request is under way), completed, rejected, expired,
    cancelled, failed, skipped (an earlier step ended the envelope).
    """

    __tablename__ = "envelope_steps"
    __table_args__ = (UniqueConstraint("envelope_id", "position", name="uq_envelope_step_position"),)
    id: str = Field(default_factory=lambda: new_id("es"), primary_key=True, max_length=40)
    envelope_id: str = Field(foreign_key="envelopes.id", index=True, max_length=40)
    position: int
    status: str = Field(default="waiting", max_length=16)
    signer_kind: str = Field(max_length=16, description="hkid, account or enrolled")
    signer_key: str = Field(max_length=64, description="HMAC of the HKID or openID, never the ID")
    signer_sealed: str | None = Field(default=None, description="the sealed signer, dropped once started")
    appearance_json: str | None = None
    request_id: str | None = Field(default=None, index=True, max_length=40)
    document_id: str | None = Field(default=None, max_length=40, description="the file this step signs")
    signed_document_id: str | None = Field(default=None, max_length=40)
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=2000)
    updated_at: dt.datetime = Field(default_factory=utcnow)
