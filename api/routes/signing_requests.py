"""``/v1/signing-requests``: ask a signer to sign a document with iAM Smart+, follow it, fetch the result."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, HttpUrl
from sqlmodel import select

from api.deps import IdempotencyKey, OrgDep, SessionDep, StoreDep
from api.errors import ApiError
from api.flows.audit import audit_entries, verify_chain
from api.flows.identity import SignerSpec
from api.routes.documents import owned_document
from api.store.models import Document, SigningRequest
from signing.model import PadesLevel

router = APIRouter(prefix="/v1/signing-requests", tags=["signing requests"])


class SignerIn(BaseModel):
    hkid: str | None = Field(None, description="HKID with check digit, e.g. A123456(3): anonymous signing")
    session_id: str | None = Field(
        None,
        max_length=100,
        description="the signer session from /v1/auth/iamsmart/callback (iAM Smart login): account signing",
    )


class AppearanceIn(BaseModel):
    page: int = Field(1, description="1-based page; -1 for the last page")
    box: tuple[float, float, float, float] = (50, 50, 300, 120)
    lines: list[str] = Field(default_factory=list, max_length=8)


class SigningRequestCreate(BaseModel):
    document_id: str
    signer: SignerIn
    mode: Literal["pdf", "hash"] = "pdf"
    level: Literal["B-B", "B-T", "B-LT", "B-LTA"] = "B-LTA"
    reason: str | None = Field(None, max_length=500)
    location: str | None = Field(None, max_length=200)
    appearance: AppearanceIn | None = None
    webhook_url: HttpUrl | None = None


class ErrorOut(BaseModel):
    code: str
    message: str


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
    level: str
    flow: str
    created_at: dt.datetime
    updated_at: dt.datetime


def public(request: Request, req: SigningRequest) -> SigningRequestPublic:
    flow = request.app.state.flow
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
        level=req.level,
        flow=req.flow,
        created_at=req.created_at,
        updated_at=req.updated_at,
    )


def owned_request(session, org, request_id: str) -> SigningRequest:
    req = session.get(SigningRequest, request_id)
    if req is None or req.organisation_id != org.id:
        raise ApiError(404, "not_found", f"no signing request {request_id}")
    return req


@router.post("", status_code=201, response_model=SigningRequestPublic)
async def create_signing_request(
    body: SigningRequestCreate,
    request: Request,
    org: OrgDep,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> SigningRequestPublic:
    """Prepare the document and ask iAM Smart for the signer's approval."""
    doc = owned_document(session, org, body.document_id)
    PadesLevel(body.level)
    req = await request.app.state.flow.create(
        session,
        org,
        doc,
        SignerSpec(hkid=body.signer.hkid, session_id=body.signer.session_id),
        mode=body.mode,
        level=body.level,
        reason=body.reason,
        location=body.location,
        appearance=body.appearance.model_dump() if body.appearance else None,
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
        idempotency_key=idempotency_key,
    )
    session.refresh(req)
    return public(request, req)


class SigningRequestList(BaseModel):
    items: list[SigningRequestPublic]


@router.get("", response_model=SigningRequestList)
def list_signing_requests(
    request: Request,
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
    rows = session.exec(q.order_by(SigningRequest.created_at.desc()).limit(limit)).all()
    return SigningRequestList(items=[public(request, r) for r in rows])


@router.get("/{request_id}", response_model=SigningRequestPublic)
def get_signing_request(
    request_id: str, request: Request, org: OrgDep, session: SessionDep
) -> SigningRequestPublic:
    return public(request, owned_request(session, org, request_id))


@router.post("/{request_id}/cancel", response_model=SigningRequestPublic)
async def cancel_signing_request(
    request_id: str, request: Request, org: OrgDep, session: SessionDep
) -> SigningRequestPublic:
    req = owned_request(session, org, request_id)
    if req.status != "pending" or not await request.app.state.flow.cancel(session, req, f"org:{org.id}"):
        session.refresh(req)
        raise ApiError(409, "not_pending", f"the request is {req.status} and can no longer be cancelled")
    session.refresh(req)
    return public(request, req)


@router.get("/{request_id}/signed-document", response_class=FileResponse)
def get_signed_document(request_id: str, org: OrgDep, session: SessionDep, store: StoreDep) -> FileResponse:
    req = owned_request(session, org, request_id)
    if req.status != "completed" or not req.signed_document_id:
        raise ApiError(409, "not_completed", f"the request is {req.status}; there is no signed document")
    doc = session.get(Document, req.signed_document_id)
    return FileResponse(store.path_for(doc.sha256), media_type="application/pdf", filename=doc.filename)


@router.get("/{request_id}/audit")
def get_audit(request_id: str, org: OrgDep, session: SessionDep) -> dict:
    """The hash-chained audit trail; ``chain_intact`` is recomputed on every read."""
    req = owned_request(session, org, request_id)
    entries = audit_entries(session, req.id)
    broken = verify_chain(entries)
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


webhook_router = APIRouter(prefix="/v1", tags=["webhooks"])


@webhook_router.get("/webhook-secret")
def get_webhook_secret(request: Request, org: OrgDep) -> dict:
    """Your organisation's key for checking ``X-Iamsign-Signature`` on webhooks."""
    from api.worker.webhooks import webhook_secret_for

    return {
        "webhook_secret": webhook_secret_for(request.app.state.server_secret, org.id).decode(),
        "header": "X-Iamsign-Signature",
        "scheme": 't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>',
    }
