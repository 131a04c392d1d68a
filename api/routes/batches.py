"""``/v1/batches``: one approval for many documents (iAM Smart bulk signing)."""

from __future__ import annotations

import datetime as dt
import json
import os
import zipfile
from typing import Literal

from fastapi import APIRouter, BackgroundTasks
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from api.deps import (
    BatchFlowDep,
    EnrolmentDep,
    IdempotencyKey,
    OrgDep,
    ServerSecretDep,
    SessionDep,
    SettingsDep,
    StoreDep,
)
from api.edge.json_body import RequestModel
from api.errors import ApiError
from api.flows.batch import MAX_BATCH_DOCUMENTS, BatchFlow
from api.flows.idempotency import request_hash
from api.openapi import errors
from api.routes.documents import live_document, owned_document
from api.routes.signing_requests import ErrorOut, SignatureOut, SignerIn, choose_mode
from api.store.models import Batch, BatchItem
from api.worker.egress import checked_webhook_url
from signing.model import PreparedSignature
from signing.summary import expected_for_record

router = APIRouter(prefix="/v1/batches", tags=["batches"])


class BatchCreate(RequestModel):
    document_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH_DOCUMENTS)
    signer: SignerIn
    mode: Literal["pdf", "hash"] | None = Field(
        None, description="default: hash (PAdES baseline) for an enrolled signer, pdf (PKCS#7) otherwise"
    )
    level: Literal["B-B", "B-T", "B-LT", "B-LTA"] | None = Field(
        None, description="PAdES level; default IAMSIGN_DEFAULT_LEVEL (B-LTA)"
    )
    require_profile: Literal["pades-baseline", "pkcs7-detached"] | None = Field(
        None, description="refuse (422) at creation when the signatures would be of another profile"
    )
    reason: str | None = Field(None, max_length=500)
    location: str | None = Field(None, max_length=200)
    webhook_url: HttpUrl | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "document_ids": ["doc_01J9Z3K7Q8W2E4R6T8Y0U2I4O6", "doc_01J9Z3M1A3S5D7F9G1H3J5K7L9"],
                    "signer": {"hkid": "A123456(3)"},
                    "level": "B-LTA",
                    "reason": "Approval",
                    "location": "Hong Kong",
                    "webhook_url": "https://school.example/hooks/iamsign",
                }
            ]
        }
    )


class BatchDocumentOut(BaseModel):
    document_id: str
    status: str
    signed_document_id: str | None
    error: ErrorOut | None
    signature: SignatureOut | None = Field(description="once completed: what the signed file holds")


class BatchCounts(BaseModel):
    total: int
    completed: int
    failed: int
    pending: int


class BatchPublic(BaseModel):
    id: str
    status: str
    error: ErrorOut | None
    sign_code: str | None
    expires_at: dt.datetime
    mode: str
    requested_level: str
    level: str = Field(deprecated=True, description="deprecated: the same as requested_level")
    expected_signature: SignatureOut | None = Field(description="what approving will produce")
    signer_url: str
    counts: BatchCounts
    documents: list[BatchDocumentOut]
    created_at: dt.datetime
    updated_at: dt.datetime


_ITEM_PUBLIC = {"received": "signing", "embedding": "signing"}
_HAS_SIGNED = frozenset({"completed", "partially_completed"})
"""Batch statuses whose signed documents are all there (the zip is complete)."""


def _public(batch_flow: BatchFlow, session, batch: Batch) -> BatchPublic:
    # only the columns shown: an item row also holds its prepared record and, until embedded, the
    # signature iAM Smart returned (kilobytes each), and clients poll this for batches of a thousand
    items = session.execute(
        sa_select(
            col(BatchItem.document_id),
            col(BatchItem.status),
            col(BatchItem.signed_document_id),
            col(BatchItem.error_code),
            col(BatchItem.error_message),
            col(BatchItem.signature_json),
        )
        .where(col(BatchItem.batch_id) == batch.id)
        .order_by(col(BatchItem.position))
    ).all()
    docs = [
        BatchDocumentOut(
            document_id=it.document_id,
            status=_ITEM_PUBLIC.get(it.status, it.status),
            signed_document_id=it.signed_document_id,
            error=ErrorOut(code=it.error_code, message=it.error_message or "") if it.error_code else None,
            signature=SignatureOut(**json.loads(it.signature_json)) if it.signature_json else None,
        )
        for it in items
    ]
    record = session.exec(
        select(col(BatchItem.record_json))
        .where(BatchItem.batch_id == batch.id, col(BatchItem.record_json).is_not(None))
        .order_by(col(BatchItem.position))
        .limit(1)
    ).first()
    expected = expected_for_record(PreparedSignature.loads(record)) if record else None
    done = sum(d.status == "completed" for d in docs)
    open_ = sum(d.status in ("pending", "signing") for d in docs)
    return BatchPublic(
        id=batch.id,
        status=batch.status,
        error=ErrorOut(code=batch.error_code, message=batch.error_message or "")
        if batch.error_code
        else None,
        sign_code=batch.sign_code,
        expires_at=batch.expires_at,
        mode=batch.mode,
        requested_level=batch.level,
        level=batch.level,
        expected_signature=SignatureOut(**expected.to_json()) if expected else None,
        signer_url=batch_flow.signer_url(batch),
        counts=BatchCounts(total=len(docs), completed=done, pending=open_, failed=len(docs) - done - open_),
        documents=docs,
        created_at=batch.created_at,
        updated_at=batch.updated_at,
    )


def _owned(session, org, batch_id: str) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None or batch.organisation_id != org.id:
        raise ApiError(404, "not_found", f"no batch {batch_id}")
    return batch


@router.post("", status_code=201, response_model=BatchPublic, responses=errors(400, 404))
async def create_batch(
    body: BatchCreate,
    batch_flow: BatchFlowDep,
    org: OrgDep,
    session: SessionDep,
    settings: SettingsDep,
    enrolment: EnrolmentDep,
    server_secret: ServerSecretDep,
    idempotency_key: IdempotencyKey = None,
) -> BatchPublic:
    """Prepare every document and ask the signer for one approval of all of them.

    An enrolled signer's batch is signed in hash mode (bulk hash items), PAdES baseline at ``level``;
    otherwise in PDF mode, PKCS#7 with what the level adds.
    """
    if len(set(body.document_ids)) != len(body.document_ids):
        raise ApiError(422, "duplicate_documents", "each document may appear only once in a batch")
    docs = [owned_document(session, org, d) for d in body.document_ids]
    spec = body.signer.spec()
    mode, cert = await choose_mode(session, org, enrolment, spec, body.mode, body.require_profile)
    batch = await batch_flow.create(
        session,
        org,
        docs,
        spec,
        mode=mode,
        signer_certificate_der=cert,
        level=settings.level_or_default(body.level),
        reason=body.reason,
        location=body.location,
        webhook_url=await checked_webhook_url(body.webhook_url, settings.webhook_allowed_networks),
        idempotency_key=idempotency_key,
        request_hash=request_hash(server_secret, body) if idempotency_key else None,
    )
    session.refresh(batch)
    return _public(batch_flow, session, batch)


@router.get("/{batch_id}", response_model=BatchPublic, responses=errors(404))
def get_batch(batch_id: str, batch_flow: BatchFlowDep, org: OrgDep, session: SessionDep) -> BatchPublic:
    return _public(batch_flow, session, _owned(session, org, batch_id))


@router.post("/{batch_id}/cancel", response_model=BatchPublic, responses=errors(404, 409))
async def cancel_batch(
    batch_id: str, batch_flow: BatchFlowDep, org: OrgDep, session: SessionDep
) -> BatchPublic:
    batch = _owned(session, org, batch_id)
    if not await batch_flow.cancel(session, batch):
        session.refresh(batch)
        raise ApiError(409, "not_pending", f"the batch is {batch.status} and can no longer be cancelled")
    session.refresh(batch)
    return _public(batch_flow, session, batch)


@router.get(
    "/{batch_id}/documents/{document_id}/signed-document",
    response_class=FileResponse,
    responses=errors(404, 409, 410),
)
def get_batch_signed_document(
    batch_id: str, document_id: str, org: OrgDep, session: SessionDep, store: StoreDep
) -> FileResponse:
    _owned(session, org, batch_id)
    item = session.exec(
        select(BatchItem).where(BatchItem.batch_id == batch_id, BatchItem.document_id == document_id)
    ).first()
    if item is None:
        raise ApiError(404, "not_found", f"document {document_id} is not in batch {batch_id}")
    if item.status != "completed":
        raise ApiError(409, "not_completed", f"that document is {_ITEM_PUBLIC.get(item.status, item.status)}")
    doc = live_document(session, item.signed_document_id)
    return FileResponse(store.path_for(doc.sha256), media_type="application/pdf", filename=doc.filename)


@router.get("/{batch_id}/signed.zip", response_class=FileResponse, responses=errors(404))
def get_batch_zip(
    batch_id: str, org: OrgDep, session: SessionDep, store: StoreDep, background: BackgroundTasks
) -> FileResponse:
    """Every signed document of the batch in one zip (names as uploaded, made unique); 409 until it ends."""
    batch = _owned(session, org, batch_id)
    if batch.status not in _HAS_SIGNED:
        raise ApiError(409, "not_completed", f"the batch is {batch.status}; there is no signed zip")
    items = session.exec(
        select(BatchItem)
        .where(BatchItem.batch_id == batch_id, BatchItem.status == "completed")
        .order_by(col(BatchItem.position))
    ).all()
    docs = [live_document(session, it.signed_document_id) for it in items]  # 410 before any zip is made
    tmp = store.temp_path(".zip")
    used: set[str] = set()
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for doc in docs:
            name = doc.filename
            n = 1
            while name in used:
                n += 1
                stem, dot, ext = doc.filename.rpartition(".")
                name = f"{stem} ({n}).{ext}" if dot else f"{doc.filename} ({n})"
            used.add(name)
            zf.write(store.path_for(doc.sha256), arcname=name)
    background.add_task(os.unlink, tmp)
    return FileResponse(tmp, media_type="application/zip", filename=f"{batch_id}.zip")
