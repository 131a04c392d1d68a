"""Pages for people: the signer page ``/sign/{id}`` (English and Traditional Chinese)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlmodel import select

from api.deps import FlowDep
from api.errors import ApiError
from api.flows.signing import SigningFlow
from api.store.models import Batch, BatchItem, Document, SigningRequest

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))

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


def _request(flow: SigningFlow, request_id: str) -> tuple[SigningRequest | Batch, str]:
    """A signing request or a batch (both have a signer page), and what to call its document(s)."""
    with flow.session() as session:
        if request_id.startswith("bt_"):
            batch = session.get(Batch, request_id)
            if batch is None:
                raise ApiError(404, "not_found", "no such batch")
            n = len(session.exec(select(BatchItem.id).where(BatchItem.batch_id == batch.id)).all())
            return batch, f"{n} documents · {n} 份文件"
        req = session.get(SigningRequest, request_id)
        if req is None:
            raise ApiError(404, "not_found", "no such signing request")
        return req, session.get_one(Document, req.document_id).filename


@router.get("/sign/{request_id}", response_class=HTMLResponse)
def signer_page(request_id: str, request: Request, flow: FlowDep) -> HTMLResponse:
    req, filename = _request(flow, request_id)
    return templates.TemplateResponse(
        request,
        "sign.html",
        {
            "filename": filename,
            "sign_code": req.sign_code,
            "status": req.status,
            "status_text": STATUS_LABELS.get(req.status, req.status),
            "labels": STATUS_LABELS,
            "qr_url": flow.qr_url(req)
            if isinstance(req, SigningRequest) and req.status == "pending"
            else None,
            "expires_at": req.expires_at.isoformat(timespec="seconds"),
            "status_url": f"/sign/{req.id}/status",
        },
    )


@router.get("/sign/{request_id}/status")
def signer_status(request_id: str, flow: FlowDep) -> dict:
    """What the signer page polls: status only, nothing about the document or the signer."""
    req, _ = _request(flow, request_id)
    return {"status": req.status}
