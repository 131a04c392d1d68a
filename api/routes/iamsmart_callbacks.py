"""Where iAM Smart answers: the result callback (account flow) and the browser redirect (anonymous flow)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from signing.iamsmart.errors import IamSmartError

router = APIRouter(prefix="/v1/iamsmart", tags=["iAM Smart callbacks"])
log = logging.getLogger("iamsign.callbacks")

_MAX_CALLBACK = 1024 * 1024


@router.post("/callback", include_in_schema=True)
async def signing_callback(request: Request) -> JSONResponse:
    """iAM Smart POSTs the signing result here. Forged, unreadable or unknown answers change nothing."""
    body = await request.body()
    if len(body) > _MAX_CALLBACK:
        return JSONResponse({"error": {"code": "too_large", "message": "callback too large"}}, status_code=413)
    flow = request.app.state.flow
    try:
        cb = flow.client.decrypt_callback(body)
    except (IamSmartError, ValueError, TypeError, KeyError) as exc:
        log.warning("callback refused: cannot decrypt (%s)", type(exc).__name__)
        return JSONResponse({"error": {"code": "undecryptable", "message": "the callback cannot be decrypted"}},
                            status_code=400)
    outcome = await flow.take_result(cb.business_id, cb.code, cb.content, actor="iamsmart:callback")
    if outcome == "unknown":
        return JSONResponse({"error": {"code": "unknown_business_id", "message": "no such request"}},
                            status_code=404)
    return JSONResponse({"received": True, "outcome": outcome})


@router.get("/redirect", response_class=HTMLResponse)
async def signing_redirect(request: Request) -> HTMLResponse:
    """The signer's browser returns here after approving on the phone (anonymous signing)."""
    q = request.query_params
    business_id = q.get("businessID") or q.get("state")
    outcome = await request.app.state.flow.take_redirect(business_id, q.get("code"), q.get("error_code"))
    with request.app.state.flow.session() as session:
        req = request.app.state.flow.find_by_business_id(session, business_id)
    if req is None:
        return HTMLResponse("<p>Unknown signing request. 找不到此簽署要求。</p>", status_code=404)
    return HTMLResponse(
        f'<meta http-equiv="refresh" content="0; url=/sign/{req.id}">'
        f'<p>Thank you. 多謝。 <a href="/sign/{req.id}">Continue / 繼續</a> ({outcome})</p>'
    )
