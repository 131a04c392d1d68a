"""``/v1/signing-requests``: ask a signer to sign a document with iAM Smart+, follow it, fetch the result."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from sqlmodel import col, select

from api.deps import (
    BearerDep,
    EnrolmentDep,
    FlowDep,
    IdempotencyKey,
    OrgDep,
    ReadOrgDep,
    ReadSessionDep,
    ServerSecretDep,
    SessionDep,
    SettingsDep,
    StoreDep,
)
from api.edge.json_body import RequestModel
from api.errors import ApiError
from api.flows.audit import AuditHead, check_trail, read_trail
from api.flows.enrolment import EnrolmentFlow
from api.flows.idempotency import request_hash
from api.flows.identity import SignerSpec
from api.flows.signing import SigningFlow
from api.flows.status_changes import changed_or_timeout
from api.openapi import errors
from api.routes.documents import live_document, owned_document
from api.store.db import in_thread
from api.store.keys import organisation_for_key
from api.store.models import SigningRequest
from api.worker.egress import checked_webhook_url
from signing.model import PreparedSignature
from signing.summary import expected_for_record

router = APIRouter(prefix="/v1/signing-requests", tags=["signing requests"])


class SignerIn(RequestModel):
    hkid: str | None = Field(None, description="HKID with check digit, e.g. A123456(3): anonymous signing")
    session_id: str | None = Field(
        None,
        max_length=100,
        description="the signer session from /v1/auth/iamsmart/callback (iAM Smart login): account signing",
    )

    def spec(self) -> SignerSpec:
        """Who signs, as the flows take it (which of the two is named is checked there)."""
        return SignerSpec(hkid=self.hkid, session_id=self.session_id)


class AppearanceIn(RequestModel):
    page: int = Field(1, description="1-based page; -1 for the last page")
    box: tuple[float, float, float, float] = (50, 50, 300, 120)
    lines: list[str] = Field(default_factory=list, max_length=8)


class SigningRequestCreate(RequestModel):
    document_id: str
    signer: SignerIn
    mode: Literal["pdf", "hash"] | None = Field(
        None, description="default: hash (PAdES baseline) for an enrolled signer, pdf (PKCS#7) otherwise"
    )
    level: Literal["B-B", "B-T", "B-LT", "B-LTA"] | None = Field(
        None,
        description="the level asked for (default IAMSIGN_DEFAULT_LEVEL, B-LTA); a PKCS#7 signature gets its "
        "augmentations, never a PAdES level",
    )
    require_profile: Literal["pades-baseline", "pkcs7-detached"] | None = Field(
        None, description="refuse (422) at creation when the signature would be of another profile"
    )
    reason: str | None = Field(None, max_length=500)
    location: str | None = Field(None, max_length=200)
    appearance: AppearanceIn | None = None
    webhook_url: HttpUrl | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "document_id": "doc_01J9Z3K7Q8W2E4R6T8Y0U2I4O6",
                    "signer": {"hkid": "A123456(3)"},
                    "mode": "pdf",
                    "level": "B-LTA",
                    "reason": "Approval",
                    "location": "Hong Kong",
                    "appearance": {"page": -1, "box": [50, 50, 300, 120], "lines": ["CHAN Tai Man"]},
                    "webhook_url": "https://school.example/hooks/iamsign",
                },
                {
                    "document_id": "doc_01J9Z3K7Q8W2E4R6T8Y0U2I4O6",
                    "signer": {"open_id": "<open_id from the login callback>", "access_token": "<token>"},
                    "level": "B-T",
                },
            ]
        }
    )


class ErrorOut(BaseModel):
    code: str
    message: str


class SignatureOut(BaseModel):
    """What a signature is: read from the signed file (``signature``) or promised (``expected_signature``)."""

    profile: Literal["pades-baseline", "pkcs7-detached"]
    level: Literal["B-B", "B-T", "B-LT", "B-LTA"] | None = Field(
        description="the PAdES baseline level; null for a PKCS#7 signature"
    )
    augmentations: list[Literal["signature-timestamp", "dss", "document-timestamp"]]


class SigningRequestPublic(BaseModel):
    id: str
    status: str
    error: ErrorOut | None
    document_id: str
    signed_document_id: str | None
    sign_code: str | None
    expires_at: dt.datetime
    signer_url: str
    mode: str
    requested_level: str
    level: str = Field(deprecated=True, description="deprecated: the same as requested_level")
    expected_signature: SignatureOut | None = Field(description="what approving will produce")
    signature: SignatureOut | None = Field(description="once completed: what the signed file holds")
    flow: str
    created_at: dt.datetime
    updated_at: dt.datetime


def public(flow: SigningFlow, req: SigningRequest) -> SigningRequestPublic:
    return SigningRequestPublic(
        id=req.id,
        status=req.status,
        error=ErrorOut(code=req.error_code, message=req.error_message or "") if req.error_code else None,
        document_id=req.document_id,
        signed_document_id=req.signed_document_id,
        sign_code=req.sign_code,
        expires_at=req.expires_at,
        signer_url=flow.signer_url(req),
        mode=req.mode,
        requested_level=req.level,
        level=req.level,
        expected_signature=SignatureOut(
            **expected_for_record(PreparedSignature.loads(req.record_json)).to_json()
        ),
        signature=SignatureOut(**json.loads(req.signature_json)) if req.signature_json else None,
        flow=req.flow,
        created_at=req.created_at,
        updated_at=req.updated_at,
    )


def owned_request(session, org, request_id: str) -> SigningRequest:
    req = session.get(SigningRequest, request_id)
    if req is None or req.organisation_id != org.id:
        raise ApiError(404, "not_found", f"no signing request {request_id}")
    return req


@router.post("", status_code=201, response_model=SigningRequestPublic, responses=errors(400, 404))
async def create_signing_request(
    body: SigningRequestCreate,
    flow: FlowDep,
    org: OrgDep,
    session: SessionDep,
    settings: SettingsDep,
    enrolment: EnrolmentDep,
    server_secret: ServerSecretDep,
    idempotency_key: IdempotencyKey = None,
) -> SigningRequestPublic:
    """Prepare the document and ask iAM Smart for the signer's approval.

    An enrolled signer (``POST /v1/signers``) signs in hash mode by default, PAdES baseline; anyone else
    in PDF mode, where iAM Smart builds the CMS itself and the result is PKCS#7 (``/adbe.pkcs7.detached``).
    """
    doc = await in_thread(owned_document, session, org, body.document_id)  # off the event loop
    level = settings.level_or_default(body.level)
    spec = body.signer.spec()
    mode, cert = await choose_mode(session, org, enrolment, spec, body.mode, body.require_profile)
    req = await flow.create(
        session,
        org,
        doc,
        spec,
        mode=mode,
        level=level,
        reason=body.reason,
        location=body.location,
        appearance=body.appearance.model_dump() if body.appearance else None,
        webhook_url=await checked_webhook_url(body.webhook_url, settings.webhook_allowed_networks),
        idempotency_key=idempotency_key,
        signer_certificate_der=cert,
        request_hash=request_hash(server_secret, body) if idempotency_key else None,
    )
    return public(flow, req)  # create answers the request as stored


async def choose_mode(
    session, org, enrolment: EnrolmentFlow, spec: SignerSpec, mode: str | None, require_profile: str | None
) -> tuple[str, bytes | None]:
    """The mode to sign in and the enrolled certificate (hash mode), or 422 when ``require_profile`` fails.

    PAdES baseline needs hash mode and the signer's certificate beforehand (an enrolment); PDF mode is
    always PKCS#7, as iAM Smart's ``pdfSignature`` carries signingTime among its signed attributes.
    """
    usable = None
    if mode != "pdf":
        usable = await enrolment.usable_certificate(session, org, enrolment.signer_key(spec, session, org.id))
    chosen = mode or ("hash" if usable else "pdf")
    profile = "pades-baseline" if chosen == "hash" and usable else "pkcs7-detached"
    if require_profile and profile != require_profile:
        why = (
            "PDF mode is always PKCS#7: iAM Smart builds pdfSignature itself, with signingTime among its "
            "signed attributes"
            if chosen == "pdf"
            else "the signer is not enrolled: enrol them once (POST /v1/signers) so their certificate can go "
            "into the signed attributes"
        )
        if require_profile == "pkcs7-detached":
            why = "an enrolled signer's hash-mode signature is PAdES baseline; ask for mode pdf"
        raise ApiError(
            422, "profile_unavailable", f"this request would be {profile}, not {require_profile}: {why}"
        )
    return chosen, usable.cert_der if usable and chosen == "hash" else None


class SigningRequestList(BaseModel):
    items: list[SigningRequestPublic]


@router.get("", response_model=SigningRequestList)
def list_signing_requests(
    flow: FlowDep,
    org: OrgDep,
    session: SessionDep,
    document_id: str | None = None,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> SigningRequestList:
    """Your organisation's signing requests, newest first (filter by document or status)."""
    q = select(SigningRequest).where(SigningRequest.organisation_id == org.id)
    if document_id:
        q = q.where(SigningRequest.document_id == document_id)
    if status:
        q = q.where(SigningRequest.status == status)
    rows = session.exec(q.order_by(col(SigningRequest.created_at).desc()).limit(limit)).all()
    return SigningRequestList(items=[public(flow, r) for r in rows])


MAX_WAIT_S = 60.0
"""The longest ``?wait=`` a status read may hold its answer."""

DISCONNECT_CHECK_S = 1.0
"""How often a waiting read looks whether its client is still there."""


@router.get("/{request_id}", response_model=SigningRequestPublic, responses=errors(401, 404))
async def get_signing_request(
    request_id: str,
    request: Request,
    flow: FlowDep,
    org: ReadOrgDep,
    session: ReadSessionDep,
    credentials: BearerDep,
    wait: float = Query(
        0,
        ge=0,
        le=MAX_WAIT_S,
        description="seconds to hold the answer while the request is still pending: it comes as soon as "
        "the request ends (a long poll instead of polling); 0 answers at once",
    ),
) -> SigningRequestPublic:
    def read() -> SigningRequest:
        req = owned_request(session, org, request_id)
        session.close()  # the connection goes back to the pool while the read waits; req keeps its values
        return req

    def key_still_valid() -> bool:
        token = credentials.credentials.strip() if credentials else ""
        valid = organisation_for_key(session, token) is not None
        session.close()
        return valid

    changes = flow.changes
    if not wait or changes.full:
        return public(flow, await in_thread(read))
    deadline = time.monotonic() + wait
    with changes.watch(request_id) as changed:  # before reading: an end committed meanwhile wakes it
        req = await in_thread(read)
        waited = False
        while req.status == "pending" and not changes.closing and (left := deadline - time.monotonic()) > 0:
            waited = True
            if await changed_or_timeout(changed, min(left, DISCONNECT_CHECK_S)):
                req = await in_thread(read)
            elif await request.is_disconnected():
                break  # nobody to answer
    if waited and not await in_thread(key_still_valid):  # revoked while the read waited
        raise ApiError(401, "unauthorized", "the API key is unknown or revoked")
    return public(flow, req)


@router.post("/{request_id}/cancel", response_model=SigningRequestPublic, responses=errors(404, 409))
async def cancel_signing_request(
    request_id: str, flow: FlowDep, org: OrgDep, session: SessionDep
) -> SigningRequestPublic:
    req = owned_request(session, org, request_id)
    if req.status != "pending" or not await flow.cancel(session, req, f"org:{org.id}"):
        session.refresh(req)
        raise ApiError(409, "not_pending", f"the request is {req.status} and can no longer be cancelled")
    session.refresh(req)
    return public(flow, req)


@router.get("/{request_id}/signed-document", response_class=FileResponse, responses=errors(404, 409, 410))
def get_signed_document(
    request_id: str, org: ReadOrgDep, session: ReadSessionDep, store: StoreDep
) -> FileResponse:
    req = owned_request(session, org, request_id)
    if req.status != "completed" or not req.signed_document_id:
        raise ApiError(409, "not_completed", f"the request is {req.status}; there is no signed document")
    doc = live_document(session, req.signed_document_id)
    return FileResponse(store.path_for(doc.sha256), media_type="application/pdf", filename=doc.filename)


@router.get("/{request_id}/audit", responses=errors(404))
def get_audit(request_id: str, org: OrgDep, session: SessionDep) -> dict:
    """The hash-chained audit trail; ``chain_intact`` is recomputed on every read (entries, and the head
    hash and count the request recorded)."""
    req = owned_request(session, org, request_id)
    trail = read_trail(session, req.id)
    head, entries = trail if trail is not None else (AuditHead(0, None), [])
    broken = check_trail(head, entries)
    return {
        "signing_request_id": req.id,
        "chain_intact": broken is None,
        "first_broken_seq": broken,
        "entries": [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "event": e.event,
                "status": e.status,
                "document_sha256_before": e.document_sha256_before,
                "document_sha256_after": e.document_sha256_after,
                "iamsmart_code": e.iamsmart_code,
                "detail": e.detail,
                "prev_hash": e.prev_hash,
                "entry_hash": e.entry_hash,
            }
            for e in entries
        ],
    }
