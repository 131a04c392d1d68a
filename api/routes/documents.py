"""``/v1/documents``: upload a PDF (streamed, hashed, checked), read its metadata and content, delete it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from api.deps import OrgDep, SessionDep, SettingsDep, StoreDep
from api.errors import ApiError
from api.flows.lifecycle import DocumentInUse, delete_document
from api.openapi import PDF_UPLOAD, errors
from api.store.db import in_thread
from api.store.models import Document
from api.store.uploads import receive_pdf_upload
from signing.errors import InputPdfError
from signing.inspect import inspect_pdf

router = APIRouter(prefix="/v1/documents", tags=["documents"])


class DocumentPublic(BaseModel):
    id: str
    sha256: str
    size: int
    filename: str
    pages: int
    signature_count: int

    @classmethod
    def of(cls, doc: Document) -> DocumentPublic:
        return cls(
            id=doc.id,
            sha256=doc.sha256,
            size=doc.size,
            filename=doc.filename,
            pages=doc.pages,
            signature_count=doc.signature_count,
        )


@router.post(
    "",
    status_code=201,
    response_model=DocumentPublic,
    responses=errors(400, 413, 415, 422, 507),
    openapi_extra=PDF_UPLOAD,
)
async def upload_document(
    request: Request, org: OrgDep, session: SessionDep, store: StoreDep, settings: SettingsDep
) -> DocumentPublic:
    """Upload a PDF as multipart field ``file``."""
    staged = await receive_pdf_upload(request, store, settings.max_upload_bytes)
    try:
        info = await asyncio.to_thread(inspect_pdf, staged.file.path)
    except InputPdfError:
        store.discard(staged.file)
        raise
    stored = store.publish(staged.file)
    doc = Document(
        organisation_id=org.id,
        sha256=stored.sha256,
        size=stored.size,
        filename=staged.filename,
        pages=info.pages,
        signature_count=info.signature_count,
    )
    session.add(doc)
    await in_thread(session.commit)  # a database round trip: never on the event loop
    return DocumentPublic.of(doc)


def owned_document(session, org, document_id: str) -> Document:
    """The organisation's document, or 404 (another organisation's ids do not exist for it)."""
    doc = session.get(Document, document_id)
    if doc is None or doc.organisation_id != org.id or doc.deleted_at is not None:
        raise ApiError(404, "not_found", f"no document {document_id}")
    return doc


def live_document(session, document_id: str | None) -> Document:
    """A signed revision to serve, or 410 when it was deleted (by its organisation or retention)."""
    doc = session.get(Document, document_id) if document_id else None
    if doc is None or doc.deleted_at is not None:
        raise ApiError(410, "document_deleted", f"the document {document_id} was deleted")
    return doc


@router.get("/{document_id}", response_model=DocumentPublic, responses=errors(404))
def get_document(document_id: str, org: OrgDep, session: SessionDep) -> DocumentPublic:
    return DocumentPublic.of(owned_document(session, org, document_id))


@router.get("/{document_id}/content", response_class=FileResponse, responses=errors(404))
def get_document_content(document_id: str, org: OrgDep, session: SessionDep, store: StoreDep) -> FileResponse:
    doc = owned_document(session, org, document_id)
    return FileResponse(store.path_for(doc.sha256), media_type="application/pdf", filename=doc.filename)


class DocumentDeleted(BaseModel):
    id: str
    deleted_document_ids: list[str]


@router.delete(
    "/{document_id}",
    response_model=DocumentDeleted,
    responses=errors(404, 409),
)
def remove_document(document_id: str, org: OrgDep, session: SessionDep, store: StoreDep) -> DocumentDeleted:
    """Delete the document and the signed revisions made from it; their audit trails keep a tombstone."""
    doc = owned_document(session, org, document_id)
    try:
        deleted = delete_document(session, store, doc, actor=f"org:{org.id}")
    except DocumentInUse as exc:
        raise ApiError(409, "document_in_use", str(exc)) from None
    return DocumentDeleted(id=doc.id, deleted_document_ids=deleted)
