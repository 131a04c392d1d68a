"""Where iAM Smart answers: the result callback (account flow) and the browser redirect (anonymous flow)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from api.deps import BatchFlowDep, FlowDep
from api.openapi import errors
from signing.iamsmart.errors import IamSmartError

router = APIRouter(prefix="/v1/iamsmart", tags=["iAM Smart callbacks"])
log = logging.getLogger("iamsign.callbacks")

_MAX_CALLBACK = 1024 * 1024
_MAX_BULK_CALLBACK = 64 * 1024 * 1024  # 1000 CMS of a few KB each, Base64 and encrypted


@router.post("/callback", responses=errors(400, 404, 413))
async def signing_callback(request: Request, flow: FlowDep) -> JSONResponse:
    """iAM Smart POSTs the signing result here. Forged, unreadable or unknown answers change nothing."""
    body = await request.body()
    if len(body) > _MAX_CALLBACK:
        return JSONResponse(
            {"error": {"code": "too_large", "message": "callback too large"}}, status_code=413
        )
    try:
        cb = flow.client.decrypt_callback(body)
    except (IamSmartError, ValueError, TypeError, KeyError) as exc:
        log.warning("callback refused: cannot decrypt (%s)", type(exc).__name__)
        return JSONResponse(
            {"error": {"code": "undecryptable", "message": "the callback cannot be decrypted"}},
            status_code=400,
        )
    outcome = await flow.take_result(cb.business_id, cb.code, cb.content, actor="iamsmart:callback")
    if outcome == "unknown":
        return JSONResponse(
            {"error": {"code": "unknown_business_id", "message": "no such request"}}, status_code=404
        )
    return JSONResponse({"received": True, "outcome": outcome})


@router.get(
    "/redirect",
    response_class=HTMLResponse,
    responses={404: {"description": "Unknown request (an HTML page)", "content": {"text/html": {}}}},
)
async def signing_redirect(request: Request, flow: FlowDep) -> HTMLResponse:
    """The signer's browser returns here after approving on the phone (anonymous signing)."""
    q = request.query_params
    outcome, req_id = await flow.take_redirect(
        q.get("businessID"), q.get("state"), q.get("code"), q.get("error_code")
    )
    if req_id is None:
        return HTMLResponse("<p>Unknown signing request. 找不到此簽署要求。</p>", status_code=404)
    return HTMLResponse(
        f'<meta http-equiv="refresh" content="0; url=/sign/{req_id}">'
        f'<p>Thank you. 多謝。 <a href="/sign/{req_id}">Continue / 繼續</a> ({outcome})</p>'
    )


@router.post("/bulk/token", responses=errors(400, 404, 413))
async def bulk_token_callback(request: Request, flow: FlowDep, batch_flow: BatchFlowDep) -> JSONResponse:
    """iAM Smart sends a bulk request's BSQC token here (needed to enquire or cancel)."""
    body = await request.body()
    if len(body) > _MAX_CALLBACK:
        return JSONResponse(
            {"error": {"code": "too_large", "message": "callback too large"}}, status_code=413
        )
    try:
        cb = flow.client.decrypt_callback(body)
    except (IamSmartError, ValueError, TypeError, KeyError):
        return JSONResponse(
            {"error": {"code": "undecryptable", "message": "the callback cannot be decrypted"}},
            status_code=400,
        )
    outcome = batch_flow.take_token(
        cb.business_id, getattr(cb, "bsqc_token", None) or cb.content.get("BSQCToken")
    )
    status = 404 if outcome == "unknown" else 200
    return JSONResponse({"received": status == 200, "outcome": outcome}, status_code=status)


@router.post("/bulk/callback", responses=errors(400, 404, 413))
async def bulk_result_callback(request: Request, batch_flow: BatchFlowDep) -> JSONResponse:
    """iAM Smart POSTs bulk results here: multipart ``sigMetada`` (+ ``sigFile``), possibly in pages."""
    from signing.iamsmart.bulk import split_multipart

    body = await request.body()
    if len(body) > _MAX_BULK_CALLBACK:
        return JSONResponse(
            {"error": {"code": "too_large", "message": "callback too large"}}, status_code=413
        )
    try:
        parts = split_multipart(body, request.headers.get("content-type", ""))
        outcome = await batch_flow.take_callback(parts)
    except (IamSmartError, ValueError, TypeError, KeyError) as exc:
        log.warning("bulk callback refused: %s", type(exc).__name__)
        return JSONResponse(
            {"error": {"code": "undecryptable", "message": "the callback cannot be read"}}, status_code=400
        )
    if outcome == "unknown":
        return JSONResponse(
            {"error": {"code": "unknown_business_id", "message": "no such batch"}}, status_code=404
        )
    return JSONResponse({"received": True, "outcome": outcome})
