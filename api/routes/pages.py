"""Pages for people: the signer page ``/sign/{id}`` of a signing request, a batch or an envelope.

The page shows what is to be signed (each document's pages as images rendered on the server, the first
few at once and the rest behind a "more" control), the sign code large, the expiry in Hong Kong time and,
once it ended, a clear final state; in English and Traditional Chinese. Its only script carries a nonce
(strict CSP) and polls ``/sign/{id}/status``, reloading the page when the state changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlmodel import Session, col, select

from api.deps import FlowDep, StoreDep
from api.errors import ApiError
from api.flows.previews import PREVIEW_WIDTH, PreviewError, page_image
from api.flows.signing import SigningFlow
from api.store.models import Batch, BatchItem, Document, Envelope, EnvelopeStep, SigningRequest

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))

FIRST_PAGES = 3
"""Pages shown at once for a single document; the others wait behind "more"."""
MAX_PAGES = 60
"""Pages a document shows at most on the page."""
MAX_DOCUMENTS = 200
"""Documents a batch page lists (with a first-page preview each)."""
HONG_KONG = dt.timezone(dt.timedelta(hours=8), "HKT")  # no daylight saving time since 1979

STATUS_LABELS = {
    "pending": "Waiting for your approval · 等待批准",
    "signing": "Approved, signing · 已批准，正在簽署",
    "partially_completed": "Signed, some documents failed · 已簽署，部分文件失敗",
    "completed": "Signed · 已簽署",
    "rejected": "Rejected · 已拒絕",
    "cancelled": "Cancelled · 已取消",
    "expired": "Expired · 已逾時",
    "failed": "Failed · 失敗",
}

# What the signer reads once it ended: (English, Traditional Chinese).
FINAL_STATES = {
    "completed": (
        "Signed. There is nothing more to do: you can close this page.",
        "已完成簽署，毋須再操作，可關閉此頁。",
    ),
    "partially_completed": (
        "Signed, but some documents could not be signed; the sender has been told.",
        "已簽署，但部分文件未能簽署；已通知發送者。",
    ),
    "rejected": (
        "You declined to sign. Nothing was signed.",
        "您已拒絕簽署，文件沒有被簽署。",
    ),
    "expired": (
        "This request expired before it was approved. Nothing was signed; ask the sender for a new one.",
        "此要求在批准前已逾時，文件沒有被簽署；請向發送者索取新的要求。",
    ),
    "cancelled": (
        "The sender cancelled this request. Nothing more to do.",
        "發送者已取消此要求，毋須再操作。",
    ),
    "failed": (
        "Signing could not be completed; the sender has been told.",
        "未能完成簽署；已通知發送者。",
    ),
}

STEP_LABELS = {
    "waiting": "Waiting for earlier signers · 等待前一位簽署人",
    "starting": "Starting · 準備中",
    "skipped": "Not needed · 毋須簽署",
    **STATUS_LABELS,
}


@dataclass
class _DocView:
    id: str
    filename: str
    pages: int
    shown: list[int]
    more: list[int]
    not_shown: int
    signatures: int


@dataclass
class _View:
    kind: str  # request, batch, envelope
    id: str
    status: str
    sign_code: str | None
    expires_at: dt.datetime | None
    qr_url: str | None
    documents: list[_DocView]
    document_total: int
    steps: list[tuple[int, str]] = field(default_factory=list)
    current_step: int | None = None

    @property
    def key(self) -> str:
        """What the page polls for: any change of it (status, the envelope's step) reloads the page."""
        return f"{self.status}:{self.current_step or 0}"


def _doc_view(doc: Document, first: int) -> _DocView:
    count = min(doc.pages, MAX_PAGES)
    return _DocView(
        id=doc.id,
        filename=doc.filename,
        pages=doc.pages,
        shown=list(range(1, min(first, count) + 1)),
        more=list(range(first + 1, count + 1)),
        not_shown=max(0, doc.pages - MAX_PAGES),
        signatures=doc.signature_count,
    )


def _documents(session: Session, ids: list[str]) -> list[Document]:
    rows = {d.id: d for d in session.exec(select(Document).where(col(Document.id).in_(ids)))}
    return [rows[i] for i in ids if i in rows]


def _view(flow: SigningFlow, session: Session, object_id: str) -> tuple[_View, set[str]]:
    """What the page shows for a request, batch or envelope, and the documents it may show images of."""
    if object_id.startswith("bt_"):
        batch = session.get(Batch, object_id)
        if batch is None:
            raise ApiError(404, "not_found", "no such batch")
        ids = list(
            session.exec(
                select(BatchItem.document_id)
                .where(BatchItem.batch_id == batch.id)
                .order_by(col(BatchItem.position))
            )
        )
        docs = _documents(session, ids[:MAX_DOCUMENTS])
        first = FIRST_PAGES if len(ids) == 1 else 1
        view = _View(
            "batch",
            batch.id,
            batch.status,
            batch.sign_code,
            batch.expires_at,
            None,
            [_doc_view(d, first) for d in docs],
            len(ids),
        )
        return view, {d.id for d in docs}
    if object_id.startswith("env_"):
        env = session.get(Envelope, object_id)
        if env is None:
            raise ApiError(404, "not_found", "no such envelope")
        steps = list(
            session.exec(
                select(EnvelopeStep)
                .where(EnvelopeStep.envelope_id == env.id)
                .order_by(col(EnvelopeStep.position))
            )
        )
        current = next((s for s in steps if s.position == env.current_step), None)
        req = session.get(SigningRequest, current.request_id) if current and current.request_id else None
        shown_id = env.signed_document_id or (current.document_id if current else None) or env.document_id
        docs = _documents(session, [shown_id])
        live = env.status == "pending" and req is not None and req.status == "pending"
        view = _View(
            "envelope",
            env.id,
            env.status,
            req.sign_code if live and req else None,
            req.expires_at if live and req else None,
            flow.qr_url(req) if live and req else None,
            [_doc_view(d, FIRST_PAGES) for d in docs],
            len(docs),
            steps=[(s.position + 1, s.status) for s in steps],
            current_step=env.current_step + 1,
        )
        allowed = {d.id for d in docs}
        return view, allowed
    req = session.get(SigningRequest, object_id)
    if req is None:
        raise ApiError(404, "not_found", "no such signing request")
    shown_id = req.signed_document_id or req.document_id
    docs = _documents(session, [shown_id])
    view = _View(
        "request",
        req.id,
        req.status,
        req.sign_code,
        req.expires_at,
        flow.qr_url(req) if req.status == "pending" else None,
        [_doc_view(d, FIRST_PAGES) for d in docs],
        len(docs),
    )
    return view, {d.id for d in docs}


def hong_kong_time(moment: dt.datetime | None) -> tuple[str, str] | None:
    """``moment`` in Hong Kong time, in English and in Traditional Chinese."""
    if moment is None:
        return None
    local = (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(HONG_KONG)
    en = f"{local.day} {local:%b %Y, %H:%M} Hong Kong time"
    zh = f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}（香港時間）"
    return en, zh


@router.get("/sign/{request_id}", response_class=HTMLResponse)
def signer_page(request_id: str, request: Request, flow: FlowDep) -> HTMLResponse:
    with flow.session() as session:
        view, _ = _view(flow, session, request_id)
    nonce = request.state.csp_nonce  # the page policy and its headers: api.edge.headers
    response = templates.TemplateResponse(
        request,
        "sign.html",
        {
            "nonce": nonce,
            "view": view,
            "status_text": STATUS_LABELS.get(view.status, view.status),
            "final": FINAL_STATES.get(view.status),
            "step_labels": STEP_LABELS,
            "expires": hong_kong_time(view.expires_at) if view.status == "pending" else None,
            "status_url": f"/sign/{view.id}/status",
            "width": PREVIEW_WIDTH,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/sign/{request_id}/status")
def signer_status(request_id: str, flow: FlowDep) -> dict:
    """What the signer page polls: status (and its reload key) only, nothing about the document or signer."""
    with flow.session() as session:
        view, _ = _view(flow, session, request_id)
    return {"status": view.status, "key": view.key}


@router.get("/sign/{request_id}/documents/{document_id}/pages/{page}.png")
async def page_preview(
    request_id: str, document_id: str, page: int, flow: FlowDep, store: StoreDep
) -> Response:
    """One page of a document of this request, batch or envelope, as a PNG (rendered once, then cached)."""
    with flow.session() as session:
        _, allowed = _view(flow, session, request_id)
        doc = session.get(Document, document_id) if document_id in allowed else None
    if doc is None:
        raise ApiError(404, "not_found", "no such document here")
    if doc.deleted_at is not None:
        raise ApiError(410, "document_deleted", "the document was deleted")
    if not 1 <= page <= min(doc.pages, MAX_PAGES):
        raise ApiError(404, "not_found", f"no page {page} to show: the document has {doc.pages} page(s)")
    try:
        png = await page_image(store, doc.sha256, page)
    except (PreviewError, FileNotFoundError) as exc:
        raise ApiError(404, "not_found", f"the page cannot be shown: {exc}") from None
    return Response(
        png,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
