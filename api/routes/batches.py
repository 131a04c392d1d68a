"""``/v1/batches``: one approval for many documents (iAM Smart bulk signing)."""

from __future__ import annotations

import datetime as dt
import os
import zipfile
from typing import Literal

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, HttpUrl
from sqlmodel import select

from api.deps import IdempotencyKey, OrgDep, SessionDep, StoreDep
from api.errors import ApiError
from api.flows.batch import MAX_BATCH_DOCUMENTS
from api.flows.identity import SignerSpec
from api.routes.documents import owned_document
from api.routes.signing_requests import ErrorOut, SignerIn
from api.store.models import Batch, BatchItem, Document

router = APIRouter(prefix="/v1/batches", tags=["batches"])


class BatchCreate(BaseModel):
    document_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH_DOCUMENTS)
    signer: SignerIn
    level: Literal["B-B", "B-T", "B-LT", "B-LTA"] = "B-LTA"
    reason: str | None = Field(None, max_length=500)
    location: str | None = Field(None, max_length=200)
    webhook_url: HttpUrl | None = None


class BatchDocumentOut(BaseModel):
    document_id: str
    status: str
    signed_document_id: str | None
    error: ErrorOut | None


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
    level: str
    signer_url: str
    counts: BatchCounts
    documents: list[BatchDocumentOut]
    created_at: dt.datetime
    updated_at: dt.datetime


_ITEM_PUBLIC = {"received": "signing", "embedding": "signing"}


def _public(request: Request, session, batch: Batch) -> BatchPublic:
    items = session.exec(
        select(BatchItem).where(BatchItem.batch_id == batch.id).order_by(BatchItem.position)
    ).all()
    docs = [
        BatchDocumentOut(
            document_id=it.document_id,
            status=_ITEM_PUBLIC.get(it.status, it.status),
            signed_document_id=it.signed_document_id,
            error=ErrorOut(code=it.error_code, message=it.error_message or "") if it.error_code else None,
        )
        for it in items
    ]
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
        level=batch.level,
        signer_url=request.app.state.batch_flow.signer_url(batch),
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


@router.post("", status_code=201, response_model=BatchPublic)
async def create_batch(
    body: BatchCreate,
    request: Request,
    org: OrgDep,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> BatchPublic:
    """Prepare every document and ask the signer for one approval of all of them."""
    if len(set(body.document_ids)) != len(body.document_ids):
        raise ApiError(422, "duplicate_documents", "each document may appear only once in a batch")
    docs = [owned_document(session, org, d) for d in body.document_ids]
    batch = await request.app.state.batch_flow.create(
        session,
        org,
        docs,
        SignerSpec(hkid=body.signer.hkid, session_id=body.signer.session_id),
        level=body.level,
        reason=body.reason,
        location=body.location,
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
        idempotency_key=idempotency_key,
    )
    session.refresh(batch)
    return _public(request, session, batch)


@router.get("/{batch_id}", response_model=BatchPublic)
def get_batch(batch_id: str, request: Request, org: OrgDep, session: SessionDep) -> BatchPublic:
    return _public(request, session, _owned(session, org, batch_id))


@router.post("/{batch_id}/cancel", response_model=BatchPublic)
async def cancel_batch(batch_id: str, request: Request, org: OrgDep, session: SessionDep) -> BatchPublic:
    batch = _owned(session, org, batch_id)
    if not await request.app.state.batch_flow.cancel(session, batch):
        session.refresh(batch)
        raise ApiError(409, "not_pending", f"the batch is {batch.status} and can no longer be cancelled")
    session.refresh(batch)
    return _public(request, session, batch)


@router.get("/{batch_id}/documents/{document_id}/signed-document", response_class=FileResponse)
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
    doc = session.get(Document, item.signed_document_id)
    return FileResponse(store.path_for(doc.sha256), media_type="application/pdf", filename=doc.filename)


@router.get("/{batch_id}/signed.zip", response_class=FileResponse)
def get_batch_zip(
    batch_id: str, org: OrgDep, session: SessionDep, store: StoreDep, background: BackgroundTasks
) -> FileResponse:
    """Every signed document of the batch in one zip (names as uploaded, made unique)."""
    _owned(session, org, batch_id)
    items = session.exec(
        select(BatchItem)
        .where(BatchItem.batch_id == batch_id, BatchItem.status == "completed")
        .order_by(BatchItem.position)
    ).all()
    tmp = store.temp_path(".zip")
    used: set[str] = set()
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for it in items:
            doc = session.get(Document, it.signed_document_id)
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
